using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Templates;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Host.Templates;
using Forkbox.Host.Zygotes;
using Forkbox.Linux;
using Forkbox.Linux.Cgroups;
using Forkbox.Linux.Namespaces;
using Forkbox.Linux.Storage;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Creates, finds, calls into and destroys sandboxes. The one owner of every sandbox's resources:
/// whatever it created for a sandbox it also releases, on DELETE, expiry, a failed create, or shutdown.
/// </summary>
public sealed partial class SandboxManager : IAsyncDisposable
{
    private static readonly TimeSpan KillWait = TimeSpan.FromSeconds(5);

    // How long past a call's own timeout hostd waits for the agent before it kills the sandbox:
    // the agent enforces the timeout itself, so this only fires if user code swallowed it.
    private static readonly TimeSpan AgentGrace = TimeSpan.FromSeconds(5);

    private readonly ServerOptions _options;
    private readonly TemplateCatalog _templates;
    private readonly ICgroupDriver _cgroups;
    private readonly UserNamespaceSlots _slots;
    private readonly SandboxLayers _layers;
    private readonly AgentListener _listener;
    private readonly string _seccompPath;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _log;
    private readonly HostMetrics _metrics;
    private readonly SandboxStore _store;
    private readonly DiskQuota? _quota;
    private readonly Forkbox.Host.Networking.SandboxNetworking _network;
    private readonly SandboxRegistry _registry = new();
    private readonly ConcurrentDictionary<string, ZygoteProcess> _zygotes = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _zygoteStart = new(1, 1);
    private readonly ConcurrentDictionary<string, SandboxPool> _pools = new(StringComparer.Ordinal);
    private readonly List<Task> _cleanups = new();
    private int _count;
    private volatile bool _disposed;

    public SandboxManager(ServerOptions options, TemplateCatalog templates, ICgroupDriver cgroups,
        UserNamespaceSlots slots, SandboxLayers layers, AgentListener listener, string seccompPath,
        HostMetrics metrics, SandboxStore store, DiskQuota? quota, Forkbox.Host.Networking.SandboxNetworking network, ILoggerFactory loggers)
    {
        _network = network;
        _store = store;
        _quota = quota;
        _options = options;
        _templates = templates;
        _cgroups = cgroups;
        _slots = slots;
        _layers = layers;
        _listener = listener;
        _seccompPath = seccompPath;
        _metrics = metrics;
        _loggers = loggers;
        _log = loggers.CreateLogger<SandboxManager>();
    }

    /// <summary>Sandboxes clients hold (pooled ones are not counted).</summary>
    public int Running => _registry.LiveCount;

    public IEnumerable<Sandbox> All => _registry.Live;

    /// <summary>A live sandbox (paused ones included); a frozen one is a 409 that says to resume it.</summary>
    public Sandbox Get(string id) =>
        _registry.TryGetLive(id, out var sb) ? sb
        : _registry.TryGetFrozen(id, out var r) ? throw new ConflictException($"sandbox '{id}' is {r.State}; resume it first (POST /v1/sandboxes/{id}/resume)", "wrong_state")
        : throw new NotFoundException($"sandbox '{id}' not found (it may have been closed or have expired)");

    /// <summary>Starts the zygote of a template ahead of its first sandbox and starts filling its pool.</summary>
    public async Task WarmAsync(string template, CancellationToken ct)
    {
        var t = _templates.Get(template);
        await GetZygoteAsync(t, ct).ConfigureAwait(false);
        GetPool(t).Wake();
    }

    // ---- create -------------------------------------------------------------------------------

