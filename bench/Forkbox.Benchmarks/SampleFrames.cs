using System.Text.Json;
using Forkbox.Host.Agents;

namespace Forkbox.Benchmarks;

/// <summary>
/// Frames as the agent sends them (forkbox_agent/protocol.py and agent.py): an "out" frame of
/// output lines, an "exit" frame, and a file's contents; and the exec request hostd sends.
/// </summary>
internal static class SampleFrames
{
    public const string Code = "for i in range(10): print(f'line {i}: the quick brown fox jumps over the lazy dog')";

    public static byte[] Out(int lines) => AgentFrame.Encode(w =>
    {
        w.WriteString("ev", "out");
        w.WriteNumber("id", 1);
        w.WriteNumber("s", 1);
        w.WriteStartArray("lines");
        for (var i = 0; i < lines; i++) w.WriteStringValue(lines == 1 ? "1" : $"line {i}: the quick brown fox jumps over the lazy dog");
        w.WriteEndArray();
    }, default);

    public static byte[] Exit() => AgentFrame.Encode(w =>
    {
        w.WriteString("ev", "exit");
        w.WriteNumber("id", 1);
        w.WriteNumber("code", 0);
        w.WriteBoolean("timeout", false);
    }, default);

    public static byte[] File(int bytes) => AgentFrame.Encode(w =>
    {
        w.WriteString("ev", "ok");
        w.WriteNumber("id", 1);
        w.WriteNumber("size", bytes);
    }, new byte[bytes]);

    /// <summary>The request of an exec call, written as SandboxManager.ExecAsync writes it.</summary>
    public static byte[] ExecRequest(long callId, string code, double timeout) => AgentFrame.Encode(w =>
    {
        w.WriteString("op", "exec");
        w.WriteNumber("id", callId);
        w.WriteString("lang", "python");
        w.WriteString("code", code);
        w.WriteNumber("timeout", timeout);
        w.WriteBoolean("rich", false);
        AgentFrame.WriteEnv(w, null);
    }, default);

    /// <summary>A frame read back as hostd reads it, for benchmarks that start from a parsed frame.</summary>
    public static AgentFrame Parse(byte[] frame) =>
        AgentFrame.ReadAsync(new MemoryStream(frame), new byte[8], long.MaxValue, CancellationToken.None).AsTask().GetAwaiter().GetResult();

    public static byte[] ExecBody(string code) => JsonSerializer.SerializeToUtf8Bytes(new Forkbox.Core.Wire.ExecRequest { Code = code },
        Forkbox.Core.Wire.WireJson.Default.ExecRequest);
}
