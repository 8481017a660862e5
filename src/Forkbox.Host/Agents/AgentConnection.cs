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
public sealed class AgentConnection(Socket socket) : IAsyncDisposable
{
    private readonly NetworkStream _stream = new(socket, ownsSocket: true);
    private readonly byte[] _prefix = new byte[8];
    private long _nextCallId;

    // The typed calls' buffers, reused from call to call (calls are serialised by CallLock): the
    // exec path then encodes a request and decodes its events without allocating a buffer each.
    private readonly ArrayBufferWriter<byte> _encoded = new(512);
    private readonly Utf8JsonWriter _writer = new(Stream.Null);
    private byte[] _header = new byte[2048];

    /// <summary>The largest encode or header buffer kept between calls; a larger frame's is let go after it.</summary>
    private const int KeptHeaderBytes = 64 << 10;

    public SemaphoreSlim CallLock { get; } = new(1, 1);

    /// <summary>The typed calls on this connection (one per op); made once, with the connection.</summary>
    public AgentClient Client => _client ??= new AgentClient(this);

    private AgentClient? _client;

    public long NextCallId() => Interlocked.Increment(ref _nextCallId);

    public ValueTask SendAsync(byte[] frame, CancellationToken ct) => _stream.WriteAsync(frame, ct);

    /// <summary>Sends a frame's head (<see cref="AgentFrame.EncodeHead"/>) and then its payload, uncopied.</summary>
    public async ValueTask SendAsync(byte[] head, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        await _stream.WriteAsync(head, ct).ConfigureAwait(false);
        if (!payload.IsEmpty) await _stream.WriteAsync(payload, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Sends <paramref name="message"/> (a request of <see cref="AgentJson"/>) as a frame, then
    /// <paramref name="payload"/> uncopied. The caller holds <see cref="CallLock"/>.
    /// </summary>
    public ValueTask SendAsync<T>(T message, JsonTypeInfo<T> type, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        var head = AgentFrame.EncodeHead(_encoded, _writer, message, type, payload.Length);
        if (payload.IsEmpty && _encoded.Capacity <= KeptHeaderBytes) return _stream.WriteAsync(head, ct);
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
            if (_encoded.Capacity > KeptHeaderBytes) _encoded.Clear();
        }
    }

    /// <summary>
    /// Reads the next frame into this connection's header buffer, refusing unread one whose
    /// payload is over <paramref name="maxPayload"/> (see <see cref="AgentFrame.ReadAsync"/>).
    /// The message's header is valid until the next read: decode it first. The caller holds
    /// <see cref="CallLock"/>.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<AgentMessage> ReadMessageAsync(long maxPayload, CancellationToken ct)
    {
        var (headerLength, payloadLength) = await AgentFrame.ReadPrefixAsync(_stream, _prefix, maxPayload, ct).ConfigureAwait(false);
        // The buffer grows to the usual header (a sandbox that prints much sends frames of up to
        // a few 64 KiB lines); a header over the kept size gets a buffer of its own, not kept.
        if (headerLength > _header.Length && headerLength <= KeptHeaderBytes)
            _header = new byte[Math.Min(KeptHeaderBytes, Math.Max(headerLength, 2 * _header.Length))];
        var header = headerLength <= _header.Length ? _header : new byte[headerLength];
        var memory = header.AsMemory(0, headerLength);
        await _stream.ReadExactlyAsync(memory, ct).ConfigureAwait(false);
        var payload = payloadLength == 0 ? [] : await AgentFrame.ReadPayloadAsync(_stream, payloadLength, ct).ConfigureAwait(false);
        return new AgentMessage(AgentMessage.EventOf(memory.Span), memory, payload);
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
        await _writer.DisposeAsync().ConfigureAwait(false);
        CallLock.Dispose();
        UploadGate.Dispose();
    }
}
