using System.Diagnostics;
using System.Globalization;
using Forkbox.Client;
using Forkbox.Core.Wire;
using static Forkbox.Cli.Bench.Sampling;

namespace Forkbox.Cli.Bench;

/// <summary>Fork, merge_into and diff figures, and the fork/close leak check.</summary>
internal static class ForkFigures
{
    /// <summary>
    /// fork(1) and fork(5) of a warm sandbox of <paramref name="template"/> holding the state
    /// <paramref name="setup"/> makes, end to end and server side, beside two floors measured in the
    /// same run: a bare fork() of the parent process itself (inside the sandbox, so the same size),
    /// and the server's snapshot of the writable layer alone. Also the private memory of a fresh fork.
    /// </summary>
    public static async Task ForkAsync(ForkboxClient client, BenchReport report, int iterations, string template, string setup, CancellationToken ct)
    {
        await WaitPoolFull(client, template, ct);
        await using var parent = await Sandbox.CreateAsync(new CreateSandboxRequest { Template = template, MemoryMb = 2048 }, client, ct);
        var ready = await parent.RunCodeAsync(setup, ct: ct);
        if (ready.ExitCode != 0) throw new InvalidOperationException($"fork bench set-up failed: {ready.Stderr}");
        var floor = await parent.RunCodeAsync($$"""
            import os, time
            for i in range({{iterations + 1}}):
                r, w = os.pipe()
                t = time.perf_counter()
                pid = os.fork()
                if pid == 0:
                    os.write(w, b"1"); os._exit(0)
                os.read(r, 1)
                if i: print((time.perf_counter() - t) * 1000)
                os.waitpid(pid, 0); os.close(r); os.close(w)
            """, ct: ct);
        var bare = report.Add($"floor: fork() of the parent process [{template}]",
            floor.StdoutLines.Select(l => double.Parse(l, CultureInfo.InvariantCulture)).ToList());
        foreach (var n in new[] { 1, 5 })
        {
            var server = new List<double>();
            var snapshot = new List<double>();
            var memory = new List<double>();
            var e2e = await Measure(iterations, () => parent.ForkAsync(n, ct), after: async children =>
            {
                var info = await children[0].RefreshAsync(ct);
                server.Add(info.TimingsMs!["total"]);
                snapshot.Add(info.TimingsMs.GetValueOrDefault("graft.snapshot"));
                memory.Add(info.MemoryBytes!.Value / 1048576.0);
                foreach (var c in children) await c.CloseAsync(ct);
            });
            report.Add($"fork() n={n} [{template}]", e2e, (bare, "fork"));
            report.Add($"fork() n={n}, server [{template}]", server, (bare, "fork"));
            if (n == 1)
            {
                report.Add($"floor: layer snapshot alone [{template}]", snapshot);
                memory.Sort();
                report.Note($"fork_private_mib[{template}]", memory[memory.Count / 2],
                    $"private memory of one fresh fork (its cgroup) [{template}]: p50 {memory[memory.Count / 2]:F2} MiB");
            }
        }
        // diff of the parent and a fork that wrote, changed and removed a few files.
        var fork = (await parent.ForkAsync(1, ct)).Single();
        await using (fork)
        {
            await fork.RunCodeAsync("import os\nfor i in range(10): open(f'/root/f{i}', 'w').write('x' * i)\nopen('/tmp/t', 'w').write('t')", ct: ct);
            report.Add($"diff, 11 files changed [{template}]", await Measure(iterations, () => parent.DiffAsync(fork, ct: ct)));
        }
    }

    /// <summary>merge_into of a fresh fork into its parent; each parent is new, so the measurement does not deepen one family.</summary>
    public static async Task MergeAsync(ForkboxClient client, BenchReport report, int iterations, CancellationToken ct)
    {
        var families = new List<Sandbox>();
        var merges = new List<double>();
        await Measure(iterations, async () =>
        {
            var parent = await Sandbox.CreateAsync(client: client, ct: ct);
            families.Add(parent);
            var winner = (await parent.ForkAsync(1, ct)).Single();
            await winner.RunCodeAsync("won = True", ct: ct);
            var t = Stopwatch.GetTimestamp();
            await parent.MergeIntoAsync(winner, ct);
            merges.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            return 0;
        }, before: () => WaitPoolFull(client, "default", ct));
        foreach (var sb in families) await sb.CloseAsync(ct);
        report.Add("merge_into", merges.Skip(1).ToList());
    }

    /// <summary>Fork/close cycles of one parent: the server must end where it started.</summary>
    public static async Task CyclesAsync(ForkboxClient client, BenchReport report, int cycles, CancellationToken ct)
    {
        if (cycles <= 0) return;
        await WaitPoolFull(client, "default", ct);
        static int Agents() => Process.GetProcesses().Count(p => p.ProcessName.StartsWith("forkbox-", StringComparison.Ordinal));
        var before = ((await client.CapacityAsync(ct)).Running, Agents());
        var clock = Stopwatch.StartNew();
        await using (var parent = await Sandbox.CreateAsync(client: client, ct: ct))
        {
            for (var i = 0; i < cycles; i++)
                foreach (var child in await parent.ForkAsync(1, ct))
                    await child.CloseAsync(ct);
        }
        var seconds = clock.Elapsed.TotalSeconds;
        await WaitPoolFull(client, "default", ct);
        await Task.Delay(1500, ct); // closes finish in the background
        var after = ((await client.CapacityAsync(ct)).Running, Agents());
        report.Note("fork_close_cycles_per_s", cycles / seconds,
            $"{cycles} fork/close cycles: {cycles / seconds:F1}/s; sandboxes and forkbox processes on this host before {before}, after {after}");
    }
}
