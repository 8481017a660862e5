using Forkbox.Client;
using Forkbox.Core.Wire;
using Microsoft.Extensions.Logging;

namespace Forkbox.Cli.Mcp;

/// <summary>
/// The sandboxes of one MCP session: its main sandbox, created at the first tool call that needs
/// it, and the forks the session made. It owns them all and closes them when disposed (the
/// session's end). Tools may only name sandboxes that are in it.
/// </summary>
internal sealed partial class SandboxSession(ForkboxClient client, CreateSandboxRequest create, ILogger<SandboxSession> log) : IAsyncDisposable
{
    private readonly SemaphoreSlim _createLock = new(1, 1);
    private readonly Lock _gate = new();
    // Forks in the order they were made, so the session's end can close the newest (the innermost) first.
    private readonly List<Sandbox> _forks = [];
    private Sandbox? _main;
    private bool _ended;

    /// <summary>The main sandbox's id, or null before the first tool call made it.</summary>
    public string? MainId => _main?.Id;

    /// <summary>
    /// The sandbox a tool call targets: the main one (made now if this is the first call) when
    /// <paramref name="sandboxId"/> is empty, else the main one or a fork of this session by id.
    /// </summary>
    public async Task<Sandbox> ResolveAsync(string? sandboxId, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(sandboxId)) return _main ?? await CreateMainAsync(ct);
        lock (_gate)
        {
            if (_ended) throw new SessionSandboxException("the MCP session is ending; its sandboxes are being closed");
            if (_main?.Id == sandboxId) return _main;
            foreach (var fork in _forks)
                if (fork.Id == sandboxId) return fork;
            throw new SessionSandboxException(
                $"sandbox '{sandboxId}' was not created by this MCP session (or it was closed); " + Known());
        }
    }

    /// <summary>Takes ownership of forks made from one of the session's sandboxes.</summary>
    public async Task AddForksAsync(IReadOnlyList<Sandbox> forks)
    {
        lock (_gate)
        {
            if (!_ended)
            {
                _forks.AddRange(forks);
                return;
            }
        }
        // The session ended while the fork call was on its way: nobody else will close these.
        foreach (var fork in forks) await CloseQuietlyAsync(fork);
    }

    /// <summary>Closes one of the session's forks. The main sandbox lives as long as the session.</summary>
    public async Task CloseForkAsync(string sandboxId, CancellationToken ct)
    {
        Sandbox fork;
        lock (_gate)
        {
            if (_main?.Id == sandboxId)
                throw new SessionSandboxException($"'{sandboxId}' is this session's main sandbox: it is closed when the session ends, not by close_sandbox");
            var i = _forks.FindIndex(f => f.Id == sandboxId);
            if (i < 0) throw new SessionSandboxException($"sandbox '{sandboxId}' is not a fork made by this MCP session (or it was closed already); " + Known());
            fork = _forks[i];
        }
        await fork.CloseAsync(ct);
        lock (_gate) _forks.Remove(fork);
        LogClosed(fork.Id);
    }

    private async Task<Sandbox> CreateMainAsync(CancellationToken ct)
    {
        await _createLock.WaitAsync(ct);
        try
        {
            if (_ended) throw new SessionSandboxException("the MCP session is ending; its sandboxes are being closed");
            if (_main is not null) return _main;
            var sb = await Sandbox.CreateAsync(create, client, ct);
            _main = sb;
            LogCreated(sb.Id, sb.Info.Template);
            return sb;
        }
        finally
        {
            _createLock.Release();
        }
    }

    private string Known()
    {
        if (_main is null) return "this session has no sandbox yet: leave sandbox_id out to use (and create) its main sandbox";
        var forks = _forks.Count == 0 ? "no forks" : "forks " + string.Join(", ", _forks.Select(f => f.Id));
        return $"this session has main sandbox {_main.Id} (used when sandbox_id is left out) and {forks}";
    }

    /// <summary>Closes every sandbox of the session: forks newest first, then the main one.</summary>
    public async ValueTask DisposeAsync()
    {
        // Wait for a create in flight, so its sandbox is closed too rather than leaked.
        await _createLock.WaitAsync();
        List<Sandbox> all;
        lock (_gate)
        {
            _ended = true;
            all = Enumerable.Reverse(_forks).ToList();
            _forks.Clear();
        }
        if (_main is not null) all.Add(_main);
        foreach (var sb in all) await CloseQuietlyAsync(sb);
        _createLock.Release();
    }

    private async Task CloseQuietlyAsync(Sandbox sb)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await sb.CloseAsync(timeout.Token);
            LogClosed(sb.Id);
        }
        catch (Exception e) when (e is ForkboxApiException or HttpRequestException or OperationCanceledException)
        {
            // Nothing else will close it: say so, with the id, so a person can.
            LogCloseFailed(sb.Id, e.Message);
        }
    }

    [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "sandbox {SandboxId} created from template {Template} for this MCP session")]
    private partial void LogCreated(string sandboxId, string template);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Information, Message = "sandbox {SandboxId} closed")]
    private partial void LogClosed(string sandboxId);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Warning, Message = "sandbox {SandboxId}: could not be closed at the end of the session ({Error}); close it with `forkbox sandbox rm` and this id")]
    private partial void LogCloseFailed(string sandboxId, string error);
}
