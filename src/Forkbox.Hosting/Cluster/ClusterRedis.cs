using StackExchange.Redis;

namespace Forkbox.Hosting.Cluster;

/// <summary>The cluster's Redis as hosts and edges both reach it.</summary>
public static class ClusterRedis
{
    /// <summary>
    /// Connects to "host:port" (a redis:// prefix is allowed). A Redis that does not answer yet
    /// does not fail the start: the connection keeps trying in the background, and the host
    /// serves (or the edge routes) as soon as it answers.
    /// </summary>
    /// <param name="configure">Sees the options before the first attempt (to watch connection attempts, say).</param>
    public static async Task<ConnectionMultiplexer> ConnectAsync(string endpoint, Action<ConfigurationOptions>? configure = null)
    {
        var config = ConfigurationOptions.Parse(endpoint.Replace("redis://", "", StringComparison.Ordinal));
        config.AbortOnConnectFail = false;
        config.ConnectTimeout = 2000;
        configure?.Invoke(config);
        return await ConnectionMultiplexer.ConnectAsync(config).ConfigureAwait(false);
    }

    /// <summary>Redis's clock: the one clock every host and edge compares snapshot and count times on.</summary>
    public static async Task<DateTimeOffset> NowAsync(IConnectionMultiplexer redis) =>
        await redis.GetServer(redis.GetEndPoints()[0]).TimeAsync().ConfigureAwait(false);
}
