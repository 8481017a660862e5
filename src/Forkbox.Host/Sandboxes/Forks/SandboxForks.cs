using System.Diagnostics;
using System.Security.Cryptography;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Host.Networking;
using Forkbox.Host.Zygotes;
using Forkbox.Linux;
using Forkbox.Linux.Cgroups;
using Forkbox.Linux.Storage;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// fork(n), merge_into and diff.
///
/// A fork is made in three steps: the parent's agent forks itself (each fork ends up PID 1 of
/// fresh namespaces, waiting); hostd gives each fork a cgroup of its own, charged with the
/// parent's limits; the template's zygote snapshots the parent's writable layers and gives each
/// fork its root and its control socket (forkbox_agent/graft.py). The parent's call lock is held
/// throughout, so the parent changes nothing while its state is copied. The forks are listed only
/// once every one of them has said hello and has its network: a fork fails or succeeds whole.
/// Closing a sandbox whose forks live on retires it (see <see cref="RetiredSandboxes"/>).
/// </summary>
public sealed partial class SandboxForks(ServerOptions options, SandboxRegistry registry, SandboxRecords records, SandboxFactory factory,
    SandboxCalls calls, SandboxEgress egress, HostMetrics metrics, ILogger<SandboxForks> log)
{
    public const int MaxForks = 32;

    private readonly ILogger _log = log;

    public async Task<IReadOnlyList<Sandbox>> ForkAsync(string parentId, int? count, CancellationToken ct)
    {
        var n = count ?? 1;
        if (n is < 1 or > MaxForks)
            throw new BadRequestException($"'n' must be between 1 and {MaxForks} (got {n})");
        var parent = registry.Get(parentId);
        calls.EnsureUsable(parent);
        if (!factory.TryReserve(n))
            throw new AtCapacityException($"this host has no room for {n} more sandbox(es) (maximum {options.Limits.MaxSandboxes}); close some or fork fewer");

        var total = Stopwatch.StartNew();
        var step = Stopwatch.StartNew();
        var timings = new Dictionary<string, double>();
        var made = new List<Forkling>(n);
        var held = new List<PidFd>(n);
        var parts = factory.Parts;
        var locked = false;
        try
        {
            locked = await parent.Agent.CallLock.WaitAsync(options.Forks.Wait, ct).ConfigureAwait(false);
            if (!locked)
                throw new ConflictException(
                    $"sandbox '{parentId}' is still running a call after {options.Forks.Wait.TotalSeconds:g} s; fork waits that long for the call to end, then gives up. Retry when it is done",
                    "sandbox_busy");
            calls.EnsureUsable(parent);
            timings["wait_idle"] = Timings.Lap(step);

            var childPids = await AgentForkAsync(parent, n).ConfigureAwait(false);
            timings["agent_fork"] = Timings.Lap(step);
            foreach (var pid in await HostPidsAsync(parent.Pid, childPids).ConfigureAwait(false))
                held.Add(HoldFork(parent, pid));
            timings["pids"] = Timings.Lap(step);

            foreach (var fork in held)
            {
                var id = SandboxId.New(options.Cluster.HostId);
                var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
                var cgroup = parts.Cgroups.Create(id, parent.Limits);
                var forkling = new Forkling(id, token, fork.Pid, cgroup, parts.Layers.CreateFork(id, parent.Template), parts.Listener.Expect(id, token));
                made.Add(forkling);
                cgroup.Attach(fork.Pid);
                // Written by pid: had the fork exited since it was checked, that pid could be another
                // process's by now. It has not if the process held is still alive.
                if (!fork.IsAlive) throw new ExecutorException($"fork {fork.Pid} of sandbox '{parentId}' exited during set-up");
            }
            timings["cgroups"] = Timings.Lap(step);

            var zygote = await factory.GetZygoteAsync(parent.Template, ct).ConfigureAwait(false);
            var graft = await zygote.GraftAsync(new GraftSpec("graft-" + made[0].Id, parts.Layers.Strategy, parts.Listener.Path,
                parent.Template, parent.Dirs, options.Limits.TmpSizeMb, parent.Slot.Path,
                made.Select(f => new GraftChild(f.Id, f.Token, f.Pid, f.Dirs)).ToList()), ct).ConfigureAwait(false);
            if (!graft.Ok)
                throw new ExecutorException($"fork failed while giving the forks their own root: {graft.Error}");
            timings["graft"] = Timings.Lap(step);
            foreach (var (name, ms) in graft.Steps!) timings["graft." + name] = ms;
        }
        catch (Exception e)
        {
            foreach (var fork in held) fork.Kill();
            foreach (var f in made) factory.Abandon(f.Id, f.Cgroup, f.Dirs);
            factory.Unreserve(n);
            LogForkFailed(parentId, e.Message);
            if (e is ForkboxException or OperationCanceledException) throw;
            throw new ExecutorException($"fork failed: {e.Message}", e);
        }
        finally
        {
            if (locked) parent.Agent.CallLock.Release();
            foreach (var fork in held) fork.Dispose();
        }

        var children = new List<Sandbox>(n);
        try
        {
            foreach (var f in made)
            {
                var agent = await f.Hello.WaitAsync(TimeSpan.FromSeconds(10), ct).ConfigureAwait(false);
                children.Add(NewFork(parent, f, agent, timings));
            }
        }
        catch (Exception e)
        {
            foreach (var f in made.Skip(children.Count)) factory.Abandon(f.Id, f.Cgroup, f.Dirs);
            factory.Unreserve(n - children.Count);
            foreach (var child in children) _ = factory.DestroyAsync(child);
            LogForkFailed(parentId, e.Message);
            throw new ExecutorException($"fork failed: a fork did not connect back: {e.Message}", e);
        }
        timings["hello"] = Timings.Lap(step);
        try
        {
            await egress.AttachForksAsync(parent, children, ct).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            foreach (var child in children) _ = factory.DestroyAsync(child);
            LogForkFailed(parentId, e.Message);
            if (e is ForkboxException) throw;
            throw new ExecutorException($"fork failed: the forks' network could not be set up: {e.Message}", e);
        }
        if (parent.NetworkMode == NetworkModes.Egress) timings["network"] = Timings.Lap(step);
        foreach (var child in children)
        {
            records.Save(child);
            registry.AddLive(child);
        }
        timings["total"] = Timings.Ms(total);
        metrics.ForkSeconds.Observe(total.Elapsed.TotalSeconds);
        LogForked(parentId, n, total.Elapsed.TotalMilliseconds);
        return children;
    }

    private sealed record Forkling(string Id, string Token, int Pid, ICgroup Cgroup, SandboxLayerDirs Dirs, Task<AgentConnection> Hello);

    /// <summary>A fork as a sandbox of its parent's family (its uid range, its children list); not yet listed.</summary>
    private Sandbox NewFork(Sandbox parent, Forkling f, AgentConnection agent, Dictionary<string, double> timings)
    {
        var now = DateTimeOffset.UtcNow;
        var child = new Sandbox
        {
            Id = f.Id, Template = parent.Template, Limits = parent.Limits, CreatedAt = now,
            // A fork of a persistent sandbox is not persistent: it gets the default timeout.
            ExpiresAt = parent.Persistent ? now.AddSeconds(options.Limits.DefaultTimeoutS) : now + (parent.ExpiresAt - parent.CreatedAt),
            Metadata = new(parent.Metadata),
            Pid = f.Pid, Agent = agent, Cgroup = f.Cgroup, Slot = parent.Slot, Dirs = f.Dirs,
            TimingsMs = timings, Parent = parent, ForkedFrom = parent.Id, Owner = parent.Owner, DiskMb = parent.DiskMb,
        };
        child.Touch();
        factory.ShareSlot(parent.Slot);
        lock (parent.Children) parent.Children.Add(child);
        return child;
    }

    /// <summary>
    /// Asks the parent's agent to fork; returns the forks' pids as the parent's PID namespace sees
    /// them. Not cancelled by the client (see <see cref="SandboxCalls.RoundTripAsync"/>).
    /// </summary>
    private async Task<List<int>> AgentForkAsync(Sandbox parent, int n)
    {
        var answer = await calls.RoundTripAsync(parent, (agent, t) => agent.ForkAsync(n, t), TimeSpan.FromSeconds(60), "a fork").ConfigureAwait(false);
        if (!answer.IsOk)
            throw new ExecutorException(answer.Fail?.Message ?? "fork failed");
        return ForkPids(parent.Id, answer.Ok!.Pids, n);
    }

    /// <summary>
    /// The pids a fork answer names, checked: exactly <paramref name="n"/> of them, distinct, none
    /// the agent's own. Anything else is a hostile or broken agent (user code runs in its process),
    /// and the fork fails; the processes it made stay in the parent's cgroup, charged to it, and
    /// exit when no root is handed to them.
    /// </summary>
    internal static List<int> ForkPids(string parentId, System.Text.Json.JsonElement list, int n)
    {
        var pids = new List<int>(n);
        if (list.ValueKind == System.Text.Json.JsonValueKind.Array)
            foreach (var p in list.EnumerateArray())
            {
                if (p.ValueKind != System.Text.Json.JsonValueKind.Number || !p.TryGetInt32(out var pid) || pid <= 1 || pids.Contains(pid) || pids.Count == n)
                    throw new ExecutorException($"the agent of sandbox '{parentId}' answered a fork of {n} with {list.GetArrayLength()} pid(s) that are not {n} distinct forks; nothing was forked");
                pids.Add(pid);
            }
        if (pids.Count != n)
            throw new ExecutorException($"the agent of sandbox '{parentId}' answered a fork of {n} with {pids.Count} pid(s); nothing was forked");
        return pids;
    }

    /// <summary>
    /// A pidfd on a fork's PID 1, once it is shown to be one of the parent's forks: in the parent's
    /// user namespace and PID 1 of a PID namespace of its own. From here on the fork is acted on
    /// through the pidfd, or by pid only while the pidfd shows it alive.
    /// </summary>
    private static PidFd HoldFork(Sandbox parent, int pid)
    {
        var fork = PidFd.TryOpen(pid) ?? throw new ExecutorException($"fork {pid} of sandbox '{parent.Id}' exited during set-up");
        if (fork.IsForkIn(parent.Slot.Path)) return fork;
        fork.Dispose();
        throw new ExecutorException($"process {pid}, named as a fork by the agent of sandbox '{parent.Id}', is not one of its forks");
    }

    /// <summary>
    /// Host pids of the forks, from the pids the parent's agent saw. Each fork is a child of an
    /// intermediate process the agent forked, or of the agent itself once that process has
    /// exited; its NSpid line lists its pid in every namespace from the host's down, the
    /// parent's among them. The kernel's children lists can miss a process that is being
    /// reparented while they are read (the intermediates exit as this runs), so a fork not found
    /// is looked for again, for up to a second, before it counts as gone.
    /// </summary>
    private static async Task<List<int>> HostPidsAsync(int parentAgent, IReadOnlyList<int> pidsInParent)
    {
        var level = ProcFs.NsPids(parentAgent).Length - 1;
        var byInnerPid = new Dictionary<int, int>();
        for (var waited = Stopwatch.StartNew(); ; await Task.Delay(1).ConfigureAwait(false))
        {
            foreach (var child in ProcFs.Children(parentAgent))
                foreach (var host in ProcFs.Children(child).Prepend(child))
                {
                    try
                    {
                        var ns = ProcFs.NsPids(host);
                        if (ns.Length > level) byInnerPid[ns[level]] = host;
                    }
                    catch (IOException)
                    {
                        // an earlier fork or intermediate process that is exiting now
                    }
                }
            if (pidsInParent.All(byInnerPid.ContainsKey)) return pidsInParent.Select(p => byInnerPid[p]).ToList();
            if (waited.Elapsed > TimeSpan.FromSeconds(1))
                throw new ExecutorException(
                    $"fork {pidsInParent.First(p => !byInnerPid.ContainsKey(p))} is not a descendant of the sandbox's agent; it exited during set-up");
        }
    }

    // ---- merge_into ----------------------------------------------------------------------------

    /// <summary>
    /// The winner (a fork of the target, or a fork of one of its forks) takes over the target's id
    /// with its own REPL, files and limits; the target's former sandbox is closed and the winner's
    /// own id is retired. The target's other forks are untouched.
    /// </summary>
    public Task MergeIntoAsync(string targetId, string winnerId)
    {
        if (targetId == winnerId)
            throw new BadRequestException($"cannot merge sandbox '{targetId}' into itself; name one of its forks as the winner");
        var target = registry.Get(targetId);
        var winner = registry.Get(winnerId);
        if (!IsDescendant(winner, target))
            throw new BadRequestException($"sandbox '{winnerId}' is not a fork of '{targetId}' or of one of its forks; merge_into only takes a descendant of the target");
        calls.EnsureUsable(winner);
        if (!registry.TryMerge(target, winner, () =>
            {
                winner.Id = targetId;
                winner.Adopt(target.ToRecord());
            }))
            throw new NotFoundException($"sandbox '{winnerId}' or '{targetId}' was closed or merged meanwhile");
        records.Forget(winnerId, winner.Owner, null);
        records.Save(winner);
        LogMerged(winnerId, targetId);
        return factory.DestroyAsync(target);
    }

    private static bool IsDescendant(Sandbox sb, Sandbox ancestor)
    {
        for (var p = sb.Parent; p is not null; p = p.Parent)
            if (ReferenceEquals(p, ancestor)) return true;
        return false;
    }

    // ---- diff ---------------------------------------------------------------------------------

    /// <summary>
    /// What differs between the files of <paramref name="aId"/> and <paramref name="bId"/> under
    /// <paramref name="paths"/> (comma-separated; /root and /tmp when absent), read from their
    /// copy-on-write layers on the host: only what either upper layer holds is looked at.
    /// </summary>
    public DiffResponse Diff(string aId, string bId, string? paths)
    {
        var a = registry.Get(aId);
        var b = registry.Get(bId);
        var list = (string.IsNullOrWhiteSpace(paths) ? "/root,/tmp" : paths)
            .Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(p => Validate.SandboxPath(p, "paths")).ToList();
        if (list.Count == 0) throw new BadRequestException("'paths' names no path; give absolute paths separated by commas, e.g. /root,/tmp");
        if (a.Template.Name != b.Template.Name)
            throw new BadRequestException($"'{aId}' runs template '{a.Template.Name}' and '{bId}' runs '{b.Template.Name}'; diff compares sandboxes of one template");
        var (added, removed, changed) = (new List<string>(), new List<string>(), new List<string>());
        for (var i = 0; i < a.Template.Layers.Count; i++)
        {
            var layer = a.Template.Layers[i];
            string[] Stack(Sandbox sb) => [sb.Dirs.Layers[i].Upper, .. layer.LowerDir.Split(':')];
            var r = LayerDiff.Compare(Stack(a), Stack(b), list, layer.Target);
            added.AddRange(r.Added);
            removed.AddRange(r.Removed);
            changed.AddRange(r.Changed);
        }
        return new DiffResponse(added.Order(StringComparer.Ordinal).ToList(), removed.Order(StringComparer.Ordinal).ToList(),
            changed.Order(StringComparer.Ordinal).ToList());
    }

    [LoggerMessage(EventId = 3101, Level = LogLevel.Information, Message = "sandbox {SandboxId} forked {Count} way(s) in {Ms:F2} ms")]
    private partial void LogForked(string sandboxId, int count, double ms);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Warning, Message = "sandbox {SandboxId}: fork failed: {Error}")]
    private partial void LogForkFailed(string sandboxId, string error);

    [LoggerMessage(EventId = 3103, Level = LogLevel.Information, Message = "sandbox {Winner} merged into {Target}: it answers to that id from now on; its former sandbox is closed")]
    private partial void LogMerged(string winner, string target);
}
