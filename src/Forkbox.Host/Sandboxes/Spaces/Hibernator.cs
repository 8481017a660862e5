using System.Diagnostics;
using System.Globalization;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Linux;
using Forkbox.Linux.Storage;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Hibernate: the agent pickles the REPL's globals into a file in the sandbox's writable layer, the
/// processes are killed, the writable layers are renamed into DATA/sandboxes/.spaces/ID/gN and
/// synced to disk, and only then is the record committed (durably) as hibernated: a crash before
/// that leaves the previous record and image as they were.
/// </summary>
public sealed partial class Hibernator(SandboxRegistry registry, SandboxRecords records, SandboxFactory factory, SandboxCalls calls,
    BackgroundWork background, HostMetrics metrics, ILogger<Hibernator> log)
{
    /// <summary>Where, inside the sandbox, the agent writes its pickled state on hibernate (it is removed on resume).</summary>
    public const string StateDirInSandbox = "/.forkbox-hibernate";

    public static readonly TimeSpan CallTimeout = TimeSpan.FromMinutes(10);

    private readonly ILogger _log = log;
    private readonly string? _fault = Environment.GetEnvironmentVariable("FORKBOX_FAULT");

    /// <summary>
    /// Hibernates a sandbox whose lifecycle lock and call lock the caller holds (the call lock is
    /// released here). If the agent cannot save its state, the sandbox keeps running and the error
    /// is returned; once its processes are killed there is no way back, so a failure after that
    /// point leaves it lost, with its previous saved state, if it had one, still resumable.
    /// </summary>
    public async Task<LifecycleResponse> HibernateLockedAsync(Sandbox sb, string why)
    {
        var total = Stopwatch.StartNew();
        var step = Stopwatch.StartNew();
        var timings = new Dictionary<string, double>();
        var id = sb.Id;
        LifecycleResponse reply;
        try
        {
            calls.EnsureUsable(sb); // thaws a paused one: the agent must run to save its state
            var memory = sb.Cgroup.MemoryBytes();
            var answer = await calls.RoundTripAsync(sb, (agent, t) => agent.HibernateAsync(StateDirInSandbox, t), CallTimeout, "a hibernate")
                .ConfigureAwait(false);
            if (answer.Ok is not { } h)
            {
                var message = answer.Fail?.Message ?? "unknown error";
                if (answer.Code == AgentErrorCodes.NoSpace)
                    throw new InsufficientStorageException($"cannot hibernate sandbox '{id}': its disk is full while saving its state ({message}); free some space in it");
                throw new ExecutorException($"cannot hibernate sandbox '{id}': its agent could not save its state: {message}");
            }
            var notSaved = new Dictionary<string, string>(h.NotSaved ?? new Dictionary<string, string>());
            foreach (var t in h.Threads) notSaved[$"thread {t}"] = "threads do not survive hibernation";
            foreach (var proc in h.Processes) notSaved[$"process {proc}"] = "background processes do not survive hibernation";
            reply = new LifecycleResponse
            {
                Id = id,
                State = SandboxState.Hibernated,
                Saved = h.Saved.ToList(),
                NotRestored = notSaved,
                Modules = h.Modules.ToList(),
                MemoryFreedBytes = memory,
            };
            timings["save_state"] = Timings.Lap(step);
            Fault("hibernate.saved");
        }
        finally
        {
            sb.Agent.CallLock.Release();
        }

        // From here the sandbox stops. It stays listed (as hibernated) until its record is committed;
        // a call that finds it meanwhile waits for its lifecycle lock, which this holds, then resumes it.
        registry.ForgetPid(sb.Pid);
        sb.MoveTo(SandboxState.Hibernated);
        sb.Agent.Abort();
        var previous = sb.Checkpoint;
        var gen = "g" + ((previous?.Image is { } p && int.TryParse(p.AsSpan(1), CultureInfo.InvariantCulture, out var n) ? n : 0) + 1)
            .ToString(CultureInfo.InvariantCulture);
        var image = Path.Combine(records.SpacesDir(id), gen);
        try
        {
            sb.Cgroup.KillAll(SandboxFactory.KillWait);
            sb.Cgroup.Delete();
            timings["stop"] = Timings.Lap(step);
            MoveLayers(sb, image);
            var bytes = DiskUsage(image);
            timings["move_layers"] = Timings.Lap(step);
            Fault("hibernate.moved");
            Durability.SyncFilesystem(image);
            timings["sync"] = Timings.Lap(step);
            var rec = sb.ToRecord(SandboxState.Hibernated) with
            {
                Image = gen,
                ImageBytes = bytes,
                ImageUidBase = sb.Slot.UidBase,
                HibernatedAt = DateTimeOffset.UtcNow,
                NotSaved = reply.NotRestored,
            };
            records.Store.Save(rec, durable: true);
            timings["commit"] = Timings.Lap(step);
            Fault("hibernate.committed");
            registry.Freeze(sb, rec);
            if (previous?.Image is { } old) background.Track(factory.Parts.Layers.RemoveAsync(new SandboxLayerDirs(Path.Combine(records.SpacesDir(id), old), "", [])));
            reply = reply with { Bytes = bytes };
        }
        catch (Exception e)
        {
            var lost = records.MarkLost(sb, $"hibernate failed after its processes were stopped: {e.Message}");
            registry.Freeze(sb, lost);
            LogHibernateFailed(id, lost.LostReason!);
            Release();
            throw new ExecutorException($"cannot hibernate sandbox '{id}': {lost.LostReason}", e);
        }
        Release();
        timings["total"] = Timings.Ms(total);
        metrics.HibernateSeconds.Observe(total.Elapsed.TotalSeconds);
        LogHibernated(id, why, reply.Bytes ?? 0, reply.MemoryFreedBytes ?? 0, total.Elapsed.TotalMilliseconds);
        return reply with { TimingsMs = timings };

        void Release() => factory.ReleaseStopped(sb);
    }

    /// <summary>
    /// Renames a stopped sandbox's writable layers into <paramref name="image"/> (upper0, upper1, …),
    /// which a resume (or a restart) copies into a new sandbox's layers. Renames, not copies: the
    /// sandbox's processes must be gone.
    /// </summary>
    public static void MoveLayers(Sandbox sb, string image)
    {
        LayerFiles.DeleteTree(image); // left by a hibernate cut short
        Directory.CreateDirectory(image);
        for (var i = 0; i < sb.Dirs.Layers.Count; i++)
            Directory.Move(sb.Dirs.Layers[i].Upper, Path.Combine(image, $"upper{i}"));
    }

    /// <summary>Undoes <see cref="MoveLayers"/>: the layers go back where the sandbox had them (its files stay readable there).</summary>
    public static void MoveLayersBack(Sandbox sb, string image)
    {
        for (var i = 0; i < sb.Dirs.Layers.Count; i++)
        {
            var saved = Path.Combine(image, $"upper{i}");
            if (Directory.Exists(saved) && !Directory.Exists(sb.Dirs.Layers[i].Upper)) Directory.Move(saved, sb.Dirs.Layers[i].Upper);
        }
    }

    /// <summary>The bytes of a hibernated image's regular files, counted without following the links the sandbox left in its layers.</summary>
    private static long DiskUsage(string dir)
    {
        using var image = new LayerFiles(dir);
        return image.Entries().Where(e => e.Stat.Type == UnixFileType.RegularFile).Sum(e => e.Stat.Size);
    }

    /// <summary>Test hook: FORKBOX_FAULT=POINT makes the server kill itself (SIGKILL) at that point, to prove crash safety.</summary>
    private void Fault(string point)
    {
        if (_fault != point) return;
        LogFault(point);
        Processes.Signal(Environment.ProcessId, Processes.SIGKILL);
        Thread.Sleep(Timeout.Infinite);
    }

    [LoggerMessage(EventId = 3203, Level = LogLevel.Information, Message = "sandbox {SandboxId} hibernated ({Why}): {Bytes} bytes on disk, {Memory} bytes of memory freed, in {Ms:F1} ms")]
    private partial void LogHibernated(string sandboxId, string why, long bytes, long memory, double ms);

    [LoggerMessage(EventId = 3204, Level = LogLevel.Error, Message = "sandbox {SandboxId}: {Reason}")]
    private partial void LogHibernateFailed(string sandboxId, string reason);

    [LoggerMessage(EventId = 3209, Level = LogLevel.Critical, Message = "FORKBOX_FAULT={Point}: killing this server now (crash test)")]
    private partial void LogFault(string point);
}
