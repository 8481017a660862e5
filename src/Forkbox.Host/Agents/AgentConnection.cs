using System.Buffers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Forkbox.Host.Agents;

/// <summary>
/// hostd's end of one sandbox's control socket. Calls are serialised by <see cref="CallLock"/>: a
/// caller holds it from sending its request until it has read the call's last frame, so frames
/// never interleave and a second call queues behind the first.
/// </summary>
public sealed class AgentConnection : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly AgentFrameReader _reader;
    private long _nextCallId;

    // The typed calls' buffers, reused from call to call (calls are serialised by CallLock): the
    // exec path then encodes a request and decodes its events without allocating a buffer each.
    private readonly ArrayBufferWriter<byte> _encoded = new(512);
    private readonly Utf8JsonWriter _writer = new(Stream.Null);

    public AgentConnection(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new AgentFrameReader(_stream);
    }

    public SemaphoreSlim CallLock { get; } = new(1, 1);

    /// <summary>
    /// Taken to interrupt the exec in progress and to end one: an interrupt is sent only while its
    /// exec is still running, so it cannot reach the next call.
    /// </summary>
    public Lock InterruptLock { get; } = new();

    // The call in progress's deadline: one source per connection, reset for each call.
    private CancellationTokenSource _deadline = new();

    /// <summary>
    /// A token cancelled <paramref name="timeout"/> from now, for the call the caller is making
    /// under <see cref="CallLock"/>; see <see cref="DeadlinePassed"/>. Each call re-arms it, so a
    /// call allocates no source and no timer of its own.
    /// </summary>
    public CancellationToken ArmDeadline(TimeSpan timeout)
    {
        if (!_deadline.TryReset())
        {
            _deadline.Dispose();
            _deadline = new CancellationTokenSource();
        }
        _deadline.CancelAfter(timeout);
        return _deadline.Token;
    }

    /// <summary>Whether the deadline last armed has passed.</summary>
    public bool DeadlinePassed => _deadline.IsCancellationRequested;

    /// <summary>The typed calls on this connection (one per op); made once, with the connection.</summary>
    public AgentClient Client => _client ??= new AgentClient(this);

    private AgentClient? _client;

    public long NextCallId() => Interlocked.Increment(ref _nextCallId);

    /// <summary>
    /// Sends <paramref name="message"/> (a request of <see cref="AgentJson"/>) as a frame, then
    /// <paramref name="payload"/> uncopied. The caller holds <see cref="CallLock"/>.
    /// </summary>
    public ValueTask SendAsync<T>(T message, JsonTypeInfo<T> type, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        var head = AgentFrame.EncodeHead(_encoded, _writer, message, type, payload.Length);
        if (payload.IsEmpty && _encoded.Capacity <= AgentFrame.KeptBufferBytes) return _stream.WriteAsync(head, ct);
        return SendHeadAndPayloadAsync(head, payload, ct);
    }

    private async ValueTask SendHeadAndPayloadAsync(ReadOnlyMemory<byte> head, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        try
        {
            await _stream.WriteAsync(head, ct).ConfigureAwait(false);
            if (!payload.IsEmpty) await _stream.WriteAsync(payload, ct).ConfigureAwait(false);
        }
        finally
        {
            // A 16 MiB exec's code is not kept for the life of the sandbox.
            if (_encoded.Capacity > AgentFrame.KeptBufferBytes) _encoded.Clear();
        }
    }

    /// <summary>The next frame (see <see cref="AgentFrameReader.ReadMessageAsync"/>); the caller holds <see cref="CallLock"/>.</summary>
    public ValueTask<AgentMessage> ReadMessageAsync(long maxPayload, CancellationToken ct) => _reader.ReadMessageAsync(maxPayload, ct);

    /// <summary>
    /// The next frame's header, its payload left unread (see <see cref="AgentFrameReader.ReadHeadAsync"/>):
    /// the caller reads it next, with <see cref="CopyPayloadAsync"/>.
    /// </summary>
    public ValueTask<(AgentMessage Message, int PayloadLength)> ReadHeadAsync(long maxPayload, CancellationToken ct) =>
        _reader.ReadHeadAsync(maxPayload, ct);

    /// <summary>
    /// Copies the unread payload of the frame just read (<see cref="ReadHeadAsync"/>) to
    /// <paramref name="destination"/> in pieces, each of which the agent must deliver within
    /// <paramref name="pieceTimeout"/> (see <see cref="ArmDeadline"/>): a file streams through a
    /// buffer of 64 KiB, never whole. If <paramref name="destination"/> fails (the client went
    /// away) the rest is read and dropped, which keeps the channel in step; false then.
    /// </summary>
    public async ValueTask<bool> CopyPayloadAsync(int length, Stream destination, TimeSpan pieceTimeout)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(length, 64 << 10));
        var delivered = true;
        try
        {
            while (length > 0)
            {
                var n = await _stream.ReadAsync(buffer.AsMemory(0, Math.Min(length, buffer.Length)), ArmDeadline(pieceTimeout)).ConfigureAwait(false);
                if (n == 0) throw new EndOfStreamException("the agent closed its control channel in the middle of a file");
                length -= n;
                if (!delivered) continue;
                try
                {
                    await destination.WriteAsync(buffer.AsMemory(0, n)).ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
                {
                    delivered = false;
                }
            }
            return delivered;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Held by an upload from before its body is read until the agent has written it, so that one
    /// sandbox buffers one upload at a time in hostd, however many its clients send at once.
    /// </summary>
    public SemaphoreSlim UploadGate { get; } = new(1, 1);

    /// <summary>Closes the socket: a read in progress ends with an exception.</summary>
    public void Abort() => _socket.Dispose();

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync().ConfigureAwait(false);
        await _writer.DisposeAsync().ConfigureAwait(false);
        CallLock.Dispose();
        UploadGate.Dispose();
        _deadline.Dispose();
    }
}
