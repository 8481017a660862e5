using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Forkbox.Core.Wire;

namespace Forkbox.Client;

/// <summary>
/// A sandbox on a Forkbox host. <c>await using var sb = await Sandbox.CreateAsync();</c> closes it at
/// the end of the scope. Calls on one sandbox run one at a time on the server, in order.
/// </summary>
public sealed class Sandbox : IAsyncDisposable
{
    private readonly ForkboxClient _client;
    private bool _closed;

    private Sandbox(ForkboxClient client, SandboxInfo info)
    {
        _client = client;
        Info = info;
    }

    public string Id => Info.Id;

    /// <summary>The server's description of the sandbox when it was created or last refreshed.</summary>
    public SandboxInfo Info { get; private set; }

    public static async Task<Sandbox> CreateAsync(CreateSandboxRequest? options = null, ForkboxClient? client = null, CancellationToken ct = default)
    {
        client ??= ForkboxClient.Default;
        var info = await client.SendJsonAsync(
            client.Request(HttpMethod.Post, "v1/sandboxes", ForkboxClient.Json(options ?? new CreateSandboxRequest(), WireJson.Default.CreateSandboxRequest)),
            WireJson.Default.SandboxInfo, ct).ConfigureAwait(false);
        return new Sandbox(client, info);
    }

    /// <summary>Attaches to an existing sandbox by id.</summary>
    public static async Task<Sandbox> ConnectAsync(string id, ForkboxClient? client = null, CancellationToken ct = default)
    {
        client ??= ForkboxClient.Default;
        var sb = new Sandbox(client, new SandboxInfo { Id = id, State = "", Template = "", CreatedAt = default, ExpiresAt = default });
        await sb.RefreshAsync(ct).ConfigureAwait(false);
        return sb;
    }

    public async Task<SandboxInfo> RefreshAsync(CancellationToken ct = default)
    {
        Info = await _client.SendJsonAsync(_client.Request(HttpMethod.Get, $"v1/sandboxes/{Id}"), WireJson.Default.SandboxInfo, ct).ConfigureAwait(false);
        return Info;
    }

    /// <summary>Streams the events of one call as the server sends them.</summary>
    public async IAsyncEnumerable<ExecEvent> StreamAsync(ExecRequest request, [EnumeratorCancellation] CancellationToken ct = default)
    {
        using var resp = await _client.SendAsync(
            _client.Request(HttpMethod.Post, $"v1/sandboxes/{Id}/exec", ForkboxClient.Json(request, WireJson.Default.ExecRequest)),
            ct, HttpCompletionOption.ResponseHeadersRead).ConfigureAwait(false);
        await using var body = await resp.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        using var reader = new StreamReader(body);
        while (await reader.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
        {
            if (line.Length == 0) continue;
            yield return JsonSerializer.Deserialize(line, WireJson.Default.ExecEvent)
                         ?? throw new ForkboxApiException(200, "bad_response", "empty event line");
        }
    }

    /// <summary>Runs Python in the sandbox's persistent REPL; globals survive between calls.</summary>
    public Task<Execution> RunCodeAsync(string code, Action<string>? onStdout = null, Action<string>? onStderr = null,
        double? timeoutS = null, CancellationToken ct = default) =>
        RunAsync(new ExecRequest { Code = code, Language = "python", TimeoutS = timeoutS, Rich = true }, onStdout, onStderr, ct);

    /// <summary>Runs a shell command (bash -c) in a fresh process in the sandbox.</summary>
    public Task<Execution> ExecAsync(string command, Action<string>? onStdout = null, Action<string>? onStderr = null,
        double? timeoutS = null, CancellationToken ct = default) =>
        RunAsync(new ExecRequest { Code = command, Language = "bash", TimeoutS = timeoutS }, onStdout, onStderr, ct);

    public async Task<Execution> RunAsync(ExecRequest request, Action<string>? onStdout = null, Action<string>? onStderr = null, CancellationToken ct = default)
    {
        var sw = Stopwatch.StartNew();
        var stdout = new List<string>();
        var stderr = new List<string>();
        JsonElement? result = null;
        string? resultKind = null;
        IReadOnlyDictionary<string, JsonElement>? resultMime = null;
        var displays = new List<IReadOnlyDictionary<string, JsonElement>>();
        ExecutionError? error = null;
        int? exit = null;
        var timedOut = false;
        await foreach (var ev in StreamAsync(request, ct).ConfigureAwait(false))
        {
            switch (ev.Type)
            {
                case "stdout":
                    var o = ev.Data.GetString() ?? "";
                    stdout.Add(o);
                    onStdout?.Invoke(o);
                    break;
                case "stderr":
                    var e = ev.Data.GetString() ?? "";
                    stderr.Add(e);
                    onStderr?.Invoke(e);
                    break;
                case "result":
                    result = ev.Data.Clone();
                    resultKind = ev.DataKind;
                    resultMime = Bundle(ev.Mime);
                    break;
                case "display":
                    if (Bundle(ev.Mime) is { } shown) displays.Add(shown);
                    break;
                case "error":
                    error = new ExecutionError(ev.Name ?? "", ev.Value ?? "", ev.Traceback ?? "");
                    break;
                case "exit":
                    exit = ev.Data.GetInt32();
                    timedOut = ev.Timeout == true;
                    break;
            }
        }
        return new Execution
        {
            StdoutLines = stdout,
            StderrLines = stderr,
            ExitCode = exit ?? throw new ForkboxApiException(200, "bad_response", "the stream ended without an exit event"),
            Result = result,
            ResultKind = resultKind,
            ResultMime = resultMime,
            Displays = displays,
            Error = error,
            TimedOut = timedOut,
            Duration = sw.Elapsed,
        };
    }

    private static Dictionary<string, JsonElement>? Bundle(JsonElement? mime)
    {
        if (mime is not { ValueKind: JsonValueKind.Object } m) return null;
        var bundle = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var entry in m.EnumerateObject()) bundle[entry.Name] = entry.Value.Clone();
        return bundle;
    }

