using System.Text;
using System.Text.Json;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Host.Networking;
using Forkbox.Host.Templates;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// The sandbox services behind one face for the endpoints: it makes them (each owns its own
/// state), creates, lists, closes and expires sandboxes, and passes everything else on to the
/// service that owns it: <see cref="SandboxCreator"/> (create), <see cref="SandboxCalls"/> (exec, files), <see cref="SandboxForks"/>
/// (fork, merge_into, diff), <see cref="SpacesService"/> (pause, hibernate, resume, idle policy),
/// <see cref="SandboxFactory"/> (spawn, release, zygotes) and <see cref="SandboxPools"/>.
/// </summary>
public sealed partial class SandboxManager : IAsyncDisposable
{
    private readonly ServerOptions _options;
    private readonly TemplateCatalog _templates;
    private readonly SandboxParts _parts;
    private readonly HostMetrics _metrics;
    private readonly ILogger _log;
    private readonly SandboxRegistry _registry = new();
    private readonly BackgroundWork _background = new();
    private readonly SandboxRecords _records;
    private readonly SandboxCalls _calls;
    private readonly SandboxEgress _egress;
    private readonly SandboxFactory _factory;
    private readonly SandboxPools _pools;
    private readonly SandboxCreator _creator;
    private readonly SandboxForks _forks;
    private readonly SpacesService _spaces;
    private readonly SpacesRecovery _recovery;

    public SandboxManager(ServerOptions options, TemplateCatalog templates, SandboxParts parts, SandboxStore store, SandboxNetworking network,
        HostMetrics metrics, ILoggerFactory loggers)
    {
        _options = options;
        _templates = templates;
        _parts = parts;
        _metrics = metrics;
        _log = loggers.CreateLogger<SandboxManager>();
        _records = new SandboxRecords(store, _registry, parts.Layers, _background, options.SpacesDir, loggers.CreateLogger<SandboxRecords>());
        _calls = new SandboxCalls(options, _records, metrics, parts.Quota is not null, loggers.CreateLogger<SandboxCalls>());
        _egress = new SandboxEgress(network, _calls, _registry);
        _factory = new SandboxFactory(options, parts, _registry, _calls, _egress, _background, metrics, loggers);
        _pools = new SandboxPools(_factory, options, metrics.RefillSeconds, loggers);
        _factory.Released += _pools.Wake;
        _creator = new SandboxCreator(options, templates, _registry, _records, _calls, _egress, _pools, _factory, parts.Quota, metrics,
            loggers.CreateLogger<SandboxCreator>());
        _forks = new SandboxForks(options, _registry, _records, _factory, _calls, _egress, metrics, loggers.CreateLogger<SandboxForks>());
        var hibernator = new Hibernator(_registry, _records, _factory, _calls, _background, metrics, loggers.CreateLogger<Hibernator>());
        _spaces = new SpacesService(options, templates, _registry, _records, _factory, _calls, _egress, hibernator, _background, metrics,
            loggers.CreateLogger<SpacesService>());
        _recovery = new SpacesRecovery(_registry, _records, parts.Layers, _background, options.SpacesDir, loggers.CreateLogger<SpacesRecovery>());
    }

    public SandboxCalls Calls => _calls;
    public SandboxForks Forks => _forks;
    public SpacesService Spaces => _spaces;
    public SandboxFactory Factory => _factory;
    public SandboxNetworking Networking => _egress.Networking;
    public TemplateCatalog Templates => _templates;

    /// <summary>Sandboxes clients hold (pooled ones are not counted).</summary>
    public int Running => _registry.LiveCount;

    public IEnumerable<Sandbox> All => _registry.Live;

    /// <summary>A live sandbox (paused ones included); a frozen one is a 409 that says to resume it.</summary>
    public Sandbox Get(string id) => _registry.Get(id);

    /// <summary>Starts the zygote of a template ahead of its first sandbox and starts filling its pool.</summary>
    public async Task WarmAsync(string template, CancellationToken ct)
    {
        var t = _templates.Get(template);
        await _factory.GetZygoteAsync(t, ct).ConfigureAwait(false);
        _pools.Get(t).Wake();
    }

