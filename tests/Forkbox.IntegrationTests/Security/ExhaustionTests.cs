using System.Diagnostics;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// Exhaustion attacks, each against one sandbox with a neighbour calling it hot beside it: the
/// attack meets its sandbox's own limit (measured from the host, in the sandbox's cgroup or
/// on disk), the neighbour is served throughout, and the server stays up and bounded.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ExhaustionTests(ServerFixture fx)
{
    private const long MiB = 1 << 20;

    [Fact]
    public async Task Page_cache_is_charged_to_the_sandboxs_memory_limit_and_reclaimed_within_it()
    {
        await using var attacker = await fx.NewSandbox(new() { MemoryMb = 128 });
        await using var neighbour = await fx.NewSandbox();
        var cgroup = fx.Server.Sandboxes.Get(attacker.Id).Cgroup;
        await using var neighbourLoop = NeighbourLatency.Start(neighbour);
        Execution cache;
        await using (var peak = new SandboxCgroup.PeakSampler(cgroup.MemoryBytes))
        {
            // 400 MB written to a file and read back: page cache, reclaimed within the 128 MB.
            cache = await attacker.ExecAsync("dd if=/dev/zero of=/tmp/cache bs=1M count=400 conv=fsync status=none && cat /tmp/cache > /dev/null && rm /tmp/cache && echo written", timeoutS: 120);
            Console.WriteLine($"page cache: peak {peak.Max / MiB} MiB of 128 MiB");
            Assert.InRange(peak.Max, 1, 128 * MiB);
        }
        (await neighbourLoop.StopAsync()).AssertServed("page cache fill");
        Assert.Equal("written", cache.Stdout);
        Assert.Equal("ready", (await attacker.RefreshAsync()).State);
    }

    [Fact]
    public async Task Tmpfs_is_charged_to_the_sandboxs_memory_limit()
    {
        await using var attacker = await fx.NewSandbox(new() { MemoryMb = 128 });
        await using var neighbour = await fx.NewSandbox();
        var cgroup = fx.Server.Sandboxes.Get(attacker.Id).Cgroup;
        await using var neighbourLoop = NeighbourLatency.Start(neighbour);
        await using (var peak = new SandboxCgroup.PeakSampler(cgroup.MemoryBytes))
        {
            // 400 MB into /dev/shm (tmpfs of TmpSizeMb, 512): its pages cannot be reclaimed, so the
            // kernel kills in the sandbox at 128 MB: the writer, or the agent, which dies with its sandbox.
            try
            {
                var shm = await attacker.ExecAsync("head -c 400M /dev/zero > /dev/shm/fill; echo rc=$?", timeoutS: 120);
                Assert.NotEqual("rc=0", shm.Stdout);
            }
            catch (ForkboxApiException e) when (e.Code == "sandbox_dead")
            {
            }
            Console.WriteLine($"tmpfs: peak {peak.Max / MiB} MiB of 128 MiB");
            Assert.InRange(peak.Max, 1, 128 * MiB);
        }
        (await neighbourLoop.StopAsync()).AssertServed("tmpfs fill");
        var info = await attacker.RefreshAsync();
        Assert.True(info.OomKills >= 1 || info.DeadReason?.Contains("out of memory") == true, $"nothing was killed for memory: {info.State} {info.DeadReason}");
    }

    [Fact]
    public async Task A_cpu_spin_gets_no_more_than_its_cpus()
    {
        await using var attacker = await fx.NewSandbox(new() { Cpus = 0.5 });
        await using var neighbour = await fx.NewSandbox();
        var pid = fx.Server.Sandboxes.Get(attacker.Id).Pid;
        await using var neighbourLoop = NeighbourLatency.Start(neighbour);
        var throttledBefore = SandboxCgroup.CpuStat(pid)["nr_throttled"];
        // Four spinning processes for 4 s: unlimited, they would take both cores (~8 CPU seconds).
        // The kernel's own accounting of them (their rusage) says what they got.
        var r = await attacker.ExecAsync("""
            python3 - <<'PY'
            import os, resource, time
            t = time.monotonic()
            kids = []
            for _ in range(4):
                pid = os.fork()
                if pid == 0:
                    end = time.monotonic() + 4
                    while time.monotonic() < end:
                        pass
                    os._exit(0)
                kids.append(pid)
            for pid in kids:
                os.waitpid(pid, 0)
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            print(ru.ru_utime + ru.ru_stime, time.monotonic() - t)
            PY
            """, timeoutS: 30);
        var throttled = SandboxCgroup.CpuStat(pid)["nr_throttled"] - throttledBefore;
        (await neighbourLoop.StopAsync()).AssertServed("cpu spin");
        var used = double.Parse(r.StdoutLines[0].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        var seconds = double.Parse(r.StdoutLines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        Console.WriteLine($"cpu spin: {used:F2} CPU s in {seconds:F2} s with cpus 0.5; throttled {throttled} times");
        Assert.InRange(used, 0.5, 0.5 * seconds * 1.25 + 0.2);
        Assert.True(throttled > 0, "the cgroup was never throttled");
    }

    [Fact]
    public async Task A_descriptor_flood_stops_at_the_sandboxs_limits()
    {
        await using var attacker = await fx.NewSandbox(new() { MemoryMb = 256 });
        await using var neighbour = await fx.NewSandbox();
        var cgroup = fx.Server.Sandboxes.Get(attacker.Id).Cgroup;
        await using var neighbourLoop = NeighbourLatency.Start(neighbour);
        Execution r;
        await using (var peak = new SandboxCgroup.PeakSampler(cgroup.MemoryBytes))
        {
            // Eight processes, each raising its descriptor limit as far as it may and opening until refused.
            r = await attacker.ExecAsync("""
                python3 - <<'PY'
                import os, resource
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                print('hard', hard)
                kids = []
                for _ in range(8):
                    r, w = os.pipe()
                    pid = os.fork()
                    if pid == 0:
                        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                        n, err = 0, 'none'
                        try:
                            while n < 5_000_000:
                                os.open('/dev/null', os.O_RDONLY)
                                n += 1
                        except OSError as e:
                            err = e.strerror
                        os.write(w, f'{n} {err}'.encode())
                        os._exit(0)
                    os.close(w)
                    kids.append((pid, r))
                for pid, r in kids:
                    out = os.read(r, 100).decode()
                    os.waitpid(pid, 0)
                    print('opened', out or 'killed')
                PY
                """, timeoutS: 120);
            Console.WriteLine($"descriptor flood: {string.Join(" | ", r.StdoutLines)}; peak memory {peak.Max / MiB} MiB of 256");
            Assert.InRange(peak.Max, 1, 256 * MiB);
        }
        (await neighbourLoop.StopAsync()).AssertServed("descriptor flood");
        // The sandbox's own limits (isolate.py: 1024, up to 65536), not those hostd was started with.
        var hostHard = long.Parse(File.ReadLines("/proc/self/limits").Single(l => l.StartsWith("Max open files", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[4]);
        var hard = long.Parse(r.StdoutLines[0].Split(' ')[1]);
        Assert.Equal(Math.Min(65536, hostHard), hard);
        Assert.Equal("1024", (await attacker.ExecAsync("ulimit -Sn")).Stdout);
        foreach (var line in r.StdoutLines.Skip(1))
            Assert.True(line == "opened killed" || long.Parse(line.Split(' ')[1]) <= hard, line);
        Assert.Equal("ok", (await attacker.RunCodeAsync("print('ok')")).Stdout);
    }

    [Fact]
    public async Task A_cell_printing_1_GB_is_truncated_with_a_marker_and_the_server_stays_bounded()
    {
        await using var attacker = await fx.NewSandbox();
        await using var neighbour = await fx.NewSandbox();
        await using var neighbourLoop = NeighbourLatency.Start(neighbour);
        var rssBefore = ServerRss();
        long peakRss;
        var received = new Dictionary<string, (long Bytes, bool Marker, int Exit)>();
        await using (var rss = new SandboxCgroup.PeakSampler(ServerRss))
        {
            foreach (var (language, code) in new[]
                     {
                         ("python", "import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(1 << 20):\n    sys.stdout.write(line)"),
                         ("bash", "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 1G"),
                     })
            {
                long bytes = 0;
                var marker = false;
                var exit = -1;
                await foreach (var ev in attacker.StreamAsync(new ExecRequest { Code = code, Language = language, TimeoutS = 280 }))
                {
                    if (ev.Type is "stdout" or "stderr") bytes += ev.Data.GetString()!.Length;
                    if (ev.Type == "stderr" && ev.Data.GetString()!.StartsWith("[forkbox: output truncated", StringComparison.Ordinal)) marker = true;
                    if (ev.Type == "exit") exit = ev.Data.GetInt32();
                }
                received[language] = (bytes, marker, exit);
            }
            peakRss = rss.Max;
        }
        (await neighbourLoop.StopAsync()).AssertServed("1 GB output flood");
        foreach (var (language, (bytes, marker, exit)) in received)
        {
            Console.WriteLine($"output flood ({language}): {bytes / MiB} MiB received of 1024, marker {marker}, exit {exit}");
            Assert.True(marker, $"{language}: no truncation marker");
            Assert.InRange(bytes, fx.Options.Limits.OutputLimitBytes / 2, fx.Options.Limits.OutputLimitBytes + MiB);
            Assert.Equal(0, exit);
        }
        Console.WriteLine($"output flood: server (test process) RSS {rssBefore / MiB} → peak {peakRss / MiB} MiB");
        Assert.True(peakRss - rssBefore < 512 * MiB, $"the server grew by {(peakRss - rssBefore) / MiB} MiB during the flood");
        Assert.Equal("ok", await fx.Http.GetStringAsync("/v1/healthz"));
    }

    [Fact]
    public async Task Thousands_of_tiny_calls_leak_nothing()
    {
        await using var attacker = await fx.NewSandbox();
        await using var neighbour = await fx.NewSandbox();
        await attacker.RunCodeAsync("1");
        await attacker.ExecAsync("true");
        var fdsBefore = Directory.GetFiles("/proc/self/fd").Length;
        var pidsBefore = fx.Server.Sandboxes.Get(attacker.Id).Cgroup.Pids().Count;
        await using var neighbourLoop = NeighbourLatency.Start(neighbour);
        var sw = Stopwatch.StartNew();
        // A failure says which call and what the sandbox printed: one run_code("pass") in 2,000 once
        // exited 1 in a full suite, and that run kept nothing more to go on.
        for (var i = 0; i < 2000; i++)
        {
            var run = await attacker.RunCodeAsync("pass");
            Assert.True(run.ExitCode == 0, $"run_code call {i}: exit {run.ExitCode}, stderr: {run.Stderr}");
        }
        for (var i = 0; i < 300; i++)
        {
            var exec = await attacker.ExecAsync("true");
            Assert.True(exec.ExitCode == 0, $"exec call {i}: exit {exec.ExitCode}, stderr: {exec.Stderr}");
        }
        var elapsed = sw.Elapsed;
        (await neighbourLoop.StopAsync()).AssertServed("2,300 tiny calls");
        var fdsAfter = Directory.GetFiles("/proc/self/fd").Length;
        var pidsAfter = fx.Server.Sandboxes.Get(attacker.Id).Cgroup.Pids().Count;
        Console.WriteLine($"tiny calls: 2,000 run_code + 300 exec in {elapsed.TotalSeconds:F1} s; server fds {fdsBefore} → {fdsAfter}, sandbox pids {pidsBefore} → {pidsAfter}");
        Assert.InRange(fdsAfter, 0, fdsBefore + 16);
        Assert.Equal(pidsBefore, pidsAfter);
    }

    [Fact]
    public async Task Concurrent_huge_uploads_are_bounded_per_sandbox()
    {
        await using var attacker = await fx.NewSandbox();
        await using var neighbour = await fx.NewSandbox();
        var body = new byte[fx.Options.Limits.MaxUploadBytes - MiB];
        await using var neighbourLoop = NeighbourLatency.Start(neighbour);
        GC.Collect();
        var rssBefore = ServerRss();
        long peak;
        await using (var rss = new SandboxCgroup.PeakSampler(ServerRss))
        {
            var uploads = Enumerable.Range(0, 16).Select(i => attacker.UploadAsync($"/root/big-{i}", body)).ToList();
            var small = neighbour.UploadAsync("/root/small", "fine"u8.ToArray());
            await Task.WhenAll(uploads.Append(small));
            peak = rss.Max;
        }
        (await neighbourLoop.StopAsync()).AssertServed("16 concurrent 63 MiB uploads");
        Console.WriteLine($"huge uploads: 16 × {body.Length / MiB} MiB to one sandbox; server (test process) RSS {rssBefore / MiB} → peak {peak / MiB} MiB");
        Assert.Equal("fine"u8.ToArray(), await neighbour.DownloadAsync("/root/small"));
        // One upload of a sandbox is buffered at a time (plus its copy in the agent's frame): not sixteen.
        Assert.True(peak - rssBefore < 6 * (long)body.Length, $"the server held {(peak - rssBefore) / MiB} MiB for one sandbox's uploads");
        await attacker.ExecAsync("rm -f /root/big-*");
    }

    [Fact]
    public async Task Filling_the_disk_or_its_inodes_stops_at_the_sandboxs_quota_and_spares_its_neighbour()
    {
        await using var server = await TestServer.StartAsync("exhaust-disk", o => o with { Storage = o.Storage with { ImageBytes = 1L << 30, ImageFs = "btrfs" }, Pool = o.Pool with { Size = 1 } });
        var client = server.Client;
        Assert.Equal("btrfs qgroups", (await client.CapacityAsync()).DiskQuota);
        await using var attacker = await Sandbox.CreateAsync(new() { DiskMb = 64 }, client);
        await using var neighbour = await Sandbox.CreateAsync(new() { DiskMb = 64 }, client);
        await using var neighbourLoop = NeighbourLatency.Start(neighbour);
        var layer = await attacker.ExecAsync("dd if=/dev/zero of=/root/fill bs=1M count=2000 status=none; echo rc=$?", timeoutS: 120);
        var tmp = await attacker.ExecAsync("dd if=/dev/zero of=/tmp/fill bs=1M count=2000 status=none; echo rc=$?", timeoutS: 120);
        await attacker.ExecAsync("rm -f /root/fill /tmp/fill; sync");
        var inodes = await attacker.RunCodeAsync("""
            import os
            os.makedirs('/tmp/inodes', exist_ok=True)
            n, err = 0, None
            try:
                while n < 2_000_000:
                    os.close(os.open(f'/tmp/inodes/{n}', os.O_CREAT | os.O_WRONLY, 0o600))
                    n += 1
                    if n % 20000 == 0:
                        os.sync()
            except OSError as e:
                err = e.strerror
            [n, err]
            """, timeoutS: 280);
        (await neighbourLoop.StopAsync()).AssertServed("disk and inode fill");
        Console.WriteLine($"disk fill: layer {layer.Stdout} {layer.Stderr}; /tmp {tmp.Stdout} {tmp.Stderr}; inodes {inodes.Result?.GetRawText()} {inodes.Stderr}");
        Assert.Contains("Disk quota exceeded", layer.Stderr);
        Assert.Contains("Disk quota exceeded", tmp.Stderr);
        Assert.Equal("Disk quota exceeded", inodes.Result!.Value[1].GetString());
        // The neighbour still has its whole quota.
        var spared = await neighbour.ExecAsync("dd if=/dev/zero of=/root/mine bs=1M count=40 status=none && echo rc=0", timeoutS: 60);
        Assert.Equal("rc=0", spared.Stdout);
    }

    private static long ServerRss()
    {
        using var p = Process.GetCurrentProcess();
        return p.WorkingSet64;
    }
}
