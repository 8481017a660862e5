using BenchmarkDotNet.Attributes;
using Forkbox.Host.Agents;
using Forkbox.Host.Api;

namespace Forkbox.Benchmarks;

/// <summary>
/// An agent frame already read, passed on by SandboxManager's forwarding into the NDJSON sink and
/// flushed into the response pipe, which is then emptied.
/// </summary>
[MemoryDiagnoser]
public class ExecSinkBenchmarks
{
    private readonly PipeResponse _response = new();
    private readonly AgentFrame _out10 = SampleFrames.Parse(SampleFrames.Out(10));
    private readonly AgentFrame _exit = SampleFrames.Parse(SampleFrames.Exit());
    private NdjsonExecSink _sink = null!;

    [GlobalSetup]
    public void Setup() => _sink = new NdjsonExecSink(_response.Response);

    [Benchmark(Description = "forward an out frame of 10 lines to the sink")]
    public ValueTask<long> Forward_out_frame_10_lines() => Forward(_sink, _out10);

    [Benchmark(Description = "open a sink (one per call) and forward exit")]
    public ValueTask<long> New_sink_and_exit_frame() => Forward(new NdjsonExecSink(_response.Response), _exit);

    private async ValueTask<long> Forward(NdjsonExecSink sink, AgentFrame frame)
    {
        long left = 16L << 20;
        HostSeams.Forward(frame, sink, ref left);
        await sink.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        _response.Drain();
        return _response.LastDrained;
    }
}
