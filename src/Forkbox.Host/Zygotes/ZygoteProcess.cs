using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Forkbox.Agent;
using Forkbox.Core.Errors;
using Forkbox.Core.Templates;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Zygotes;

/// <summary>
/// One template's zygote: a long-lived Python process that has imported the template's modules
/// and forks a sandbox for each spawn request. Requests and answers are JSON lines on its stdin
/// and stdout (forkbox_agent/zygote.py), one record of <see cref="ZygoteJson"/> each. A zygote that died is started again on the next spawn;
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
    private readonly ConcurrentDictionary<string, (TaskCompletionSource<string> Tcs, Process Process)> _pending = new();
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
        var config = JsonSerializer.Serialize(
            new ZygoteConfig(chrooted ? "/.forkbox-agent" : AgentFiles.PythonPath, _seccompPath, _template.Preload, _outputLimit),
            ZygoteJson.Default.ZygoteConfig);
        await process.StandardInput.WriteLineAsync(config.AsMemory(), ct).ConfigureAwait(false);
        await ready.Task.WaitAsync(TimeSpan.FromSeconds(60), ct).ConfigureAwait(false);
        LogZygoteStarted(_template.Name, process.Id);
    }

    public async Task<SpawnResult> SpawnAsync(SpawnSpec spec, CancellationToken ct)
    {
        var line = await RequestAsync(spec.Id, JsonSerializer.Serialize(SpawnRequest(spec), ZygoteJson.Default.ZygoteSpawnRequest), ct)
            .ConfigureAwait(false);
        if (Failure(line) is { } failure) return new SpawnResult(false, 0, 0, null, failure.Error);
        var r = Decode(line, ZygoteJson.Default.ZygoteSpawnReply);
        return new SpawnResult(true, r.Pid, r.SetupMs, r.Steps ?? throw Malformed(line), null);
    }

    /// <summary>Finishes a fork: gives each child (already forked by its parent's agent) its root and control socket.</summary>
    public async Task<GraftResult> GraftAsync(GraftSpec spec, CancellationToken ct)
    {
        var line = await RequestAsync(spec.Id, JsonSerializer.Serialize(GraftRequest(spec), ZygoteJson.Default.ZygoteGraftRequest), ct)
            .ConfigureAwait(false);
        return Failure(line) is { } failure
            ? new GraftResult(false, null, failure.Error)
            : new GraftResult(true, Decode(line, ZygoteJson.Default.ZygoteGraftReply).Steps, null);
    }

    /// <summary>Fills a resuming sandbox's writable layers from its saved state; returns the step timings.</summary>
    public async Task<IReadOnlyDictionary<string, double>> RestoreAsync(RestoreSpec spec, CancellationToken ct)
    {
        var layers = new ZygoteRestoreLayer[spec.Sources.Count];
        for (var i = 0; i < layers.Length; i++) layers[i] = new ZygoteRestoreLayer(spec.Sources[i], spec.Dirs.Layers[i].Upper);
        var request = new ZygoteRestoreRequest(spec.Id, spec.Strategy, spec.UidFrom, spec.UidTo, layers);
        var line = await RequestAsync(spec.Id, JsonSerializer.Serialize(request, ZygoteJson.Default.ZygoteRestoreRequest), ct).ConfigureAwait(false);
        return Failure(line) is { } failure
            ? throw new IOException($"restoring the saved files failed: {failure.Error}")
            : Decode(line, ZygoteJson.Default.ZygoteRestoreReply).Steps;
    }

    /// <summary>The answer as a failure when its "ok" is false, else null.</summary>
    private static ZygoteFailure? Failure(string line) => Decode(line, ZygoteJson.Default.ZygoteFailure) is { Ok: false } f ? f : null;

    private static T Decode<T>(string line, JsonTypeInfo<T> type)
    {
        try
        {
            return JsonSerializer.Deserialize(line, type) ?? throw Malformed(line);
        }
        catch (JsonException)
        {
            throw Malformed(line);
        }
    }

    private static InvalidOperationException Malformed(string line) => new($"the zygote answered a line hostd does not understand: {line}");

    /// <summary>Writes one request line and waits for the answer line with the same id.</summary>
    private async Task<string> RequestAsync(string id, string line, CancellationToken ct)
    {
        var tcs = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
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
                var kind = JsonSerializer.Deserialize(line, ZygoteJson.Default.ZygoteLine)!;
                if (kind.Exited is not null)
                {
                    var exited = JsonSerializer.Deserialize(line, ZygoteJson.Default.ZygoteExited)!;
                    SandboxExited?.Invoke(exited.Exited, exited.Status);
                }
                else if (kind.Ready is not null)
                    ready.TrySetResult();
                else if (kind.Id is { } id && _pending.TryGetValue(id, out var pending))
                    pending.Tcs.TrySetResult(line);
            }
            catch (Exception e) when (e is JsonException or NullReferenceException or InvalidOperationException)
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
            // A ForkboxException: the caller (a create, a template build's trial) shows it as it is.
            ready.TrySetException(new ExecutorException(
                $"template '{_template.Name}' cannot start: its zygote exited during start-up" + (why is null ? "" : $": {why}")));
        }
        var gone = JsonSerializer.Serialize(new ZygoteFailure(null, false, $"zygote for template '{_template.Name}' exited"),
            ZygoteJson.Default.ZygoteFailure);
        foreach (var pending in _pending.Values)
            if (ReferenceEquals(pending.Process, process))
                pending.Tcs.TrySetResult(gone);
    }

    /// <summary>The spawn line for <paramref name="spec"/>: each template layer with the sandbox's own upper and work directories.</summary>
    public static ZygoteSpawnRequest SpawnRequest(SpawnSpec spec)
    {
        var layers = new ZygoteSpawnLayer[spec.Template.Layers.Count];
        for (var i = 0; i < layers.Length; i++)
        {
            var layer = spec.Template.Layers[i];
            var writable = new ZygoteWritableDir[layer.Writable.Count];
            for (var j = 0; j < writable.Length; j++) writable[j] = new ZygoteWritableDir(layer.Writable[j].Path, layer.Writable[j].Mode);
            layers[i] = new ZygoteSpawnLayer(layer.Target, layer.LowerDir, spec.Dirs.Layers[i].Upper, spec.Dirs.Layers[i].Work, writable);
        }
        return new ZygoteSpawnRequest(spec.Id, spec.Token, spec.AgentSocket, spec.Slot.Path, spec.Slot.UidBase, spec.CgroupProcs,
            spec.Dirs.Root, spec.TmpSizeMb, spec.Foreground, layers, spec.Env is { Count: > 0 } ? spec.Env : null);
    }

    /// <summary>The graft line for <paramref name="spec"/>: each child with its layers over the parent's uppers.</summary>
    public static ZygoteGraftRequest GraftRequest(GraftSpec spec)
    {
        var children = new ZygoteGraftChild[spec.Children.Count];
        for (var c = 0; c < children.Length; c++)
        {
            var child = spec.Children[c];
            var layers = new ZygoteGraftLayer[spec.Template.Layers.Count];
            for (var i = 0; i < layers.Length; i++)
                layers[i] = new ZygoteGraftLayer(spec.Template.Layers[i].Target, spec.Template.Layers[i].LowerDir,
                    spec.ParentDirs.Layers[i].Upper, child.Dirs.Layers[i].Upper, child.Dirs.Layers[i].Work);
            children[c] = new ZygoteGraftChild(child.Id, child.Token, child.Pid, spec.UserNamespace, spec.AgentSocket, spec.TmpSizeMb, layers);
        }
        return new ZygoteGraftRequest(spec.Id, spec.Strategy, children);
    }

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
