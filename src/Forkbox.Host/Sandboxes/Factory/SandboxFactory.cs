using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Templates;
using Forkbox.Host.Agents;
using Forkbox.Host.Networking;
using Forkbox.Host.Zygotes;
using Forkbox.Linux;
using Forkbox.Linux.Cgroups;
using Forkbox.Linux.Namespaces;
using Forkbox.Linux.Storage;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>The host's parts a sandbox is made of, made once at start-up.</summary>
public sealed record SandboxParts(ICgroupDriver Cgroups, UserNamespaceSlots Slots, SandboxLayers Layers, AgentListener Listener,
    string SeccompPath, DiskQuota? Quota);

/// <summary>
/// Makes sandboxes and ends them: the one owner of every sandbox's resources (uid slot, cgroup,
/// layers, link, a place under MaxSandboxes) and of the templates' zygotes. Whatever it made for a
/// sandbox it also releases: on a failed spawn (abandon), on close (destroy, or retire while forks
/// live on), after a hibernate, at shutdown.
/// </summary>
public sealed partial class SandboxFactory : ISandboxFactory, IAsyncDisposable
{
    public static readonly TimeSpan KillWait = TimeSpan.FromSeconds(5);

    private readonly ServerOptions _options;
    private readonly SandboxParts _parts;
    private readonly SandboxRegistry _registry;
    private readonly SandboxCalls _calls;
    private readonly SandboxEgress _egress;
    private readonly BackgroundWork _background;
    private readonly HostMetrics _metrics;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<string, ZygoteProcess> _zygotes = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _zygoteStart = new(1, 1);
    private readonly Dictionary<int, int> _slotRefs = new();
    private readonly RetiredSandboxes _retired = new();
    private int _count;
    private volatile bool _disposed;

    public SandboxFactory(ServerOptions options, SandboxParts parts, SandboxRegistry registry, SandboxCalls calls, SandboxEgress egress,
        BackgroundWork background, HostMetrics metrics, ILoggerFactory loggers)
    {
        _options = options;
        _parts = parts;
        _registry = registry;
        _calls = calls;
        _egress = egress;
        _background = background;
        _metrics = metrics;
        _loggers = loggers;
        _log = loggers.CreateLogger<SandboxFactory>();
    }

    /// <summary>A sandbox of <see cref="TemplateDefinition.Name"/> ended: there may be room for a pool to refill.</summary>
    public event Action<string>? Released;

    public SandboxParts Parts => _parts;

    public bool HasRoom => Volatile.Read(ref _count) < _options.Limits.MaxSandboxes;

    /// <summary>Closed sandboxes waiting for their last fork to end.</summary>
    public int Retired => _retired.Count;

    public SandboxLimits DefaultLimits => new(_options.Limits.DefaultMemoryMb, _options.Limits.DefaultCpus, _options.Limits.PidsLimit);

    /// <summary>Holds <paramref name="n"/> places under MaxSandboxes; false, holding none, when they do not fit.</summary>
    public bool TryReserve(int n)
    {
        if (Interlocked.Add(ref _count, n) <= _options.Limits.MaxSandboxes) return true;
        Interlocked.Add(ref _count, -n);
        return false;
    }

    /// <summary>Gives back places held by <see cref="TryReserve"/> for sandboxes that were never made.</summary>
    public void Unreserve(int n) => Interlocked.Add(ref _count, -n);

    // ---- spawn --------------------------------------------------------------------------------

    public async Task<Sandbox> SpawnPooledAsync(TemplateDefinition template, bool egress)
    {
        // Not cancelled by shutdown: a half-made sandbox is harder to clean than a whole one.
        var sb = await SpawnAsync(template, DefaultLimits, null, CancellationToken.None, egress: egress, foreground: false).ConfigureAwait(false);
        try
        {
            await _calls.WarmUpAsync(sb).ConfigureAwait(false);
            if (egress) _egress.PreAdmit(sb);
        }
        catch
        {
            await DestroyAsync(sb).ConfigureAwait(false);
            throw;
        }
        return sb;
    }

