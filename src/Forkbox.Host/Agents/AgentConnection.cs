using System.Net.Sockets;

namespace Forkbox.Host.Agents;

/// <summary>
/// hostd's end of one sandbox's control socket. Calls are serialised by <see cref="CallLock"/>: a
/// caller holds it from sending its request until it has read the call's last frame, so frames
/// never interleave and a second call queues behind the first.
/// </summary>
public sealed class AgentConnection(Socket socket) : IAsyncDisposable
{
    private readonly NetworkStream _stream = new(socket, ownsSocket: true);
    private readonly byte[] _prefix = new byte[8];
    private long _nextCallId;

    public SemaphoreSlim CallLock { get; } = new(1, 1);

    public long NextCallId() => Interlocked.Increment(ref _nextCallId);

    public ValueTask SendAsync(byte[] frame, CancellationToken ct) => _stream.WriteAsync(frame, ct);

    public ValueTask<AgentFrame> ReadAsync(CancellationToken ct) => AgentFrame.ReadAsync(_stream, _prefix, ct);

    /// <summary>Closes the socket: a read in progress ends with an exception.</summary>
    public void Abort() => socket.Dispose();

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync().ConfigureAwait(false);
        CallLock.Dispose();
    }
}
