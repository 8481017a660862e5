using System.Collections.Frozen;
using System.Text.Json;
using Forkbox.Core.Cluster;
using Forkbox.Core.Wire;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Forkbox.Edge.Registry;

/// <summary>
/// The hosts in rotation, read from Redis every poll. A host is in rotation while its announcement
/// lives (hosts beat every second or so with a TTL of three beats); the hot path reads an immutable
/// snapshot, so routing a call costs a dictionary lookup and no Redis round trip.
/// </summary>
public sealed partial class HostRegistry(IConnectionMultiplexer redis, RedisLink link, ILogger log)
{
    private volatile FrozenDictionary<string, HostEntry> _hosts = FrozenDictionary<string, HostEntry>.Empty;

    public IReadOnlyCollection<HostEntry> Hosts => _hosts.Values;

    public bool TryGet(string hostId, out HostEntry host) => _hosts.TryGetValue(hostId, out host!);

    /// <summary>The announcements in Redis now, by host id; drops ids whose announcement expired from the host set.</summary>
    public async Task<Dictionary<string, HostAnnouncement>> ReadAsync()
    {
        var db = redis.GetDatabase();
        var ids = await db.SetMembersAsync(ClusterKeys.Hosts).ConfigureAwait(false);
        var found = new Dictionary<string, HostAnnouncement>(StringComparer.Ordinal);
        if (ids.Length == 0) return found;
        var values = await db.StringGetAsync(ids.Select(i => (RedisKey)ClusterKeys.Host(i!)).ToArray()).ConfigureAwait(false);
        var gone = new List<RedisValue>();
        for (var i = 0; i < ids.Length; i++)
        {
            if (values[i].IsNull)
            {
                gone.Add(ids[i]);
                continue;
            }
            try
            {
                if (JsonSerializer.Deserialize((string)values[i]!, WireJson.Default.HostAnnouncement) is { } a) found[a.HostId] = a;
            }
            catch (JsonException e)
            {
                LogBadAnnouncement(log, (string)ids[i]!, e.Message);
            }
        }
        // A host beats SADD with every SET, so removing an expired one cannot lose a live host for more than a beat.
        if (gone.Count > 0) await db.SetRemoveAsync(ClusterKeys.Hosts, gone.ToArray()).ConfigureAwait(false);
        return found;
    }

    /// <summary>Reads the registry once and swaps in the new snapshot, logging hosts that joined or left.</summary>
    public async Task RefreshAsync()
    {
        var read = await ReadAsync().ConfigureAwait(false);
        var old = _hosts;
        var next = new Dictionary<string, HostEntry>(StringComparer.Ordinal);
        foreach (var (id, a) in read)
            // Same announcement (same snapshot time): keep the entry and what this edge learnt since.
            next[id] = old.TryGetValue(id, out var e) && e.Announcement.AtMs == a.AtMs ? e : new HostEntry(a);
        foreach (var (id, e) in next)
            if (!old.ContainsKey(id)) LogJoined(log, id, e.Region, e.Url);
        foreach (var (id, e) in old)
            if (!next.ContainsKey(id)) LogLeft(log, id, e.Region);
        _hosts = next.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>The link to Redis this registry reads through, whose state changes it reports.</summary>
    public RedisLink Link => link;

    public async Task RunAsync(TimeSpan period, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(period);
        while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
        {
            // Not connected: a read would only wait out its timeout in the client's backlog.
            if (!link.IsConnected)
            {
                link.Failed(null, Doing(period));
                continue;
            }
            try
            {
                await RefreshAsync().ConfigureAwait(false);
                link.Succeeded($"{_hosts.Count} hosts in rotation");
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                // Keep routing with the hosts last seen: a Redis hiccup must not take the cluster down.
                link.Failed(e, Doing(period));
            }
        }
    }

    /// <summary>What the edge does while Redis is away, for the line that says it is.</summary>
    public string Doing(TimeSpan period) => (_hosts.Count > 0
        ? $"routing with the {_hosts.Count} hosts last seen (a host that joins or leaves is not noticed)"
        : "not ready: no host is known, so every call answers 503") + $"; retrying every {period.TotalSeconds:0.###} s";

    [LoggerMessage(EventId = 5301, Level = LogLevel.Information, Message = "registry: host {HostId} joined (region {Region}, {Url})")]
    private static partial void LogJoined(ILogger log, string hostId, string region, Uri url);

    [LoggerMessage(EventId = 5302, Level = LogLevel.Warning, Message = "registry: host {HostId} (region {Region}) left rotation: its announcement expired or was removed")]
    private static partial void LogLeft(ILogger log, string hostId, string region);

    [LoggerMessage(EventId = 5303, Level = LogLevel.Warning, Message = "registry: host {HostId}'s announcement is not valid JSON ({Error}); ignored")]
    private static partial void LogBadAnnouncement(ILogger log, string hostId, string error);
}
