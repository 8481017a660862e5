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

    /// <summary>Sends a frame's head (<see cref="AgentFrame.EncodeHead"/>) and then its payload, uncopied.</summary>
    public async ValueTask SendAsync(byte[] head, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        await _stream.WriteAsync(head, ct).ConfigureAwait(false);
        if (!payload.IsEmpty) await _stream.WriteAsync(payload, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Held by an upload from before its body is read until the agent has written it, so that one
    /// sandbox buffers one upload at a time in hostd, however many its clients send at once.
    /// </summary>
    public SemaphoreSlim UploadGate { get; } = new(1, 1);

    /// <summary>Reads the next frame, refusing unread one whose payload is over <paramref name="maxPayload"/> (see <see cref="AgentFrame.ReadAsync"/>).</summary>
    public ValueTask<AgentFrame> ReadAsync(long maxPayload, CancellationToken ct) => AgentFrame.ReadAsync(_stream, _prefix, maxPayload, ct);

    /// <summary>Closes the socket: a read in progress ends with an exception.</summary>
    public void Abort() => socket.Dispose();

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync().ConfigureAwait(false);
        CallLock.Dispose();
        UploadGate.Dispose();
    }
}
