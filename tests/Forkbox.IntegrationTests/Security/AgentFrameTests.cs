using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// The agent is user code's to change: code in run_code reaches its control socket (through
/// sys.stdout, which is the agent's), sends frames of its own and patches the agent's limits.
/// hostd checks what arrives against its own limits: a frame's declared length before it
/// allocates for it, and the download and output limits while it streams.
/// </summary>
[Collection(AgentFrameCollection.Name)]
public sealed class AgentFrameTests(AgentFrameFixture fx)
{
    private const long MiB = 1 << 20;
    private const long Declared = 600_000_000;

    /// <summary>Starts a frame that declares a 600 MB payload, then trickles 4 KiB every 50 ms until the socket is closed.</summary>
    private const string SendHugeFrame = """
        import struct, time
        def send_huge_frame(chan, head):
            with chan.lock:
                chan.sock.sendall(struct.pack('>II', len(head), 600_000_000) + head)
                try:
                    for _ in range(600):
                        chan.sock.sendall(b'x' * 4096)
                        time.sleep(0.05)
                except OSError:
                    pass

        """;

    [Fact]
    public async Task An_output_frame_declaring_600_MB_is_refused_unallocated_and_its_sandbox_is_dead()
    {
        await using var sb = await fx.NewSandbox();
        var before = ManagedHeap(collect: true);
        var events = new List<ExecEvent>();
        long peak;
        await using (var heap = new SandboxCgroup.PeakSampler(() => ManagedHeap(collect: false)))
        {
            var code = SendHugeFrame + """
                import sys
                send_huge_frame(sys.stdout.sink.agent.chan, b'{"ev":"out","id":0,"s":1,"lines":[]}')
                """;
            await foreach (var ev in sb.StreamAsync(new ExecRequest { Code = code, TimeoutS = 8 }))
                events.Add(ev);
            peak = heap.Max;
        }
        Console.WriteLine($"600 MB frame: managed heap {before / MiB} → peak {peak / MiB} MiB");
        Assert.True(peak - before < 64 * MiB, $"hostd's heap grew by {(peak - before) / MiB} MiB for a frame it should have refused");
        Assert.Equal(("exit", 137), (events[^1].Type, events[^1].Data.GetInt32()));
        Assert.Contains(events, e => e.Type == "stderr" && e.Data.GetString()!.Contains(Declared.ToString()));
        var info = await sb.RefreshAsync();
        Assert.Equal("dead", info.State);
        Assert.Contains(Declared.ToString(), info.DeadReason);
        await using var next = await fx.NewSandbox();
        Assert.Equal("fine", (await next.RunCodeAsync("print('fine')")).Stdout);
    }

    [Fact]
    public async Task A_file_listing_answer_declaring_600_MB_is_refused_unallocated_too()
    {
        await using var sb = await fx.NewSandbox();
        await sb.RunCodeAsync(SendHugeFrame + """
            import sys
            chan = sys.stdout.sink.agent.chan
            honest_send = chan.send
            def send(header, payload=b''):
                if 'entries' not in header:
                    return honest_send(header, payload)
                send_huge_frame(chan, b'{"ev":"ok","id":%d,"entries":[]}' % header['id'])
            chan.send = send
            """);
        var before = ManagedHeap(collect: true);
        var list = sb.ListAsync("/root");
        // On a hostd that allocates for the frame, the listing hangs (for the 120 s of a file call) with the array held.
        using var stop = new CancellationTokenSource();
        var grown = Task.Run(async () =>
        {
            while (ManagedHeap(collect: false) - before < 64 * MiB) await Task.Delay(10, stop.Token);
        });
        var first = await Task.WhenAny(list, grown);
        stop.Cancel();
        Assert.True(first == list, $"hostd's heap grew by {(ManagedHeap(collect: false) - before) / MiB} MiB while the listing waited for its answer");
        var error = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => list);
        Assert.Contains(Declared.ToString(), error.Message);
        var info = await sb.RefreshAsync();
        Assert.Equal("dead", info.State);
        Assert.Contains(Declared.ToString(), info.DeadReason);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_download_from_an_agent_patched_past_the_limit_gives_the_client_no_more_than_the_limit(bool lyingSize)
    {
        await using var sb = await fx.NewSandbox();
        // The agent is told not to check the limit hostd sends with a read (and, lying, to announce a small file).
        await sb.RunCodeAsync("""
            import sys
            chan = sys.stdout.sink.agent.chan
            honest_read = chan.reader.read
            def read():
                header, payload = honest_read()
                header.pop('max', None)
                return header, payload
            chan.reader.read = read
            open('/root/big', 'wb').write(b'x' * (3 << 20))
            """ + (lyingSize ? """

            honest_send = chan.send
            def send(header, payload=b''):
                if header.get('ev') == 'ok' and 'size' in header:
                    header = dict(header, size=1000)
                return honest_send(header, payload)
            chan.send = send
            """ : ""));
        byte[]? got = null;
        Exception? error = null;
        try
        {
            got = await sb.DownloadAsync("/root/big");
        }
        catch (Exception e)
        {
            error = e;
        }
        Console.WriteLine($"patched download (lying size {lyingSize}): {got?.Length.ToString() ?? error!.GetType().Name + ": " + error.Message}");
        Assert.True(got is null || got.Length <= fx.Options.Limits.MaxDownloadBytes,
            $"the client received {got?.Length} bytes, over the download limit of {fx.Options.Limits.MaxDownloadBytes}");
        if (lyingSize)
            Assert.NotNull(error); // the response was cut short
        else
            Assert.Equal((413, "too_large"), ((error as ForkboxApiException)?.Status, (error as ForkboxApiException)?.Code));
        Assert.Equal("dead", (await sb.RefreshAsync()).State);
    }

