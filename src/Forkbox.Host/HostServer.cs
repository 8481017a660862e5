using Forkbox.Core;
using Forkbox.Host.Agents;
using Forkbox.Host.Api;
using Forkbox.Hosting.Auth;
using Forkbox.Host.Cluster;
using Forkbox.Host.Networking;
using Forkbox.Host.Ports;
using Forkbox.Host.Sandboxes;
using Forkbox.Host.Templates;
using Forkbox.Linux;
using Forkbox.Linux.Cgroups;
using Forkbox.Linux.Leftovers;
using Forkbox.Linux.Namespaces;
using Forkbox.Linux.Seccomp;
using Forkbox.Linux.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;
using Forkbox.Hosting;
using Forkbox.Hosting.Errors;

namespace Forkbox.Host;

/// <summary>
/// hostd as a library: `forkbox serve` and the integration tests start it the same way.
/// Start-up order: check privileges and configuration, clean what a crashed run left, compile the
/// seccomp filter, make the skeleton template, open the agent socket, start the default zygote,
/// then listen. Disposal undoes it all: no sandbox process, mount or cgroup is left behind.
/// </summary>
public sealed partial class HostServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly SandboxManager _manager;
    private readonly AgentListener _listener;
    private readonly UserNamespaceSlots _slots;
    private readonly ILogger _log;
    private int _disposed;
    private FileStream? _dataLock;
    private ICgroupDriver? _cgroups;
    private StorageImage? _storageImage;
    private SandboxStore? _store;
    private HostRegistration? _registration;
    private LeftoverSweep? _claim;
    private ILoggerFactory? _loggers;
    private TimeSpan _grace;

    /// <summary>The route values that name a sandbox: {id}, and the other sandbox of a merge_into or diff.</summary>
    private static readonly string[] SandboxRouteValues = ["id", "winner", "other"];

    private SandboxNetworking? _network;
    private PortForwarder? _ports;

    private HostServer(WebApplication app, SandboxManager manager, AgentListener listener, UserNamespaceSlots slots, ILogger log)
    {
        _app = app;
        _manager = manager;
        _listener = listener;
        _slots = slots;
        _log = log;
    }

    /// <summary>The address the server listens on (useful with port 0).</summary>
    public Uri Address { get; private set; } = null!;

    public SandboxManager Sandboxes => _manager;

    /// <summary>Every route this server maps, with its methods (the 405 answer reads them too).</summary>
    public EndpointDataSource Routes => _app.Services.GetRequiredService<EndpointDataSource>();

    /// <summary>How forks snapshot writable layers here ("btrfs", "reflink", "copy"), as /v1/capacity reports.</summary>
    public string StorageStrategy { get; private set; } = null!;

    /// <summary>The filesystem under the sandboxes directory ("ext4", "btrfs", "xfs", …).</summary>
    public string StorageFilesystem { get; private set; } = null!;

    /// <summary>Worker threads the pool keeps ready, whatever the number of cores.</summary>
    public const int MinPoolThreads = 64;

    /// <summary>
    /// Some of hostd's work blocks a pool thread for milliseconds to tens of them (a close waits for
    /// its cgroup to empty; cgroup, mount and layer system calls; record commits). With the pool's
    /// default minimum of one thread per core, fifty agents creating, forking and closing on two
    /// cores starved it, and hot calls queued for the pool's slow thread injection: run_code p95
    /// went from 14 ms to 134 ms (MixedLoadTests). Idle threads cost little.
    /// </summary>
    private static void EnsureThreadPoolFloor()
    {
        ThreadPool.GetMinThreads(out var workers, out var io);
        if (workers < MinPoolThreads) ThreadPool.SetMinThreads(MinPoolThreads, Math.Max(io, MinPoolThreads));
    }

    public static async Task<HostServer> StartAsync(ServerOptions options, Action<ILoggingBuilder>? logging = null, CancellationToken ct = default)
    {
        options.Validate();
        if (!Privileges.IsRoot)
            throw new InvalidOperationException("forkbox serve must run as root: it creates namespaces, cgroups and mounts (try: sudo ./forkbox serve)");
        EnsureThreadPoolFloor();
        Directory.CreateDirectory(options.DataDir);
        File.SetUnixFileMode(options.DataDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var dataLock = LockDataDir(options.DataDir);
        StorageImage? image = null;
        LeftoverSweep? claim = null;
        try
        {
            // Before this server makes a cgroup or a mount, so that they are on its record if it is killed.
            claim = LeftoverSweep.Claim(ServerMarker.ForThisProcess(options.DataDir, CgroupDriver.ParentName(options.DataDir),
                Path.Combine(options.RunDir, "userns"), options.Storage.ImageBytes is null ? null : options.StorageImageFile,
                options.Storage.ImageBytes is null ? null : options.SandboxesDir));
            // Before anything uses the sandboxes directory: the image is mounted on it.
            if (options.Storage.ImageBytes is { } size)
                image = StorageImage.Attach(options.StorageImageFile, options.SandboxesDir, size, options.Storage.ImageFs);
            return await StartLockedAsync(options, dataLock, image, claim, logging, ct).ConfigureAwait(false);
        }
        catch
        {
            image?.Dispose();
            // What a failed start made is undone by the steps that made it; if one did not, the record stays for the sweep.
            claim?.Release(clean: false);
            dataLock.Dispose();
            throw;
        }
    }

    private static async Task<HostServer> StartLockedAsync(ServerOptions options, FileStream dataLock, StorageImage? image, LeftoverSweep claim,
        Action<ILoggingBuilder>? logging, CancellationToken ct)
    {
        Directory.CreateDirectory(options.RunDir);
        Directory.CreateDirectory(options.SandboxesDir);
        logging ??= ServerBuilder.ConsoleLogging;
        var loggers = LoggerFactory.Create(logging);
        // Read once here, so that a malformed file stops the start naming it; from then on the
        // store keeps its last good keys whatever happens to the file (auth never turns off).
        var keys = new ApiKeyStore(options.KeysFile, loggers.CreateLogger<ApiKeyStore>());
        if (!ListenAddress.IsLoopback(options.Listen) && !keys.Enabled)
            throw new InvalidOperationException(
                $"refusing to listen on {options.Listen} without API keys: create one with `forkbox keys create`, or listen on 127.0.0.1");

        var builder = ServerBuilder.Create(logging);
        ListenAddress.TryParse(options.Listen, out var endpoint);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(endpoint);
            k.Limits.MaxRequestBodySize = Math.Max(options.Limits.MaxUploadBytes, 16L << 20) + 1;
            k.AddServerHeader = false;
        });
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddHttpForwarder();

        var log = loggers.CreateLogger<HostServer>();
        foreach (var swept in claim.Swept)
            LogSwept(log, swept.KilledPids.Count + swept.Cgroups + swept.Mounts > 0 ? LogLevel.Warning : LogLevel.Information, swept.Marker.Pid, swept.Marker.DataDir, swept.KilledPids.Count,
                swept.KilledPids.Count == 0 ? "none" : string.Join(' ', swept.KilledPids), swept.Cgroups, swept.Marker.CgroupParent, swept.Mounts);
        foreach (var failure in claim.Failures) LogSweepFailed(log, failure);
        var cgroups = CgroupDriver.Detect(CgroupDriver.ParentName(options.DataDir));
        var stale = cgroups.RemoveStale();
        var storage = StorageProbe.Choose(options.SandboxesDir, options.Storage.Strategy);
        var filesystem = StorageProbe.FilesystemType(options.SandboxesDir);
        if (image is not null) LogStorageImage(log, image.ImagePath, image.Filesystem, image.MountPoint, image.Reused ? "reused" : image.Formatted ? "formatted" : "mounted");
        LogStorage(log, storage.Name(), filesystem, options.SandboxesDir);
        if (storage == StorageKind.Copy) LogCopyStorage(log);
        var layers = new SandboxLayers(options.SandboxesDir, storage);
        stale = Math.Max(stale, layers.RemoveStale());
        if (stale > 0) LogStaleRemoved(log, stale);
        var seccompPath = Path.Combine(options.RunDir, "seccomp.bpf");
        SeccompProfile.Compile(seccompPath, options.Isolation.AllowVsock);
        var slots = new UserNamespaceSlots(Path.Combine(options.RunDir, "userns"), options.Isolation.UidBase, options.Limits.MaxSandboxes);
        var templates = new TemplateCatalog(options);
        var listener = new AgentListener(Path.Combine(options.RunDir, "agent.sock"), loggers.CreateLogger<AgentListener>());
        var metrics = new HostMetrics();
        var quota = DiskQuota.TryEnable(options.SandboxesDir, storage, out var noQuota);
        if (quota is null) LogNoDiskQuota(log, noQuota);
        else LogDiskQuota(log, quota.Kind);
        var store = new SandboxStore(options.DatabaseFile);
        var network = await SandboxNetworking.StartAsync(options, loggers.CreateLogger<SandboxNetworking>()).ConfigureAwait(false);
        var signer = new PortUrlSigner(options.PortUrlKeyFile, TimeProvider.System);
        var manager = new SandboxManager(options, templates, new SandboxParts(cgroups, slots, layers, listener, seccompPath, quota), store, network, metrics, loggers);
        manager.Recover();
        var unowned = new UnownedSandboxes(manager, loggers.CreateLogger<UnownedSandboxes>());
        unowned.Check(keys.Keys);
        keys.Changed += unowned.Check;
        builder.Services.AddSingleton(manager);
        builder.Services.AddHostedService<SandboxReaper>();

        try
        {
            await manager.WarmAsync(TemplateCatalog.DefaultName, ct).ConfigureAwait(false);
            // Other templates' zygotes (python-datasci imports for ~1 s) start in the background.
            foreach (var name in templates.Names.Where(n => n != TemplateCatalog.DefaultName))
                _ = WarmInBackground(manager, name, log);
            var app = builder.Build();
            app.Use(ErrorResponses.Handle);
            // A signed port URL stands in for the key, for its one sandbox and port, until it expires.
            app.Use(new ApiKeyMiddleware(keys, ctx => ctx.Request.Path == "/v1/healthz"
                || (PortPath.TryParse(ctx.Request.Path.Value, out var portPath) && signer.IsValid(portPath))).InvokeAsync);
            app.Use(async (ctx, next) =>
            {
                if (ApiKeyMiddleware.KeyOf(ctx) is { } key)
                {
                    ctx.Items[SandboxEndpoints.OwnerItem] = key.Name;
                    // A key reaches only its own sandboxes: another key's are as unknown as closed ones.
                    foreach (var name in SandboxRouteValues)
                        if (ctx.GetRouteValue(name) is string id && manager.OwnerOf(id) is { } holder && holder != key.Name)
                        {
                            await ErrorResponses.WriteAsync(ctx, 404, "not_found", SandboxRegistry.NotFoundMessage(id)).ConfigureAwait(false);
                            return;
                        }
                }
                else if (!keys.Enabled && ctx.Request.Headers[Owners.Header].ToString() is { Length: > 0 and <= 128 } forwarded)
                {
                    // Without keys anyone may act as anyone here anyway; an edge in front (which does
                    // check keys) names the owner, so that names and tier counts stay per key.
                    ctx.Items[SandboxEndpoints.OwnerItem] = forwarded;
                }
                await next(ctx).ConfigureAwait(false);
            });
            var ports = new PortForwarder(app.Services.GetRequiredService<IHttpForwarder>(), network.Sockets,
                manager.LivePid);
            PortEndpoints.Map(app, manager, ports, signer, options);
            SandboxEndpoints.Map(app, manager, options,
                new HostInfo(cgroups.Version, layers.Strategy, filesystem), metrics);
            await app.StartAsync(ct).ConfigureAwait(false);
            var server = new HostServer(app, manager, listener, slots, log)
            {
                _claim = claim, _grace = options.Limits.ShutdownGrace, _loggers = loggers,
                _dataLock = dataLock, _cgroups = cgroups, _storageImage = image, _store = store, _network = network, _ports = ports,
                StorageStrategy = layers.Strategy, StorageFilesystem = filesystem,
            };
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            server.Address = new Uri(address.Replace("0.0.0.0", "127.0.0.1").Replace("[::]", "[::1]"));
            LogListening(log, server.Address, cgroups.Version, layers.Strategy, keys.Enabled);
            if (options.Cluster.Join is not null)
                server._registration = await HostRegistration.StartAsync(options, manager, server.Address, loggers.CreateLogger<HostRegistration>()).ConfigureAwait(false);
            return server;
        }
        catch
        {
            await manager.DisposeAsync().ConfigureAwait(false);
            await network.DisposeAsync().ConfigureAwait(false);
            await listener.DisposeAsync().ConfigureAwait(false);
            slots.Dispose();
            store.Dispose();
            throw;
        }
    }

    /// <summary>
    /// One server per data directory: start-up removes what an earlier run left, which must never
    /// be the resources of a server still running. The lock is released when the process ends, however it ends.
    /// </summary>
    private static FileStream LockDataDir(string dataDir)
    {
        var path = Path.Combine(dataDir, "hostd.lock");
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            throw new InvalidOperationException($"another forkbox serve is already using {dataDir}; stop it or pass a different --data-dir");
        }
    }

    private static async Task WarmInBackground(SandboxManager manager, string template, ILogger log)
    {
        try
        {
            await manager.WarmAsync(template, CancellationToken.None).ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
            // the server stopped before this template was warm
        }
        catch (Exception e)
        {
            LogWarmFailed(log, template, e.Message);
        }
    }

    /// <summary>Past the grace, how long the kills and the clean-ups after them may take before the process gives up on them.</summary>
    public static readonly TimeSpan AfterGraceLimit = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Runs until SIGINT/SIGTERM, then shuts down within the grace (Limits.ShutdownGraceS) and
    /// <see cref="AfterGraceLimit"/>, whatever does not answer: past that it stops waiting and
    /// returns, and what is left is the next start's to sweep.
    /// </summary>
    public async Task RunUntilStoppedAsync()
    {
        // Not WaitForShutdownAsync: it drains requests for the host's 30 s before returning, and
        // logs nothing while it waits. Here the drain is one of the bounded steps of DisposeAsync.
        var stopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously); // not inline in StopApplication's callbacks
        using (_app.Lifetime.ApplicationStopping.Register(() => stopping.TrySetResult()))
            await stopping.Task.ConfigureAwait(false);
        try
        {
            await DisposeAsync().AsTask().WaitAsync(_grace + AfterGraceLimit).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            LogGaveUp(_log, (_grace + AfterGraceLimit).TotalSeconds);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        var started = System.Diagnostics.Stopwatch.StartNew();
        var all = _manager.All.ToList();
        LogStopping(_log, all.Count, all.Count(s => s.Persistent), _grace.TotalSeconds);
        // Every step runs even if one before it failed: a step skipped leaves mounts or cgroups behind.
        var failures = new List<Exception>();
        async Task Step(Func<Task> step)
        {
            try
            {
                await step().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                LogShutdownStepFailed(_log, e);
                lock (failures) failures.Add(e);
            }
        }
        // Leave the cluster first: edges stop sending creates here while the rest shuts down.
        if (_registration is not null) await Step(() => _registration.DisposeAsync().AsTask());
        // Requests in flight and sandboxes stop together, within one grace: the sandboxes' stop
        // ends the calls that would otherwise hold the drain, and a drain cut short at the grace
        // closes the connections of calls whose sandboxes are being killed.
        using var drain = new CancellationTokenSource(_grace);
        var http = Step(async () =>
        {
            try
            {
                await _app.StopAsync(drain.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // the grace is over: Kestrel has closed what was still open
            }
        });
        ShutdownSummary? summary = null;
        await Step(async () => summary = await _manager.StopAsync(_grace, http).ConfigureAwait(false));
        await http.ConfigureAwait(false);
        await Step(() => { _ports?.Dispose(); return Task.CompletedTask; });
        await Step(() => _network?.DisposeAsync().AsTask() ?? Task.CompletedTask);
        await Step(() => _listener.DisposeAsync().AsTask());
        await Step(() => { _slots.Dispose(); return Task.CompletedTask; });
        await Step(() => { _store?.Dispose(); return Task.CompletedTask; });
        await Step(() => { _cgroups?.RemoveAll(); return Task.CompletedTask; });
        await Step(() => { _storageImage?.Dispose(); return Task.CompletedTask; });
        var clean = failures.Count == 0 && summary is { Unfinished: 0 };
        _claim?.Release(clean);
        if (summary is not null)
        {
            var killed = summary.Killed;
            LogStopSummary(_log, killed.Count > 0 ? LogLevel.Warning : LogLevel.Information, started.Elapsed.TotalSeconds,
                summary.Hibernated, summary.Destroyed, killed.Count, _grace.TotalSeconds, killed.Count == 0 ? "none" : string.Join(' ', killed));
        }
        if (clean) LogStopped(_log);
        // Written out now: the console logger writes from a queue, and once the app below is
        // disposed after a SIGTERM the runtime's exit (which waited for it) may end the process at any moment.
        _loggers?.Dispose();
        await Step(() => _app.DisposeAsync().AsTask());
        _dataLock?.Dispose();
        if (failures.Count > 0) throw new AggregateException("shutdown did not complete cleanly", failures);
    }

    [LoggerMessage(EventId = 2001, Level = LogLevel.Error, Message = "shutdown step failed; continuing with the others")]
    private static partial void LogShutdownStepFailed(ILogger log, Exception e);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "forkbox listening on {Address} (cgroup v{Cgroup}, storage {Storage}, auth {Auth})")]
    private static partial void LogListening(ILogger log, Uri address, int cgroup, string storage, bool auth);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Information, Message = "storage image {Image} ({Fs}) on {Dir}: {How}")]
    private static partial void LogStorageImage(ILogger log, string image, string fs, string dir, string how);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Information, Message = "storage {Strategy}: sandbox layers on {Filesystem} at {Dir}")]
    private static partial void LogStorage(ILogger log, string strategy, string filesystem, string dir);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Warning, Message = "storage copy: each fork copies every file its sandbox changed; " +
        "for forks at the cost of a snapshot put the data directory on btrfs or xfs (reflink=1), or pass --storage-image SIZE (e.g. 8G)")]
    private static partial void LogCopyStorage(ILogger log);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Information, Message = "disk quotas: {Kind} enforces each sandbox's disk_mb")]
    private static partial void LogDiskQuota(ILogger log, string kind);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Warning, Message = "disk quotas not enforced: {Why}")]
    private static partial void LogNoDiskQuota(ILogger log, string why);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Warning, Message = "removed {Count} sandboxes left by an earlier run that did not shut down cleanly")]
    private static partial void LogStaleRemoved(ILogger log, int count);

    [LoggerMessage(EventId = 2009, Level = LogLevel.Error, Message = "template {Template}: zygote failed to start: {Error}")]
    private static partial void LogWarmFailed(ILogger log, string template, string error);

    [LoggerMessage(EventId = 2010, Level = LogLevel.Information, Message = "stopping: {Count} sandboxes ({Persistent} persistent) get {Grace:g} s to stop; what does not answer by then is killed")]
    private static partial void LogStopping(ILogger log, int count, int persistent, double grace);

    [LoggerMessage(EventId = 2051, Message = "stopped sandboxes in {Seconds:F1} s: {Hibernated} hibernated, {Destroyed} destroyed, {Killed} killed for not answering within {Grace:g} s ({Ids})")]
    private static partial void LogStopSummary(ILogger log, LogLevel level, double seconds, int hibernated, int destroyed, int killed, double grace, string ids);

    [LoggerMessage(EventId = 2052, Level = LogLevel.Error, Message = "shutdown still not finished {Seconds:g} s after the signal; exiting anyway: the next start of any forkbox serve on this host sweeps what is left")]
    private static partial void LogGaveUp(ILogger log, double seconds);

    [LoggerMessage(EventId = 2053, Message = "swept what a killed server left (pid {Pid}, data dir {DataDir}): {Processes} sandbox processes killed ({Pids}), {Cgroups} cgroups under {Parent} removed, {Mounts} mounts detached")]
    private static partial void LogSwept(ILogger log, LogLevel level, int pid, string dataDir, int processes, string pids, int cgroups, string parent, int mounts);

    [LoggerMessage(EventId = 2054, Level = LogLevel.Error, Message = "could not sweep what a killed server left: {Failure}; its record stays, the next start tries again")]
    private static partial void LogSweepFailed(ILogger log, string failure);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Information, Message = "stopped; nothing left behind")]
    private static partial void LogStopped(ILogger log);
}
