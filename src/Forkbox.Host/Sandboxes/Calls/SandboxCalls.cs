using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Linux;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Calls into a sandbox's agent: exec (streamed), file calls (one request, one answer), and the
/// round trip the other services use. One call at a time per sandbox, under its call lock; an
/// agent that loses its channel, overruns a timeout or sends an oversized frame is killed, since
/// a request without its answer read would leave the channel out of step.
/// </summary>
public sealed partial class SandboxCalls(ServerOptions options, SandboxRecords records, HostMetrics metrics, bool diskQuotaEnforced,
    ILogger<SandboxCalls> log)
{
    // How long past a call's own timeout hostd waits for the agent before it kills the sandbox:
    // the agent enforces the timeout itself, so this only fires if user code swallowed it.
    private static readonly TimeSpan AgentGrace = TimeSpan.FromSeconds(5);

    private readonly ILogger _log = log;

    // One delegate for every exec: registering it on the client's token allocates no closure.
    private Action<object?>? _interruptOnDisconnect;
    private Action<object?> InterruptOnDisconnect => _interruptOnDisconnect ??= sb => Interrupt((Sandbox)sb!, "its client closed the exec stream");

    /// <summary>
    /// Called before a call and again under its call lock: a dead sandbox is refused; a paused one
    /// (paused while the call waited for the lock) is thawed; a hibernated one was hibernated by a
    /// concurrent request, and the caller is told to retry, which resumes it.
    /// </summary>
    public void EnsureUsable(Sandbox sb)
    {
        if (sb.IsDead) throw SandboxLifecycle.Dead(sb);
        if (sb.State == SandboxState.Hibernated)
            throw new ConflictException($"sandbox '{sb.Id}' was hibernated by another request while this call waited; retry the call, which resumes it", "wrong_state");
        if (sb.State == SandboxState.Paused && sb.Agent.CallLock.CurrentCount == 0) Thaw(sb);
        sb.Touch();
    }

    /// <summary>Lets a paused sandbox's processes run again.</summary>
    public void Thaw(Sandbox sb)
    {
        sb.Cgroup.Freeze(false);
        sb.MoveTo(SandboxState.Ready);
        records.Save(sb);
        LogThawed(sb.Id);
    }

    /// <summary>
    /// Runs code and streams its events to <paramref name="sink"/>. If the client goes away the call
    /// is interrupted (unless it asked to run on) and read to its end, since the agent's frames
    /// must be read to keep the channel in step; its output is dropped.
    /// </summary>
    public async Task ExecAsync(Sandbox sb, ExecRequest req, IExecSink sink, CancellationToken clientGone)
    {
        if (req.Code is null) throw new BadRequestException("'code' is required: the Python code or shell command to run");
        var language = req.Language ?? "python";
        if (language is not ("python" or "bash"))
            throw new BadRequestException($"language '{language}' is not supported; use \"python\" or \"bash\"");
        var timeout = Validate.Range(req.TimeoutS ?? options.Limits.DefaultExecTimeoutS, 0.001, options.Limits.MaxTimeoutS, "timeout_s");
        var env = Validate.Env(req.Env, "env");
        if (req.Cwd is { } cwd) Validate.SandboxPath(cwd, "cwd");
        EnsureUsable(sb);

        await sb.Agent.CallLock.WaitAsync(clientGone).ConfigureAwait(false);
        var started = Stopwatch.GetTimestamp();
        var onDisconnect = default(CancellationTokenRegistration);
        try
        {
            EnsureUsable(sb);
            sb.MoveTo(SandboxState.Running);
            if (req.InterruptOnDisconnect != false) onDisconnect = clientGone.UnsafeRegister(InterruptOnDisconnect, sb);
            var rich = req.Rich == true;
            var deadline = sb.Agent.ArmDeadline(TimeSpan.FromSeconds(timeout) + AgentGrace);
            var clientOk = true;
            // The agent truncates output at the limit, but user code can change the agent: hostd counts too.
            var outputLeft = options.Limits.OutputLimitBytes;
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
            var agent = sb.Agent.Client;
            await agent.SendExecAsync(language, req.Code, timeout, rich, req.Cwd, env, deadline).ConfigureAwait(false);
            while (true)
            {
                AgentExecEvent ev;
                try
                {
                    ev = await agent.ReadExecEventAsync(deadline).ConfigureAwait(false);
                }
                catch (AgentFrameTooLargeException e)
                {
                    Kill(sb, e.Message);
                    WriteFatal(sink, rich, "SandboxDied", e.Message, 137, timeout: false);
                    break;
                }
                catch (OperationCanceledException) when (sb.Agent.DeadlinePassed)
                {
                    var reason = $"the sandbox did not stop at the end of the {timeout:g} s timeout and was killed";
                    Kill(sb, reason);
                    WriteFatal(sink, rich, "TimeoutError", reason, 124, timeout: true);
                    break;
                }
                catch (Exception e) when (AgentFrame.IsChannelLost(e))
                {
                    var reason = DeathReason(sb, sb.DeadReason ?? "the sandbox's agent closed its control channel");
                    MarkDead(sb, reason);
                    WriteFatal(sink, rich, "SandboxDied", sb.DeadReason ?? reason, 137, timeout: false);
                    break;
                }
                Forward(ev, sink, ref outputLeft);
                await FlushToClient().ConfigureAwait(false);
                if (ev.IsLast) break;
            }
            await FlushToClient().ConfigureAwait(false); // the events of a fatal end
        }
        finally
        {
            onDisconnect.Dispose();
            lock (sb.Agent.InterruptLock) sb.TryMove(SandboxState.Running, SandboxState.Ready);
            sb.Touch();
            sb.Agent.CallLock.Release();
            // Clients' calls only: the pool's warm-up cells (three per sandbox) would outnumber them.
            if (sink != DiscardSink.Instance) metrics.ExecSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    /// <summary>
    /// Interrupts the exec running in the sandbox, if one is: SIGINT to its agent, which raises
    /// KeyboardInterrupt in the cell (the REPL and its variables stay) or kills the command's
    /// process group. False when no exec was running. The agent takes the signal only while user
    /// code runs, and the exec cannot end while the signal is being sent (InterruptLock), so an
    /// interrupt never reaches a later call.
    /// </summary>
    public bool Interrupt(Sandbox sb, string why)
    {
        lock (sb.Agent.InterruptLock)
        {
            if (sb.State != SandboxState.Running) return false;
            // The pid is the agent's while it is in the sandbox's cgroup: a process that died and
            // was reaped may have left its number to another.
            if (!sb.Cgroup.Pids().Contains(sb.Pid)) return false;
            Processes.Signal(sb.Pid, Processes.SIGINT);
        }
        LogInterrupted(sb.Id, why);
        return true;
    }

    private static void WriteFatal(IExecSink sink, bool rich, string name, string message, int code, bool timeout)
    {
        sink.Output(true, "forkbox: " + message);
        if (rich) sink.Error(name, message, "");
        sink.Exit(code, timeout);
    }

    /// <summary>
    /// Passes one agent event on. Output lines (a character each and a newline, as the agent
    /// counts) and results are charged to <paramref name="left"/>, the call's output allowance: the
    /// first that does not fit is replaced by the agent's truncation marker, and everything after
    /// it is dropped.
    /// </summary>
    private static void Forward(in AgentExecEvent ev, IExecSink sink, ref long left)
    {
        if (ev.Out is { } o)
        {
            var stderr = o.S == 2;
            foreach (var line in o.Lines)
                if (Charge(ref left, line.Length + 1, sink)) sink.Output(stderr, line);
        }
        else if (ev.Result is { } r)
        {
            // The agent says which data is; one that says neither (user code can change the agent) is judged by its type.
            var dataKind = r.DataKind is "json" or "repr" ? r.DataKind : r.Data.ValueKind == JsonValueKind.String ? "repr" : "json";
            var mime = r.Mime is { ValueKind: JsonValueKind.Object } m ? m : (JsonElement?)null;
            if (Charge(ref left, r.Data.GetRawText().Length + (mime is { } b ? JsonMarshal.GetRawUtf8Value(b).Length : 0), sink))
                sink.Result(r.Data, dataKind, mime);
        }
        else if (ev.Display is { } d)
        {
            if (d.Mime is { ValueKind: JsonValueKind.Object } m && Charge(ref left, JsonMarshal.GetRawUtf8Value(m).Length, sink))
                sink.Display(m);
        }
        else if (ev.Error is { } e)
        {
            sink.Error(e.Name ?? "", e.Value ?? "", e.Traceback ?? "");
        }
        else if (ev.Exit is { } x)
        {
            sink.Exit(x.Code, x.Timeout);
        }
        else // the agent could not run the call at all
        {
            sink.Output(true, "forkbox: " + (ev.Fail?.Message ?? "agent error"));
            sink.Exit(1, false);
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

    /// <summary>
    /// Runs a few trivial cells in a new pooled sandbox so that its first real call does not pay
    /// for first-touch work (copy-on-write faults on the zygote's pages, lazy interpreter set-up):
    /// measured at ~5 ms on the first call and ~2 ms on the second without it.
    /// </summary>
    public async Task WarmUpAsync(Sandbox sb)
    {
        for (var i = 0; i < 3; i++)
            await ExecAsync(sb, new ExecRequest { Code = "print(1)\n1", Rich = true }, DiscardSink.Instance, CancellationToken.None).ConfigureAwait(false);
    }

    private sealed class DiscardSink : IExecSink
    {
        public static readonly DiscardSink Instance = new();
        public void Output(bool stderr, string line) { }
        public void Result(JsonElement data, string dataKind, JsonElement? mime) { }
        public void Display(JsonElement mime) { }
        public void Error(string name, string value, string traceback) { }
        public void Exit(int code, bool timeout) { }
        public ValueTask FlushAsync(CancellationToken ct) => ValueTask.CompletedTask;
    }

    /// <summary>
    /// A file call (one request, one answer) under the sandbox's call lock: the answer when it is
    /// "ok"; a "fail" becomes the API error of its code (<see cref="AgentErrorCodes"/>).
    /// </summary>
    public async Task<AgentAnswer<T>> FileCallAsync<T>(Sandbox sb, Func<AgentClient, CancellationToken, ValueTask<AgentAnswer<T>>> call,
        CancellationToken ct) where T : class
    {
        EnsureUsable(sb);
        await sb.Agent.CallLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            EnsureUsable(sb);
            var answer = await RoundTripAsync(sb, call, TimeSpan.FromSeconds(120), "a file call").ConfigureAwait(false);
            if (answer.IsOk) return answer;
            throw answer.Code == AgentErrorCodes.NoSpace && diskQuotaEnforced
                ? new InsufficientStorageException(
                    $"{answer.Message}: the sandbox has used its disk quota of {sb.DiskMb} MB (disk_mb at create sets it; files it deletes free room)")
                : AgentErrorCodes.Default.ToException(answer.Code, answer.Message);
        }
        finally
        {
            sb.Touch();
            sb.Agent.CallLock.Release();
        }
    }

    /// <summary>
    /// One typed call and its one answer, under the call lock the caller holds. An agent that does
    /// not answer within <paramref name="timeout"/>, or whose channel is lost, is killed: a request
    /// without its answer read would leave the channel out of step. An answer whose payload is over
    /// the call's limit is not read: the agent is killed, and the call is 413.
    /// </summary>
    public async Task<AgentAnswer<T>> RoundTripAsync<T>(Sandbox sb, Func<AgentClient, CancellationToken, ValueTask<AgentAnswer<T>>> call,
        TimeSpan timeout, string during) where T : class
    {
        try
        {
            return await call(sb.Agent.Client, sb.Agent.ArmDeadline(timeout)).ConfigureAwait(false);
        }
        catch (AgentFrameTooLargeException e)
        {
            Kill(sb, e.Message);
            throw new PayloadTooLargeException($"{e.Message} (during {during})");
        }
        catch (Exception e) when (AgentFrame.IsChannelLost(e) || e is OperationCanceledException)
        {
            var reason = DeathReason(sb, sb.DeadReason ?? $"the sandbox's agent stopped answering during {during}");
            Kill(sb, reason);
            throw new ExecutorException(reason);
        }
    }

    /// <summary>Marks a sandbox dead (once: the first reason stays) and logs why.</summary>
    public void MarkDead(Sandbox sb, string reason)
    {
        if (sb.TryMarkDead(reason)) LogDied(sb.Id, reason);
    }

    /// <summary>Marks the sandbox dead, cuts its channel (a call waiting on it ends at once) and SIGKILLs its processes.</summary>
    public void Kill(Sandbox sb, string reason)
    {
        MarkDead(sb, reason);
        sb.Agent.Abort();
        sb.Cgroup.KillAll(TimeSpan.Zero);
    }

    /// <summary>The kernel's out-of-memory kill, if the cgroup counted one, else <paramref name="otherwise"/>.</summary>
    public static string DeathReason(Sandbox sb, string otherwise) =>
        sb.Cgroup.OomKills() > 0
            ? $"out of memory: the kernel killed the sandbox's agent at its {sb.Limits.MemoryMb} MB memory limit"
            : otherwise;

    [LoggerMessage(EventId = 3005, Level = LogLevel.Warning, Message = "sandbox {SandboxId} died: {Reason}")]
    private partial void LogDied(string sandboxId, string reason);

    [LoggerMessage(EventId = 3007, Level = LogLevel.Information, Message = "sandbox {SandboxId}: exec interrupted ({Why})")]
    private partial void LogInterrupted(string sandboxId, string why);

    [LoggerMessage(EventId = 3202, Level = LogLevel.Information, Message = "sandbox {SandboxId} thawed")]
    private partial void LogThawed(string sandboxId);
}
