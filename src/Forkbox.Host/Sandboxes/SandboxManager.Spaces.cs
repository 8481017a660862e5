using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Host.Zygotes;
using Forkbox.Linux;
using Forkbox.Linux.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Spaces: persistent, named sandboxes that freeze when idle and survive a restart of hostd.
///
/// Two frozen levels. Paused: the cgroup freezer stops every process; memory stays; thawing takes
/// a millisecond. Hibernated: the agent pickles the REPL's globals into a file in the sandbox's
/// writable layer, the processes are killed, the writable layers are renamed into
/// DATA/sandboxes/.spaces/ID/gN and synced to disk, and only then is the record committed
/// (durably) as hibernated: a crash before that leaves the previous record and image as they were.
/// Resume copies the image into a new sandbox's layers (the image stays, as the id's checkpoint,
/// until the next hibernate replaces it), spawns a fresh agent from the template's zygote, and has
/// it restore the globals and re-import the modules.
///
/// Frozen records (hibernated, and lost ones: a restart found them running) and live sandboxes,
/// paused ones included, are held by <see cref="SandboxRegistry"/>, which alone writes them.
/// </summary>
public sealed partial class SandboxManager
{
    /// <summary>Set on the reply of a call that had to resume its sandbox first: "paused" or "hibernated".</summary>
    public const string ResumedHeader = "X-Forkbox-Resumed";

    /// <summary>Where, inside the sandbox, the agent writes its pickled state on hibernate (it is removed on resume).</summary>
    private const string StateDirInSandbox = "/.forkbox-hibernate";

    private static readonly TimeSpan HibernateCallTimeout = TimeSpan.FromMinutes(10);

    private readonly ConcurrentDictionary<string, SemaphoreSlim> _resumeGates = new(StringComparer.Ordinal);
    private readonly string? _fault = Environment.GetEnvironmentVariable("FORKBOX_FAULT");
    private Task _pressure = Task.CompletedTask;

    public int Paused => _registry.Live.Count(s => s.State == SandboxState.Paused);

    public int Hibernated => _registry.Frozen.Count(r => r.State == SandboxState.Hibernated);

    /// <summary>Disk held by saved states: hibernated sandboxes' and the checkpoints of resumed ones.</summary>
    public long HibernatedBytes =>
        _registry.Frozen.Sum(r => r.ImageBytes ?? 0) + _registry.Live.Sum(s => s.Checkpoint?.ImageBytes ?? 0);

    // ---- records, names, lookups -------------------------------------------------------------

    /// <summary>Any sandbox this server knows of, live or frozen, as the API reports it.</summary>
    public SandboxInfo Describe(string id) =>
        _registry.TryGetLive(id, out var sb) ? sb.ToInfo(withUsage: true) with { DiskBytes = DiskUsed(sb) }
        : _registry.TryGetFrozen(id, out var r) ? r.ToInfo()
        : throw new NotFoundException($"sandbox '{id}' not found (it may have been closed or have expired)");

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

    /// <summary>The owner of a sandbox this server knows of, live or frozen; null for an unknown id.</summary>
    public string? OwnerOf(string id) => _registry.OwnerOf(id);

    /// <summary>Owner → ids of every sandbox held for it, live and frozen: what a cluster heartbeat reports.</summary>
    public Dictionary<string, List<string>> IdsByOwner() => _registry.IdsByOwner();

    private long? DiskUsed(Sandbox sb)
    {
        try
        {
            return _quota?.Used(sb.Dirs);
        }
        catch (IOException)
        {
            return null;
        }
    }

    private SandboxInfo? TryDescribe(string id) =>
        _registry.TryGetLive(id, out var sb) ? sb.ToInfo(false) : _registry.TryGetFrozen(id, out var r) ? r.ToInfo() : null;

    /// <summary>Records a sandbox's new state, committed before this returns (a restart brings it back, or reports it lost).</summary>
    private void Save(Sandbox sb)
    {
        try
        {
            _store.Save(sb.ToRecord());
        }
        catch (Exception e) when (e is SqliteException or IOException)
        {
            // The sandbox works without its record; it would only be missing after a restart.
            LogStoreFailed(sb.Id, e);
        }
    }

