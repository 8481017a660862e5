using System.Diagnostics;
using System.Text.Json;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
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

    /// <summary>
    /// Called before a call and again under its call lock: a dead sandbox is refused; a paused one
    /// (paused while the call waited for the lock) is thawed; a hibernated one was hibernated by a
    /// concurrent request, and the caller is told to retry, which resumes it.
    /// </summary>
    public void EnsureUsable(Sandbox sb)
    {
        if (sb.IsDead)
            throw new ConflictException($"sandbox '{sb.Id}' is dead ({sb.DeadReason}); create a new one", "sandbox_dead");
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
    /// still runs to its end (the agent's frames must be read to keep the channel in step); its
    /// output is dropped.
    /// </summary>
    public async Task ExecAsync(Sandbox sb, ExecRequest req, IExecSink sink, CancellationToken clientGone)
    {
        if (req.Code is null) throw new BadRequestException("'code' is required: the Python code or shell command to run");
        var language = req.Language ?? "python";
        if (language is not ("python" or "bash"))
            throw new BadRequestException($"language '{language}' is not supported; use \"python\" or \"bash\"");
        var timeout = Validate.Range(req.TimeoutS ?? options.DefaultExecTimeoutS, 0.001, options.MaxTimeoutS, "timeout_s");
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
            var outputLeft = options.OutputLimitBytes;
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
                    MarkDead(sb, reason);
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
            metrics.ExecSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
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
        public void Result(JsonElement data) { }
        public void Error(string name, string value, string traceback) { }
        public void Exit(int code, bool timeout) { }
        public ValueTask FlushAsync(CancellationToken ct) => ValueTask.CompletedTask;
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
                    "no_space" => new InsufficientStorageException(!diskQuotaEnforced ? message
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
    public async Task<AgentFrame> RoundTripAsync(Sandbox sb, byte[] frame, TimeSpan timeout, string during, ReadOnlyMemory<byte> payload = default,
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

    /// <summary>Marks a sandbox dead (once: the first reason stays) and logs why.</summary>
    public void MarkDead(Sandbox sb, string reason)
    {
        if (sb.TryMarkDead(reason)) LogDied(sb.Id, reason);
    }

    private void Kill(Sandbox sb, string reason)
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

    [LoggerMessage(EventId = 3202, Level = LogLevel.Information, Message = "sandbox {SandboxId} thawed")]
    private partial void LogThawed(string sandboxId);
}
