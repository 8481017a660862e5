using BenchmarkDotNet.Attributes;
using Forkbox.Host.Agents;
using Forkbox.Host.Api;

namespace Forkbox.Benchmarks;

/// <summary>
/// An agent event already decoded, passed on by SandboxCalls' forwarding into the NDJSON sink and
/// flushed into the response pipe, which is then emptied.
/// </summary>
[MemoryDiagnoser]
public class ExecSinkBenchmarks
{
    private readonly PipeResponse _response = new();
    private readonly AgentExecEvent _out10 = new(SampleFrames.OutEvent(10));
    private readonly AgentExecEvent _exit = new(SampleFrames.ExitEvent);
    private NdjsonExecSink _sink = null!;

    [GlobalSetup]
    public void Setup() => _sink = new NdjsonExecSink(_response.Response);

    [Benchmark(Description = "forward an out event of 10 lines to the sink")]
    public ValueTask<long> Forward_out_frame_10_lines() => Forward(_sink, _out10);

    [Benchmark(Description = "open a sink (one per call) and forward exit")]
    public ValueTask<long> New_sink_and_exit_frame() => Forward(new NdjsonExecSink(_response.Response), _exit);

    private async ValueTask<long> Forward(NdjsonExecSink sink, AgentExecEvent ev)
    {
        long left = 16L << 20;
        HostSeams.Forward(ev, sink, ref left);
        await sink.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        _response.Drain();
        return _response.LastDrained;
    }
}