    // ---- create ---------------------------------------------------------------------------------

    public Task<Sandbox> CreateAsync(CreateSandboxRequest req, string owner, CancellationToken ct) => _creator.CreateAsync(req, owner, ct);

    /// <summary>How sandboxes' disk_mb is enforced here ("btrfs qgroups"), or "none".</summary>
    public string DiskQuotaKind => _parts.Quota?.Kind ?? "none";

    // ---- templates and pools ------------------------------------------------------------------

    /// <summary>Deletes a built template that no sandbox uses: its pool, its zygote, then its files.</summary>
    public async Task RemoveTemplateAsync(string name)
    {
        var template = _templates.Get(name);
        if (template.RootDir is null)
            throw new BadRequestException($"template '{name}' is built in and cannot be deleted");
        var users = _registry.Live.Count(s => s.Template.Name == name);
        if (users > 0)
            throw new ConflictException($"template '{name}' is used by {users} sandbox(es); close them first", "template_in_use");
        await _pools.RemoveAsync(name).ConfigureAwait(false);
        await _factory.StopZygoteAsync(name).ConfigureAwait(false);
        _templates.Remove(name);
    }

    /// <summary>The host pid of a template's zygote, if it is running (for operators and tests).</summary>
    public int? ZygotePid(string template) => _factory.ZygotePid(template);

    /// <summary>The warm pool of each template that has one.</summary>
    public IReadOnlyCollection<SandboxPool> Pools => _pools.All;

    public SandboxPool Pool(string template, bool egress = false) => _pools.Get(_templates.Get(template), egress);

    // ---- close --------------------------------------------------------------------------------

    /// <summary>Closes a sandbox for good, whatever its state: its processes, record, name and saved state go.</summary>
    public async Task DeleteAsync(string id, string why)
    {
        if (_registry.TryGetLive(id, out var busy) && busy.State == SandboxState.Hibernated)
        {
            // Being hibernated right now: let that finish (it holds the lifecycle lock), then delete what it saved.
            await busy.LifecycleLock.WaitAsync().ConfigureAwait(false);
            busy.LifecycleLock.Release();
        }
        if (_registry.TryRemoveLive(id, out var sb))
        {
            LogDestroyed(id, why);
            _records.Forget(id, sb.Owner, sb.Name);
            await _factory.DestroyAsync(sb).ConfigureAwait(false);
            return;
        }
        if (_registry.TryRemoveFrozen(id, out var rec))
        {
            LogDestroyed(id, $"{why} (it was {rec.State})");
            _records.Forget(id, rec.Owner, rec.Name);
            return;
        }
        throw SandboxRegistry.NotFound(id);
    }

    /// <summary>Deletes every sandbox past its expiry; called once a second by <see cref="SandboxReaper"/>.</summary>
    public int ReapExpired(DateTimeOffset now)
    {
        var n = 0;
        foreach (var sb in _registry.Live)
        {
            if (sb.Persistent || sb.ExpiresAt > now || sb.State == SandboxState.Hibernated || !_registry.TryRemoveLive(sb.Id, out _)) continue;
            LogDestroyed(sb.Id, "timeout_s reached");
            // Before its processes go: a call in flight reports this, not a lost channel.
            _calls.MarkDead(sb, ExpiredReason(sb));
            _records.Forget(sb.Id, sb.Owner, sb.Name);
            _ = _factory.DestroyAsync(sb);
            n++;
        }
        foreach (var r in _registry.Frozen)
        {
            if (r.Persistent || r.ExpiresAt > now || !_registry.TryRemoveFrozen(r.Id, out _)) continue;
            LogDestroyed(r.Id, $"timeout_s reached (it was {r.State})");
            _records.Forget(r.Id, r.Owner, r.Name);
            n++;
        }
        return n;
    }

