using System.Collections.Concurrent;
using System.Diagnostics;
using Forkbox.Client;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// The acceptance load: 50 well-behaved agents for 2 minutes (create, run_code, fork, files,
/// close, each with a think time of 1–3 s between calls) beside one sandbox spinning every CPU it may.
/// None of their requests may fail, and the attack must run (be throttled). Their hot run_code
/// p50 and p95, loaded and unloaded (on the same server just before and just after), are printed
/// against the target of a loaded p95 within 5x of the unloaded one. FORKBOX_MIXED_LOAD_S
/// shortens the run; FORKBOX_MIXED_LOAD_SPINNERS=0 runs it without the attack, to compare.
/// </summary>
public sealed class MixedLoadTests
{
    private const int Agents = 50;

    [Fact]
    [Trait("Speed", "Long")]
    public async Task Fifty_agents_beside_an_attack_never_fail()
    {
        var seconds = int.TryParse(Environment.GetEnvironmentVariable("FORKBOX_MIXED_LOAD_S"), out var s) ? s : 120;
        await using var server = await TestServer.StartAsync("mixed-load", o => o with { Limits = o.Limits with { MaxSandboxes = 200 }, Pool = o.Pool with { Size = 8 } });
        var options = server.Options;
        var client = server.Client;

        // Unloaded: one agent, hot run_code, on the same server with its pool full, paced like the
        // agents; measured before the load and again after it, so that the machine's own
        // background (other builds on a shared host) is in the baseline as much as in the load.
        await ServerFixture.WaitUntil(() => server.Sandboxes.Pool("default").Ready >= options.Pool.Size, "the pool filling", 120);
        var unloaded = await UnloadedAsync(client);
        // The agents' sandboxes, made before the clock starts (their first creates are a burst of pool misses).
        var stats = new LoadStats();
        var sandboxes = new Sandbox[Agents];
        using (var gate = new SemaphoreSlim(4))
            await Task.WhenAll(Enumerable.Range(0, Agents).Select(async i =>
            {
                await gate.WaitAsync();
                try
                {
                    sandboxes[i] = await stats.Track("create", () => Sandbox.CreateAsync(null, client));
                    await stats.Track("run_code", () => sandboxes[i].RunCodeAsync("x = 0"));
                }
                finally
                {
                    gate.Release();
                }
            }));
        await ServerFixture.WaitUntil(() => server.Sandboxes.Pool("default").Ready >= options.Pool.Size, "the pool filling again", 120);

        // The attack: every process it may, spinning, in a sandbox with the default limits.
        await using var attacker = await Sandbox.CreateAsync(null, client);
        var attackPid = server.Sandboxes.Get(attacker.Id).Pid;
        var throttledBefore = SandboxCgroup.CpuStat(attackPid)["nr_throttled"];
        var spinners = Environment.GetEnvironmentVariable("FORKBOX_MIXED_LOAD_SPINNERS") ?? "8"; // 0: no attack, to compare
        var attack = attacker.ExecAsync($"for i in $(seq {spinners}); do timeout {seconds + 30} sh -c 'while :; do :; done' & done; wait", timeoutS: seconds + 60);

        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        var wall = Stopwatch.StartNew();
        var cpuBefore = CpuTicks();
        await Task.WhenAll(Enumerable.Range(0, Agents).Select(i => Task.Run(() => AgentAsync(client, sandboxes[i], new Random(i), deadline, stats))));
        var loadSeconds = wall.Elapsed.TotalSeconds;
        var cores = CpuTicks().Zip(cpuBefore, (after, before) => (after - before) / 100.0 / loadSeconds).ToArray();
        var throttled = SandboxCgroup.CpuStat(attackPid)["nr_throttled"] - throttledBefore;
        await attacker.CloseAsync();
        await Task.WhenAny(attack, Task.Delay(10_000));

        await ServerFixture.WaitUntil(() => server.Sandboxes.Pool("default").Ready >= options.Pool.Size, "the pool filling after the load", 120);
        var after = await UnloadedAsync(client);
        Console.WriteLine($"mixed load: unloaded p95 before the load {NeighbourLatency.Percentile(unloaded, 0.95):F2} ms, after it {NeighbourLatency.Percentile(after, 0.95):F2} ms");
        unloaded.AddRange(after);
        var (u50, u95) = (NeighbourLatency.Percentile(unloaded, 0.5), NeighbourLatency.Percentile(unloaded, 0.95));
        var loaded = stats.HotRunCode.ToArray();
        var (l50, l95) = (NeighbourLatency.Percentile(loaded, 0.5), NeighbourLatency.Percentile(loaded, 0.95));
        Console.WriteLine($"mixed load: {Agents} agents for {loadSeconds:F0} s beside a CPU spin ({spinners} processes, cpus 1, throttled {throttled} times)");
        Console.WriteLine($"mixed load: hot run_code unloaded p50 {u50:F2} ms p95 {u95:F2} ms ({unloaded.Count} calls); " +
                          $"loaded p50 {l50:F2} ms p95 {l95:F2} ms ({loaded.Length} calls); p95 ratio {l95 / u95:F2}x");
        Console.WriteLine($"mixed load: the host's CPU meanwhile, in cores: user {cores[0]:F2}, nice {cores[1]:F2}, system {cores[2]:F2}, idle {cores[3]:F2}");
        Console.WriteLine($"mixed load: requests {string.Join(", ", stats.Requests.OrderBy(r => r.Key).Select(r => $"{r.Key} {r.Value}"))}, " +
                          $"total {stats.Requests.Values.Sum()}, failed {stats.Failures.Count}");
        Assert.True(stats.Failures.IsEmpty, "requests of well-behaved agents failed: " + string.Join(" | ", stats.Failures.Take(5)));
        Assert.True(loaded.Length > Agents * 10, $"only {loaded.Length} hot run_code calls were made");
        Assert.True(throttled > 0 || spinners == "0", "the attack was never throttled: it did not run");
        // The latency is a figure, printed above, not an assertion: speed is judged by measurement on
        // a known machine (see the closing notes), and this shared 2-core VM's unloaded p95 moves 5x
        // between runs. The target is a loaded p95 within 5x of the unloaded one.
    }