    /// <summary>Writes a file in the sandbox, creating parent directories.</summary>
    public async Task UploadAsync(string path, ReadOnlyMemory<byte> content, CancellationToken ct = default)
    {
        var body = new ReadOnlyMemoryContent(content);
        body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var _ = await _client.SendAsync(_client.Request(HttpMethod.Put, FilesPath("files", path), body), ct).ConfigureAwait(false);
    }

    public async Task UploadAsync(string path, Stream content, CancellationToken ct = default)
    {
        var body = new StreamContent(content);
        body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var _ = await _client.SendAsync(_client.Request(HttpMethod.Put, FilesPath("files", path), body), ct).ConfigureAwait(false);
    }

    public async Task<byte[]> DownloadAsync(string path, CancellationToken ct = default)
    {
        using var resp = await _client.SendAsync(_client.Request(HttpMethod.Get, FilesPath("files", path)), ct).ConfigureAwait(false);
        return await resp.Content.ReadAsByteArrayAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Streams a file of the sandbox into <paramref name="destination"/> without holding it in memory.</summary>
    public async Task DownloadAsync(string path, Stream destination, CancellationToken ct = default)
    {
        using var resp = await _client.SendAsync(_client.Request(HttpMethod.Get, FilesPath("files", path)), ct, HttpCompletionOption.ResponseHeadersRead)
            .ConfigureAwait(false);
        await resp.Content.CopyToAsync(destination, ct).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<FileEntry>> ListAsync(string path = "/root", CancellationToken ct = default) =>
        (await _client.SendJsonAsync(_client.Request(HttpMethod.Get, FilesPath("files/list", path)), WireJson.Default.FileList, ct).ConfigureAwait(false)).Entries;

    public async Task DeleteFileAsync(string path, bool recursive = false, CancellationToken ct = default)
    {
        using var _ = await _client.SendAsync(
            _client.Request(HttpMethod.Delete, FilesPath("files", path) + (recursive ? "&recursive=true" : "")), ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Forks the sandbox <paramref name="n"/> ways (1 to 32). Each fork starts from this sandbox's
    /// state now, memory and files; the call waits for a running call on this sandbox to end first.
    /// </summary>
    public async Task<IReadOnlyList<Sandbox>> ForkAsync(int n = 1, CancellationToken ct = default)
    {
        var resp = await _client.SendJsonAsync(
            _client.Request(HttpMethod.Post, $"v1/sandboxes/{Id}/fork", ForkboxClient.Json(new ForkRequest { N = n }, WireJson.Default.ForkRequest)),
            WireJson.Default.ForkResponse, ct).ConfigureAwait(false);
        var now = DateTimeOffset.UtcNow;
        return resp.Children.Select(id => new Sandbox(_client, new SandboxInfo
        {
            Id = id, State = "ready", Template = Info.Template, CreatedAt = now, ExpiresAt = Info.ExpiresAt,
            Metadata = Info.Metadata, Limits = Info.Limits, ForkedFrom = Id,
        })).ToList();
    }

    /// <summary>
    /// Makes <paramref name="winner"/> (a fork of this sandbox, or a fork of one of its forks) take this
    /// sandbox's place: from now on this id answers with the winner's memory and files. This
    /// sandbox's former state is destroyed and the winner's own id is retired.
    /// </summary>
    public async Task MergeIntoAsync(Sandbox winner, CancellationToken ct = default)
    {
        using var _ = await _client.SendAsync(_client.Request(HttpMethod.Post, $"v1/sandboxes/{Id}/merge_into/{winner.Id}"), ct).ConfigureAwait(false);
        winner._closed = true;
    }

    /// <summary>What differs between this sandbox's files and <paramref name="other"/>'s under <paramref name="paths"/> (default /root and /tmp).</summary>
    public Task<DiffResponse> DiffAsync(Sandbox other, IEnumerable<string>? paths = null, CancellationToken ct = default)
    {
        var query = paths is null ? "" : "?paths=" + Uri.EscapeDataString(string.Join(',', paths));
        return _client.SendJsonAsync(_client.Request(HttpMethod.Get, $"v1/sandboxes/{Id}/diff/{other.Id}{query}"), WireJson.Default.DiffResponse, ct);
    }

    /// <summary>
    /// The address of <paramref name="port"/> inside the sandbox through the API's ports proxy (send the
    /// API key with requests to it, or use <see cref="SignPortUrlAsync"/> for a URL that needs none).
    /// </summary>
    public Uri PortUri(int port, string path = "") => new(_client.BaseAddress, $"v1/sandboxes/{Id}/ports/{port}/{path.TrimStart('/')}");

    /// <summary>A URL to <paramref name="port"/> that works without an API key until it expires (default one hour).</summary>
    public Task<PortUrlResponse> SignPortUrlAsync(int port, double? expiresInS = null, CancellationToken ct = default) =>
        _client.SendJsonAsync(_client.Request(HttpMethod.Post, $"v1/sandboxes/{Id}/ports/{port}/url",
            ForkboxClient.Json(new PortUrlRequest { ExpiresInS = expiresInS }, WireJson.Default.PortUrlRequest)), WireJson.Default.PortUrlResponse, ct);

    /// <summary>
    /// Interrupts the exec running now, if one is: KeyboardInterrupt in a Python cell (its
    /// variables stay), the process group of a shell command killed. True when one was running.
    /// </summary>
    public async Task<bool> InterruptAsync(CancellationToken ct = default) =>
        (await _client.SendJsonAsync(_client.Request(HttpMethod.Post, $"v1/sandboxes/{Id}/interrupt"), WireJson.Default.InterruptResponse, ct)
            .ConfigureAwait(false)).Interrupted;

    /// <summary>Stops every process of the sandbox with the cgroup freezer; memory stays. Any call resumes it.</summary>
    public Task<LifecycleResponse> PauseAsync(CancellationToken ct = default) => LifecycleAsync("pause", ct);

    /// <summary>
    /// Writes the sandbox to disk (its files and its REPL's picklable globals) and frees its memory.
    /// The reply names what could not be saved. Any call resumes it.
    /// </summary>
    public Task<LifecycleResponse> HibernateAsync(CancellationToken ct = default) => LifecycleAsync("hibernate", ct);

    /// <summary>Brings a paused or hibernated sandbox back; the reply says what was restored and what was not.</summary>
    public Task<LifecycleResponse> ResumeAsync(CancellationToken ct = default) => LifecycleAsync("resume", ct);

    /// <summary>
    /// A fresh interpreter on the same files, like a notebook's kernel restart: variables, imports and
    /// background processes are gone, files stay. Brings a dead sandbox (out of memory, say) back to ready.
    /// </summary>
    public Task<LifecycleResponse> RestartAsync(CancellationToken ct = default) => LifecycleAsync("restart", ct);

    /// <summary>Makes the sandbox expire <paramref name="timeoutS"/> seconds from now (sooner or later than before); the reply has the new expires_at.</summary>
    public async Task<SandboxInfo> SetTimeoutAsync(double timeoutS, CancellationToken ct = default)
    {
        Info = await _client.SendJsonAsync(_client.Request(HttpMethod.Post, $"v1/sandboxes/{Id}/timeout",
            ForkboxClient.Json(new SetTimeoutRequest { TimeoutS = timeoutS }, WireJson.Default.SetTimeoutRequest)), WireJson.Default.SandboxInfo, ct).ConfigureAwait(false);
        return Info;
    }

    private Task<LifecycleResponse> LifecycleAsync(string verb, CancellationToken ct) =>
        _client.SendJsonAsync(_client.Request(HttpMethod.Post, $"v1/sandboxes/{Id}/{verb}"), WireJson.Default.LifecycleResponse, ct);

    private string FilesPath(string route, string path) => $"v1/sandboxes/{Id}/{route}?path={Uri.EscapeDataString(path)}";

    /// <summary>Destroys the sandbox. Closing one already gone is not an error.</summary>
    public async Task CloseAsync(CancellationToken ct = default)
    {
        if (_closed) return;
        try
        {
            using var _ = await _client.SendAsync(_client.Request(HttpMethod.Delete, $"v1/sandboxes/{Id}"), ct).ConfigureAwait(false);
        }
        catch (ForkboxApiException e) when (e.Status == (int)HttpStatusCode.NotFound)
        {
        }
        _closed = true;
    }

    public async ValueTask DisposeAsync() => await CloseAsync().ConfigureAwait(false);
}
