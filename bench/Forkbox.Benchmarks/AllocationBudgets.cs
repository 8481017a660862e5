using System.Text.Json;

namespace Forkbox.Benchmarks;

/// <summary>
/// bench/allocation-budgets.json: for each benchmark (Class.Method), the most bytes it may
/// allocate per operation. The figures are deterministic, so a budget is the measured figure
/// with a little room; lower it when an allocation is removed, so it cannot come back unnoticed.
/// </summary>
internal sealed record AllocationBudgets(IReadOnlyDictionary<string, long> Budgets)
{
    public const string FileName = "allocation-budgets.json";

    public static AllocationBudgets Load(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        if (!doc.RootElement.TryGetProperty("budgets", out var budgets) || budgets.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: expected {{\"budgets\": {{\"Class.Method\": bytes, …}}}}");
        var map = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var b in budgets.EnumerateObject())
            map[b.Name] = b.Value.TryGetInt64(out var bytes) && bytes >= 0
                ? bytes
                : throw new InvalidDataException($"{path}: the budget of {b.Name} must be a whole number of bytes, not {b.Value.GetRawText()}");
        return new AllocationBudgets(map);
    }

    /// <summary>bench/allocation-budgets.json of the checkout the working directory is in.</summary>
    public static string DefaultPath()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "bench", FileName);
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException($"no bench/{FileName} above {Directory.GetCurrentDirectory()}: run from the checkout or name the file");
    }
}
