using System.Runtime.CompilerServices;

namespace Forkbox.Host.Agents;

/// <summary>
/// Reads the frames of one control channel (<see cref="AgentFrame"/>) into a header buffer it keeps
/// from frame to frame. A message read is valid until the next read: decode it first. One reader
/// per stream, used by one caller at a time (a connection's, under its call lock).
/// </summary>
public sealed class AgentFrameReader(Stream stream)
{
    private readonly byte[] _prefix = new byte[8];
    private byte[] _header = new byte[2048];

    /// <summary>
    /// The next frame, its payload read too. Throws EndOfStreamException when the agent has gone,
    /// and <see cref="AgentFrameTooLargeException"/>, before allocating anything for it, when the
    /// frame declares a header over <see cref="AgentFrame.MaxHeaderBytes"/> or a payload over
    /// <paramref name="maxPayload"/>: the most the caller expects from this answer (0 for every
    /// frame but a file's contents). User code runs in the agent's process and can write any
    /// header to its socket, so a declared length is only believed up to there; and the payload
    /// buffer grows with the bytes that really arrive, so a length declared and never sent costs
    /// nothing either.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<AgentMessage> ReadMessageAsync(long maxPayload, CancellationToken ct)
    {
        var (message, payloadLength) = await ReadHeadAsync(maxPayload, ct).ConfigureAwait(false);
        if (payloadLength == 0) return message;
        var payload = await AgentFrame.ReadPayloadAsync(stream, payloadLength, ct).ConfigureAwait(false);
        return new AgentMessage(message.Event, message.Header, payload);
    }

    /// <summary>
    /// The next frame's header, as <see cref="ReadMessageAsync"/> reads it, with its payload (of the
    /// length returned) left unread: the caller reads that next, before anything else.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<(AgentMessage Message, int PayloadLength)> ReadHeadAsync(long maxPayload, CancellationToken ct)
    {
        var (headerLength, payloadLength) = await AgentFrame.ReadPrefixAsync(stream, _prefix, maxPayload, ct).ConfigureAwait(false);
        // The buffer grows to the usual header (a sandbox that prints much sends frames of up to
        // a few 64 KiB lines); a header over the kept size gets a buffer of its own, not kept.
        if (headerLength > _header.Length && headerLength <= AgentFrame.KeptBufferBytes)
            _header = new byte[Math.Min(AgentFrame.KeptBufferBytes, Math.Max(headerLength, 2 * _header.Length))];
        var header = headerLength <= _header.Length ? _header : new byte[headerLength];
        var memory = header.AsMemory(0, headerLength);
        await stream.ReadExactlyAsync(memory, ct).ConfigureAwait(false);
        return (new AgentMessage(AgentMessage.EventOf(memory.Span), memory, []), payloadLength);
    }
}