    [Fact]
    public async Task Output_from_an_agent_patched_past_the_limit_is_truncated_by_hostd_with_the_marker()
    {
        await using var sb = await fx.NewSandbox();
        var (bytes, marker, results, exit) = await CountAsync(sb, new ExecRequest
        {
            Code = """
                import sys
                sys.stdout.sink.agent.output_limit = 1 << 40
                line = 'y' * 1023
                for _ in range(3 * 1024):
                    print(line)
                """,
        });
        Console.WriteLine($"patched output: {bytes} bytes received of 3 MiB, marker {marker}, exit {exit}");
        Assert.True(marker, "no truncation marker");
        Assert.InRange(bytes, fx.Options.Limits.OutputLimitBytes / 2, fx.Options.Limits.OutputLimitBytes + 100);
        Assert.Equal((0L, 0), (results, exit));
        Assert.Equal("ok", (await sb.RunCodeAsync("print('ok')")).Stdout);
    }

    [Fact]
    public async Task Result_frames_sent_past_the_output_limit_are_truncated_too()
    {
        await using var sb = await fx.NewSandbox();
        var (bytes, marker, results, exit) = await CountAsync(sb, new ExecRequest
        {
            Rich = true,
            Code = """
                import sys
                agent = sys.stdout.sink.agent
                for _ in range(10):
                    agent.chan.send({'ev': 'result', 'id': agent.call_id, 'repr': '', 'kind': 'str', 'data': 'z' * 300_000})
                """,
        });
        Console.WriteLine($"result flood: {results} bytes of results received of 3,000,000, marker {marker}, exit {exit}");
        Assert.True(marker, "no truncation marker");
        Assert.InRange(results + bytes, 1, fx.Options.Limits.OutputLimitBytes + 100);
        Assert.Equal(0, exit);
    }

    /// <summary>Bytes of output lines, whether the truncation marker came, bytes of results, and the exit code.</summary>
    private static async Task<(long Bytes, bool Marker, long Results, int Exit)> CountAsync(Sandbox sb, ExecRequest request)
    {
        long bytes = 0, results = 0;
        var marker = false;
        var exit = -1;
        await foreach (var ev in sb.StreamAsync(request))
        {
            if (ev.Type is "stdout" or "stderr") bytes += ev.Data.GetString()!.Length + 1;
            if (ev.Type == "stderr" && ev.Data.GetString()!.StartsWith("[forkbox: output truncated", StringComparison.Ordinal)) marker = true;
            if (ev.Type == "result") results += ev.Data.GetRawText().Length;
            if (ev.Type == "exit") exit = ev.Data.GetInt32();
        }
        return (bytes, marker, results, exit);
    }

    /// <summary>The test process's managed heap, where hostd runs: an array allocated for a frame shows here whether or not its pages are touched.</summary>
    private static long ManagedHeap(bool collect) => GC.GetTotalMemory(collect);
}
