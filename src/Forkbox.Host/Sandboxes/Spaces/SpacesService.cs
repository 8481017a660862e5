using System.Collections.Concurrent;
using System.Diagnostics;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Host.Networking;
using Forkbox.Host.Templates;
using Forkbox.Core.Templates;
using Forkbox.Linux;
using Forkbox.Linux.Storage;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Spaces: persistent, named sandboxes that freeze when idle and survive a restart of hostd.
///
/// Two frozen levels. Paused: the cgroup freezer stops every process; memory stays; thawing takes
/// a millisecond. Hibernated: see <see cref="Hibernator"/>. Resume copies the image into a new
/// sandbox's layers (the image stays, as the id's checkpoint, until the next hibernate replaces
/// it), spawns a fresh agent from the template's zygote, and has it restore the globals and
/// re-import the modules. When to pause and hibernate is <see cref="IdlePolicy"/>'s decision.
/// </summary>
public sealed partial class SpacesService(ServerOptions options, TemplateCatalog templates, SandboxRegistry registry, SandboxRecords records,
    SandboxFactory factory, SandboxCalls calls, SandboxEgress egress, Hibernator hibernator, BackgroundWork background, HostMetrics metrics,
    ILogger<SpacesService> log)
{
    /// <summary>Set on the reply of a call that had to resume its sandbox first: "paused" or "hibernated".</summary>
    public const string ResumedHeader = "X-Forkbox-Resumed";

    private readonly ILogger _log = log;
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _resumeGates = new(StringComparer.Ordinal);
    private Task _pressure = Task.CompletedTask;

    // ---- pause ------------------------------------------------------------------------------

    public async Task<LifecycleResponse> PauseAsync(string id, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        if (registry.TryGetFrozen(id, out var rec))
            throw new ConflictException($"sandbox '{id}' is {rec.State}, not running; only a running sandbox can be paused", "wrong_state");
        var sb = registry.Get(id);
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
                    calls.EnsureUsable(sb);
                    Freeze(sb, "requested by the client");
                }
                finally
                {
                    sb.Agent.CallLock.Release();
                }
            }
            return new LifecycleResponse { Id = id, State = sb.State, TimingsMs = new() { ["total"] = Timings.Ms(sw) } };
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
        records.Save(sb);
        LogPaused(sb.Id, why);
    }

    /// <summary>Takes the call lock, waiting for a running call up to Forks.WaitS; 409 sandbox_busy after that.</summary>
    private async Task WaitIdleAsync(Sandbox sb, string what, CancellationToken ct)
    {
        if (!await sb.Agent.CallLock.WaitAsync(options.Forks.Wait, ct).ConfigureAwait(false))
            throw new ConflictException(
                $"sandbox '{sb.Id}' is still running a call after {options.Forks.Wait.TotalSeconds:g} s; {what} waits that long for the call to end, then gives up. Retry when it is done",
                "sandbox_busy");
    }

    // ---- hibernate --------------------------------------------------------------------------

    public async Task<LifecycleResponse> HibernateAsync(string id, CancellationToken ct)
    {
        // Already frozen: hibernated is nothing to do; lost cannot be hibernated.
        LifecycleResponse Frozen(SandboxRecord? r) => r?.State == SandboxState.Hibernated
            ? new LifecycleResponse { Id = id, State = r.State, Bytes = r.ImageBytes }
            : throw new ConflictException($"sandbox '{id}' is lost ({r?.LostReason}); it cannot be hibernated", "wrong_state");
        if (registry.TryGetFrozen(id, out var rec)) return Frozen(rec);
        var sb = registry.Get(id);
        await sb.LifecycleLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (sb.State == SandboxState.Hibernated) return Frozen(registry.FrozenOrNull(id)); // by another request, just now
            // Forks just closed are still being released (their processes killed): that takes milliseconds.
            for (var waited = Stopwatch.StartNew(); RetiredSandboxes.HasLiveForks(sb) && ClosedForksOnly(sb) && waited.Elapsed < SandboxFactory.KillWait;)
                await Task.Delay(10, ct).ConfigureAwait(false);
            if (RetiredSandboxes.HasLiveForks(sb))
                throw new ConflictException(
                    $"sandbox '{id}' has live forks, which run inside its process tree; close them (or merge one into it) before hibernating it", "has_forks");
            await WaitIdleAsync(sb, "hibernate", ct).ConfigureAwait(false);
            return await hibernator.HibernateLockedAsync(sb, "requested by the client").ConfigureAwait(false);
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
    /// The live sandbox for a call, resuming it first if it is paused or hibernated (and its
    /// previous state, returned so the reply can say so). Counts as activity for the idle policy.
    /// </summary>
    public async Task<(Sandbox Sandbox, string? ResumedFrom)> ActiveAsync(string id, CancellationToken ct)
    {
        if (registry.TryGetLive(id, out var sb))
        {
            sb.Touch();
            if (sb.State is not (SandboxState.Paused or SandboxState.Hibernated)) return (sb, null);
        }
        else if (!registry.IsFrozen(id))
        {
            throw SandboxRegistry.NotFound(id);
        }
        var (live, reply) = await ResumeAsync(id, ct).ConfigureAwait(false);
        live.Touch();
        return (live, reply.ResumedFrom);
    }

    public async Task<(Sandbox Sandbox, LifecycleResponse Reply)> ResumeAsync(string id, CancellationToken ct)
    {
        var total = Stopwatch.StartNew();
        if (registry.TryGetLive(id, out var live))
        {
            // Waits out a hibernate in progress (it holds this lock); then the sandbox is on disk, resumed below.
            await live.LifecycleLock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                // Its processes are gone: resume cannot bring them back; restart starts new ones on its files.
                if (live.IsDead) throw SandboxLifecycle.Dead(live);
                if (live.State != SandboxState.Hibernated)
                {
                    var from = live.State == SandboxState.Paused ? SandboxState.Paused : null;
                    if (from is not null) calls.Thaw(live);
                    live.Touch();
                    return (live, new LifecycleResponse { Id = id, State = live.State, ResumedFrom = from, TimingsMs = new() { ["total"] = Timings.Ms(total) } });
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
            if (registry.TryGetLive(id, out live) && live.State != SandboxState.Hibernated)
                return (live, new LifecycleResponse { Id = id, State = live.State, TimingsMs = new() { ["total"] = Timings.Ms(total) } });
            if (!registry.TryGetFrozen(id, out var rec))
                throw SandboxRegistry.NotFound(id);
            if (rec.Image is null || rec.ImageUidBase is null)
                throw new ConflictException($"sandbox '{id}' is lost ({rec.LostReason}) and has no hibernated state to resume from", "lost");
            if (!templates.TryGet(rec.Template, out var template))
                throw new ConflictException($"sandbox '{id}' was made from template '{rec.Template}', which no longer exists; it cannot be resumed", "template_gone");
            var step = Stopwatch.StartNew();
            var notRestored = new Dictionary<string, string>(rec.NotSaved ?? new());
            List<string> restored = [], modules = [];
            var sb = await SpawnFromImageAsync(template, rec, new SandboxLimits(rec.MemoryMb, rec.Cpus, rec.Pids), null, async sb =>
            {
                var answer = await calls.RoundTripAsync(sb, (agent, t) => agent.RestoreAsync(Hibernator.StateDirInSandbox, t), Hibernator.CallTimeout,
                    "a resume").ConfigureAwait(false);
                if (answer.Ok is { } ok)
                {
                    restored = ok.Restored.ToList();
                    modules = ok.Modules.ToList();
                    foreach (var (k, v) in ok.NotRestored ?? new Dictionary<string, string>()) notRestored[k] = v;
                }
                else
                {
                    // The files are back; the globals are not. Say so rather than refuse the files too.
                    notRestored["(globals)"] = answer.Fail?.Message ?? "the agent could not restore them";
                }
            }, ct).ConfigureAwait(false);
            var timings = new Dictionary<string, double>(sb.TimingsMs);
            timings["restore_state"] = Timings.Lap(step);
            sb.Adopt(rec);
            sb.Touch();
            registry.Thaw(sb);
            records.Save(sb);
            timings["total"] = Timings.Ms(total);
            metrics.ResumeSeconds.Observe(total.Elapsed.TotalSeconds);
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

    /// <summary>
    /// A fresh agent from the template's zygote on the files saved in <paramref name="rec"/>'s image
    /// (copied into new layers, owned by the new uid range), with <paramref name="prepare"/> run in it
    /// first (a resume restores the globals), and let out again if it had egress: what resume and
    /// restart share. A sandbox that fails on the way is destroyed; the image stays.
    /// </summary>
    private async Task<Sandbox> SpawnFromImageAsync(TemplateDefinition template, SandboxRecord rec, SandboxLimits limits,
        Dictionary<string, string>? env, Func<Sandbox, Task>? prepare, CancellationToken ct)
    {
        var withEgress = rec.Network == NetworkModes.Egress;
        var sb = await factory.SpawnAsync(template, limits, env, ct, rec, withEgress).ConfigureAwait(false);
        try
        {
            if (prepare is not null) await prepare(sb).ConfigureAwait(false);
            calls.EnsureUsable(sb);
            // Its /etc/hosts pins came back with its files.
            if (withEgress) await egress.AdmitAsync(sb, await egress.Networking.ResolveAsync(rec.NetworkPolicy, ct).ConfigureAwait(false) with { HostsLines = [] }, ct).ConfigureAwait(false);
        }
        catch
        {
            registry.ForgetPid(sb.Pid);
            await factory.DestroyAsync(sb).ConfigureAwait(false);
            throw;
        }
        return sb;
    }

    // ---- restart ----------------------------------------------------------------------------

    /// <summary>
    /// POST /restart: a fresh interpreter on the same files, like a notebook's kernel restart. Works
    /// on a dead sandbox (out of memory, say) as on a live one. The processes are killed (a call
    /// running ends with the reason), the writable layers are moved aside as a hibernate moves them,
    /// and a new agent starts on them as a resume starts one, without the globals: variables,
    /// imports and background processes are gone, files stay. A hibernated sandbox is resumed first.
    /// </summary>
    public async Task<LifecycleResponse> RestartAsync(string id, CancellationToken ct)
    {
        var total = Stopwatch.StartNew();
        if (registry.TryGetFrozen(id, out var frozen))
        {
            if (frozen.State == SandboxState.Lost && frozen.Image is null)
                throw new ConflictException($"sandbox '{id}' is lost ({frozen.LostReason}); it has no files left to restart on", "lost");
            await ResumeAsync(id, ct).ConfigureAwait(false);
        }
        var old = registry.Get(id);
        await old.LifecycleLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (!registry.TryGetLive(id, out var current) || current != old || old.State == SandboxState.Hibernated)
                throw new ConflictException($"sandbox '{id}' was hibernated, merged or closed by another request meanwhile; retry", "wrong_state");
            if (RetiredSandboxes.HasLiveForks(old))
                throw new ConflictException(
                    $"sandbox '{id}' has live forks, which run inside its process tree; close them (or merge one into it) before restarting it", "has_forks");
            var timings = new Dictionary<string, double>();
            var step = Stopwatch.StartNew();
            var wasDead = old.IsDead;
            calls.MarkDead(old, $"its interpreter was restarted (POST /v1/sandboxes/{id}/restart) during this call: variables and processes are gone, files are kept");
            registry.ForgetPid(old.Pid);
            old.Agent.Abort();
            old.Cgroup.KillAll(SandboxFactory.KillWait);
            // A call that was running ends now that its channel is closed; none starts on a dead sandbox.
            if (!await old.Agent.CallLock.WaitAsync(SandboxFactory.KillWait, ct).ConfigureAwait(false))
                throw new ExecutorException($"sandbox '{id}': the call it was running did not end after its processes were killed; retry the restart");
            try
            {
                old.Cgroup.Delete();
                timings["stop"] = Timings.Lap(step);
                var image = "r" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4));
                var imageDir = Path.Combine(records.SpacesDir(id), image);
                Hibernator.MoveLayers(old, imageDir);
                timings["move_layers"] = Timings.Lap(step);
                Sandbox sb;
                try
                {
                    var rec = old.ToRecord(SandboxState.Ready) with { Image = image, ImageUidBase = old.Slot.UidBase };
                    sb = await SpawnFromImageAsync(old.Template, rec, old.Limits, old.Env, null, ct).ConfigureAwait(false);
                }
                catch
                {
                    // It stays dead, its files where GET files reads a dead sandbox's.
                    Hibernator.MoveLayersBack(old, imageDir);
                    LayerFiles.DeleteTree(imageDir);
                    throw;
                }
                foreach (var (k, v) in sb.TimingsMs) timings["spawn." + k] = v;
                background.Track(factory.Parts.Layers.RemoveAsync(new SandboxLayerDirs(imageDir, "", [])));
                sb.Adopt(old.ToRecord()); // its checkpoint, if it has one, stays its checkpoint
                sb.TimeoutS = old.TimeoutS;
                sb.Env = old.Env;
                sb.Touch();
                registry.Thaw(sb);
                records.Save(sb);
                factory.ReleaseStopped(old);
                timings["total"] = Timings.Ms(total);
                LogRestarted(id, wasDead ? "dead" : "live", total.Elapsed.TotalMilliseconds);
                return new LifecycleResponse { Id = id, State = sb.State, TimingsMs = timings };
            }
            finally
            {
                old.Agent.CallLock.Release();
            }
        }
        finally
        {
            old.LifecycleLock.Release();
        }
    }

    // ---- idle policy ------------------------------------------------------------------------

    /// <summary>Once a second: carries out what <see cref="IdlePolicy"/> decides for the live Spaces.</summary>
    public void ApplyIdlePolicy()
    {
        var candidates = registry.Live.Where(s => s.Persistent && !s.IsDead).Select(s => new IdleCandidate(s.Id, s.State, s.LastActive,
            TimeSpan.FromSeconds(s.IdleTimeoutS ?? options.Spaces.PauseAfterS), TimeSpan.FromSeconds(s.HibernateAfterS ?? options.Spaces.HibernateAfterS), RetiredSandboxes.HasLiveForks(s)));
        var pressureBusy = !_pressure.IsCompleted;
        // /proc/meminfo is read only when its answer can lead to an action.
        var free = options.Spaces.MemoryPressurePercent > 0 && !pressureBusy ? ProcFs.MemoryAvailablePercent() : null;
        foreach (var action in IdlePolicy.Decide(candidates, TimeProvider.System, free, options.Spaces.MemoryPressurePercent, pressureBusy))
        {
            if (!registry.TryGetLive(action.Id, out var sb)) continue;
            var task = PolicyAsync(sb, () => sb.IdleFor >= action.IdleAtLeast && (action.Hibernate || sb.State == SandboxState.Ready), action.Hibernate, action.Why);
            if (action.Pressure) _pressure = task;
            background.Track(task);
        }
    }

    private async Task PolicyAsync(Sandbox sb, Func<bool> stillDue, bool hibernate, string why)
    {
        if (!sb.LifecycleLock.Wait(0)) return;
        try
        {
            if (!sb.Agent.CallLock.Wait(0)) return;
            if (!stillDue() || sb.IsDead || !registry.IsLive(sb.Id) || (hibernate && RetiredSandboxes.HasLiveForks(sb)))
            {
                sb.Agent.CallLock.Release();
                return;
            }
            if (hibernate)
            {
                await hibernator.HibernateLockedAsync(sb, why).ConfigureAwait(false);
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

    /// <summary>
    /// At shutdown: hibernates one persistent sandbox, after the call it runs (if any) has ended.
    /// True when it is hibernated (by this or by a hibernate already under way); false when it
    /// cannot be (it is dead or deleted, or forks of it still run). <paramref name="waitingFor"/> is told
    /// what the sandbox is waiting for at each step, so that a shutdown that gives up on it can
    /// say why; <paramref name="deadline"/> ends the waits for its locks, not the agent's answer:
    /// the caller kills a sandbox whose agent does not answer, which ends that wait too.
    /// </summary>
    public async Task<bool> HibernateForShutdownAsync(Sandbox sb, Action<string> waitingFor, CancellationToken deadline)
    {
        waitingFor("a pause, hibernate or resume of it under way to finish");
        await sb.LifecycleLock.WaitAsync(deadline).ConfigureAwait(false);
        try
        {
            if (sb.State == SandboxState.Hibernated) return true;
            if (!registry.IsLive(sb.Id) || sb.IsDead || RetiredSandboxes.HasLiveForks(sb)) return false;
            waitingFor("its running call to end, to hibernate it");
            await sb.Agent.CallLock.WaitAsync(deadline).ConfigureAwait(false);
            waitingFor("its agent to save its state (hibernate)");
            await hibernator.HibernateLockedAsync(sb, "the server is stopping").ConfigureAwait(false);
            return true;
        }
        finally
        {
            sb.LifecycleLock.Release();
        }
    }

    [LoggerMessage(EventId = 3201, Level = LogLevel.Information, Message = "sandbox {SandboxId} paused: {Why}")]
    private partial void LogPaused(string sandboxId, string why);

    [LoggerMessage(EventId = 3205, Level = LogLevel.Information, Message = "sandbox {SandboxId} resumed from {From}: {Restored} globals restored, {NotRestored} not, in {Ms:F1} ms")]
    private partial void LogResumed(string sandboxId, string from, int restored, int notRestored, double ms);

    [LoggerMessage(EventId = 3210, Level = LogLevel.Information, Message = "sandbox {SandboxId} restarted ({Was}): a fresh agent on its files in {Ms:F1} ms")]
    private partial void LogRestarted(string sandboxId, string was, double ms);

    [LoggerMessage(EventId = 3206, Level = LogLevel.Warning, Message = "sandbox {SandboxId}: idle policy could not {Action}")]
    private partial void LogPolicyFailed(string sandboxId, string action, Exception error);
}
