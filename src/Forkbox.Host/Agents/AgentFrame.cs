using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Forkbox.Host.Agents;

/// <summary>
/// The frames of the control channel: u32 header length, u32 payload length (big-endian), a JSON
/// header (one of the messages of <see cref="AgentJson"/>), then the payload. The Python side is
/// forkbox_agent/protocol.py: change both together. Read with <see cref="AgentFrameReader"/>.
/// </summary>
public static class AgentFrame
{
    public const int MaxHeaderBytes = 16 << 20;

    /// <summary>The largest encode or header buffer a connection keeps between calls; a larger frame's is let go after it.</summary>
    public const int KeptBufferBytes = 64 << 10;

    /// <summary>
    /// Writes a frame's head (the two lengths and <paramref name="message"/>) into
    /// <paramref name="buffer"/>, which the caller owns and reuses (it is cleared first), through
    /// <paramref name="writer"/>, reset onto it: nothing is allocated once the buffer has grown to
    /// the size of the usual frame.
    /// </summary>
    public static ReadOnlyMemory<byte> EncodeHead<T>(ArrayBufferWriter<byte> buffer, Utf8JsonWriter writer, T message, JsonTypeInfo<T> type,
        int payloadLength)
    {
        buffer.ResetWrittenCount();
        buffer.GetSpan(8);
        buffer.Advance(8);
        writer.Reset(buffer);
        JsonSerializer.Serialize(writer, message, type);
        writer.Flush();
        var head = buffer.WrittenMemory;
        var span = System.Runtime.InteropServices.MemoryMarshal.AsMemory(head).Span;
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)(head.Length - 8));
        BinaryPrimitives.WriteUInt32BigEndian(span[4..], (uint)payloadLength);
        return head;
    }

    /// <summary>Whether an exception from reading or writing the control socket means the agent is gone.</summary>
    public static bool IsChannelLost(Exception e) =>
        e is EndOfStreamException or IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidDataException;

    /// <summary>A frame's two lengths, checked against <see cref="MaxHeaderBytes"/> and <paramref name="maxPayload"/> (see <see cref="AgentFrameReader.ReadHeadAsync"/>).</summary>
    internal static async ValueTask<(int Header, int Payload)> ReadPrefixAsync(Stream stream, byte[] prefix, long maxPayload, CancellationToken ct)
    {
        await stream.ReadExactlyAsync(prefix.AsMemory(0, 8), ct).ConfigureAwait(false);
        var headerLength = BinaryPrimitives.ReadUInt32BigEndian(prefix);
        var payloadLength = BinaryPrimitives.ReadUInt32BigEndian(prefix.AsSpan(4));
        if (headerLength > MaxHeaderBytes)
            throw new AgentFrameTooLargeException("header", headerLength, MaxHeaderBytes);
        if (payloadLength > maxPayload)
            throw new AgentFrameTooLargeException("payload", payloadLength, maxPayload);
        return ((int)headerLength, (int)payloadLength);
    }

    /// <summary>The payload, in a buffer that starts at 1 MiB and doubles as bytes arrive (never past their length).</summary>
    internal static async ValueTask<byte[]> ReadPayloadAsync(Stream stream, int length, CancellationToken ct)
    {
        var buffer = new byte[Math.Min(length, 1 << 20)];
        var got = 0;
        while (true)
        {
            await stream.ReadExactlyAsync(buffer.AsMemory(got), ct).ConfigureAwait(false);
            got = buffer.Length;
            if (got == length) return buffer;
            Array.Resize(ref buffer, (int)Math.Min(length, 2L * got));
        }
    }
}
