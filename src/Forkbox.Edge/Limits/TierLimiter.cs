using Forkbox.Core.Cluster;
using Forkbox.Core.Errors;
using StackExchange.Redis;

namespace Forkbox.Edge.Limits;

/// <summary>
/// Per-key limits held in Redis, so that every edge replica sees the same counts. An owner's
/// sandboxes are a sorted set of ids (plus tokens for creates in flight), scored by Redis's clock
/// when counted: taking a slot is one Lua script that checks the rate window and the set's size
/// and adds to both, atomically across edges. A close or merge removes the id; anything else that
/// ends a sandbox (expiry, a host's death) is repaired by <see cref="TierReconciler"/> from what
/// the hosts report.
/// </summary>
public sealed class TierLimiter(IConnectionMultiplexer redis)
{
    /// <summary>The start of each script: <c>now</c>, Redis's clock in milliseconds (one clock for every edge).</summary>
    private const string RedisNow = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

        """;

    /// <summary>
    /// KEYS: live set, rate key prefix, owners set. ARGV: n, max sandboxes (-1: none), max creates
    /// per minute (-1: none), token, owner. Returns {0, now} when taken, {1, ms until the window
    /// ends} over the rate, {2, live} over the count.
    /// </summary>
    private const string AcquireScript = RedisNow + """
        local n = tonumber(ARGV[1])
        local maxc = tonumber(ARGV[2])
        local maxr = tonumber(ARGV[3])
        local rk = KEYS[2] .. ':' .. math.floor(now / 60000)
        if maxr >= 0 then
          local used = tonumber(redis.call('GET', rk) or '0')
          if used + n > maxr then return {1, 60000 - (now % 60000)} end
        end
        if maxc >= 0 then
          local live = redis.call('ZCARD', KEYS[1])
          if live + n > maxc then return {2, live} end
        end
        if maxr >= 0 then
          redis.call('INCRBY', rk, n)
          redis.call('PEXPIRE', rk, 120000)
        end
        for i = 1, n do redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i) end
        redis.call('SADD', KEYS[3], ARGV[5])
        return {0, now}
        """;

    /// <summary>KEYS: live set. ARGV: token, n, then the ids that replace the token's n slots.</summary>
    private const string CommitScript = RedisNow + """
        for i = 1, tonumber(ARGV[2]) do redis.call('ZREM', KEYS[1], ARGV[1] .. ':' .. i) end
        for i = 3, #ARGV do redis.call('ZADD', KEYS[1], now, ARGV[i]) end
        return #ARGV - 2
        """;

    /// <summary>
    /// KEYS: live set, closed set. ARGV: id. Frees the id's slot and remembers the close for ten
    /// minutes, so that repair from an announcement made before the close does not count it again.
    /// </summary>
    private const string CloseScript = RedisNow + """
        redis.call('ZREM', KEYS[1], ARGV[1])
        redis.call('ZADD', KEYS[2], now, ARGV[1])
        redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 600000)
        return 1
        """;

    /// <summary>The prefix of the members that stand for creates in flight.</summary>
    public const string PendingPrefix = "pending:";

    /// <summary>Takes <paramref name="n"/> slots for the owner, or throws 429 saying which limit and when to retry.</summary>
    public async Task<Slots> AcquireAsync(string owner, Tier tier, int n, bool countsAsCreate)
    {
        var token = PendingPrefix + Guid.NewGuid().ToString("N");
        var maxRate = countsAsCreate ? tier.CreatesPerMinute ?? -1 : -1;
        if (tier.MaxSandboxes is null && maxRate < 0) return new Slots(owner, null, n);
        var result = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(AcquireScript,
            [ClusterKeys.Live(owner), ClusterKeys.Rate(owner), ClusterKeys.Owners],
            [n, tier.MaxSandboxes ?? -1, maxRate, token, owner]).ConfigureAwait(false))!;
        return (int)result[0] switch
        {
            0 => new Slots(owner, token, n),
            1 => throw new RateLimitedException(
                $"API key '{owner}' (tier {tier.Name}) may create {tier.CreatesPerMinute} sandboxes a minute; try again in {Seconds((long)result[1])} s",
                Seconds((long)result[1]), "rate_limited"),
            _ => throw new RateLimitedException(
                $"API key '{owner}' (tier {tier.Name}) may hold {tier.MaxSandboxes} sandboxes at once and holds {(long)result[1]}; close some first",
                1, "too_many_sandboxes"),
        };
    }

    /// <summary>Turns a create's or fork's slots into the ids it made; the slots of ids it did not make are freed.</summary>
    public Task CommitAsync(Slots slots, IReadOnlyList<string> ids)
    {
        if (slots.Token is null) return Task.CompletedTask;
        var args = new RedisValue[ids.Count + 2];
        args[0] = slots.Token;
        args[1] = slots.Count;
        for (var i = 0; i < ids.Count; i++) args[i + 2] = ids[i];
        return redis.GetDatabase().ScriptEvaluateAsync(CommitScript, [ClusterKeys.Live(slots.Owner)], args);
    }

    /// <summary>Frees the slots of a create or fork that did not happen.</summary>
    public Task ReleaseAsync(Slots slots) => CommitAsync(slots, []);

    /// <summary>A sandbox closed (or merged away): its slot is free.</summary>
    public Task ReleaseAsync(string owner, string id) =>
        redis.GetDatabase().ScriptEvaluateAsync(CloseScript, [ClusterKeys.Live(owner), ClusterKeys.Closed(owner)], [id]);

    /// <summary>How many slots the owner holds now (sandboxes and creates in flight).</summary>
    public Task<long> CountAsync(string owner) => redis.GetDatabase().SortedSetLengthAsync(ClusterKeys.Live(owner));

    private static int Seconds(long ms) => (int)Math.Max(1, (ms + 999) / 1000);

    /// <summary>Slots taken for one create or fork; <see cref="Token"/> is null when the tier has no limit to count against.</summary>
    public sealed record Slots(string Owner, string? Token, int Count);
}
