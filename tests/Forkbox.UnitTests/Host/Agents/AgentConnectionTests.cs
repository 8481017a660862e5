using System.Buffers;
using System.Net.Sockets;
using System.Text.Json;
using Forkbox.Host.Agents;
using Forkbox.Testing;

namespace Forkbox.UnitTests.Host.Agents;

/// <summary>hostd's end of a control socket against a hand-driven agent end, over a Unix socket pair: no root, no sandbox.</summary>
[Trait("Root", "not needed")]
public sealed class AgentConnectionTests_without_root
{
    [Fact]
    public async Task A_download_whose_destination_fails_is_still_read_to_its_end_so_the_next_answer_is_in_step()
    {
        var (hostEnd, agentEnd) = UnixSocketPair.Connect();
        await using var host = new AgentConnection(hostEnd);
        using var agent = agentEnd;
        var file = new byte[300_000];
        Random.Shared.NextBytes(file);

        var download = host.Client.ReadToAsync("/root/f", 1 << 20, _ => new FailingStream(), TimeSpan.FromSeconds(10), default).AsTask();
        // Sent from another thread: a host that stops reading halfway leaves the agent blocked in send.
        var sending = Task.Run(() => Send(agent, new AgentReadOk(1, file.Length), AgentJson.Default.AgentReadOk, file));
        var answer = await download.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(answer.IsOk);
        await sending.WaitAsync(TimeSpan.FromSeconds(5));

        Send(agent, new AgentExitEvent(2, 0, false), AgentJson.Default.AgentExitEvent, []);
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(5)); // out of step, the read waits for bytes that never come
        var next = await host.ReadMessageAsync(0, limit.Token);
        Assert.Equal(AgentEvents.Exit, next.Event);
        Assert.Equal(new AgentExitEvent(2, 0, false), next.Decode(AgentJson.Default.AgentExitEvent));
    }

    [Fact]
    public async Task A_download_goes_to_its_destination_whole_and_names_its_size_first()
    {
        var (hostEnd, agentEnd) = UnixSocketPair.Connect();
        await using var host = new AgentConnection(hostEnd);
        using var agent = agentEnd;
        var file = new byte[200_000];
        Random.Shared.NextBytes(file);
        var into = new MemoryStream();
        long? told = null;

        var download = host.Client.ReadToAsync("/root/f", 1 << 20, size => { told = size; return into; }, TimeSpan.FromSeconds(10), default).AsTask();
        Send(agent, new AgentReadOk(1, file.Length), AgentJson.Default.AgentReadOk, file);
        Assert.True((await download).IsOk);
        Assert.Equal(file.Length, told);
        Assert.Equal(file, into.ToArray());
    }

    private static void Send<T>(Socket agent, T message, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, byte[] payload)
    {
        var head = AgentFrame.EncodeHead(new ArrayBufferWriter<byte>(), new Utf8JsonWriter(Stream.Null), message, type, payload.Length);
        agent.Send(head.Span);
        agent.Send(payload);
    }

    /// <summary>A response whose client has gone: every write fails.</summary>
    private sealed class FailingStream : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => 0;
        public override long Position { get => 0; set { } }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) { }
        public override void Write(byte[] buffer, int offset, int count) => throw new IOException("the client went away");
    }
}