    /// <summary>Forgets an id for good: its record, its name and its saved state.</summary>
    private void Forget(string id, string owner, string? name)
    {
        try
        {
            _store.Delete(id);
        }
        catch (Exception e)
        {
            LogStoreFailed(id, e);
        }
        _registry.ReleaseName(owner, name, id);
        var dir = Path.Combine(_options.SpacesDir, id);
        if (Directory.Exists(dir)) Track(_layers.RemoveAsync(new SandboxLayerDirs(dir, dir, [])));
    }

    // ---- start-up ---------------------------------------------------------------------------

    /// <summary>
    /// Loads the records an earlier run left: hibernated sandboxes stay resumable; those that were
    /// live are marked lost, saying why and whether their last hibernated state can be resumed.
    /// Saved states that no record points at (a hibernate cut short) are removed.
    /// </summary>
    public (int Hibernated, int Lost) Recover()
    {
        var now = DateTimeOffset.UtcNow;
        int hibernated = 0, lost = 0;
        foreach (var r in _store.LoadAll())
        {
            var hasImage = r.Image is not null && Directory.Exists(Path.Combine(_options.SpacesDir, r.Id, r.Image));
            var rec = r;
            if (r.State == SandboxState.Hibernated && hasImage)
            {
                hibernated++;
            }
            else if (!r.Persistent && r.ExpiresAt < now)
            {
                _store.Delete(r.Id);
                continue;
            }
            else if (r.State != SandboxState.Lost || (r.Image is not null && !hasImage))
            {
                var why = r.State switch
                {
                    SandboxState.Hibernated => $"its hibernated state is missing from {Path.Combine(_options.SpacesDir, r.Id)}",
                    SandboxState.Lost => $"it was lost, and its last hibernated state is missing from {Path.Combine(_options.SpacesDir, r.Id)}",
                    _ => $"the server restarted while the sandbox was {r.State} (last used {r.LastActiveAt:u}); its processes and memory did not survive",
                };
                rec = r with
                {
                    State = SandboxState.Lost,
                    LostReason = LostReason(why, hasImage ? r.HibernatedAt : null),
                    Image = hasImage ? r.Image : null,
                    ImageBytes = hasImage ? r.ImageBytes : null,
                };
                _store.Save(rec);
                lost++;
            }
            else
            {
                lost++;
            }
            _registry.AddFrozen(rec);
            _registry.SetName(rec.Owner, rec.Name, rec.Id);
        }
        if (Directory.Exists(_options.SpacesDir))
            foreach (var dir in Directory.GetDirectories(_options.SpacesDir))
            {
                _registry.TryGetFrozen(Path.GetFileName(dir), out var rec);
                foreach (var gen in Directory.GetDirectories(dir))
                    if (rec?.Image != Path.GetFileName(gen))
                        Track(_layers.RemoveAsync(new SandboxLayerDirs(gen, gen, [])));
                if (rec?.Image is null) Track(_layers.RemoveAsync(new SandboxLayerDirs(dir, dir, [])));
            }
        if (hibernated + lost > 0) LogRecovered(hibernated, lost);
        return (hibernated, lost);
    }

    // ---- pause ------------------------------------------------------------------------------

