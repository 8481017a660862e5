using System.Buffers;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Forkbox.Host.Agents;

namespace Forkbox.Benchmarks;

/// <summary>
/// The control channel's messages: the exec request hostd encodes (into a connection's reused
/// buffer, as AgentConnection does), and the event headers it decodes (AgentMessage).
/// </summary>
[MemoryDiagnoser]
public class AgentFrameBenchmarks
{
    private readonly ArrayBufferWriter<byte> _buffer = new(512);
    private readonly Utf8JsonWriter _writer = new(Stream.Null);
    private readonly byte[] _out10 = SampleFrames.OutHeader(10);
    private readonly byte[] _exit = SampleFrames.ExitHeader();

    [Benchmark(Description = "encode the exec request")]
    public int Encode_exec_request() =>
        AgentFrame.EncodeHead(_buffer, _writer, SampleFrames.ExecRequest(42, SampleFrames.Code), AgentJson.Default.AgentExecRequest, 0).Length;

    [Benchmark(Description = "decode an out event of 10 lines")]
    public int Decode_out_frame_10_lines() => Message(_out10).Decode(AgentJson.Default.AgentOutEvent).Lines.Count;

    [Benchmark(Description = "decode an exit event")]
    public int Decode_exit_frame() => Message(_exit).Decode(AgentJson.Default.AgentExitEvent).Code;

    private static AgentMessage Message(byte[] header) => new(AgentMessage.EventOf(header), header, []);
}
