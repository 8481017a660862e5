using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace Forkbox.IntegrationTests.Mcp;

/// <summary>
/// `forkbox mcp` as a child process, driven the way a desktop client drives it: JSON-RPC messages,
/// one a line, written to its stdin and read from its stdout. The messages are written here by
/// hand, so the tests check what is on the wire rather than the SDK against itself. Every line
/// on stdout that is not a JSON-RPC message is kept in <see cref="NonProtocolLines"/>.
/// </summary>
public sealed class McpProcess : IAsyncDisposable
{
    public const string ProtocolVersion = "2025-06-18";
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly ITestOutputHelper _output;
    private readonly ConcurrentDictionary<int, TaskCompletionSource<JsonObject>> _pending = new();
    private readonly ConcurrentQueue<string> _nonProtocol = new();
    private readonly Task _reader;
    private int _nextId;

    private McpProcess(Process process, ITestOutputHelper output)
    {
        _process = process;
        _output = output;
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            try
            {
                _output.WriteLine("mcp stderr: " + e.Data);
            }
            catch (InvalidOperationException)
            {
                // The test has finished; nobody reads its output any more.
            }
        };
        _process.BeginErrorReadLine();
        _reader = Task.Run(ReadStdoutAsync);
    }

    /// <summary>Lines on stdout that were not JSON-RPC 2.0 messages: stdout must carry only the protocol.</summary>
    public IReadOnlyCollection<string> NonProtocolLines => _nonProtocol;

    public static McpProcess Start(Uri server, ITestOutputHelper output)
    {
        var psi = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "forkbox.dll"), "mcp", "--host", server.ToString()])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardInputEncoding = new UTF8Encoding(false),
            StandardOutputEncoding = Encoding.UTF8,
        };
        psi.Environment.Remove("FORKBOX_HOST");
        psi.Environment.Remove("FORKBOX_API_KEY");
        return new McpProcess(Process.Start(psi)!, output);
    }

    /// <summary>initialize, then notifications/initialized; returns initialize's result.</summary>
    public async Task<JsonObject> InitializeAsync()
    {
        var reply = await RequestAsync("initialize", new JsonObject
        {
            ["protocolVersion"] = ProtocolVersion,
            ["capabilities"] = new JsonObject(),
            ["clientInfo"] = new JsonObject { ["name"] = "forkbox-tests", ["version"] = "1.0" },
        });
        var result = Result(reply);
        await NotifyAsync("notifications/initialized");
        return result;
    }

    /// <summary>Sends a request and returns the whole response: its result or its error.</summary>
    public async Task<JsonObject> RequestAsync(string method, JsonObject? parameters = null)
    {
        var (_, reply) = await SendRequestAsync(method, parameters);
        return await reply;
    }

    /// <summary>Sends a request without waiting for it: its id, and its response to come.</summary>
    public async Task<(int Id, Task<JsonObject> Reply)> SendRequestAsync(string method, JsonObject? parameters = null)
    {
        var id = Interlocked.Increment(ref _nextId);
        var reply = new TaskCompletionSource<JsonObject>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = reply;
        var message = new JsonObject { ["jsonrpc"] = "2.0", ["id"] = id, ["method"] = method };
        if (parameters is not null) message["params"] = parameters;
        await SendAsync(message);
        return (id, Wait());

        async Task<JsonObject> Wait()
        {
            try
            {
                return await reply.Task.WaitAsync(ReplyTimeout);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"no reply to {method} (id {id}) within {ReplyTimeout.TotalSeconds} s; exited: {_process.HasExited}");
            }
        }
    }

    public Task NotifyAsync(string method, JsonObject? parameters = null)
    {
        var message = new JsonObject { ["jsonrpc"] = "2.0", ["method"] = method };
        if (parameters is not null) message["params"] = parameters;
        return SendAsync(message);
    }

    /// <summary>tools/call; returns the CallToolResult (content, isError).</summary>
    public async Task<ToolReply> CallToolAsync(string name, JsonObject? arguments = null) =>
        new(Result(await RequestAsync("tools/call", new JsonObject { ["name"] = name, ["arguments"] = arguments ?? new JsonObject() })));

    /// <summary>tools/call that must fail as a protocol error; returns the JSON-RPC error object.</summary>
    public async Task<JsonObject> CallToolExpectingErrorAsync(string name, JsonObject arguments)
    {
        var reply = await RequestAsync("tools/call", new JsonObject { ["name"] = name, ["arguments"] = arguments });
        return reply["error"]?.AsObject() ?? throw new Xunit.Sdk.XunitException($"expected a JSON-RPC error, got {reply.ToJsonString()}");
    }

    public static JsonObject Result(JsonObject reply) =>
        reply["result"]?.AsObject() ?? throw new Xunit.Sdk.XunitException($"expected a result, got {reply.ToJsonString()}");

    /// <summary>Closes stdin, as a client ending the session does, and waits for the process to exit.</summary>
    public async Task<int> CloseInputAndWaitAsync(TimeSpan timeout)
    {
        _process.StandardInput.Close();
        await _process.WaitForExitAsync().WaitAsync(timeout);
        await _reader.WaitAsync(timeout);
        return _process.ExitCode;
    }

    private async Task SendAsync(JsonObject message)
    {
        await _process.StandardInput.WriteAsync(message.ToJsonString() + "\n");
        await _process.StandardInput.FlushAsync();
    }

    private async Task ReadStdoutAsync()
    {
        while (await _process.StandardOutput.ReadLineAsync() is { } line)
        {
            JsonObject? message = null;
            try
            {
                message = JsonNode.Parse(line) as JsonObject;
            }
            catch (JsonException)
            {
            }
            if (message is null || message["jsonrpc"]?.GetValue<string>() != "2.0")
            {
                _nonProtocol.Enqueue(line);
                continue;
            }
            // Responses carry the id of a request of ours; notifications from the server are not awaited here.
            if (message["id"] is JsonValue id && message["method"] is null && id.TryGetValue<int>(out var n) && _pending.TryRemove(n, out var reply))
                reply.TrySetResult(message);
        }
        foreach (var reply in _pending.Values) reply.TrySetException(new EndOfStreamException("forkbox mcp closed its stdout"));
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            try
            {
                _process.StandardInput.Close();
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(15));
            }
            catch (Exception e) when (e is TimeoutException or IOException)
            {
                _process.Kill();
            }
        }
        _process.Dispose();
    }
}

/// <summary>A tools/call result: its text content, joined, and whether it is a tool error.</summary>
public sealed record ToolReply(JsonObject Result)
{
    public bool IsError => Result["isError"]?.GetValue<bool>() ?? false;

    public string Text => string.Join("\n", Result["content"]!.AsArray()
        .Where(c => c?["type"]?.GetValue<string>() == "text")
        .Select(c => c!["text"]!.GetValue<string>()));

    public override string ToString() => (IsError ? "[isError] " : "") + Text;
}
