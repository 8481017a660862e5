using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Forkbox.Host.Agents;

/// <summary>
/// One frame on the control channel: u32 header length, u32 payload length (big-endian), a JSON
/// header, then the payload. The Python side is forkbox_agent/protocol.py: change both together.
/// </summary>
public sealed class AgentFrame(JsonDocument header, byte[] payload) : IDisposable
{
    public const int MaxHeaderBytes = 16 << 20;

    public JsonElement Header => header.RootElement;
    public byte[] Payload => payload;

    public string Event => Header.TryGetProperty("ev", out var ev) ? ev.GetString() ?? "" : "";

    public void Dispose() => header.Dispose();

    /// <summary>The header as one of the messages of <see cref="AgentJson"/>; a header of another shape is an <see cref="AgentProtocolException"/>.</summary>
    public T Decode<T>(JsonTypeInfo<T> type) => AgentMessage.Decode(Header, type);

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

    /// <summary>Serialises a request frame; the header is written by <paramref name="writeHeader"/>.</summary>
    public static byte[] Encode(Action<Utf8JsonWriter> writeHeader, ReadOnlySpan<byte> payload)
    {
        var head = EncodeHead(writeHeader, payload.Length);
        var bytes = new byte[head.Length + payload.Length];
        head.CopyTo(bytes, 0);
        payload.CopyTo(bytes.AsSpan(head.Length));
        return bytes;
    }

    /// <summary>
    /// The frame up to its payload (the two lengths and the header), for a caller that sends the
    /// payload after it as it is: an upload of 64 MiB is then not copied once more into a frame.
    /// </summary>
    public static byte[] EncodeHead(Action<Utf8JsonWriter> writeHeader, int payloadLength)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        buffer.GetSpan(8);
        buffer.Advance(8);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            writeHeader(w);
            w.WriteEndObject();
        }
        var bytes = buffer.WrittenSpan.ToArray();
        BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)(bytes.Length - 8));
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), (uint)payloadLength);
        return bytes;
    }

    /// <summary>Writes "env": {…} when there are variables to pass (exec, setenv and spawn requests).</summary>
    public static void WriteEnv(Utf8JsonWriter w, IReadOnlyDictionary<string, string>? env)
    {
        if (env is not { Count: > 0 }) return;
        w.WriteStartObject("env");
        foreach (var (k, v) in env) w.WriteString(k, v);
        w.WriteEndObject();
    }

    /// <summary>Whether an exception from reading or writing the control socket means the agent is gone.</summary>
    public static bool IsChannelLost(Exception e) =>
        e is EndOfStreamException or IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidDataException;

    /// <summary>
    /// Reads one frame; throws EndOfStreamException when the agent has gone, and
    /// <see cref="AgentFrameTooLargeException"/>, before allocating anything for it, when the frame
    /// declares a header over <see cref="MaxHeaderBytes"/> or a payload over
    /// <paramref name="maxPayload"/>: the most the caller expects from this answer (0 for every
    /// frame but a file's contents). User code runs in the agent's process and can write any
    /// header to its socket, so a declared length is only believed up to there; and the payload
    /// buffer grows with the bytes that really arrive, so a length declared and never sent costs
    /// nothing either.
    /// </summary>
    public static async ValueTask<AgentFrame> ReadAsync(Stream stream, byte[] prefix, long maxPayload, CancellationToken ct)
    {
        var (headerLength, payloadLength) = await ReadPrefixAsync(stream, prefix, maxPayload, ct).ConfigureAwait(false);
        var headerBytes = new byte[headerLength];
        await stream.ReadExactlyAsync(headerBytes, ct).ConfigureAwait(false);
        var payload = payloadLength == 0 ? [] : await ReadPayloadAsync(stream, payloadLength, ct).ConfigureAwait(false);
        return new AgentFrame(JsonDocument.Parse(headerBytes), payload);
    }

    /// <summary>A frame's two lengths, checked against <see cref="MaxHeaderBytes"/> and <paramref name="maxPayload"/> (see <see cref="ReadAsync"/>).</summary>
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
