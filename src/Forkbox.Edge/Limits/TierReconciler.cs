using Forkbox.Core;
using Forkbox.Core.Cluster;
using Forkbox.Edge.Registry;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;
using Forkbox.Hosting.Cluster;

namespace Forkbox.Edge.Limits;

/// <summary>
/// Repairs the owners' live sets from the hosts' announcements, so that no crash, expiry or lost
/// reply leaks a slot for good. Once a period one edge (whichever takes the Redis lock) compares:
/// an id counted before its host's snapshot and missing from it has ended; an id on a host that
/// left the registry has gone with it; an id a host reports and the set lacks is added back; a
/// create in flight for longer than <see cref="PendingLifetime"/> has failed without saying so.
/// </summary>
public sealed partial class TierReconciler(IConnectionMultiplexer redis, HostRegistry registry, string edgeId, ILogger log)
{
    /// <summary>Longer than any create or fork may take (a pool miss under load, a 32-way fork).</summary>
    public static readonly TimeSpan PendingLifetime = TimeSpan.FromMinutes(5);

    /// <summary>Runs one repair if no other edge holds this period's lock; returns the members removed and added.</summary>
    public async Task<(int Removed, int Added)> RunOnceAsync(TimeSpan period)
    {
        var db = redis.GetDatabase();
        if (!await db.StringSetAsync(ClusterKeys.ReconcileLock, edgeId, period * 0.9, When.NotExists).ConfigureAwait(false))
            return (0, 0);
        // The registry as Redis has it now, not as this edge last polled it.
        var hosts = await registry.ReadAsync().ConfigureAwait(false);
        var now = await ClusterRedis.NowAsync(redis).ConfigureAwait(false);
        var owners = (await db.SetMembersAsync(ClusterKeys.Owners).ConfigureAwait(false)).Select(o => (string)o!).ToHashSet(StringComparer.Ordinal);
        foreach (var h in hosts.Values) owners.UnionWith(h.Sandboxes.Keys);

        int removed = 0, added = 0;
        foreach (var owner in owners)
        {
            var key = ClusterKeys.Live(owner);
            var members = await db.SortedSetRangeByRankWithScoresAsync(key).ConfigureAwait(false);
            var present = new HashSet<string>(StringComparer.Ordinal);
            var stale = new List<RedisValue>();
            foreach (var m in members)
            {
                var id = (string)m.Element!;
                present.Add(id);
                if (id.StartsWith(TierLimiter.PendingPrefix, StringComparison.Ordinal))
                {
                    if (now.ToUnixTimeMilliseconds() - m.Score > PendingLifetime.TotalMilliseconds) stale.Add(m.Element);
                }
                else if (SandboxId.HostOf(id) is not { } hostId || !hosts.TryGetValue(hostId, out var host))
                    stale.Add(m.Element); // its host left the cluster, and its sandboxes with it
                else if (m.Score < host.AtMs && !(host.Sandboxes.GetValueOrDefault(owner)?.Contains(id) ?? false))
                    stale.Add(m.Element); // counted before the host's snapshot, and not in it: ended
            }
            var reported = hosts.Values.SelectMany(h => (h.Sandboxes.GetValueOrDefault(owner) ?? []).Select(id => (id, h.AtMs)))
                .Where(x => !present.Contains(x.id)).ToList();
            var closed = reported.Count == 0 ? []
                : (await db.SortedSetRangeByRankAsync(ClusterKeys.Closed(owner)).ConfigureAwait(false)).Select(c => (string)c!).ToHashSet(StringComparer.Ordinal);
            // Ids are never reused: one closed lately and still in a host's older announcement is not back.
            var missing = reported.Where(x => !closed.Contains(x.id)).Select(x => new SortedSetEntry(x.id, x.AtMs)).ToArray();
            if (stale.Count > 0) removed += (int)await db.SortedSetRemoveAsync(key, stale.ToArray()).ConfigureAwait(false);
            if (missing.Length > 0) added += (int)await db.SortedSetAddAsync(key, missing, SortedSetWhen.NotExists).ConfigureAwait(false);
        }
        if (removed + added > 0) LogRepaired(log, removed, added, hosts.Count);
        return (removed, added);
    }

    /// <summary>Repairs every period until stopped; a failed round is logged and the next one tries again.</summary>
    public async Task RunAsync(TimeSpan period, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(period);
        var failing = false;
        while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
        {
            // While Redis is away the registry's link says so, once; a round would only time out.
            if (!registry.Link.IsConnected) continue;
            try
            {
                await RunOnceAsync(period).ConfigureAwait(false);
                failing = false;
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                if (!failing) LogFailed(log, registry.Link.Reason(e));
                failing = true;
            }
        }
    }

    [LoggerMessage(EventId = 5201, Level = LogLevel.Information, Message = "tiers: repaired the live counts from {Hosts} hosts: {Removed} ended sandboxes removed, {Added} found on hosts added")]
    private static partial void LogRepaired(ILogger log, int removed, int added, int hosts);

    [LoggerMessage(EventId = 5202, Level = LogLevel.Warning, Message = "tiers: repairing the live counts failed ({Error}); trying again every period, logged again only after one works")]
    private static partial void LogFailed(ILogger log, string error);
}