    /// <summary>What a call that was running when its sandbox expired says.</summary>
    public static string ExpiredReason(Sandbox sb) =>
        $"sandbox reached its timeout_s of {sb.TimeoutS:g} s and was deleted (give a longer timeout_s at create, or extend it while it runs with POST /v1/sandboxes/{sb.Id}/timeout)";

    /// <summary>
    /// POST /timeout: the sandbox now expires <paramref name="timeoutS"/> seconds from now, whether
    /// that is sooner or later than before. A persistent sandbox never expires, so has none to set.
    /// </summary>
    public SandboxInfo SetTimeout(string id, double? timeoutS)
    {
        if (timeoutS is not { } seconds)
            throw new BadRequestException(
                $"send {{\"timeout_s\": N}}: the seconds from now until the sandbox expires, between 1 and {_options.Limits.MaxTimeoutS}");
        seconds = Validate.Range(seconds, 1, _options.Limits.MaxTimeoutS, "timeout_s");
        string Persistent() => $"sandbox '{id}' is persistent (a Space): it never expires, so it has no timeout_s to set; " +
                               "its idle_timeout_s and hibernate_after_s decide when it is paused and hibernated, and DELETE closes it";
        var until = DateTimeOffset.UtcNow.AddSeconds(seconds);
        if (_registry.TryGetLive(id, out var sb))
        {
            if (sb.Persistent) throw new ConflictException(Persistent(), "wrong_state");
            sb.ExpiresAt = until;
            sb.TimeoutS = seconds;
            _records.Save(sb);
            return Describe(id);
        }
        if (_registry.TryGetFrozen(id, out var rec))
        {
            if (rec.Persistent) throw new ConflictException(Persistent(), "wrong_state");
            if (rec.State == SandboxState.Lost)
                throw new ConflictException($"sandbox '{id}' is lost ({rec.LostReason}); there is nothing left to keep alive", "lost");
            var moved = rec with { ExpiresAt = until };
            _registry.AddFrozen(moved);
            _records.Store.Save(moved);
            return moved.ToInfo();
        }
        throw SandboxRegistry.NotFound(id);
    }

    // ---- lookups ------------------------------------------------------------------------------

    public int Paused => _registry.Live.Count(s => s.State == SandboxState.Paused);

    public int Hibernated => _registry.Frozen.Count(r => r.State == SandboxState.Hibernated);

    /// <summary>Disk held by saved states: hibernated sandboxes' and the checkpoints of resumed ones.</summary>
    public long HibernatedBytes =>
        _registry.Frozen.Sum(r => r.ImageBytes ?? 0) + _registry.Live.Sum(s => s.Checkpoint?.ImageBytes ?? 0);

    /// <summary>Any sandbox this server knows of, live or frozen, as the API reports it.</summary>
    public SandboxInfo Describe(string id) =>
        _registry.TryGetLive(id, out var sb) ? sb.ToInfo(withUsage: true) with { DiskBytes = DiskUsed(sb) }
        : _registry.TryGetFrozen(id, out var r) ? r.ToInfo()
        : throw SandboxRegistry.NotFound(id);

    /// <summary>The owner's sandboxes, live and frozen; with a name, only the owner's sandbox of that name.</summary>
    public List<SandboxInfo> List(string owner, string? name)
    {
        if (name is not null)
        {
            Validate.Name(name, "name");
            return _registry.TryGetNamed(owner, name, out var id) && TryDescribe(id) is { } info ? [info] : [];
        }
        return _registry.Live.Where(s => s.Owner == owner).Select(s => s.ToInfo(false))
            .Concat(_registry.Frozen.Where(r => r.Owner == owner).Select(r => r.ToInfo()))
            .OrderBy(i => i.CreatedAt).ToList();
    }

    private SandboxInfo? TryDescribe(string id) =>
        _registry.TryGetLive(id, out var sb) ? sb.ToInfo(false) : _registry.TryGetFrozen(id, out var r) ? r.ToInfo() : null;