    /// <summary>
    /// A sandbox for the caller: a ready one from the template's warm pool when there is one
    /// (its limits, environment, expiry and metadata applied as it is taken), else one made now.
    /// </summary>
    public async Task<Sandbox> CreateAsync(CreateSandboxRequest req, string owner, CancellationToken ct)
    {
        var total = Stopwatch.StartNew();
        var template = _templates.Get(req.Template);
        var limits = new SandboxLimits(
            Validate.Range(req.MemoryMb ?? _options.DefaultMemoryMb, 32, _options.MaxMemoryMb, "memory_mb"),
            Validate.Range(req.Cpus ?? _options.DefaultCpus, 0.01, _options.MaxCpus, "cpus"),
            _options.PidsLimit);
        var timeout = Validate.Range(req.TimeoutS ?? _options.DefaultTimeoutS, 1, _options.MaxTimeoutS, "timeout_s");
        var env = Validate.Env(req.Env, "env");
        var metadata = Validate.Metadata(req.Metadata);
        var persistent = req.Persistent == true;
        if (!persistent && (req.Name ?? (object?)req.IdleTimeoutS ?? req.HibernateAfterS) is not null)
            throw new BadRequestException("name, idle_timeout_s and hibernate_after_s are for persistent sandboxes: add \"persistent\": true");
        var name = req.Name is null ? null : Validate.Name(req.Name, "name");
        var idle = req.IdleTimeoutS is { } i ? Validate.Range(i, 0.1, _options.MaxTimeoutS, "idle_timeout_s") : (double?)null;
        var hibernateAfter = req.HibernateAfterS is { } h ? Validate.Range(h, 0.1, _options.MaxTimeoutS * 365, "hibernate_after_s") : (double?)null;
        var diskMb = Validate.Range(req.DiskMb ?? _options.DefaultDiskMb, 1, _options.MaxDiskMb, "disk_mb");
        var egress = _network.Mode(req.Network, req.NetworkPolicy) == NetworkModes.Egress;
        var policy = egress ? await _network.ResolveAsync(req.NetworkPolicy, ct).ConfigureAwait(false) : null;

        var pool = GetPool(template, egress);
        // The name is held from now on, so that two creates cannot both take it.
        var placeholder = SandboxRegistry.CreatingPrefix + SandboxId.New(_options.HostId);
        _registry.ReserveName(owner, name, placeholder);
        Sandbox? sandbox;
        bool hit;
        try
        {
            sandbox = pool.TryTake();
            if (sandbox is not null)
            {
                try
                {
                    await ConfigureTakenAsync(sandbox, limits, env, policy, ct).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    // A pooled sandbox that cannot be configured is discarded (it belongs to nobody now);
                    // the caller gets a new one, unless it has gone away.
                    LogPoolDiscard(sandbox.Id, e.Message);
                    _ = DestroyAsync(sandbox);
                    sandbox = null;
                    if (e is OperationCanceledException) throw;
                }
            }
            hit = sandbox is not null;
            if (sandbox is null)
            {
                sandbox = await SpawnAsync(template, limits, env, ct, egress: egress).ConfigureAwait(false);
                try
                {
                    if (policy is not null) await AdmitAsync(sandbox, policy, ct).ConfigureAwait(false);
                }
                catch
                {
                    _ = DestroyAsync(sandbox);
                    throw;
                }
            }
        }
        catch
        {
            _registry.ReleaseName(owner, name, placeholder);
            throw;
        }
        pool.Wake();
        Foreground(sandbox);

        var now = DateTimeOffset.UtcNow;
        sandbox.CreatedAt = now;
        sandbox.ExpiresAt = persistent ? DateTimeOffset.MaxValue : now.AddSeconds(timeout);
        sandbox.Metadata = metadata;
        sandbox.PoolHit = hit;
        sandbox.Owner = owner;
        sandbox.Name = name;
        sandbox.Persistent = persistent;
        sandbox.IdleTimeoutS = idle;
        sandbox.HibernateAfterS = hibernateAfter;
        if (diskMb != sandbox.DiskMb) _quota?.SetLimit(sandbox.Dirs, (long)diskMb << 20);
        sandbox.DiskMb = diskMb;
        _registry.SetName(owner, name, sandbox.Id);
        sandbox.Touch();
        var recordStart = Stopwatch.GetTimestamp();
        Save(sandbox);
        sandbox.TimingsMs["record"] = Math.Round(Stopwatch.GetElapsedTime(recordStart).TotalMilliseconds, 3);
        sandbox.TimingsMs["total"] = Math.Round(total.Elapsed.TotalMilliseconds, 3);
        _registry.AddLive(sandbox);
        (hit ? _metrics.CreatePoolHitSeconds : _metrics.CreatePoolMissSeconds).Observe(total.Elapsed.TotalSeconds);
        LogCreated(sandbox.Id, template.Name, sandbox.Pid, hit, total.Elapsed.TotalMilliseconds);
        return sandbox;
    }

    /// <summary>
    /// The pool's sandboxes are made and warmed at nice 19 (the zygote's), so that refills never
    /// slow anyone's calls; the agent and its threads (its process group) run at 0 from the moment
    /// a client has the sandbox. The sandbox itself cannot: it has no privilege over its priority.
    /// (A sandbox made while a client waits, a pool miss or a resume, is made at 0.)
    /// </summary>
    private static void Foreground(Sandbox sb)
    {
        if (sb.Pid > 0) Forkbox.Linux.Processes.SetGroupNice(sb.Pid, 0);
    }

