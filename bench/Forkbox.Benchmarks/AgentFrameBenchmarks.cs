using BenchmarkDotNet.Attributes;
using Forkbox.Host.Agents;

namespace Forkbox.Benchmarks;

/// <summary>The control channel's framing (AgentFrame): the exec request hostd writes, and the frames it reads back.</summary>
[MemoryDiagnoser]
public class AgentFrameBenchmarks
{
    private readonly byte[] _prefix = new byte[8];
    private readonly MemoryStream _out10 = new(SampleFrames.Out(10));
    private readonly MemoryStream _exit = new(SampleFrames.Exit());
    private readonly MemoryStream _file = new(SampleFrames.File(256 << 10));

    [Benchmark(Description = "encode the exec request")]
    public byte[] Encode_exec_request() => SampleFrames.ExecRequest(42, SampleFrames.Code, 300);

    [Benchmark(Description = "decode an out frame of 10 lines")]
    public ValueTask<int> Decode_out_frame_10_lines() => Decode(_out10, 0);

    [Benchmark(Description = "decode an exit frame")]
    public ValueTask<int> Decode_exit_frame() => Decode(_exit, 0);

    [Benchmark(Description = "decode a 256 KB file frame (download)")]
    public ValueTask<int> Decode_file_frame_256KB() => Decode(_file, 1 << 20);

    private async ValueTask<int> Decode(MemoryStream stream, long maxPayload)
    {
        stream.Position = 0;
        using var frame = await AgentFrame.ReadAsync(stream, _prefix, maxPayload, CancellationToken.None).ConfigureAwait(false);
        return frame.Payload.Length + frame.Event.Length;
    }
}
