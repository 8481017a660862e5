using BenchmarkDotNet.Attributes;
using Forkbox.Core.Wire;

namespace Forkbox.Benchmarks;

/// <summary>The endpoint's read of an exec request's JSON body (SandboxEndpoints.ReadJsonAsync), from an in-memory body.</summary>
[MemoryDiagnoser]
public class RequestBodyBenchmarks
{
    private readonly PipeResponse _http = new();
    private readonly MemoryStream _body = new(SampleFrames.ExecBody(SampleFrames.Code));

    [GlobalSetup]
    public void Setup()
    {
        _http.Context.Request.Body = _body;
        _http.Context.Request.ContentLength = _body.Length;
    }

    [Benchmark(Description = "read an exec request body")]
    public async Task<int> Read_exec_request_body()
    {
        _body.Position = 0;
        var req = await HostSeams.ReadExecRequest(_http.Context, WireJson.Default.ExecRequest).ConfigureAwait(false);
        return req!.Code!.Length;
    }
}