    /// <summary>/proc/stat's first line: the host's user, nice, system, idle, … time, in ticks of 1/100 s.</summary>
    private static long[] CpuTicks() =>
        File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(long.Parse).ToArray();

    private static async Task<List<double>> UnloadedAsync(ForkboxClient client)
    {
        var ms = new List<double>();
        await using var sb = await Sandbox.CreateAsync(null, client);
        await sb.RunCodeAsync("x = 0");
        for (var i = 0; i < 320; i++)
        {
            await Task.Delay(50);
            var sw = Stopwatch.StartNew();
            await sb.RunCodeAsync("x += 1\nx");
            if (i >= 20) ms.Add(sw.Elapsed.TotalMilliseconds);
        }
        return ms;
    }

    /// <summary>
    /// One well-behaved agent: a sandbox of its own and a call every 1–3 s (a model's think time is
    /// seconds): mostly run_code, then files, sometimes a fork or a new sandbox.
    /// </summary>
    private static async Task AgentAsync(ForkboxClient client, Sandbox first, Random rng, DateTime deadline, LoadStats stats)
    {
        Sandbox? sb = first;
        try
        {
            while (DateTime.UtcNow < deadline)
            {
                await Task.Delay(rng.Next(1000, 3000));
                var roll = rng.Next(100);
                if (roll < 70)
                {
                    var sw = Stopwatch.StartNew();
                    var r = await stats.Track("run_code", () => sb.RunCodeAsync("x += 1\nx"));
                    stats.HotRunCode.Add(sw.Elapsed.TotalMilliseconds);
                    if (r.ExitCode != 0) stats.Failures.Add($"run_code exit {r.ExitCode}: {r.Stderr}");
                }
                else if (roll < 88)
                {
                    var data = new byte[rng.Next(1, 64 << 10)];
                    rng.NextBytes(data);
                    await stats.Track("upload", () => sb.UploadAsync("/root/data.bin", data));
                    var back = await stats.Track("download", () => sb.DownloadAsync("/root/data.bin"));
                    if (!back.AsSpan().SequenceEqual(data)) stats.Failures.Add("download differs from upload");
                }
                else if (roll < 94)
                {
                    var fork = (await stats.Track("fork", () => sb.ForkAsync())).Single();
                    var r = await stats.Track("run_code", () => fork.RunCodeAsync("x"));
                    if (r.ExitCode != 0) stats.Failures.Add($"run_code in a fork: exit {r.ExitCode}");
                    await stats.Track("close", () => fork.CloseAsync());
                }
                else
                {
                    var old = sb;
                    sb = null;
                    await stats.Track("close", () => old.CloseAsync());
                    sb = await stats.Track("create", () => Sandbox.CreateAsync(null, client));
                    await stats.Track("run_code", () => sb.RunCodeAsync("x = 0"));
                }
            }
        }
        catch (Exception e)
        {
            stats.Failures.Add($"{e.GetType().Name}: {e.Message}");
        }
        finally
        {
            if (sb is not null) await sb.CloseAsync();
        }
    }

    private sealed class LoadStats
    {
        public ConcurrentBag<double> HotRunCode { get; } = [];
        public ConcurrentBag<string> Failures { get; } = [];
        public ConcurrentDictionary<string, int> Requests { get; } = new();

        public async Task<T> Track<T>(string what, Func<Task<T>> call)
        {
            Requests.AddOrUpdate(what, 1, (_, n) => n + 1);
            return await call();
        }

        public async Task Track(string what, Func<Task> call)
        {
            Requests.AddOrUpdate(what, 1, (_, n) => n + 1);
            await call();
        }
    }
}
