using BenchmarkDotNet.Attributes;
using Forkbox.Core.Wire;
using Forkbox.Host.Api;

namespace Forkbox.Benchmarks;

/// <summary>
/// Calls from hostd's side of the control socket to a fake agent and back, through the real
/// SandboxCalls: an exec (call lock, request, deadline, each event forwarded into a new NDJSON
/// sink, one per call as the endpoint makes, and flushed) and a download streamed to a response;
/// and an exec as POST /v1/sandboxes/{id}/exec runs it, from reading its JSON body to the NDJSON
/// answer (all but the route's lookup of the sandbox by id).
/// </summary>
[MemoryDiagnoser]
public class ExecRoundTripBenchmarks
{
    private readonly PipeResponse _response = new();
    private readonly ExecRequest _tenLines = new() { Code = SampleFrames.Code };
    private readonly ExecRequest _print1 = new() { Code = "print(1)" };
    private readonly MemoryStream _print1Body = new(SampleFrames.ExecBody("print(1)"));
    private FakeSandbox _ten = null!, _one = null!, _file = null!;

    [GlobalSetup]
    public void Setup()
    {
        _ten = new FakeSandbox([.. SampleFrames.Out(10), .. SampleFrames.Exit()]);
        _one = new FakeSandbox([.. SampleFrames.Out(1), .. SampleFrames.Exit()]);
        _file = new FakeSandbox(SampleFrames.File(256 << 10));
        _response.Context.Request.Body = _print1Body;
        _response.Context.Request.ContentLength = _print1Body.Length;
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        await _ten.DisposeAsync();
        await _one.DisposeAsync();
        await _file.DisposeAsync();
    }

    [Benchmark(Description = "exec round trip, 10 lines of output")]
    public Task<long> Exec_10_lines() => ExecAsync(_ten, _tenLines);

    [Benchmark(Description = "exec round trip, print(1)")]
    public Task<long> Exec_print_1() => ExecAsync(_one, _print1);

    [Benchmark(Description = "exec endpoint, print(1): request body to NDJSON answer")]
    public async Task<long> Endpoint_exec_print_1()
    {
        _print1Body.Position = 0;
        var req = await HostSeams.ReadExecRequest(_response.Context, WireJson.Default.ExecRequest).ConfigureAwait(false);
        return await ExecAsync(_one, req!).ConfigureAwait(false);
    }

    [Benchmark(Description = "download of 256 KB, streamed to the response")]
    public async Task<long> Download_256KB()
    {
        await _file.Calls.FileCallAsync(_file.Sandbox, (agent, ct) => agent.ReadToAsync("/root/f", 1 << 20, _ => Stream.Null, TimeSpan.FromSeconds(30), ct),
            CancellationToken.None).ConfigureAwait(false);
        return 256 << 10;
    }

    private async Task<long> ExecAsync(FakeSandbox sb, ExecRequest req)
    {
        await sb.Calls.ExecAsync(sb.Sandbox, req, new NdjsonExecSink(_response.Response), CancellationToken.None).ConfigureAwait(false);
        _response.Drain();
        return _response.LastDrained;
    }
}
