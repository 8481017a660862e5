using BenchmarkDotNet.Attributes;
using Forkbox.Host.Agents;
using Forkbox.Host.Api;

namespace Forkbox.Benchmarks;

/// <summary>
/// One exec call from hostd's side of the control socket to a fake agent and back, as
/// SandboxManager.ExecAsync makes it without its sandbox (state moves, metrics): take the call
/// lock, encode the request, arm the call's hard timeout, send, then read each answer frame,
/// forward it into a new NDJSON sink (one per call, as the endpoint makes) and flush, until "exit".
/// </summary>
[MemoryDiagnoser]
public class ExecRoundTripBenchmarks
{
    private static readonly TimeSpan AgentGrace = TimeSpan.FromSeconds(5);
    private const long OutputLimitBytes = 16L << 20;
    private const double Timeout = 300;
    private readonly PipeResponse _response = new();
    private AgentConnection _ten = null!, _one = null!;
    private FakeAgent _tenAgent = null!, _oneAgent = null!;

    [GlobalSetup]
    public void Setup()
    {
        (_ten, _tenAgent) = FakeAgent.Start([.. SampleFrames.Out(10), .. SampleFrames.Exit()]);
        (_one, _oneAgent) = FakeAgent.Start([.. SampleFrames.Out(1), .. SampleFrames.Exit()]);
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        foreach (var conn in new[] { _ten, _one }) conn.Abort();
        await _tenAgent.DisposeAsync();
        await _oneAgent.DisposeAsync();
        await _ten.DisposeAsync();
        await _one.DisposeAsync();
    }

    [Benchmark(Description = "exec round trip, 10 lines of output")]
    public Task<long> Exec_10_lines() => ExecAsync(_ten, SampleFrames.Code);

    [Benchmark(Description = "exec round trip, print(1)")]
    public Task<long> Exec_print_1() => ExecAsync(_one, "print(1)");

    private async Task<long> ExecAsync(AgentConnection agent, string code)
    {
        await agent.CallLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            var frame = SampleFrames.ExecRequest(agent.NextCallId(), code, Timeout);
            using var hard = new CancellationTokenSource(TimeSpan.FromSeconds(Timeout) + AgentGrace);
            var sink = new NdjsonExecSink(_response.Response);
            var outputLeft = OutputLimitBytes;
            await agent.SendAsync(frame, hard.Token).ConfigureAwait(false);
            long written = 0;
            while (true)
            {
                bool done;
                using (var f = await agent.ReadAsync(0, hard.Token).ConfigureAwait(false))
                    done = HostSeams.Forward(f, sink, ref outputLeft);
                await sink.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                _response.Drain();
                written += _response.LastDrained;
                if (done) return written;
            }
        }
        finally
        {
            agent.CallLock.Release();
        }
    }
}