    public async Task<LifecycleResponse> PauseAsync(string id, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        if (_registry.TryGetFrozen(id, out var rec))
            throw new ConflictException($"sandbox '{id}' is {rec.State}, not running; only a running sandbox can be paused", "wrong_state");
        var sb = Get(id);
        await sb.LifecycleLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (sb.State == SandboxState.Hibernated)
                throw new ConflictException($"sandbox '{id}' was hibernated by another request; only a running sandbox can be paused", "wrong_state");
            if (sb.State != SandboxState.Paused)
            {
                await WaitIdleAsync(sb, "pause", ct).ConfigureAwait(false);
                try
                {
                    EnsureUsable(sb);
                    Freeze(sb, "requested by the client");
                }
                finally
                {
                    sb.Agent.CallLock.Release();
                }
            }
            return new LifecycleResponse { Id = id, State = sb.State, TimingsMs = new() { ["total"] = Ms(sw) } };
        }
        finally
        {
            sb.LifecycleLock.Release();
        }
    }

    private void Freeze(Sandbox sb, string why)
    {
        sb.Cgroup.Freeze(true);
        sb.MoveTo(SandboxState.Paused);
        Save(sb);
        LogPaused(sb.Id, why);
    }

    private void Thaw(Sandbox sb)
    {
        sb.Cgroup.Freeze(false);
        sb.MoveTo(SandboxState.Ready);
        Save(sb);
        LogThawed(sb.Id);
    }

    /// <summary>Takes the call lock, waiting for a running call up to ForkWaitS; 409 sandbox_busy after that.</summary>
    private async Task WaitIdleAsync(Sandbox sb, string what, CancellationToken ct)
    {
        if (!await sb.Agent.CallLock.WaitAsync(_options.ForkWait, ct).ConfigureAwait(false))
            throw new ConflictException(
                $"sandbox '{sb.Id}' is still running a call after {_options.ForkWait.TotalSeconds:g} s; {what} waits that long for the call to end, then gives up. Retry when it is done",
                "sandbox_busy");
    }

    // ---- hibernate --------------------------------------------------------------------------

    public async Task<LifecycleResponse> HibernateAsync(string id, CancellationToken ct)
    {
        // Already frozen: hibernated is nothing to do; lost cannot be hibernated.
        LifecycleResponse Frozen(SandboxRecord? r) => r?.State == SandboxState.Hibernated
            ? new LifecycleResponse { Id = id, State = r.State, Bytes = r.ImageBytes }
            : throw new ConflictException($"sandbox '{id}' is lost ({r?.LostReason}); it cannot be hibernated", "wrong_state");
        if (_registry.TryGetFrozen(id, out var rec)) return Frozen(rec);
        var sb = Get(id);
        await sb.LifecycleLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (sb.State == SandboxState.Hibernated) return Frozen(_registry.FrozenOrNull(id)); // by another request, just now
            // Forks just closed are still being released (their processes killed): that takes milliseconds.
            for (var waited = Stopwatch.StartNew(); HasLiveForks(sb) && ClosedForksOnly(sb) && waited.Elapsed < KillWait;)
                await Task.Delay(10, ct).ConfigureAwait(false);
            if (HasLiveForks(sb))
                throw new ConflictException(
                    $"sandbox '{id}' has live forks, which run inside its process tree; close them (or merge one into it) before hibernating it", "has_forks");
            await WaitIdleAsync(sb, "hibernate", ct).ConfigureAwait(false);
            return await HibernateLockedAsync(sb, "requested by the client").ConfigureAwait(false);
        }
        finally
        {
            sb.LifecycleLock.Release();
        }
    }

    private static bool ClosedForksOnly(Sandbox sb)
    {
        lock (sb.Children) return sb.Children.All(c => c.IsDead);
    }

    /// <summary>
    /// Hibernates a sandbox whose lifecycle lock and call lock the caller holds (the call lock is
    /// released here). If the agent cannot save its state, the sandbox keeps running and the error
    /// is returned; once its processes are killed there is no way back, so a failure after that
    /// point leaves it lost, with its previous saved state, if it had one, still resumable.
    /// </summary>
    private async Task<LifecycleResponse> HibernateLockedAsync(Sandbox sb, string why)
    {
        var total = Stopwatch.StartNew();
        var step = Stopwatch.StartNew();
        var timings = new Dictionary<string, double>();
        var id = sb.Id;
        LifecycleResponse reply;
        try
        {
            EnsureUsable(sb); // thaws a paused one: the agent must run to save its state
            var memory = sb.Cgroup.MemoryBytes();
            var callId = sb.Agent.NextCallId();
            using (var answer = await RoundTripAsync(sb, AgentFrame.Encode(w =>
                   {
                       w.WriteString("op", "hibernate");
                       w.WriteNumber("id", callId);
                       w.WriteString("path", StateDirInSandbox);
                   }, default), HibernateCallTimeout, "a hibernate").ConfigureAwait(false))
            {
                if (answer.Event != "ok")
                {
                    var message = answer.Header.TryGetProperty("message", out var m) ? m.GetString() : "unknown error";
                    if (answer.Header.TryGetProperty("code", out var c) && c.GetString() == "no_space")
                        throw new InsufficientStorageException($"cannot hibernate sandbox '{id}': its disk is full while saving its state ({message}); free some space in it");
                    throw new ExecutorException($"cannot hibernate sandbox '{id}': its agent could not save its state: {message}");
                }
                var h = answer.Header;
                var notSaved = ReadMap(h, "not_saved");
                foreach (var t in h.GetProperty("threads").EnumerateArray())
                    notSaved[$"thread {t.GetString()}"] = "threads do not survive hibernation";
                foreach (var proc in h.GetProperty("processes").EnumerateArray())
                    notSaved[$"process {proc.GetString()}"] = "background processes do not survive hibernation";
                reply = new LifecycleResponse
                {
                    Id = id,
                    State = SandboxState.Hibernated,
                    Saved = h.GetProperty("saved").EnumerateArray().Select(e => e.GetString()!).ToList(),
                    NotRestored = notSaved,
                    Modules = h.GetProperty("modules").EnumerateArray().Select(e => e.GetString()!).ToList(),
                    MemoryFreedBytes = memory,
                };
            }
            timings["save_state"] = Lap(step);
            Fault("hibernate.saved");
        }
        finally
        {
            sb.Agent.CallLock.Release();
        }

        // From here the sandbox stops. It stays listed (as hibernated) until its record is committed;
        // a call that finds it meanwhile waits for its lifecycle lock, which this holds, then resumes it.
        _registry.ForgetPid(sb.Pid);
        sb.MoveTo(SandboxState.Hibernated);
        sb.Agent.Abort();
        var previous = sb.Checkpoint;
        var gen = "g" + ((previous?.Image is { } p && int.TryParse(p.AsSpan(1), CultureInfo.InvariantCulture, out var n) ? n : 0) + 1)
            .ToString(CultureInfo.InvariantCulture);
        var image = Path.Combine(_options.SpacesDir, id, gen);
        try
        {
            sb.Cgroup.KillAll(KillWait);
            sb.Cgroup.Delete();
            timings["stop"] = Lap(step);
            LayerFiles.DeleteTree(image); // left by a hibernate cut short
            Directory.CreateDirectory(image);
            for (var i = 0; i < sb.Dirs.Layers.Count; i++)
                Directory.Move(sb.Dirs.Layers[i].Upper, Path.Combine(image, $"upper{i}"));
            var bytes = DiskUsage(image);
            timings["move_layers"] = Lap(step);
            Fault("hibernate.moved");
            Durability.SyncFilesystem(image);
            timings["sync"] = Lap(step);
            var rec = sb.ToRecord(SandboxState.Hibernated) with
            {
                Image = gen,
                ImageBytes = bytes,
                ImageUidBase = sb.Slot.UidBase,
                HibernatedAt = DateTimeOffset.UtcNow,
                NotSaved = reply.NotRestored,
            };
            _store.Save(rec, durable: true);
            timings["commit"] = Lap(step);
            Fault("hibernate.committed");
            _registry.Freeze(sb, rec);
            if (previous?.Image is { } old) Track(_layers.RemoveAsync(new SandboxLayerDirs(Path.Combine(_options.SpacesDir, id, old), "", [])));
            reply = reply with { Bytes = bytes };
        }
        catch (Exception e)
        {
            var lost = MarkLost(sb, $"hibernate failed after its processes were stopped: {e.Message}");
            _registry.Freeze(sb, lost);
            LogHibernateFailed(id, lost.LostReason!);
            Release();
            throw new ExecutorException($"cannot hibernate sandbox '{id}': {lost.LostReason}", e);
        }
        Release();
        timings["total"] = Ms(total);
        _metrics.HibernateSeconds.Observe(total.Elapsed.TotalSeconds);
        LogHibernated(id, why, reply.Bytes ?? 0, reply.MemoryFreedBytes ?? 0, total.Elapsed.TotalMilliseconds);
        return reply with { TimingsMs = timings };

        void Release()
        {
            Interlocked.Decrement(ref _count);
            WakePools(sb.Template.Name);
            Track(DetachNetworkAsync(sb));
            Track(ReleaseAsync(sb));
        }
    }

    /// <summary>Records that a sandbox's processes are gone for good, and whether its last saved state remains.</summary>
    private SandboxRecord MarkLost(Sandbox sb, string reason)
    {
        var rec = sb.ToRecord(SandboxState.Lost) with
        {
            LostReason = LostReason(reason, sb.Checkpoint?.Image is not null ? sb.Checkpoint.HibernatedAt : null),
        };
        try
        {
            _store.Save(rec);
        }
        catch (Exception e)
        {
            LogStoreFailed(sb.Id, e);
        }
        return rec;
    }

    /// <summary>Why a sandbox is lost, and what the client can do: resume its checkpoint if there is one, else start over.</summary>
    private static string LostReason(string why, DateTimeOffset? checkpointAt) => checkpointAt is { } at
        ? $"{why}; resume brings back its last hibernated state, from {at:u}"
        : $"{why}; delete it and create a new one";

    private static Dictionary<string, string> ReadMap(System.Text.Json.JsonElement h, string name) =>
        h.TryGetProperty(name, out var map)
            ? map.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "")
            : new Dictionary<string, string>();

    /// <summary>The bytes of a hibernated image's regular files, counted without following the links the sandbox left in its layers.</summary>
    private static long DiskUsage(string dir)
    {
        using var image = new LayerFiles(dir);
        return image.Entries().Where(e => e.Stat.Type == UnixFileType.RegularFile).Sum(e => e.Stat.Size);
    }

    // ---- resume -----------------------------------------------------------------------------

    /// <summary>
    /// The live sandbox for a call, resuming it first if it is paused or hibernated (and its
    /// previous state, returned so the reply can say so). Counts as activity for the idle policy.
    /// </summary>
    public async Task<(Sandbox Sandbox, string? ResumedFrom)> ActiveAsync(string id, CancellationToken ct)
    {
        if (_registry.TryGetLive(id, out var sb))
        {
            sb.Touch();
            if (sb.State is not (SandboxState.Paused or SandboxState.Hibernated)) return (sb, null);
        }
        else if (!_registry.IsFrozen(id))
        {
            throw new NotFoundException($"sandbox '{id}' not found (it may have been closed or have expired)");
        }
        var (live, reply) = await ResumeAsync(id, ct).ConfigureAwait(false);
        live.Touch();
        return (live, reply.ResumedFrom);
    }

    public async Task<(Sandbox Sandbox, LifecycleResponse Reply)> ResumeAsync(string id, CancellationToken ct)
    {
        var total = Stopwatch.StartNew();
        if (_registry.TryGetLive(id, out var live))
        {
            // Waits out a hibernate in progress (it holds this lock); then the sandbox is on disk, resumed below.
            await live.LifecycleLock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                if (live.State != SandboxState.Hibernated)
                {
                    var from = live.State == SandboxState.Paused ? SandboxState.Paused : null;
                    if (from is not null) Thaw(live);
                    live.Touch();
                    return (live, new LifecycleResponse { Id = id, State = live.State, ResumedFrom = from, TimingsMs = new() { ["total"] = Ms(total) } });
                }
            }
            finally
            {
                live.LifecycleLock.Release();
            }
        }

        var gate = _resumeGates.GetOrAdd(id, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            // A concurrent resume may have finished while this one waited.
            if (_registry.TryGetLive(id, out live) && live.State != SandboxState.Hibernated)
                return (live, new LifecycleResponse { Id = id, State = live.State, TimingsMs = new() { ["total"] = Ms(total) } });
            if (!_registry.TryGetFrozen(id, out var rec))
                throw new NotFoundException($"sandbox '{id}' not found (it may have been closed or have expired)");
            if (rec.Image is null || rec.ImageUidBase is null)
                throw new ConflictException($"sandbox '{id}' is lost ({rec.LostReason}) and has no hibernated state to resume from", "lost");
            if (!_templates.TryGet(rec.Template, out var template))
                throw new ConflictException($"sandbox '{id}' was made from template '{rec.Template}', which no longer exists; it cannot be resumed", "template_gone");
            var step = Stopwatch.StartNew();
            var egress = rec.Network == NetworkModes.Egress;
            var sb = await SpawnAsync(template, new SandboxLimits(rec.MemoryMb, rec.Cpus, rec.Pids), null, ct, rec, egress).ConfigureAwait(false);
            var timings = new Dictionary<string, double>(sb.TimingsMs);
            var notRestored = new Dictionary<string, string>(rec.NotSaved ?? new());
            List<string> restored = [], modules = [];
            try
            {
                var callId = sb.Agent.NextCallId();
                using var answer = await RoundTripAsync(sb, AgentFrame.Encode(w =>
                {
                    w.WriteString("op", "restore");
                    w.WriteNumber("id", callId);
                    w.WriteString("path", StateDirInSandbox);
                }, default), HibernateCallTimeout, "a resume").ConfigureAwait(false);
                if (answer.Event == "ok")
                {
                    restored = answer.Header.GetProperty("restored").EnumerateArray().Select(e => e.GetString()!).ToList();
                    modules = answer.Header.GetProperty("modules").EnumerateArray().Select(e => e.GetString()!).ToList();
                    foreach (var (k, v) in ReadMap(answer.Header, "not_restored")) notRestored[k] = v;
                }
                else
                {
                    // The files are back; the globals are not. Say so rather than refuse the files too.
                    notRestored["(globals)"] = answer.Header.TryGetProperty("message", out var m) ? m.GetString() ?? "" : "the agent could not restore them";
                }
                EnsureUsable(sb);
                // Its /etc/hosts pins came back with its files.
                if (egress) await AdmitAsync(sb, await _network.ResolveAsync(rec.NetworkPolicy, ct).ConfigureAwait(false) with { HostsLines = [] }, ct).ConfigureAwait(false);
            }
            catch
            {
                _registry.ForgetPid(sb.Pid);
                await DestroyAsync(sb).ConfigureAwait(false);
                throw;
            }
            timings["restore_state"] = Lap(step);
            sb.Adopt(rec);
            sb.Touch();
            _registry.Thaw(sb);
            Save(sb);
            timings["total"] = Ms(total);
            _metrics.ResumeSeconds.Observe(total.Elapsed.TotalSeconds);
            LogResumed(id, rec.State, restored.Count, notRestored.Count, total.Elapsed.TotalMilliseconds);
            return (sb, new LifecycleResponse
            {
                Id = id, State = sb.State, ResumedFrom = rec.State, Restored = restored, NotRestored = notRestored,
                Modules = modules, TimingsMs = timings,
            });
        }
        finally
        {
            gate.Release();
            if (gate.CurrentCount == 1) _resumeGates.TryRemove(new KeyValuePair<string, SemaphoreSlim>(id, gate));
        }
    }

    // ---- idle policy ------------------------------------------------------------------------

    /// <summary>Once a second: carries out what <see cref="IdlePolicy"/> decides for the live Spaces.</summary>
    public void ApplyIdlePolicy()
    {
        var candidates = _registry.Live.Where(s => s.Persistent && !s.IsDead).Select(s => new IdleCandidate(s.Id, s.State, s.LastActive,
            TimeSpan.FromSeconds(s.IdleTimeoutS ?? _options.PauseAfterS), TimeSpan.FromSeconds(s.HibernateAfterS ?? _options.HibernateAfterS), HasLiveForks(s)));
        var pressureBusy = !_pressure.IsCompleted;
        // /proc/meminfo is read only when its answer can lead to an action.
        var free = _options.MemoryPressurePercent > 0 && !pressureBusy ? ProcFs.MemoryAvailablePercent() : null;
        foreach (var action in IdlePolicy.Decide(candidates, TimeProvider.System, free, _options.MemoryPressurePercent, pressureBusy))
        {
            if (!_registry.TryGetLive(action.Id, out var sb)) continue;
            var task = PolicyAsync(sb, () => sb.IdleFor >= action.IdleAtLeast && (action.Hibernate || sb.State == SandboxState.Ready), action.Hibernate, action.Why);
            if (action.Pressure) _pressure = task;
            Track(task);
        }
    }

    private async Task PolicyAsync(Sandbox sb, Func<bool> stillDue, bool hibernate, string why)
    {
        if (!sb.LifecycleLock.Wait(0)) return;
        try
        {
            if (!sb.Agent.CallLock.Wait(0)) return;
            if (!stillDue() || sb.IsDead || !_registry.IsLive(sb.Id) || (hibernate && HasLiveForks(sb)))
            {
                sb.Agent.CallLock.Release();
                return;
            }
            if (hibernate)
            {
                await HibernateLockedAsync(sb, why).ConfigureAwait(false);
            }
            else
            {
                try
                {
                    Freeze(sb, why);
                }
                finally
                {
                    sb.Agent.CallLock.Release();
                }
            }
        }
        catch (Exception e)
        {
            LogPolicyFailed(sb.Id, hibernate ? "hibernate" : "pause", e);
        }
        finally
        {
            sb.LifecycleLock.Release();
        }
    }

    // ---- shutdown ---------------------------------------------------------------------------

    /// <summary>At a clean stop: hibernates the persistent sandboxes that run, so none is lost.</summary>
    private async Task HibernateAllForShutdownAsync()
    {
        foreach (var sb in _registry.Live.Where(s => s.Persistent && !s.IsDead).ToList())
        {
            try
            {
                if (!await sb.LifecycleLock.WaitAsync(KillWait).ConfigureAwait(false)) continue;
                try
                {
                    if (HasLiveForks(sb) || !await sb.Agent.CallLock.WaitAsync(KillWait).ConfigureAwait(false)) continue;
                    await HibernateLockedAsync(sb, "the server is stopping").ConfigureAwait(false);
                }
                finally
                {
                    sb.LifecycleLock.Release();
                }
            }
            catch (Exception e)
            {
                LogPolicyFailed(sb.Id, "hibernate at shutdown", e);
            }
        }
    }

    /// <summary>Test hook: FORKBOX_FAULT=POINT makes the server kill itself (SIGKILL) at that point, to prove crash safety.</summary>
    private void Fault(string point)
    {
        if (_fault != point) return;
        LogFault(point);
        Processes.Signal(Environment.ProcessId, Processes.SIGKILL);
        Thread.Sleep(Timeout.Infinite);
    }

    private static double Ms(Stopwatch sw) => Math.Round(sw.Elapsed.TotalMilliseconds, 3);

    [LoggerMessage(EventId = 3201, Level = LogLevel.Information, Message = "sandbox {SandboxId} paused: {Why}")]
    private partial void LogPaused(string sandboxId, string why);

    [LoggerMessage(EventId = 3202, Level = LogLevel.Information, Message = "sandbox {SandboxId} thawed")]
    private partial void LogThawed(string sandboxId);

    [LoggerMessage(EventId = 3203, Level = LogLevel.Information, Message = "sandbox {SandboxId} hibernated ({Why}): {Bytes} bytes on disk, {Memory} bytes of memory freed, in {Ms:F1} ms")]
    private partial void LogHibernated(string sandboxId, string why, long bytes, long memory, double ms);

    [LoggerMessage(EventId = 3204, Level = LogLevel.Error, Message = "sandbox {SandboxId}: {Reason}")]
    private partial void LogHibernateFailed(string sandboxId, string reason);

    [LoggerMessage(EventId = 3205, Level = LogLevel.Information, Message = "sandbox {SandboxId} resumed from {From}: {Restored} globals restored, {NotRestored} not, in {Ms:F1} ms")]
    private partial void LogResumed(string sandboxId, string from, int restored, int notRestored, double ms);

    [LoggerMessage(EventId = 3206, Level = LogLevel.Warning, Message = "sandbox {SandboxId}: idle policy could not {Action}")]
    private partial void LogPolicyFailed(string sandboxId, string action, Exception error);

    [LoggerMessage(EventId = 3207, Level = LogLevel.Warning, Message = "sandbox {SandboxId}: its record could not be written")]
    private partial void LogStoreFailed(string sandboxId, Exception error);

    [LoggerMessage(EventId = 3208, Level = LogLevel.Warning, Message = "records of an earlier run: {Hibernated} hibernated sandboxes resumable, {Lost} lost")]
    private partial void LogRecovered(int hibernated, int lost);

    [LoggerMessage(EventId = 3209, Level = LogLevel.Critical, Message = "FORKBOX_FAULT={Point}: killing this server now (crash test)")]
    private partial void LogFault(string point);
}
