using System.Collections.Concurrent;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Agents;

/// <summary>
/// The Unix socket every new sandbox connects to (before it pivots away from the host's
/// filesystem) and says hello on, with its id and a one-time token. A connection whose hello does
/// not match a sandbox being created is dropped.
/// </summary>
public sealed partial class AgentListener : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly string _path;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<string, (string Token, TaskCompletionSource<AgentConnection> Tcs)> _expected = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;

    public AgentListener(string path, ILogger log)
    {
        _path = path;
        _log = log;
        File.Delete(path);
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _listener.Listen(512);
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public string Path => _path;

    /// <summary>Registers a sandbox about to start; the task completes when it says hello.</summary>
    public Task<AgentConnection> Expect(string id, string token)
    {
        var tcs = new TaskCompletionSource<AgentConnection>(TaskCreationOptions.RunContinuationsAsynchronously);
        _expected[id] = (token, tcs);
        return tcs.Task;
    }

    public void Forget(string id) => _expected.TryRemove(id, out _);

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                LogAcceptFailed(e);
                continue;
            }
            _ = HelloAsync(client);
        }
    }

    private async Task HelloAsync(Socket client)
    {
        var conn = new AgentConnection(client);
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            cts.CancelAfter(TimeSpan.FromSeconds(30));
            var message = await conn.ReadMessageAsync(0, cts.Token).ConfigureAwait(false);
            var hello = message.Decode(AgentJson.Default.AgentHello);
            var id = hello.Id ?? "";
            if (message.Event == AgentEvents.Hello && _expected.TryRemove(id, out var expected) && expected.Token == hello.Token)
            {
                // A fork that could not start says why instead of hello.
                if (hello.Error is { } error)
                {
                    expected.Tcs.TrySetException(new InvalidOperationException($"the sandbox failed to start: {error}"));
                }
                else
                {
                    expected.Tcs.TrySetResult(conn);
                    return;
                }
            }
            else
            {
                LogBadHello(id);
            }
        }
        catch (Exception e)
        {
            LogHelloFailed(e.Message);
        }
        await conn.DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        await _acceptLoop.ConfigureAwait(false);
        File.Delete(_path);
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "agent socket accept failed")]
    private partial void LogAcceptFailed(Exception error);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "dropped an agent connection with an unexpected hello (sandbox {SandboxId})")]
    private partial void LogBadHello(string sandboxId);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Warning, Message = "agent connection failed before hello: {Error}")]
    private partial void LogHelloFailed(string error);
}
