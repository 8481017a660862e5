using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;

namespace Forkbox.Benchmarks;

/// <summary>
/// Frames as the agent sends them (forkbox_agent/protocol.py): an "out" frame of output lines, an
/// "exit" frame, and a file's contents; each built with hostd's own message records.
/// </summary>
internal static class SampleFrames
{
    public const string Code = "for i in range(10): print(f'line {i}: the quick brown fox jumps over the lazy dog')";

    public static AgentOutEvent OutEvent(int lines) =>
        new(1, 1, Enumerable.Range(0, lines).Select(i => lines == 1 ? "1" : $"line {i}: the quick brown fox jumps over the lazy dog").ToList());

    public static readonly AgentExitEvent ExitEvent = new(1, 0, false);

    public static byte[] OutHeader(int lines) => JsonSerializer.SerializeToUtf8Bytes(OutEvent(lines), AgentJson.Default.AgentOutEvent);

    public static byte[] ExitHeader() => JsonSerializer.SerializeToUtf8Bytes(ExitEvent, AgentJson.Default.AgentExitEvent);

    public static byte[] Out(int lines) => Frame(OutHeader(lines), []);

    public static byte[] Exit() => Frame(ExitHeader(), []);

    public static byte[] File(int bytes) => Frame(JsonSerializer.SerializeToUtf8Bytes(new AgentReadOk(1, bytes), AgentJson.Default.AgentReadOk), new byte[bytes]);

    /// <summary>A frame: two big-endian lengths, the header, the payload (AgentFrame.cs).</summary>
    private static byte[] Frame(byte[] header, byte[] payload)
    {
        var frame = new byte[8 + header.Length + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame, (uint)header.Length);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(4), (uint)payload.Length);
        header.CopyTo(frame, 8);
        payload.CopyTo(frame, 8 + header.Length);
        return frame;
    }

    public static AgentExecRequest ExecRequest(long callId, string code) => new(callId, "python", code, 300, false, null, null);

    public static byte[] ExecBody(string code) => JsonSerializer.SerializeToUtf8Bytes(new ExecRequest { Code = code }, WireJson.Default.ExecRequest);
}
