using System.Text.Json;
using System.Text.Json.Nodes;
using Forkbox.Core.Errors;

namespace Forkbox.Edge.Limits;

/// <summary>
/// The tiers file: {"free": {"max_sandboxes": 5, "creates_per_minute": 60}, "pro": {…}}. A key
/// with no tier, or one the file does not name, gets the tier "default" if the file has one,
/// else no limits.
/// </summary>
public sealed class TierTable
{
    public const string DefaultName = "default";
    private static readonly Tier Unlimited = new("unlimited", null, null);
    private readonly Dictionary<string, Tier> _tiers;

    private TierTable(Dictionary<string, Tier> tiers) => _tiers = tiers;

    public static TierTable Empty { get; } = new(new Dictionary<string, Tier>(StringComparer.Ordinal));

    public IReadOnlyCollection<Tier> All => _tiers.Values;

    public Tier For(string? tier) =>
        tier is not null && _tiers.TryGetValue(tier, out var t) ? t : _tiers.GetValueOrDefault(DefaultName) ?? Unlimited;

    public static TierTable Load(string path)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                   ?? throw new BadRequestException($"tiers file {path}: expected an object of tiers, e.g. {{\"free\": {{\"max_sandboxes\": 5}}}}");
        }
        catch (JsonException e)
        {
            throw new BadRequestException($"tiers file {path} is not valid JSON: {e.Message}");
        }
        var tiers = new Dictionary<string, Tier>(StringComparer.Ordinal);
        foreach (var (name, node) in root)
        {
            if (node is not JsonObject o)
                throw new BadRequestException($"tiers file {path}: tier '{name}' must be an object with max_sandboxes and/or creates_per_minute");
            foreach (var (field, _) in o)
                if (field is not ("max_sandboxes" or "creates_per_minute"))
                    throw new BadRequestException($"tiers file {path}: tier '{name}' has unknown field '{field}' (known: max_sandboxes, creates_per_minute)");
            tiers[name] = new Tier(name, Positive(o, "max_sandboxes", name, path), Positive(o, "creates_per_minute", name, path));
        }
        return new TierTable(tiers);
    }

    private static int? Positive(JsonObject o, string field, string tier, string path)
    {
        if (o[field] is not { } v) return null;
        if (v.GetValueKind() != JsonValueKind.Number || !v.AsValue().TryGetValue<int>(out var n) || n < 0)
            throw new BadRequestException($"tiers file {path}: tier '{tier}' {field} must be a whole number >= 0");
        return n;
    }
}
