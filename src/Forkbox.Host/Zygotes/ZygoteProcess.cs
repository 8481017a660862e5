using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Forkbox.Agent;
using Forkbox.Core.Templates;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Zygotes;

/// <summary>
/// One template's zygote: a long-lived Python process that has imported the template's modules
/// and forks a sandbox for each spawn request. Requests and answers are JSON lines on its stdin
/// and stdout (forkbox_agent/zygote.py). A zygote that died is started again on the next spawn;
/// the sandboxes it forked live on without it.
/// </summary>
public sealed partial class ZygoteProcess : IAsyncDisposable
{
    // Reads its configuration from the first stdin line so that no host path is on its command line.
    private const string Bootstrap =
        "import json, sys; c = json.loads(sys.stdin.buffer.readline()); sys.path.insert(0, c['agent_dir']); " +
        "from forkbox_agent.zygote import main; main(c)";

    // For a template with a root of its own, the host's Python first makes the zygote's mount
    // namespace and chroots into the root (forkbox_agent/chroot.py), then runs the template's.
    private const string ChrootLauncher =
        "import sys; sys.path.insert(0, sys.argv[1]); from forkbox_agent.chroot import main; main(sys.argv[1:])";

    private readonly TemplateDefinition _template;
    private readonly string _dataDir;
    private readonly string _hostPython;
    private readonly string _seccompPath;
    private readonly long _outputLimit;
    private readonly ILogger _log;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    // Each request waits on the zygote process it was written to; a process that dies fails only its own.
    private readonly ConcurrentDictionary<string, (TaskCompletionSource<JsonElement> Tcs, Process Process)> _pending = new();
    private Process? _process;

    /// <summary>The last zygote whose answers ended (its stdout closed): it answers nothing more, even before its exit is seen.</summary>
    private Process? _silent;

    /// <summary>The zygote's last line on stderr: the reason, when it dies during start-up.</summary>
    private string? _lastStderr;

    /// <param name="hostPython">The host's Python, which sets up a chrooted template's mounts.</param>
    public ZygoteProcess(TemplateDefinition template, string dataDir, string hostPython, string seccompPath, long outputLimit, ILogger log)
    {
        _template = template;
        _dataDir = dataDir;
        _hostPython = hostPython;
        _seccompPath = seccompPath;
        _outputLimit = outputLimit;
        _log = log;
    }

    /// <summary>Raised (on a background thread) with (pid, exit status) when a sandbox's PID 1 has exited.</summary>
    public event Action<int, int>? SandboxExited;

    public int? Pid => _process is { HasExited: false } p ? p.Id : null;