    /// <summary>Applies what the caller asked for to a sandbox taken from the pool: limits (if not the defaults) and environment.</summary>
    private async Task ConfigureTakenAsync(Sandbox sb, SandboxLimits limits, Dictionary<string, string>? env,
        Forkbox.Host.Networking.ResolvedPolicy? policy, CancellationToken ct)
    {
        var step = Stopwatch.StartNew();
        sb.TimingsMs.Clear();
        if (limits != sb.Limits)
        {
            sb.Cgroup.SetLimits(limits, sb.Limits);
            sb.Limits = limits;
        }
        if (env is { Count: > 0 })
        {
            using var ok = await FileCallAsync(sb, w =>
            {
                w.WriteString("op", "setenv");
                AgentFrame.WriteEnv(w, env);
            }, default, ct).ConfigureAwait(false);
        }
        sb.TimingsMs["pool_take"] = Lap(step);
        if (policy is not null)
        {
            await AdmitAsync(sb, policy, ct).ConfigureAwait(false);
            sb.TimingsMs["network_admit"] = Lap(step);
        }
    }

    /// <summary>
    /// Makes a sandbox: uid slot, cgroup, layers, a fork of the template's zygote that isolates
    /// itself and says hello. Counts against MaxSandboxes; not yet visible to clients.
    /// </summary>
    /// <param name="resume">A hibernated sandbox to bring back: its id, and its saved layers copied in before the agent starts.</param>
    /// <param name="egress">Give it a link and address (not yet let out: see <see cref="AdmitAsync"/>).</param>
    /// <param name="foreground">A client waits for it (a pool miss, a resume): made at normal priority, not the pool's nice 19.</param>
    internal async Task<Sandbox> SpawnAsync(TemplateDefinition template, SandboxLimits limits, Dictionary<string, string>? env, CancellationToken ct,
        SandboxRecord? resume = null, bool egress = false, bool foreground = true)
    {
        var total = Stopwatch.StartNew();
        if (Interlocked.Increment(ref _count) > _options.MaxSandboxes)
        {
            Interlocked.Decrement(ref _count);
            throw new AtCapacityException($"this host already runs its maximum of {_options.MaxSandboxes} sandboxes; close one or try another host");
        }

        var id = resume?.Id ?? SandboxId.New(_options.HostId);
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var timings = new Dictionary<string, double>();
        UserNamespaceSlot? slot = null;
        ICgroup? cgroup = null;
        SandboxLayerDirs? dirs = null;
        var diskMb = resume?.DiskMb ?? _options.DefaultDiskMb;
        try
        {
            var step = Stopwatch.StartNew();
            slot = _slots.Acquire() ?? throw new AtCapacityException("no free user namespace slot");
            timings["uid_slot"] = Lap(step);
            // A resumed sandbox's cgroup and layers are named for the image too: the sandbox it was
            // before may still hold the plain id's (retired, kept until its forks end).
            var instance = resume is null ? id : id + "-" + resume.Image;
            cgroup = _cgroups.Create(instance, limits);
            timings["cgroup"] = Lap(step);
            dirs = resume is null ? _layers.Create(id, template) : _layers.CreateFork(instance, template);
            timings["layers"] = Lap(step);
            var zygote = await GetZygoteAsync(template, ct).ConfigureAwait(false);
            if (resume is not null)
            {
                var image = Path.Combine(_options.SpacesDir, id, resume.Image!);
                await zygote.RestoreAsync(new RestoreSpec("restore-" + id, _layers.Strategy,
                    dirs.Layers.Select((_, i) => Path.Combine(image, $"upper{i}")).ToList(), dirs, resume.ImageUidBase!.Value, slot.UidBase), ct).ConfigureAwait(false);
                timings["restore_files"] = Lap(step);
            }
            _quota?.SetLimit(dirs, (long)diskMb << 20);
            var hello = _listener.Expect(id, token);
            var spawn = await zygote.SpawnAsync(
                new SpawnSpec(id, token, _listener.Path, slot, cgroup.ProcsFiles, dirs, template, _options.TmpSizeMb, env, foreground), ct)
                .ConfigureAwait(false);
            if (!spawn.Ok)
                throw new ExecutorException($"sandbox set-up failed: {spawn.Error}");
            timings["spawn"] = Lap(step);
            timings["zygote"] = spawn.SetupMs;
            foreach (var (name, ms) in spawn.Steps!) timings["isolate." + name] = ms;
            var agent = await hello.WaitAsync(TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            timings["hello"] = Lap(step);
            var sandbox = new Sandbox
            {
                Id = id, Template = template, Limits = limits, CreatedAt = DateTimeOffset.UtcNow, ExpiresAt = DateTimeOffset.MaxValue,
                Metadata = new(), Pid = spawn.Pid, Agent = agent, Cgroup = cgroup, Slot = slot, Dirs = dirs, TimingsMs = timings,
                DiskMb = diskMb,
            };
            _registry.TrackPid(spawn.Pid, sandbox);
            if (egress)
            {
                try
                {
                    await AttachNetworkAsync(sandbox, ct).ConfigureAwait(false);
                }
                catch
                {
                    _registry.ForgetPid(spawn.Pid);
                    await DetachNetworkAsync(sandbox).ConfigureAwait(false);
                    throw;
                }
                timings["network"] = Lap(step);
            }
            timings["spawn_total"] = Math.Round(total.Elapsed.TotalMilliseconds, 3);
            return sandbox;
        }
        catch (Exception e)
        {
            Abandon(id, cgroup, dirs);
            if (slot is not null) _slots.Release(slot);
            Interlocked.Decrement(ref _count);
            _metrics.CreateFailures.Inc();
            LogCreateFailed(id, template.Name, e.Message);
            if (e is ForkboxException or OperationCanceledException) throw;
            throw new ExecutorException($"sandbox set-up failed: {e.Message}", e);
        }
    }

    /// <summary>Undoes a sandbox that never became one: its awaited hello, processes, cgroup and layers.</summary>
    private void Abandon(string id, ICgroup? cgroup, SandboxLayerDirs? dirs)
    {
        _listener.Forget(id);
        try
        {
            cgroup?.KillAll(KillWait);
            cgroup?.Delete();
        }
        catch (Exception e)
        {
            LogCleanupFailed(id, e);
        }
        if (dirs is not null) Track(_layers.RemoveAsync(dirs));
    }

    /// <summary>How sandboxes' disk_mb is enforced here ("btrfs qgroups"), or "none".</summary>
    public string DiskQuotaKind => _quota?.Kind ?? "none";

    internal SandboxLimits DefaultLimits => new(_options.DefaultMemoryMb, _options.DefaultCpus, _options.PidsLimit);

    internal HostMetrics Metrics => _metrics;

    /// <summary>
    /// Runs a few trivial cells in a new pooled sandbox so that its first real call does not pay
    /// for first-touch work (copy-on-write faults on the zygote's pages, lazy interpreter set-up):
    /// measured at ~5 ms on the first call and ~2 ms on the second without it.
    /// </summary>
    internal async Task WarmUpAsync(Sandbox sb)
    {
        for (var i = 0; i < 3; i++)
            await ExecAsync(sb, new ExecRequest { Code = "print(1)\n1", Rich = true }, DiscardSink.Instance, CancellationToken.None).ConfigureAwait(false);
    }

    private sealed class DiscardSink : IExecSink
    {
        public static readonly DiscardSink Instance = new();
        public void Output(bool stderr, string line) { }
        public void Result(JsonElement data) { }
        public void Error(string name, string value, string traceback) { }
        public void Exit(int code, bool timeout) { }
        public ValueTask FlushAsync(CancellationToken ct) => ValueTask.CompletedTask;
    }

    /// <summary>True while another sandbox may be made without passing MaxSandboxes.</summary>
    internal bool HasRoom => Volatile.Read(ref _count) < _options.MaxSandboxes;

    private static string PoolKey(string template, bool egress) => egress ? template + "+egress" : template;

    /// <summary>Wakes the pools of a template (a sandbox went: there may be room for a refill).</summary>
    private void WakePools(string template)
    {
        if (_pools.TryGetValue(template, out var pool)) pool.Wake();
        if (_pools.TryGetValue(PoolKey(template, true), out var egressPool)) egressPool.Wake();
    }

    /// <summary>
    /// The template's pool of sandboxes without network, or of sandboxes with a link ready (made on
    /// the first egress create, kept at egress_pool_size: servers that never use egress hold no links).
    /// </summary>
    private SandboxPool GetPool(TemplateDefinition template, bool egress = false)
    {
        var key = PoolKey(template.Name, egress);
        if (_pools.TryGetValue(key, out var pool)) return pool;
        lock (_pools)
        {
            // A pool made after shutdown began would refill forever from a disposed zygote.
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _pools.GetOrAdd(key, _ => new SandboxPool(this, template, egress ? _options.EgressPoolSize : _options.PoolSize,
                _loggers.CreateLogger<SandboxPool>(), egress));
        }
    }

    public TemplateCatalog Templates => _templates;

    /// <summary>Deletes a built template that no sandbox uses: its pool, its zygote, then its files.</summary>
    public async Task RemoveTemplateAsync(string name)
    {
        var template = _templates.Get(name);
        if (template.RootDir is null)
            throw new BadRequestException($"template '{name}' is built in and cannot be deleted");
        var users = _registry.Live.Count(s => s.Template.Name == name);
        if (users > 0)
            throw new ConflictException($"template '{name}' is used by {users} sandbox(es); close them first", "template_in_use");
        if (_pools.TryRemove(name, out var pool)) await pool.DisposeAsync().ConfigureAwait(false);
        if (_pools.TryRemove(PoolKey(name, true), out var egressPool)) await egressPool.DisposeAsync().ConfigureAwait(false);
        await _zygoteStart.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_zygotes.TryRemove(name, out var zygote)) await zygote.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            _zygoteStart.Release();
        }
        _templates.Remove(name);
    }

    /// <summary>The host pid of a template's zygote, if it is running (for operators and tests).</summary>
    public int? ZygotePid(string template) => _zygotes.TryGetValue(template, out var z) ? z.Pid : null;

    /// <summary>The warm pool of each template that has one.</summary>
    public IReadOnlyCollection<SandboxPool> Pools => (IReadOnlyCollection<SandboxPool>)_pools.Values;

    public SandboxPool Pool(string template, bool egress = false) => GetPool(_templates.Get(template), egress);

    private static double Lap(Stopwatch sw)
    {
        var ms = sw.Elapsed.TotalMilliseconds;
        sw.Restart();
        return Math.Round(ms, 3);
    }

    private async Task<ZygoteProcess> GetZygoteAsync(TemplateDefinition template, CancellationToken ct)
    {
        if (_zygotes.TryGetValue(template.Name, out var z)) return z;
        await _zygoteStart.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_zygotes.TryGetValue(template.Name, out z)) return z;
            ObjectDisposedException.ThrowIf(_disposed, this);
            z = new ZygoteProcess(template, _options.DataDir, _options.Python, _seccompPath, _options.OutputLimitBytes, _loggers.CreateLogger<ZygoteProcess>());
            z.SandboxExited += OnSandboxExited;
            await z.StartAsync(ct).ConfigureAwait(false);
            _zygotes[template.Name] = z;
            return z;
        }
        finally
        {
            _zygoteStart.Release();
        }
    }

    // ---- destroy ------------------------------------------------------------------------------

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
            Forget(id, sb.Owner, sb.Name);
            await DestroyAsync(sb).ConfigureAwait(false);
            return;
        }
        if (_registry.TryRemoveFrozen(id, out var rec))
        {
            LogDestroyed(id, $"{why} (it was {rec.State})");
            Forget(id, rec.Owner, rec.Name);
            return;
        }
        throw new NotFoundException($"sandbox '{id}' not found (it may have been closed or have expired)");
    }

    /// <summary>Kills the sandbox's processes now; waits for them, then releases cgroup, slot and layers in the background.</summary>
    internal Task DestroyAsync(Sandbox sb)
    {
        _registry.ForgetPid(sb.Pid);
        sb.TryMarkDead("closed");
        sb.Agent.Abort();
        var task = Task.Run(async () =>
        {
            await DetachNetworkAsync(sb).ConfigureAwait(false);
            // With forks still running, PID 1 must stay (see SandboxManager.Fork.cs): everything else goes.
            var retire = HasLiveForks(sb);
            try
            {
                if (retire)
                {
                    sb.Cgroup.KillAll(KillWait, spare: sb.Pid);
                    // The agent retires when it reads the closed channel; this reaches it mid-call too.
                    // Only while the pid is still in the cgroup: once gone, the number may be another's.
                    if (sb.Cgroup.Pids().Contains(sb.Pid)) Processes.Signal(sb.Pid, Processes.SIGUSR2);
                }
                else
                {
                    sb.Cgroup.KillAll(KillWait);
                    sb.Cgroup.Delete();
                }
            }
            catch (Exception e)
            {
                LogCleanupFailed(sb.Id, e);
            }
            Interlocked.Decrement(ref _count);
            WakePools(sb.Template.Name);
            if (!retire)
            {
                await ReleaseAsync(sb).ConfigureAwait(false);
                return;
            }
            lock (_retired) _retired.Add(sb);
            LogRetired(sb.Id);
        });
        Track(task);
        return Task.CompletedTask;
    }

    private void Track(Task task)
    {
        lock (_cleanups)
        {
            _cleanups.RemoveAll(t => t.IsCompleted);
            _cleanups.Add(task);
        }
    }

    /// <summary>Deletes every sandbox past its expiry; called once a second by <see cref="SandboxReaper"/>.</summary>
    public int ReapExpired(DateTimeOffset now)
    {
        var n = 0;
        foreach (var sb in _registry.Live)
        {
            if (sb.Persistent || sb.ExpiresAt > now || sb.State == SandboxState.Hibernated || !_registry.TryRemoveLive(sb.Id, out _)) continue;
            LogDestroyed(sb.Id, "timeout_s reached");
            Forget(sb.Id, sb.Owner, sb.Name);
            _ = DestroyAsync(sb);
            n++;
        }
        foreach (var r in _registry.Frozen)
        {
            if (r.Persistent || r.ExpiresAt > now || !_registry.TryRemoveFrozen(r.Id, out _)) continue;
            LogDestroyed(r.Id, $"timeout_s reached (it was {r.State})");
            Forget(r.Id, r.Owner, r.Name);
            n++;
        }
        return n;
    }

    private void OnSandboxExited(int pid, int status)
    {
        if (!_registry.TryGetByPid(pid, out var sb)) return;
        var reason = DeathReason(sb, status < 0 ? $"the sandbox's agent was killed by signal {-status}" : $"the sandbox's agent exited with status {status}");
        if (sb.TryMarkDead(reason))
            LogDied(sb.Id, reason);
        sb.Agent.Abort();
    }

    private static string DeathReason(Sandbox sb, string otherwise) =>
        sb.Cgroup.OomKills() > 0
            ? $"out of memory: the kernel killed the sandbox's agent at its {sb.Limits.MemoryMb} MB memory limit"
            : otherwise;

    // ---- calls --------------------------------------------------------------------------------

    /// <summary>
    /// Called before a call and again under its call lock: a dead sandbox is refused; a paused one
    /// (paused while the call waited for the lock) is thawed; a hibernated one was hibernated by a
    /// concurrent request, and the caller is told to retry, which resumes it.
    /// </summary>
    private void EnsureUsable(Sandbox sb)
    {
        if (sb.IsDead)
            throw new ConflictException($"sandbox '{sb.Id}' is dead ({sb.DeadReason}); create a new one", "sandbox_dead");
        if (sb.State == SandboxState.Hibernated)
            throw new ConflictException($"sandbox '{sb.Id}' was hibernated by another request while this call waited; retry the call, which resumes it", "wrong_state");
        if (sb.State == SandboxState.Paused && sb.Agent.CallLock.CurrentCount == 0) Thaw(sb);
        sb.Touch();
    }

    /// <summary>
    /// Runs code and streams its events to <paramref name="sink"/>. If the client goes away the call
    /// still runs to its end (the agent's frames must be read to keep the channel in step); its
    /// output is dropped.
    /// </summary>
    public async Task ExecAsync(Sandbox sb, ExecRequest req, IExecSink sink, CancellationToken clientGone)
    {
        if (req.Code is null) throw new BadRequestException("'code' is required: the Python code or shell command to run");
        var language = req.Language ?? "python";
        if (language is not ("python" or "bash"))
            throw new BadRequestException($"language '{language}' is not supported; use \"python\" or \"bash\"");
        var timeout = Validate.Range(req.TimeoutS ?? _options.DefaultExecTimeoutS, 0.001, _options.MaxTimeoutS, "timeout_s");
        var env = Validate.Env(req.Env, "env");
        if (req.Cwd is { } cwd) Validate.SandboxPath(cwd, "cwd");
        EnsureUsable(sb);

        await sb.Agent.CallLock.WaitAsync(clientGone).ConfigureAwait(false);
        var started = Stopwatch.GetTimestamp();
        try
        {
            EnsureUsable(sb);
            sb.MoveTo(SandboxState.Running);
            var callId = sb.Agent.NextCallId();
            var rich = req.Rich == true;
            var frame = AgentFrame.Encode(w =>
            {
                w.WriteString("op", "exec");
                w.WriteNumber("id", callId);
                w.WriteString("lang", language);
                w.WriteString("code", req.Code);
                w.WriteNumber("timeout", timeout);
                w.WriteBoolean("rich", rich);
                if (req.Cwd is not null) w.WriteString("cwd", req.Cwd);
                AgentFrame.WriteEnv(w, env);
            }, default);
            using var hard = new CancellationTokenSource(TimeSpan.FromSeconds(timeout) + AgentGrace);
            var clientOk = true;
            // The agent truncates output at the limit, but user code can change the agent: hostd counts too.
            var outputLeft = _options.OutputLimitBytes;
            // Once the client has gone, events are still read (to keep the channel in step) but no longer sent.
            async ValueTask FlushToClient()
            {
                if (!clientOk) return;
                try
                {
                    await sink.FlushAsync(clientGone).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException)
                {
                    clientOk = false;
                }
            }
            await sb.Agent.SendAsync(frame, hard.Token).ConfigureAwait(false);
            while (true)
            {
                AgentFrame f;
                try
                {
                    f = await sb.Agent.ReadAsync(0, hard.Token).ConfigureAwait(false);
                }
                catch (AgentFrameTooLargeException e)
                {
                    Kill(sb, e.Message);
                    WriteFatal(sink, rich, "SandboxDied", e.Message, 137, timeout: false);
                    break;
                }
                catch (OperationCanceledException) when (hard.IsCancellationRequested)
                {
                    var reason = $"the sandbox did not stop at the end of the {timeout:g} s timeout and was killed";
                    Kill(sb, reason);
                    WriteFatal(sink, rich, "TimeoutError", reason, 124, timeout: true);
                    break;
                }
                catch (Exception e) when (AgentFrame.IsChannelLost(e))
                {
                    var reason = DeathReason(sb, sb.DeadReason ?? "the sandbox's agent closed its control channel");
                    if (sb.TryMarkDead(reason)) LogDied(sb.Id, reason);
                    WriteFatal(sink, rich, "SandboxDied", sb.DeadReason ?? reason, 137, timeout: false);
                    break;
                }
                bool done;
                using (f)
                    done = Forward(f, sink, ref outputLeft);
                await FlushToClient().ConfigureAwait(false);
                if (done) break;
            }
            await FlushToClient().ConfigureAwait(false); // the events of a fatal end
        }
        finally
        {
            sb.TryMove(SandboxState.Running, SandboxState.Ready);
            sb.Touch();
            sb.Agent.CallLock.Release();
            _metrics.ExecSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    private static void WriteFatal(IExecSink sink, bool rich, string name, string message, int code, bool timeout)
    {
        sink.Output(true, "forkbox: " + message);
        if (rich) sink.Error(name, message, "");
        sink.Exit(code, timeout);
    }

    /// <summary>
    /// Passes one agent frame on; returns true at the call's last frame. Output lines (a character
    /// each and a newline, as the agent counts) and results are charged to <paramref name="left"/>,
    /// the call's output allowance: the first that does not fit is replaced by the agent's
    /// truncation marker, and everything after it is dropped.
    /// </summary>
    private static bool Forward(AgentFrame f, IExecSink sink, ref long left)
    {
        var h = f.Header;
        switch (f.Event)
        {
            case "out":
                var stderr = h.GetProperty("s").GetInt32() == 2;
                foreach (var line in h.GetProperty("lines").EnumerateArray())
                {
                    var text = line.GetString() ?? "";
                    if (Charge(ref left, text.Length + 1, sink)) sink.Output(stderr, text);
                }
                return false;
            case "result":
                var data = h.GetProperty("data");
                if (Charge(ref left, data.GetRawText().Length, sink)) sink.Result(data);
                return false;
            case "error":
                sink.Error(h.GetProperty("name").GetString() ?? "", h.GetProperty("value").GetString() ?? "",
                    h.GetProperty("traceback").GetString() ?? "");
                return false;
            case "exit":
                sink.Exit(h.GetProperty("code").GetInt32(), h.GetProperty("timeout").GetBoolean());
                return true;
            default: // "fail": the agent could not run the call at all
                sink.Output(true, "forkbox: " + (h.TryGetProperty("message", out var m) ? m.GetString() : "agent error"));
                sink.Exit(1, false);
                return true;
        }
    }

    /// <summary>Takes <paramref name="cost"/> from the allowance; false once it is spent (the marker is written the first time).</summary>
    private static bool Charge(ref long left, long cost, IExecSink sink)
    {
        if (left < 0) return false;
        if (cost <= left)
        {
            left -= cost;
            return true;
        }
        left = -1;
        sink.Output(true, "[forkbox: output truncated by hostd at the output limit]");
        return false;
    }

    private void Kill(Sandbox sb, string reason)
    {
        if (sb.TryMarkDead(reason)) LogDied(sb.Id, reason);
        sb.Agent.Abort();
        sb.Cgroup.KillAll(TimeSpan.Zero);
    }

    /// <summary>
    /// A file call: one request frame, one answer. Returns the "ok" frame (the caller disposes it);
    /// a "fail" answer becomes the matching API error.
    /// </summary>
    public async Task<AgentFrame> FileCallAsync(Sandbox sb, Action<Utf8JsonWriter> header, ReadOnlyMemory<byte> payload, CancellationToken ct,
        long maxAnswerPayload = 0)
    {
        EnsureUsable(sb);
        await sb.Agent.CallLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            EnsureUsable(sb);
            var callId = sb.Agent.NextCallId();
            var head = AgentFrame.EncodeHead(w =>
            {
                w.WriteNumber("id", callId);
                header(w);
            }, payload.Length);
            var answer = await RoundTripAsync(sb, head, TimeSpan.FromSeconds(120), "a file call", payload, maxAnswerPayload).ConfigureAwait(false);
            if (answer.Event == "ok") return answer;
            using (answer)
            {
                var code = answer.Header.TryGetProperty("code", out var c) ? c.GetString() : null;
                var message = answer.Header.TryGetProperty("message", out var m) ? m.GetString() ?? "" : "";
                throw code switch
                {
                    "not_found" => new NotFoundException(message, "file_not_found"),
                    "too_large" => new PayloadTooLargeException(message),
                    "no_space" => new InsufficientStorageException(_quota is null ? message
                        : $"{message}: the sandbox has used its disk quota of {sb.DiskMb} MB (disk_mb at create sets it; files it deletes free room)"),
                    "agent_error" => new ExecutorException(message),
                    _ => new BadRequestException(message),
                };
            }
        }
        finally
        {
            sb.Touch();
            sb.Agent.CallLock.Release();
        }
    }

    /// <summary>
    /// One request and its one answer, under the call lock the caller holds. An agent that does not
    /// answer within <paramref name="timeout"/>, or whose channel is lost, is killed: a request
    /// without its answer read would leave the channel out of step. A <paramref name="payload"/>
    /// goes after <paramref name="frame"/>, which is then only its head. An answer whose payload is
    /// over <paramref name="maxAnswerPayload"/> is not read: the agent is killed, and the call is 413.
    /// </summary>
    private async Task<AgentFrame> RoundTripAsync(Sandbox sb, byte[] frame, TimeSpan timeout, string during, ReadOnlyMemory<byte> payload = default,
        long maxAnswerPayload = 0)
    {
        using var hard = new CancellationTokenSource(timeout);
        try
        {
            await sb.Agent.SendAsync(frame, payload, hard.Token).ConfigureAwait(false);
            return await sb.Agent.ReadAsync(maxAnswerPayload, hard.Token).ConfigureAwait(false);
        }
        catch (AgentFrameTooLargeException e)
        {
            Kill(sb, e.Message);
            throw new PayloadTooLargeException($"{e.Message} (during {during})");
        }
        catch (Exception e) when (AgentFrame.IsChannelLost(e) || e is OperationCanceledException)
        {
            var reason = DeathReason(sb, $"the sandbox's agent stopped answering during {during}");
            Kill(sb, reason);
            throw new ExecutorException(reason);
        }
    }

    // ---- shutdown -----------------------------------------------------------------------------

    public async ValueTask DisposeAsync()
    {
        SandboxPool[] pools;
        lock (_pools)
        {
            _disposed = true; // from here on no pool or zygote is made
            pools = _pools.Values.ToArray();
        }
        foreach (var pool in pools)
            await pool.DisposeAsync().ConfigureAwait(false);
        if (_options.HibernateOnShutdown) await HibernateAllForShutdownAsync().ConfigureAwait(false);
        foreach (var id in _registry.Live.Select(s => s.Id).ToArray())
            if (_registry.TryRemoveLive(id, out var sb))
            {
                MarkLost(sb, sb.Persistent
                    ? "the server was stopped and the sandbox could not be hibernated first"
                    : "the server was stopped; sandboxes that are not persistent do not survive a restart (create with \"persistent\": true)");
                await DestroyAsync(sb).ConfigureAwait(false);
            }
        Task[] pending;
        lock (_cleanups) pending = _cleanups.ToArray();
        await Task.WhenAll(pending).ConfigureAwait(false);
        // Every fork is closed too, so retired sandboxes go now, PID 1 and all.
        List<Sandbox> retired;
        lock (_retired) retired = _retired.ToList();
        foreach (var sb in retired) sb.Cgroup.KillAll(KillWait);
        SweepRetired();
        lock (_cleanups) pending = _cleanups.ToArray();
        await Task.WhenAll(pending).ConfigureAwait(false);
        // The layer removals started by the cleanups above.
        lock (_cleanups) pending = _cleanups.Where(t => !t.IsCompleted).ToArray();
        await Task.WhenAll(pending).ConfigureAwait(false);
        // Wait out a zygote start in progress (a template warming in the background).
        await _zygoteStart.WaitAsync().ConfigureAwait(false);
        foreach (var z in _zygotes.Values)
            await z.DisposeAsync().ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "sandbox {SandboxId} created from {Template}, pid {Pid}, pool hit {PoolHit}, in {Ms:F2} ms")]
    private partial void LogCreated(string sandboxId, string template, int pid, bool poolHit, double ms);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "sandbox {SandboxId}: discarded from the pool: {Error}")]
    private partial void LogPoolDiscard(string sandboxId, string error);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Warning, Message = "sandbox {SandboxId} from {Template} could not be created: {Error}")]
    private partial void LogCreateFailed(string sandboxId, string template, string error);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Information, Message = "sandbox {SandboxId} destroyed: {Why}")]
    private partial void LogDestroyed(string sandboxId, string why);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Warning, Message = "sandbox {SandboxId} died: {Reason}")]
    private partial void LogDied(string sandboxId, string reason);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Error, Message = "sandbox {SandboxId}: cleanup failed")]
    private partial void LogCleanupFailed(string sandboxId, Exception error);
}
