using System.Net;
using Forkbox.Core;
using Forkbox.Edge.Forwarding;
using Forkbox.Edge.Limits;
using Forkbox.Edge.Registry;
using Forkbox.Hosting.Auth;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;
using Yarp.ReverseProxy.Forwarder;
using Forkbox.Hosting;
using Forkbox.Hosting.Errors;
using Forkbox.Hosting.Cluster;

namespace Forkbox.Edge;

/// <summary>
/// `forkbox edge` as a library (the CLI and the tests start it the same way): the host API in
/// front of every host registered in one Redis. Edges keep no state of their own, so any number
/// of replicas can run side by side; what they share (the registry, the tier counts) is in Redis.
/// </summary>
public sealed partial class EdgeServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConnectionMultiplexer _redis;
    private readonly HttpMessageInvoker _client;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];
    private int _disposed;

    private EdgeServer(WebApplication app, ConnectionMultiplexer redis, HttpMessageInvoker client, HostRegistry registry, TierLimiter limiter,
        TierReconciler reconciler)
    {
        _app = app;
        _redis = redis;
        _client = client;
        Registry = registry;
        Limiter = limiter;
        Reconciler = reconciler;
    }

    public Uri Address { get; private set; } = null!;
    public HostRegistry Registry { get; }
    public TierLimiter Limiter { get; }
    public TierReconciler Reconciler { get; }

    public static async Task<EdgeServer> StartAsync(EdgeOptions options, Action<ILoggingBuilder>? logging = null, CancellationToken ct = default)
    {
        options.Validate();
        logging ??= ServerBuilder.ConsoleLogging;
        var loggers = LoggerFactory.Create(logging);
        // Read before Redis is reached: a malformed keys file stops the start naming it.
        var keys = options.Keys is null ? null : new ApiKeyStore(options.Keys, loggers.CreateLogger<ApiKeyStore>());
        if (!ListenAddress.IsLoopback(options.Listen) && keys?.Enabled != true)
            throw new InvalidOperationException(
                $"refusing to listen on {options.Listen} without API keys: pass --keys FILE (make keys with `forkbox keys create --keys FILE`), or listen on 127.0.0.1");
        var tiers = options.Tiers is null ? TierTable.Empty : TierTable.Load(options.Tiers);

        var builder = ServerBuilder.Create(logging);
        ListenAddress.TryParse(options.Listen, out var endpoint);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(endpoint);
            k.Limits.MaxRequestBodySize = null; // each host enforces its own upload limit and says so
            k.AddServerHeader = false;
        });
        builder.Services.AddHttpForwarder();

        var log = loggers.CreateLogger<EdgeServer>();
        var link = await RedisLink.ConnectAsync(options.Redis, loggers.CreateLogger<RedisLink>()).ConfigureAwait(false);
        var redis = link.Redis;
        var registry = new HostRegistry(redis, link, loggers.CreateLogger<HostRegistry>());
        string? away = null;
        if (!link.IsConnected) away = link.Reason();
        else
            try
            {
                await registry.RefreshAsync().ConfigureAwait(false);
                link.Succeeded("");
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                away = link.Reason(e);
            }
        if (away is not null) link.FailedQuietly(); // the start-up line below says it
        var limiter = new TierLimiter(redis);
        var reconciler = new TierReconciler(redis, registry, Guid.NewGuid().ToString("N"), loggers.CreateLogger<TierReconciler>());
        // One pool of connections to the hosts for everything the edge sends, as YARP recommends.
        var client = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ConnectTimeout = TimeSpan.FromSeconds(options.ConnectTimeoutS),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(2),
        });
        var metrics = new EdgeMetrics();

        var app = builder.Build();
        var proxy = new SandboxProxy(app.Services.GetRequiredService<IHttpForwarder>(), client, registry, limiter, metrics,
            options.ContinentHeader, loggers.CreateLogger<SandboxProxy>());
        app.Use(ErrorResponses.Handle);
        app.Use(TakeRegion);
        app.UseRouting(); // after TakeRegion, so that routes match the path without its /r/REGION prefix
        // A signed port URL stands in for the key; the host that holds the sandbox checks its signature.
        app.Use(new ApiKeyMiddleware(keys, ctx => ctx.Request.Path == "/v1/healthz"
            || (PortPath.TryParse(ctx.Request.Path.Value, out var port) && port.Signature is not null)).InvokeAsync);
        app.Use((ctx, next) =>
        {
            var key = ApiKeyMiddleware.KeyOf(ctx);
            new EdgeRequest
            {
                Owner = key?.Name ?? Owners.Local,
                Tier = tiers.For(key?.Tier),
                PathRegion = ctx.Items[RegionItem] as string,
            }.AttachTo(ctx);
            return next(ctx);
        });
        EdgeEndpoints.Map(app, proxy, registry, limiter, metrics, client);
        await app.StartAsync(ct).ConfigureAwait(false);

        var server = new EdgeServer(app, redis, client, registry, limiter, reconciler);
        server._loops.Add(registry.RunAsync(TimeSpan.FromSeconds(options.PollS), server._stop.Token));
        server._loops.Add(reconciler.RunAsync(TimeSpan.FromSeconds(options.ReconcileS), server._stop.Token));
        var address = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Address = new Uri(address.Replace("0.0.0.0", "127.0.0.1").Replace("[::]", "[::1]"));
        if (away is null) LogListening(log, server.Address, options.Redis, registry.Hosts.Count, keys?.Enabled == true, tiers.All.Count);
        else LogListeningNotReady(log, server.Address, options.Redis, away, registry.Doing(TimeSpan.FromSeconds(options.PollS)));
        return server;
    }

    private static readonly object RegionItem = new();

    /// <summary>Middleware, before routing: takes a /r/REGION prefix off the path and keeps the region for <see cref="EdgeRequest"/>.</summary>
    private static Task TakeRegion(HttpContext ctx, RequestDelegate next)
    {
        var path = ctx.Request.Path.Value ?? "";
        if (path.StartsWith("/r/", StringComparison.Ordinal))
        {
            var end = path.IndexOf('/', 3);
            if (end < 0) return ErrorResponses.WriteAsync(ctx, 404, "not_found", "a region path is /r/REGION/v1/…");
            ctx.Items[RegionItem] = path[3..end];
            ctx.Request.Path = path[end..];
        }
        return next(ctx);
    }

    /// <summary>Runs until SIGINT/SIGTERM, then stops.</summary>
    public async Task RunUntilStoppedAsync()
    {
        await _app.WaitForShutdownAsync().ConfigureAwait(false);
        await DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var loop in _loops)
        {
            try
            {
                await loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // the loop's normal end
            }
        }
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _client.Dispose();
        await _redis.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Information, Message = "forkbox edge listening on {Address} (redis {Redis}, {Hosts} hosts in rotation, auth {Auth}, {Tiers} tiers)")]
    private static partial void LogListening(ILogger log, Uri address, string redis, int hosts, bool auth, int tiers);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Warning, Message = "forkbox edge listening on {Address}, but redis {Redis} is unreachable ({Reason}): {Doing}")]
    private static partial void LogListeningNotReady(ILogger log, Uri address, string redis, string reason, string doing);
}