    public async Task StartAsync(CancellationToken ct)
    {
        var chrooted = _template.RootDir is not null;
        var psi = chrooted
            ? new ProcessStartInfo(_hostPython, ["-I", "-c", ChrootLauncher, AgentFiles.PythonPath,
                _template.RootDir!, Path.GetFullPath(_dataDir), _template.Python, Bootstrap])
            : new ProcessStartInfo(_template.Python, ["-I", "-c", Bootstrap]);
        psi.RedirectStandardInput = true;
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.UseShellExecute = false;
        psi.WorkingDirectory = "/";
        psi.Environment.Clear();
        psi.Environment["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        psi.Environment["LANG"] = "C.UTF-8";
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {_template.Python}");
        _process = process;
        process.StandardInput.AutoFlush = true;
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            LogZygoteStderr(_template.Name, e.Data);
            Volatile.Write(ref _lastStderr, e.Data);
        };
        process.BeginErrorReadLine();
        _ = Task.Run(() => ReadLoopAsync(process, ready));
        var config = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["agent_dir"] = chrooted ? "/.forkbox-agent" : AgentFiles.PythonPath,
            ["seccomp"] = _seccompPath,
            ["preload"] = _template.Preload,
            ["output_limit"] = _outputLimit,
        });
        await process.StandardInput.WriteLineAsync(config.AsMemory(), ct).ConfigureAwait(false);
        await ready.Task.WaitAsync(TimeSpan.FromSeconds(60), ct).ConfigureAwait(false);
        LogZygoteStarted(_template.Name, process.Id);
    }

    public async Task<SpawnResult> SpawnAsync(SpawnSpec spec, CancellationToken ct)
    {
        var r = await RequestAsync(spec.Id, SerializeSpec(spec), ct).ConfigureAwait(false);
        return r.GetProperty("ok").GetBoolean()
            ? new SpawnResult(true, r.GetProperty("pid").GetInt32(), r.GetProperty("setup_ms").GetDouble(), Steps(r), null)
            : new SpawnResult(false, 0, 0, null, r.GetProperty("error").GetString());
    }

    /// <summary>Finishes a fork: gives each child (already forked by its parent's agent) its root and control socket.</summary>
    public async Task<GraftResult> GraftAsync(GraftSpec spec, CancellationToken ct)
    {
        var r = await RequestAsync(spec.Id, SerializeGraft(spec), ct).ConfigureAwait(false);
        return r.GetProperty("ok").GetBoolean()
            ? new GraftResult(true, Steps(r), null)
            : new GraftResult(false, null, r.GetProperty("error").GetString());
    }

    /// <summary>Fills a resuming sandbox's writable layers from its saved state; returns the step timings.</summary>
    public async Task<IReadOnlyDictionary<string, double>> RestoreAsync(RestoreSpec spec, CancellationToken ct)
    {
        var r = await RequestAsync(spec.Id, JsonLine(w =>
        {
            w.WriteString("op", "restore");
            w.WriteString("id", spec.Id);
            w.WriteString("strategy", spec.Strategy);
            w.WriteNumber("uid_from", spec.UidFrom);
            w.WriteNumber("uid_to", spec.UidTo);
            w.WriteStartArray("layers");
            for (var i = 0; i < spec.Sources.Count; i++)
            {
                w.WriteStartObject();
                w.WriteString("src", spec.Sources[i]);
                w.WriteString("dst", spec.Dirs.Layers[i].Upper);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }), ct).ConfigureAwait(false);
        return r.GetProperty("ok").GetBoolean()
            ? Steps(r)
            : throw new IOException($"restoring the saved files failed: {r.GetProperty("error").GetString()}");
    }

    private static Dictionary<string, double> Steps(JsonElement r) =>
        r.GetProperty("steps").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());

    /// <summary>Writes one request line and waits for the answer line with the same id.</summary>
    private async Task<JsonElement> RequestAsync(string id, string line, CancellationToken ct)
    {
        var tcs = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            await _writeLock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                for (var attempt = 0; ; attempt++)
                {
                    if (_process is null || _process.HasExited || ReferenceEquals(Volatile.Read(ref _silent), _process))
                    {
                        if (_process is not null) LogZygoteRestart(_template.Name, _process.WaitForExit(5000) ? _process.ExitCode : -1);
                        await StartAsync(ct).ConfigureAwait(false);
                    }
                    _pending[id] = (tcs, _process!);
                    // Registered first, checked second: either the read loop's end fails this request,
                    // or this sees that it ended. A dead zygote's stdin may still take the line (a child
                    // it forked holds the pipe), and the answer would never come.
                    if (ReferenceEquals(Volatile.Read(ref _silent), _process)) continue;
                    try
                    {
                        await _process!.StandardInput.WriteLineAsync(line.AsMemory(), ct).ConfigureAwait(false);
                        break;
                    }
                    catch (IOException) when (attempt == 0)
                    {
                        // It died just now and we have not seen it exit yet: wait for that, then start another.
                        _process!.WaitForExit(TimeSpan.FromSeconds(5));
                    }
                }
            }
            finally
            {
                _writeLock.Release();
            }
            return await tcs.Task.WaitAsync(TimeSpan.FromSeconds(60), ct).ConfigureAwait(false);
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    private async Task ReadLoopAsync(Process process, TaskCompletionSource ready)
    {
        var stdout = process.StandardOutput;
        while (await stdout.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            try
            {
                using var doc = JsonDocument.Parse(line);
                var root = doc.RootElement;
                if (root.TryGetProperty("exited", out var exited))
                    SandboxExited?.Invoke(exited.GetInt32(), root.GetProperty("status").GetInt32());
                else if (root.TryGetProperty("ready", out _))
                    ready.TrySetResult();
                else if (root.TryGetProperty("id", out var id) && _pending.TryGetValue(id.GetString() ?? "", out var pending))
                    pending.Tcs.TrySetResult(root.Clone());
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                LogBadLine(_template.Name, line);
            }
        }
        // The zygote is gone: whoever waits on it learns now rather than at a timeout.
        Volatile.Write(ref _silent, process);
        if (!ready.Task.IsCompleted)
        {
            // Its stderr ends with its exit; wait a little for the line that says why.
            try { await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false); }
            catch (TimeoutException) { }
            var why = Volatile.Read(ref _lastStderr);
            ready.TrySetException(new InvalidOperationException(
                $"zygote for template '{_template.Name}' exited during start-up" + (why is null ? "" : $": {why}")));
        }
        using var gone = JsonDocument.Parse(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["ok"] = false,
            ["error"] = $"zygote for template '{_template.Name}' exited",
        }));
        foreach (var pending in _pending.Values)
            if (ReferenceEquals(pending.Process, process))
                pending.Tcs.TrySetResult(gone.RootElement.Clone());
    }

    /// <summary>One request line: a JSON object the callback fills.</summary>
    private static string JsonLine(Action<Utf8JsonWriter> write)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            write(w);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static string SerializeSpec(SpawnSpec spec) => JsonLine(w =>
        {
            w.WriteString("op", "spawn");
            w.WriteString("id", spec.Id);
            w.WriteString("token", spec.Token);
            w.WriteString("agent_socket", spec.AgentSocket);
            w.WriteString("userns", spec.Slot.Path);
            w.WriteNumber("uid", spec.Slot.UidBase);
            w.WriteStartArray("cgroup_procs");
            foreach (var f in spec.CgroupProcs) w.WriteStringValue(f);
            w.WriteEndArray();
            w.WriteString("root", spec.Dirs.Root);
            w.WriteNumber("tmp_size_mb", spec.TmpSizeMb);
            w.WriteBoolean("foreground", spec.Foreground);
            w.WriteStartArray("layers");
            for (var i = 0; i < spec.Template.Layers.Count; i++)
            {
                var layer = spec.Template.Layers[i];
                w.WriteStartObject();
                w.WriteString("target", layer.Target);
                w.WriteString("lower", layer.LowerDir);
                w.WriteString("upper", spec.Dirs.Layers[i].Upper);
                w.WriteString("work", spec.Dirs.Layers[i].Work);
                w.WriteStartArray("writable");
                foreach (var dir in layer.Writable)
                {
                    w.WriteStartArray();
                    w.WriteStringValue(dir.Path);
                    w.WriteNumberValue(dir.Mode);
                    w.WriteEndArray();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            Agents.AgentFrame.WriteEnv(w, spec.Env);
        });

    private static string SerializeGraft(GraftSpec spec) => JsonLine(w =>
        {
            w.WriteString("op", "graft");
            w.WriteString("id", spec.Id);
            w.WriteString("strategy", spec.Strategy);
            w.WriteStartArray("children");
            foreach (var child in spec.Children)
            {
                w.WriteStartObject();
                w.WriteString("id", child.Id);
                w.WriteString("token", child.Token);
                w.WriteNumber("pid", child.Pid);
                w.WriteString("userns", spec.UserNamespace);
                w.WriteString("agent_socket", spec.AgentSocket);
                w.WriteNumber("tmp_size_mb", spec.TmpSizeMb);
                w.WriteStartArray("layers");
                for (var i = 0; i < spec.Template.Layers.Count; i++)
                {
                    w.WriteStartObject();
                    w.WriteString("target", spec.Template.Layers[i].Target);
                    w.WriteString("lower", spec.Template.Layers[i].LowerDir);
                    w.WriteString("src_upper", spec.ParentDirs.Layers[i].Upper);
                    w.WriteString("upper", child.Dirs.Layers[i].Upper);
                    w.WriteString("work", child.Dirs.Layers[i].Work);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });

    public async ValueTask DisposeAsync()
    {
        if (_process is { } p)
        {
            try
            {
                p.StandardInput.Close(); // the zygote exits when its stdin closes
                if (!p.WaitForExit(2000)) p.Kill();
                await p.WaitForExitAsync().ConfigureAwait(false);
            }
            catch (InvalidOperationException)
            {
            }
            p.Dispose();
        }
        _writeLock.Dispose();
    }

    [LoggerMessage(EventId = 2201, Level = LogLevel.Information, Message = "zygote for template {Template} ready, pid {Pid}")]
    private partial void LogZygoteStarted(string template, int pid);

    [LoggerMessage(EventId = 2202, Level = LogLevel.Warning, Message = "zygote for template {Template} had exited (status {Status}); starting it again")]
    private partial void LogZygoteRestart(string template, int status);

    [LoggerMessage(EventId = 2203, Level = LogLevel.Warning, Message = "zygote {Template}: {Line}")]
    private partial void LogZygoteStderr(string template, string line);

    [LoggerMessage(EventId = 2204, Level = LogLevel.Warning, Message = "zygote {Template} wrote a line hostd does not understand: {Line}")]
    private partial void LogBadLine(string template, string line);
}
