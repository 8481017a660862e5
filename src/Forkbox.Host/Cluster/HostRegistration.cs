using System.Text.Json;
using Forkbox.Core;
using Forkbox.Core.Cluster;
using Forkbox.Core.Wire;
using Forkbox.Host.Sandboxes;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;
using Forkbox.Hosting.Cluster;

namespace Forkbox.Host.Cluster;

/// <summary>
/// A host's membership of a cluster: every <see cref="Forkbox.Core.Options.ClusterOptions.HeartbeatS"/> it writes its
/// <see cref="HostAnnouncement"/> to Redis with a TTL of three beats. Edges read the announcements;
/// a host that stops beating (killed, cut off) leaves rotation when its key expires, and a clean
/// stop removes it at once. Redis being away does not stop the host: it keeps serving and beats
/// again when Redis is back.
/// </summary>
public sealed partial class HostRegistration : IAsyncDisposable
{
    private readonly ServerOptions _options;
    private readonly SandboxManager _manager;
    private readonly string _url;
    private readonly ConnectionMultiplexer _redis;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private bool _failing;

    private HostRegistration(ServerOptions options, SandboxManager manager, string url, ConnectionMultiplexer redis, ILogger log)
    {
        _options = options;
        _manager = manager;
        _url = url;
        _redis = redis;
        _log = log;
        _loop = Task.Run(BeatAsync);
    }

    public static async Task<HostRegistration> StartAsync(ServerOptions options, SandboxManager manager, Uri address, ILogger log)
    {
        var redis = await ClusterRedis.ConnectAsync(options.Cluster.Join!).ConfigureAwait(false);
        var url = (options.Cluster.Advertise ?? address.ToString()).TrimEnd('/');
        LogJoining(log, options.Cluster.HostId!, options.Cluster.Region, url, options.Cluster.Join!);
        return new HostRegistration(options, manager, url, redis, log);
    }

    private async Task BeatAsync()
    {
        var period = TimeSpan.FromSeconds(_options.Cluster.HeartbeatS);
        using var timer = new PeriodicTimer(period);
        do
        {
            try
            {
                await BeatOnceAsync().ConfigureAwait(false);
                if (_failing) LogBeating(_log, _options.Cluster.Join!);
                _failing = false;
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                if (!_failing) LogBeatFailed(_log, _options.Cluster.Join!, e.Message);
                _failing = true;
            }
        } while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false));
    }

    /// <summary>Redis's clock first, then the snapshot: a sandbox an edge counted before that time is in the snapshot unless it has gone.</summary>
    private async Task BeatOnceAsync()
    {
        var db = _redis.GetDatabase();
        var now = await ClusterRedis.NowAsync(_redis).ConfigureAwait(false);
        var announcement = new HostAnnouncement
        {
            HostId = _options.Cluster.HostId!,
            Region = _options.Cluster.Region,
            Continent = _options.Cluster.Continent,
            Url = _url,
            Templates = _manager.Templates.Names.ToList(),
            Running = _manager.Running,
            Maximum = _options.Limits.MaxSandboxes,
            AtMs = now.ToUnixTimeMilliseconds(),
            Sandboxes = _manager.IdsByOwner(),
        };
        var json = JsonSerializer.Serialize(announcement, WireJson.Default.HostAnnouncement);
        var ttl = TimeSpan.FromSeconds(_options.Cluster.HeartbeatS * 3);
        var batch = db.CreateBatch();
        var set = batch.StringSetAsync(ClusterKeys.Host(_options.Cluster.HostId!), json, ttl);
        var add = batch.SetAddAsync(ClusterKeys.Hosts, _options.Cluster.HostId!);
        batch.Execute();
        await Task.WhenAll(set, add).ConfigureAwait(false);
    }

    /// <summary>Stops beating and removes the announcement, so edges stop sending here now rather than in three beats.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // the loop's normal end
        }
        try
        {
            await _redis.GetDatabase().KeyDeleteAsync(ClusterKeys.Host(_options.Cluster.HostId!)).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
            LogLeft(_log, _options.Cluster.HostId!);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            LogLeaveFailed(_log, e.Message);
        }
        await _redis.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 4101, Level = LogLevel.Information, Message = "cluster: host {HostId} in region {Region} joins via {Redis}, reachable at {Url}")]
    private static partial void LogJoining(ILogger log, string hostId, string region, string url, string redis);

    [LoggerMessage(EventId = 4102, Level = LogLevel.Warning, Message = "cluster: heartbeat to {Redis} failed ({Error}); edges drop this host after three missed beats; retrying every beat")]
    private static partial void LogBeatFailed(ILogger log, string redis, string error);

    [LoggerMessage(EventId = 4103, Level = LogLevel.Information, Message = "cluster: heartbeats to {Redis} succeed again")]
    private static partial void LogBeating(ILogger log, string redis);

    [LoggerMessage(EventId = 4104, Level = LogLevel.Information, Message = "cluster: host {HostId} left (announcement removed)")]
    private static partial void LogLeft(ILogger log, string hostId);

    [LoggerMessage(EventId = 4105, Level = LogLevel.Warning, Message = "cluster: could not remove this host's announcement ({Error}); edges drop it when it expires")]
    private static partial void LogLeaveFailed(ILogger log, string error);
}
