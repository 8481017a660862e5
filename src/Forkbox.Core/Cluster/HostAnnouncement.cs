namespace Forkbox.Core.Cluster;

/// <summary>
/// What a host that joined a cluster writes to Redis on every heartbeat (JSON under
/// <see cref="ClusterKeys.Host"/>, expiring after three missed beats): where to reach it, how much
/// room it has, and which sandboxes it holds for whom, which edges use to repair tier counts.
/// </summary>
public sealed record HostAnnouncement
{
    public required string HostId { get; init; }
    public required string Region { get; init; }
    public string? Continent { get; init; }
    /// <summary>The base URL edges forward to, e.g. http://10.0.0.5:7070.</summary>
    public required string Url { get; init; }
    public IReadOnlyList<string> Templates { get; init; } = [];
    public int Running { get; init; }
    public int Maximum { get; init; }
    /// <summary>Redis's clock (ms) when <see cref="Sandboxes"/> was read: a sandbox counted before then and missing here is gone.</summary>
    public long AtMs { get; init; }
    /// <summary>Owner (API key name) → ids of the sandboxes this host holds for it, hibernated ones included.</summary>
    public Dictionary<string, List<string>> Sandboxes { get; init; } = new();

    public int Free => Math.Max(0, Maximum - Running);
}
