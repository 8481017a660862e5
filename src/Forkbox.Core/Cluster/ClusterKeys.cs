namespace Forkbox.Core.Cluster;

/// <summary>The Redis keys hosts and edges of one cluster share.</summary>
public static class ClusterKeys
{
    /// <summary>Set of the host ids that have announced themselves; an id whose announcement expired is dropped by the next edge that reads it.</summary>
    public const string Hosts = "forkbox:hosts";

    /// <summary>A host's <see cref="HostAnnouncement"/>, with a TTL of three heartbeats.</summary>
    public static string Host(string hostId) => "forkbox:host:" + hostId;

    /// <summary>Set of the owners that have a live-sandbox set.</summary>
    public const string Owners = "forkbox:owners";

    /// <summary>Sorted set of an owner's sandboxes (and creates in flight), scored by the Redis time they were counted.</summary>
    public static string Live(string owner) => "forkbox:live:" + owner;

    /// <summary>Sorted set of the ids an owner closed lately (by close time), which repair must not count again from an older announcement.</summary>
    public static string Closed(string owner) => "forkbox:closed:" + owner;

    /// <summary>An owner's creates in the current rate window.</summary>
    public static string Rate(string owner) => "forkbox:rate:" + owner;

    /// <summary>Held by the edge that reconciles the live sets in this period, so that only one does.</summary>
    public const string ReconcileLock = "forkbox:reconcile";
}