    private long? DiskUsed(Sandbox sb)
    {
        try
        {
            return _parts.Quota?.Used(sb.Dirs);
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>The owner of a sandbox this server knows of, live or frozen; null for an unknown id.</summary>
    public string? OwnerOf(string id) => _registry.OwnerOf(id);

    /// <summary>
    /// The sandboxes made on this server while it had no API keys (owner "local"), live and frozen,
    /// Spaces included: once a key exists no request is "local", so no key can reach them until one adopts them.
    /// </summary>
    public List<SandboxInfo> Unowned() =>
        _registry.Live.Where(s => s.Owner == Hosting.Owners.Local).Select(s => s.ToInfo(false))
            .Concat(_registry.Frozen.Where(r => r.Owner == Hosting.Owners.Local).Select(r => r.ToInfo()))
            .OrderBy(i => i.CreatedAt).ToList();

    /// <summary>
    /// Makes <paramref name="owner"/> the owner of every sandbox of <see cref="Unowned"/>, recorded so
    /// that a restart keeps it; returns the ids moved. One whose name the owner already uses stays
    /// unowned (and is listed again at the next check).
    /// </summary>
    public List<string> AdoptLocal(string owner)
    {
        var adopted = new List<string>();
        bool Take(string id, string? name)
        {
            if (name is not null && _registry.TryGetNamed(owner, name, out _)) return false;
            _registry.ReleaseName(Hosting.Owners.Local, name, id);
            _registry.SetName(owner, name, id);
            adopted.Add(id);
            return true;
        }
        foreach (var sb in _registry.Live.Where(s => s.Owner == Hosting.Owners.Local).ToList())
        {
            if (!Take(sb.Id, sb.Name)) continue;
            sb.Owner = owner;
            _records.Save(sb);
        }
        foreach (var rec in _registry.Frozen.Where(r => r.Owner == Hosting.Owners.Local).ToList())
        {
            if (!Take(rec.Id, rec.Name)) continue;
            var moved = rec with { Owner = owner };
            _registry.AddFrozen(moved);
            try
            {
                _records.Store.Save(moved);
            }
            catch (Exception e) when (e is Microsoft.Data.Sqlite.SqliteException or IOException)
            {
                LogAdoptRecordFailed(rec.Id, owner, e);
            }
        }
        return adopted;
    }

    /// <summary>Owner → ids of every sandbox held for it, live and frozen: what a cluster heartbeat reports.</summary>
    public Dictionary<string, List<string>> IdsByOwner() => _registry.IdsByOwner();

    /// <summary>The host pid of a live sandbox's PID 1 (where the ports proxy connects from), or null.</summary>
    public int? LivePid(string id) => _registry.TryGetLive(id, out var sb) && !sb.IsDead ? sb.Pid : null;

    // ---- passed on ----------------------------------------------------------------------------

    public const string ResumedHeader = SpacesService.ResumedHeader;
    public const int MaxForks = SandboxForks.MaxForks;
    /// <summary>Interrupts the exec running in a live sandbox; false when none runs (a frozen sandbox runs none).</summary>
    public bool Interrupt(string id)
    {
        if (_registry.TryGetLive(id, out var sb)) return _calls.Interrupt(sb, "POST /interrupt");
        return _registry.IsFrozen(id) ? false : throw SandboxRegistry.NotFound(id);
    }
    public Task ExecAsync(Sandbox sb, ExecRequest req, IExecSink sink, CancellationToken clientGone) => _calls.ExecAsync(sb, req, sink, clientGone);
    public Task<IReadOnlyList<Sandbox>> ForkAsync(string parentId, int? count, CancellationToken ct) => _forks.ForkAsync(parentId, count, ct);
    public Task MergeIntoAsync(string targetId, string winnerId) => _forks.MergeIntoAsync(targetId, winnerId);
    public DiffResponse Diff(string aId, string bId, string? paths) => _forks.Diff(aId, bId, paths);
    public int Retired => _factory.Retired;
    public int SweepRetired() => _factory.SweepRetired();
    public (int Hibernated, int Lost) Recover() => _recovery.Run();
    public Task<LifecycleResponse> PauseAsync(string id, CancellationToken ct) => _spaces.PauseAsync(id, ct);
    public Task<LifecycleResponse> HibernateAsync(string id, CancellationToken ct) => _spaces.HibernateAsync(id, ct);
    public Task<(Sandbox Sandbox, string? ResumedFrom)> ActiveAsync(string id, CancellationToken ct) => _spaces.ActiveAsync(id, ct);
    public Task<(Sandbox Sandbox, LifecycleResponse Reply)> ResumeAsync(string id, CancellationToken ct) => _spaces.ResumeAsync(id, ct);
    public Task<LifecycleResponse> RestartAsync(string id, CancellationToken ct) => _spaces.RestartAsync(id, ct);
    public void ApplyIdlePolicy() => _spaces.ApplyIdlePolicy();
    public void RenderNetworkMetrics(StringBuilder text) => _egress.RenderMetrics(text);

    // ---- shutdown -----------------------------------------------------------------------------

    /// <summary>How long the clean-ups that follow a kill (cgroups emptying, layers removed) are waited for.</summary>
    public static readonly TimeSpan AfterKillWait = TimeSpan.FromSeconds(10);

    public async ValueTask DisposeAsync() => await StopAsync(_options.Limits.ShutdownGrace).ConfigureAwait(false);

    /// <summary>
    /// Stops every sandbox, all at once, within <paramref name="grace"/>: a persistent one is
    /// hibernated (after its running call ends) when Spaces.HibernateOnShutdown is on; any other
    /// is destroyed once its running call, if any, has ended. At the end of the grace whatever is
    /// still waiting is killed, with a line each that says what it was waiting for; sandboxes of
    /// the pools and those still being made go too. Nothing here waits without a bound: an agent
    /// that never answers (stopped, wedged in a system call, its channel full) costs the grace.
    /// </summary>
    /// <param name="requestsEnded">Completes when no request runs any more (the HTTP drain, itself bounded by the grace):
    /// until then a create or fork in flight may still add a sandbox, which is stopped as it appears.</param>
    public async Task<ShutdownSummary> StopAsync(TimeSpan grace, Task? requestsEnded = null)
    {
        var summary = new ShutdownSummary();
        using var deadline = new CancellationTokenSource(grace);
        var pools = _pools.DisposeAsync().AsTask();
        requestsEnded ??= Task.CompletedTask;
        // Each sandbox's stop is bounded (the grace, then a kill), and so is the drain.
        var seen = new HashSet<Sandbox>();
        var stops = new List<Task>();
        while (true)
        {
            var ended = requestsEnded.IsCompleted;
            foreach (var sb in _registry.Live)
                if (seen.Add(sb)) stops.Add(StopForShutdownAsync(sb, grace, deadline.Token, summary));
            if (!ended)
            {
                await Task.WhenAny(requestsEnded, Task.Delay(20)).ConfigureAwait(false);
                continue;
            }
            await Task.WhenAll(stops).ConfigureAwait(false);
            if (_registry.Live.All(seen.Contains)) break;
        }
        try
        {
            await pools.WaitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // a refill that does not finish: killed below
        }
        // What no client holds yet (a pool's refill warming up, a fork or create in flight) goes too.
        foreach (var sb in _registry.Tracked.ToArray())
            if (!sb.IsDead && !seen.Contains(sb))
            {
                LogKilledAtShutdown(sb.Id, "still being made or warmed up for the pool when the grace ended");
                summary.AddKilled(sb.Id);
                _calls.Kill(sb, "the server stopped while the sandbox was being made");
            }
        await WaitBoundedAsync(pools, summary).ConfigureAwait(false);
        await WaitBoundedAsync(_background.DrainAsync(), summary).ConfigureAwait(false);
        await WaitBoundedAsync(_factory.DisposeAsync().AsTask(), summary).ConfigureAwait(false);
        return summary;
    }

    private async Task WaitBoundedAsync(Task task, ShutdownSummary summary)
    {
        try
        {
            await task.WaitAsync(AfterKillWait).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            summary.Unfinished++;
            LogShutdownOverdue(AfterKillWait.TotalSeconds);
        }
        catch (Exception e)
        {
            LogShutdownStepFailed(e);
        }
    }

    /// <summary>One sandbox's end at shutdown: hibernated or destroyed within the grace, else killed.</summary>
    private async Task StopForShutdownAsync(Sandbox sb, TimeSpan grace, CancellationToken deadline, ShutdownSummary summary)
    {
        var waitingFor = "its running call to end";
        Task<bool> graceful;
        if (sb.Persistent && _options.Spaces.HibernateOnShutdown && !sb.IsDead)
            graceful = _spaces.HibernateForShutdownAsync(sb, what => Volatile.Write(ref waitingFor, what), deadline);
        else if (sb.Agent.CallLock.CurrentCount == 0)
            graceful = WaitForCallAsync(sb, deadline);
        else
            graceful = Task.FromResult(false);

        var hibernated = false;
        var killed = false;
        try
        {
            hibernated = await graceful.WaitAsync(deadline).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            var why = $"waiting for {Volatile.Read(ref waitingFor)}, no answer within the {grace.TotalSeconds:g} s shutdown grace";
            LogKilledAtShutdown(sb.Id, why);
            summary.AddKilled(sb.Id);
            killed = true;
            _calls.Kill(sb, $"killed as the server stopped ({why})");
            try
            {
                // Killed, its channel cut: the call or hibernate that waited on it ends now.
                await graceful.WaitAsync(AfterKillWait).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // its failure is the kill just logged
            }
        }
        catch (Exception e)
        {
            LogPolicyFailedAtShutdown(sb.Id, e);
        }
        if (hibernated)
        {
            summary.AddHibernated();
            return;
        }
        if (!_registry.RemoveLive(sb.Id, sb)) return; // deleted meanwhile
        var lost = sb.Persistent
            ? "the server was stopped and the sandbox could not be hibernated first"
            : "the server was stopped; sandboxes that are not persistent do not survive a restart (create with \"persistent\": true)";
        _records.MarkLost(sb, lost);
        if (!killed)
        {
            LogDestroyed(sb.Id, "the server is stopping");
            summary.AddDestroyed();
        }
        await _factory.DestroyAsync(sb).ConfigureAwait(false);
    }

    /// <summary>Waits (cancellably) for the call a sandbox runs to end; false: nothing was hibernated.</summary>
    private static async Task<bool> WaitForCallAsync(Sandbox sb, CancellationToken deadline)
    {
        await sb.Agent.CallLock.WaitAsync(deadline).ConfigureAwait(false);
        sb.Agent.CallLock.Release();
        return false;
    }

    [LoggerMessage(EventId = 3051, Level = LogLevel.Warning, Message = "sandbox {SandboxId} killed at shutdown: {Why}")]
    private partial void LogKilledAtShutdown(string sandboxId, string why);

    [LoggerMessage(EventId = 3052, Level = LogLevel.Warning, Message = "sandbox {SandboxId}: could not hibernate it at shutdown; destroying it")]
    private partial void LogPolicyFailedAtShutdown(string sandboxId, Exception error);

    [LoggerMessage(EventId = 3053, Level = LogLevel.Warning, Message = "shutdown: clean-up still running after {Seconds:g} s after the kills; not waiting for it (the next start removes what it leaves)")]
    private partial void LogShutdownOverdue(double seconds);

    [LoggerMessage(EventId = 3054, Level = LogLevel.Error, Message = "shutdown step failed; continuing with the others")]
    private partial void LogShutdownStepFailed(Exception e);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Information, Message = "sandbox {SandboxId} destroyed: {Why}")]
    private partial void LogDestroyed(string sandboxId, string why);

    [LoggerMessage(EventId = 3290, Level = LogLevel.Warning, Message = "sandbox {SandboxId}: adopted by {Owner}, but its record could not be written; a restart finds it unowned again")]
    private partial void LogAdoptRecordFailed(string sandboxId, string owner, Exception error);
}