    /// <summary>
    /// Makes a sandbox: uid slot, cgroup, layers, a fork of the template's zygote that isolates
    /// itself and says hello. Counts against MaxSandboxes; not yet visible to clients.
    /// </summary>
    /// <param name="resume">A hibernated sandbox to bring back: its id, and its saved layers copied in before the agent starts.</param>
    /// <param name="egress">Give it a link and address (not yet let out: see <see cref="SandboxEgress.AdmitAsync"/>).</param>
    /// <param name="foreground">A client waits for it (a pool miss, a resume): made at normal priority, not the pool's nice 19.</param>
    public async Task<Sandbox> SpawnAsync(TemplateDefinition template, SandboxLimits limits, Dictionary<string, string>? env, CancellationToken ct,
        SandboxRecord? resume = null, bool egress = false, bool foreground = true)
    {
        var total = Stopwatch.StartNew();
        if (!TryReserve(1))
            throw new AtCapacityException($"this host already runs its maximum of {_options.Limits.MaxSandboxes} sandboxes; close one or try another host");

        var id = resume?.Id ?? SandboxId.New(_options.Cluster.HostId);
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var timings = new Dictionary<string, double>();
        UserNamespaceSlot? slot = null;
        ICgroup? cgroup = null;
        SandboxLayerDirs? dirs = null;
        var diskMb = resume?.DiskMb ?? _options.Limits.DefaultDiskMb;
        try
        {
            var step = Stopwatch.StartNew();
            slot = _parts.Slots.Acquire() ?? throw new AtCapacityException("no free user namespace slot");
            timings["uid_slot"] = Timings.Lap(step);
            // A resumed sandbox's cgroup and layers are named for the image too: the sandbox it was
            // before may still hold the plain id's (retired, kept until its forks end).
            var instance = resume is null ? id : id + "-" + resume.Image;
            cgroup = _parts.Cgroups.Create(instance, limits);
            timings["cgroup"] = Timings.Lap(step);
            dirs = resume is null ? _parts.Layers.Create(id, template) : _parts.Layers.CreateFork(instance, template);
            timings["layers"] = Timings.Lap(step);
            var zygote = await GetZygoteAsync(template, ct).ConfigureAwait(false);
            if (resume is not null)
            {
                var image = Path.Combine(_options.SpacesDir, id, resume.Image!);
                await zygote.RestoreAsync(new RestoreSpec("restore-" + id, _parts.Layers.Strategy,
                    dirs.Layers.Select((_, i) => Path.Combine(image, $"upper{i}")).ToList(), dirs, resume.ImageUidBase!.Value, slot.UidBase), ct).ConfigureAwait(false);
                timings["restore_files"] = Timings.Lap(step);
            }
            _parts.Quota?.SetLimit(dirs, (long)diskMb << 20);
            var hello = _parts.Listener.Expect(id, token);
            var spawn = await zygote.SpawnAsync(
                new SpawnSpec(id, token, _parts.Listener.Path, slot, cgroup.ProcsFiles, dirs, template, _options.Limits.TmpSizeMb, env, foreground), ct)
                .ConfigureAwait(false);
            if (!spawn.Ok)
                throw new ExecutorException($"sandbox set-up failed: {spawn.Error}");
            timings["spawn"] = Timings.Lap(step);
            timings["zygote"] = spawn.SetupMs;
            foreach (var (name, ms) in spawn.Steps!) timings["isolate." + name] = ms;
            var agent = await hello.WaitAsync(TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            timings["hello"] = Timings.Lap(step);
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
                    await _egress.AttachAsync(sandbox, fresh: resume is null, ct).ConfigureAwait(false);
                }
                catch
                {
                    _registry.ForgetPid(spawn.Pid);
                    await _egress.DetachAsync(sandbox).ConfigureAwait(false);
                    throw;
                }
                timings["network"] = Timings.Lap(step);
            }
            timings["spawn_total"] = Timings.Ms(total);
            return sandbox;
        }
        catch (Exception e)
        {
            Abandon(id, cgroup, dirs);
            if (slot is not null) _parts.Slots.Release(slot);
            Unreserve(1);
            _metrics.CreateFailures.Inc();
            LogCreateFailed(id, template.Name, e.Message);
            if (e is ForkboxException or OperationCanceledException) throw;
            throw new ExecutorException($"sandbox set-up failed: {e.Message}", e);
        }
    }

    /// <summary>Undoes a sandbox that never became one: its awaited hello, processes, cgroup and layers.</summary>
    public void Abandon(string id, ICgroup? cgroup, SandboxLayerDirs? dirs)
    {
        _parts.Listener.Forget(id);
        try
        {
            cgroup?.KillAll(KillWait);
            cgroup?.Delete();
        }
        catch (Exception e)
        {
            LogCleanupFailed(id, e);
        }
        if (dirs is not null) _background.Track(_parts.Layers.RemoveAsync(dirs));
    }

    /// <summary>A fork shares its parent's uid range: the range goes back when the last of the family is released.</summary>
    public void ShareSlot(UserNamespaceSlot slot)
    {
        lock (_slotRefs) _slotRefs[slot.Index] = _slotRefs.GetValueOrDefault(slot.Index, 1) + 1;
    }

    // ---- end ----------------------------------------------------------------------------------

    /// <summary>Kills the sandbox's processes now; waits for them, then releases cgroup, slot and layers in the background.</summary>
    public Task DestroyAsync(Sandbox sb)
    {
        _registry.ForgetPid(sb.Pid);
        sb.TryMarkDead("closed");
        sb.Agent.Abort();
        _background.Track(Task.Run(async () =>
        {
            await _egress.DetachAsync(sb).ConfigureAwait(false);
            // With forks still running, PID 1 must stay (see RetiredSandboxes): everything else goes.
            var retire = RetiredSandboxes.HasLiveForks(sb);
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
            Ended(sb);
            if (!retire)
            {
                await ReleaseAsync(sb).ConfigureAwait(false);
                return;
            }
            _retired.Add(sb);
            LogRetired(sb.Id);
        }));
        return Task.CompletedTask;
    }

    /// <summary>Releases what a sandbox stopped by a hibernate still held: its place, link, uid range and layers.</summary>
    public void ReleaseStopped(Sandbox sb)
    {
        Ended(sb);
        _background.Track(_egress.DetachAsync(sb));
        _background.Track(ReleaseAsync(sb));
    }

    private void Ended(Sandbox sb)
    {
        Unreserve(1);
        Released?.Invoke(sb.Template.Name);
    }

    /// <summary>Releases the retired sandboxes whose PID 1 has exited; called once a second.</summary>
    public int SweepRetired()
    {
        var done = _retired.TakeEnded();
        foreach (var sb in done)
        {
            try
            {
                sb.Cgroup.Delete();
            }
            catch (Exception e)
            {
                LogCleanupFailed(sb.Id, e);
            }
            _background.Track(ReleaseAsync(sb));
            LogRetiredGone(sb.Id);
        }
        return done.Count;
    }

    /// <summary>Gives back a sandbox's uid range (when its family no longer uses it) and layers.</summary>
    private Task ReleaseAsync(Sandbox sb)
    {
        var last = true;
        lock (_slotRefs)
        {
            if (_slotRefs.TryGetValue(sb.Slot.Index, out var refs) && refs > 1)
            {
                _slotRefs[sb.Slot.Index] = refs - 1;
                last = false;
            }
            else
            {
                _slotRefs.Remove(sb.Slot.Index);
            }
        }
        if (last) _parts.Slots.Release(sb.Slot);
        if (sb.Parent is { } parent)
            lock (parent.Children) parent.Children.Remove(sb);
        return _parts.Layers.RemoveAsync(sb.Dirs);
    }

    private void OnSandboxExited(int pid, int status)
    {
        if (!_registry.TryGetByPid(pid, out var sb)) return;
        _calls.MarkDead(sb, SandboxCalls.DeathReason(sb, status < 0
            ? $"the sandbox's agent was killed by signal {-status}"
            : $"the sandbox's agent exited with status {status}"));
        sb.Agent.Abort();
    }

    // ---- zygotes ------------------------------------------------------------------------------

    public async Task<ZygoteProcess> GetZygoteAsync(TemplateDefinition template, CancellationToken ct)
    {
        if (_zygotes.TryGetValue(template.Name, out var z)) return z;
        await _zygoteStart.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_zygotes.TryGetValue(template.Name, out z)) return z;
            ObjectDisposedException.ThrowIf(_disposed, this);
            z = new ZygoteProcess(template, _options.DataDir, _options.Python, _parts.SeccompPath, _options.Limits.OutputLimitBytes, _loggers.CreateLogger<ZygoteProcess>());
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

    /// <summary>The host pid of a template's zygote, if it is running (for operators and tests).</summary>
    public int? ZygotePid(string template) => _zygotes.TryGetValue(template, out var z) ? z.Pid : null;

    /// <summary>Stops a template's zygote (the template is being deleted).</summary>
    public async Task StopZygoteAsync(string template)
    {
        await _zygoteStart.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_zygotes.TryRemove(template, out var zygote)) await zygote.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            _zygoteStart.Release();
        }
    }

    /// <summary>
    /// At shutdown, once every sandbox is closed and the clean-ups have run: every fork is gone too,
    /// so retired sandboxes go now, PID 1 and all; then the zygotes.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var sb in _retired.Snapshot()) sb.Cgroup.KillAll(KillWait);
        SweepRetired();
        await _background.DrainAsync().ConfigureAwait(false);
        // Wait out a zygote start in progress (a template warming in the background).
        await _zygoteStart.WaitAsync().ConfigureAwait(false);
        _disposed = true;
        foreach (var z in _zygotes.Values)
            await z.DisposeAsync().ConfigureAwait(false);
    }
}
