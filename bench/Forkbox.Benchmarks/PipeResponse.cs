using System.IO.Pipelines;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Forkbox.Benchmarks;

/// <summary>
/// An HTTP response whose body is a pipe that the benchmark empties after each operation, as
/// Kestrel's transport would: the sink writes into a pipe's pooled segments, nothing is kept.
/// </summary>
internal sealed class PipeResponse : IHttpResponseBodyFeature
{
    private readonly Pipe _pipe = new(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));

    public PipeResponse()
    {
        Context = new DefaultHttpContext();
        Context.Features.Set<IHttpResponseBodyFeature>(this);
    }

    public DefaultHttpContext Context { get; }

    public HttpResponse Response => Context.Response;

    /// <summary>Bytes the last <see cref="Drain"/> took out of the pipe.</summary>
    public long LastDrained { get; private set; }

    /// <summary>Takes everything written so far out of the pipe.</summary>
    public void Drain()
    {
        LastDrained = 0;
        if (!_pipe.Reader.TryRead(out var read)) return;
        LastDrained = read.Buffer.Length;
        _pipe.Reader.AdvanceTo(read.Buffer.End);
    }

    public Stream Stream => throw new NotSupportedException("the sink writes to the pipe");
    public PipeWriter Writer => _pipe.Writer;
    public void DisableBuffering() { }
    public Task StartAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;
    public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) => throw new NotSupportedException();
    public Task CompleteAsync() => Task.CompletedTask;
}
