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
public sealed partial class HostRegistry(IConnectionMultiplexer redis, ILogger log)
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

    public async Task RunAsync(TimeSpan period, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(period);
        var failing = false;
        while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
        {
            try
            {
                await RefreshAsync().ConfigureAwait(false);
                if (failing) LogReading(log);
                failing = false;
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                // Keep routing with the hosts last seen: a Redis hiccup must not take the cluster down.
                if (!failing) LogReadFailed(log, e.Message, _hosts.Count);
                failing = true;
            }
        }
    }

    [LoggerMessage(EventId = 5301, Level = LogLevel.Information, Message = "registry: host {HostId} joined (region {Region}, {Url})")]
    private static partial void LogJoined(ILogger log, string hostId, string region, Uri url);

    [LoggerMessage(EventId = 5302, Level = LogLevel.Warning, Message = "registry: host {HostId} (region {Region}) left rotation: its announcement expired or was removed")]
    private static partial void LogLeft(ILogger log, string hostId, string region);

    [LoggerMessage(EventId = 5303, Level = LogLevel.Warning, Message = "registry: host {HostId}'s announcement is not valid JSON ({Error}); ignored")]
    private static partial void LogBadAnnouncement(ILogger log, string hostId, string error);

    [LoggerMessage(EventId = 5304, Level = LogLevel.Warning, Message = "registry: reading Redis failed ({Error}); routing with the {Count} hosts last seen")]
    private static partial void LogReadFailed(ILogger log, string error, int count);

    [LoggerMessage(EventId = 5305, Level = LogLevel.Information, Message = "registry: reading Redis works again")]
    private static partial void LogReading(ILogger log);
}
