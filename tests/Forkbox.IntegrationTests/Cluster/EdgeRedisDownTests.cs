using System.Collections.Concurrent;
using System.Diagnostics;

namespace Forkbox.IntegrationTests.Cluster;

/// <summary>
/// `forkbox edge` (the real binary) whose Redis is not there: it says so at start and what it does
/// meanwhile, logs one short line per change of state rather than the client's diagnostics on every
/// poll, and says when Redis answers again.
/// </summary>
public sealed class EdgeRedisDownTests
{
    [Fact]
    public async Task An_edge_whose_redis_is_down_says_it_is_not_ready_logs_little_per_poll_and_says_when_redis_is_back()
    {
        var port = ServerProcess.FreePort(); // nothing listens there until the test starts Redis on it
        var psi = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "forkbox.dll"), "edge",
            "--redis", $"127.0.0.1:{port}", "--listen", "127.0.0.1:0", "--poll-s", "0.2", "--reconcile-s", "0.2"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var lines = new ConcurrentQueue<string>();
        using var edge = Process.Start(psi)!;
        edge.OutputDataReceived += (_, e) => { if (e.Data is not null) lines.Enqueue(e.Data); };
        edge.ErrorDataReceived += (_, e) => { if (e.Data is not null) lines.Enqueue(e.Data); };
        edge.BeginOutputReadLine();
        edge.BeginErrorReadLine();
        try
        {
            await ServerFixture.WaitUntil(() => lines.Any(l => l.Contains("listening", StringComparison.Ordinal)), "the edge's start-up line", 30);
            var start = Assert.Single(lines, l => l.Contains("listening", StringComparison.Ordinal));
            Assert.Contains($"redis 127.0.0.1:{port} is unreachable (UnableToConnect: Connection refused)", start, StringComparison.Ordinal);
            Assert.Contains("not ready", start, StringComparison.Ordinal);
            Assert.Contains("retrying every 0.2 s", start, StringComparison.Ordinal);

            // Some 25 rounds each of the registry and the tier reconciler with Redis away.
            await Task.Delay(TimeSpan.FromSeconds(5));
            var text = string.Join('\n', lines);
            Assert.True(text.Length < 1000, $"{text.Length} characters logged in 5 s with Redis down:\n{text}");
            Assert.DoesNotContain("IOCP", text, StringComparison.Ordinal); // StackExchange.Redis's connection dump

            await using var redis = await RedisProcess.StartAsync(port);
            await ServerFixture.WaitUntil(() => lines.Any(l => l.Contains($"redis 127.0.0.1:{port} answers again", StringComparison.Ordinal)),
                "the edge saying Redis answers again", 30);
        }
        finally
        {
            if (!edge.HasExited)
            {
                Forkbox.Linux.Processes.Signal(edge.Id, 15);
                await edge.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            }
            foreach (var l in lines) Console.WriteLine("edge: " + l);
        }
    }

    [Fact]
    public async Task The_edges_keys_help_names_no_data_directory_it_has_no_option_for()
    {
        var help = await CliProcess.RunAsync(["edge", "--help"]);
        Assert.Equal(0, help.ExitCode);
        var keys = Assert.Single(help.Stdout.Split('\n'), l => l.TrimStart().StartsWith("--keys", StringComparison.Ordinal));
        Assert.DoesNotContain("DATA_DIR", keys, StringComparison.Ordinal);
        Assert.DoesNotContain("--data-dir", help.Stdout, StringComparison.Ordinal);
        Assert.Contains("forkbox keys create --keys FILE", keys, StringComparison.Ordinal);
    }
}
