using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.Cli;

/// <summary>
/// `forkbox bench`: latency of the API on this host over HTTP on loopback with the C# SDK and one
/// shared connection, beside floors measured in the same run (a pipe round trip and a fork() of
/// python, an HTTP round trip to an empty handler) and the alternative a user would otherwise
/// pick (a cold bubblewrap sandbox running python3). Each figure is over N iterations after one
/// discarded warm-up; each ratio is p50 over the floor's p50.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var host = CommonOptions.Host();
        var apiKey = CommonOptions.ApiKey();
        var n = new Option<int>("-n", "--iterations") { Description = "Iterations per figure", DefaultValueFactory = _ => 30 };
        var json = new Option<string?>("--json") { Description = "Also write every raw sample to this JSON file" };
        var hold = new Option<int>("--hold") { Description = "Idle sandboxes to hold at once at the end (at least 20)", DefaultValueFactory = _ => 500 };
        var cycles = new Option<int>("--fork-cycles") { Description = "fork/close cycles for the leak check", DefaultValueFactory = _ => 1000 };
        var edge = new Option<string?>("--edge")
        {
            HelpName = "URL",
            Description = "Measure only what an edge at URL adds: create and run_code through it and straight to --host, interleaved",
        };
        var networkOnly = new Option<bool>("--network-only") { Description = "Only the network figures: pool-hit create with egress vs none, and the ports proxy" };
        var cmd = new Command("bench", "Measure create, run_code, files, fork, burst rate and idle memory against a running server, beside raw floors.")
        {
            host, apiKey, n, json, hold, cycles, edge, networkOnly,
        };
        cmd.SetAction(async (parse, ct) => await SandboxCommand.Run(async () =>
        {
            var client = new ForkboxClient(parse.GetValue(host), parse.GetValue(apiKey));
            var iterations = Math.Max(3, parse.GetValue(n));
            var report = new Report();
            if (parse.GetValue(edge) is { } edgeUrl)
            {
                await EdgeFigures(client, new ForkboxClient(edgeUrl, parse.GetValue(apiKey)), report, iterations, ct);
                if (parse.GetValue(json) is { } edgeJson) await File.WriteAllTextAsync(edgeJson, report.ToJson(), ct);
                return;
            }
            const string python = "/usr/bin/python3";
            Console.WriteLine($"forkbox bench against {client.BaseAddress}, {iterations} iterations after 1 warm-up, {Environment.ProcessorCount} cores");
            Console.WriteLine($"{"figure",-42} {"min",8} {"p50",8} {"p95",8} {"mean",8}  ms");

            var pipe = report.Add("floor: pipe round trip to python", RawPipeRoundTrip(python, iterations * 10));
            var fork = report.Add("floor: fork() of python until ack", RawFork(python, iterations));
            var forkZygote = report.Add("floor: fork() of a zygote-sized python", RawFork(python, iterations, preload: true));
            var forkUnshare = RawFork(python, iterations, preload: true, unshare: true);
            if (forkUnshare.Count > 0) report.Add("floor: fork() + unshare(mnt,net,ipc,uts)", forkUnshare);
            using var http = new HttpClient { BaseAddress = client.BaseAddress };
            var empty = report.Add("floor: HTTP GET /v1/healthz", await Measure(iterations, () => http.GetStringAsync("v1/healthz", ct)));
            await NetworkFigures(client, report, iterations, empty, ct);
            if (parse.GetValue(networkOnly))
            {
                if (parse.GetValue(json) is { } only) await File.WriteAllTextAsync(only, report.ToJson(), ct);
                return;
            }
            List<double>? bwrap = null;
            if (File.Exists("/usr/bin/bwrap"))
                bwrap = report.Add("alternative: bwrap python3 print(1)", await Measure(iterations, () => RunProcess("/usr/bin/bwrap",
                    ["--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                     "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", python, "-c", "print(1)"])));

            // Creates are timed with the pool full and idle, so they are pool hits and no refill
            // competes for the two cores; the close and the refill after it are not timed.
            foreach (var template in (await client.CapacityAsync(ct)).Pools!.Where(p => p.Network is null).Select(p => p.Template))
            {
                var serverHit = new List<double>();
                var hit = await Measure(iterations, async () =>
                {
                    var sb = await Sandbox.CreateAsync(new CreateSandboxRequest { Template = template }, client, ct);
                    serverHit.Add(sb.Info.TimingsMs!["total"]);
                    return sb;
                }, before: () => WaitPoolFull(client, template, ct), after: sb => sb.CloseAsync(ct));
                report.Add($"create() pool hit [{template}]", hit, (fork, "fork"), (empty, "http"), (bwrap, "bwrap"));
                report.Add($"create() pool hit, server [{template}]", serverHit);
            }

            report.Add("create + run_code + close", await Measure(iterations, async () =>
            {
                await using var sb = await Sandbox.CreateAsync(client: client, ct: ct);
                await sb.RunCodeAsync("print(1)", ct: ct);
                return 0;
            }, before: () => WaitPoolFull(client, "default", ct)), (fork, "fork"), (bwrap, "bwrap"));

            await WaitPoolFull(client, "default", ct);
            await using (var sb = await Sandbox.CreateAsync(client: client, ct: ct))
            {
                await WaitPoolFull(client, "default", ct);
                report.Add("run_code(\"print(1)\") hot", await Measure(iterations, () => sb.RunCodeAsync("print(1)", ct: ct)), (pipe, "pipe"), (empty, "http"));
                report.Add("exec(\"true\") (bash)", await Measure(iterations, () => sb.ExecAsync("true", ct: ct)));
                var blob = new byte[256 * 1024];
                Random.Shared.NextBytes(blob);
                report.Add("upload 256 KB", await Measure(iterations, async () => { await sb.UploadAsync("/root/blob.bin", blob, ct); return 0; }), (empty, "http"));
                report.Add("download 256 KB", await Measure(iterations, () => sb.DownloadAsync("/root/blob.bin", ct)), (empty, "http"));
            }

            await ForkFigures(client, report, iterations, "default", "state = list(range(100000))", ct);
            await ForkFigures(client, report, Math.Max(3, iterations / 3), "python-datasci",
                "import numpy as np, pandas as pd\ndf = pd.DataFrame(np.random.rand(1_310_720, 10))  # 100 MB", ct);
            await MergeFigures(client, report, iterations, ct);
            await SpaceFigures(client, report, iterations, "default", "10 MB state", "import os\nstate = os.urandom(10 << 20)", empty, ct);
            await SpaceFigures(client, report, Math.Max(3, iterations / 3), "python-datasci", "100 MB DataFrame",
                "import numpy as np, pandas as pd\ndf = pd.DataFrame(np.random.rand(1_310_720, 10))  # 100 MB", empty, ct);
            await ForkCycles(client, report, parse.GetValue(cycles), ct);

            var target = (await client.CapacityAsync(ct)).Pools!.First(p => p.Template == "default" && p.Network is null).Target;
            await client.SetPoolSizeAsync("default", 0, ct);
            try
            {
                report.Add("create() pool miss", await Measure(iterations, () => Sandbox.CreateAsync(client: client, ct: ct), after: sb => sb.CloseAsync(ct)),
                    (forkUnshare.Count > 0 ? forkUnshare : forkZygote, "fork+unshare"), (bwrap, "bwrap"));
                // Burst: 4 clients creating at once with the pool empty, so every create makes its sandbox.
                var burst = new List<Sandbox>();
                var clock = Stopwatch.StartNew();
                var made = await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
                {
                    var mine = new List<Sandbox>();
                    for (var i = 0; i < Math.Max(5, iterations / 3); i++) mine.Add(await Sandbox.CreateAsync(client: client, ct: ct));
                    return mine;
                }));
                var seconds = clock.Elapsed.TotalSeconds;
                burst.AddRange(made.SelectMany(m => m));
                report.Note("burst_creates_per_s", burst.Count / seconds,
                    $"burst create rate, pool drained, 4 clients: {burst.Count / seconds:F1} sandboxes/s ({burst.Count} in {seconds:F2} s)");
                foreach (var sb in burst) await sb.CloseAsync(ct);
            }
            finally
            {
                await client.SetPoolSizeAsync("default", target, ct);
            }
            foreach (var template in (await client.CapacityAsync(ct)).Pools!.Where(p => p.Network is null).Select(p => p.Template))
            {
                await WaitPoolFull(client, template, ct);
                var pool = (await client.CapacityAsync(ct)).Pools!.First(p => p.Template == template && p.Network is null);
                report.Note($"refill_ms_p50[{template}]", pool.RefillMsP50 ?? 0,
                    $"pool refill per sandbox, server side [{template}]: p50 {pool.RefillMsP50:F1} ms ({pool.RefillPerS:F1}/s)");
            }

            // Idle sandboxes held at once: create until --hold or until the server says it is full.
            var idle = new List<Sandbox>();
            var want = Math.Max(20, parse.GetValue(hold));
            var holdClock = Stopwatch.StartNew();
            try
            {
                while (idle.Count < want) idle.Add(await Sandbox.CreateAsync(client: client, ct: ct));
            }
            catch (ForkboxApiException e) when (e.Status == 503)
            {
                Console.WriteLine($"server full after {idle.Count} sandboxes: {e.ServerMessage}");
            }
            var holdSeconds = holdClock.Elapsed.TotalSeconds;
            await Task.Delay(500, ct);
            var memory = new List<double>();
            foreach (var sb in idle) memory.Add((await sb.RefreshAsync(ct)).MemoryBytes!.Value / 1048576.0);
            var stillWorks = (await idle[^1].RunCodeAsync("print('ok')", ct: ct)).Stdout == "ok";
            foreach (var sb in idle) await sb.CloseAsync(ct);
            memory.Sort();
            report.Note("idle_sandboxes_held", idle.Count,
                $"idle sandboxes held at once: {idle.Count} (created in {holdSeconds:F1} s; the last one still answers: {stillWorks})");
            report.Note("idle_sandbox_mib_p50", memory[memory.Count / 2],
                $"idle sandbox memory (its cgroup): p50 {memory[memory.Count / 2]:F2} MiB, max {memory[^1]:F2} MiB, total {memory.Sum():F0} MiB");

            if (parse.GetValue(json) is { } path)
            {
                await File.WriteAllTextAsync(path, report.ToJson(), ct);
                Console.WriteLine($"raw samples written to {path}");
            }
        }));
        return cmd;
    }

    /// <summary>
    /// The latency an edge adds: the same calls straight to a host and through the edge, one after
    /// the other in each iteration so that both see the same machine. The creates are pool hits
    /// (the host's pool is full before each); the edge places them on any host, so the figure is
    /// only clean with one host behind the edge.
    /// </summary>
    private static async Task EdgeFigures(ForkboxClient host, ForkboxClient edge, Report report, int iterations, CancellationToken ct)
    {
        Console.WriteLine($"forkbox bench: edge {edge.BaseAddress} against host {host.BaseAddress}, {iterations} iterations after 1 warm-up, {Environment.ProcessorCount} cores");
        Console.WriteLine($"{"figure",-42} {"min",8} {"p50",8} {"p95",8} {"mean",8}  ms");
        using var hostHttp = new HttpClient { BaseAddress = host.BaseAddress };
        using var edgeHttp = new HttpClient { BaseAddress = edge.BaseAddress };
        await Interleaved(200, () => hostHttp.GetStringAsync("v1/healthz", ct), () => edgeHttp.GetStringAsync("v1/healthz", ct)); // warm-up
        var (healthHost, healthEdge) = await Interleaved(iterations, () => hostHttp.GetStringAsync("v1/healthz", ct), () => edgeHttp.GetStringAsync("v1/healthz", ct));
        report.Add("HTTP GET /v1/healthz, host", healthHost);
        report.Add("HTTP GET /v1/healthz, edge", healthEdge, (healthHost, "host"));

        // Each create's time beside the host's own (timings_ms.total): what the hops cost, whatever the host's share was.
        async Task<(double Total, double Hops)> CreateClose(ForkboxClient via)
        {
            await WaitPoolFull(host, "default", ct);
            var t = Stopwatch.GetTimestamp();
            var sb = await Sandbox.CreateAsync(client: via, ct: ct);
            var ms = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            await sb.CloseAsync(ct);
            return (ms, ms - sb.Info.TimingsMs!["total"]);
        }
        // The edge is a long-running process: let its hot paths reach their optimised code first.
        for (var i = 0; i < 10; i++)
        {
            await CreateClose(edge);
            await CreateClose(host);
        }
        var createHost = new List<double>();
        var createEdge = new List<double>();
        var hopsAdded = new List<double>();
        for (var i = 0; i < iterations; i++)
        {
            var d = await CreateClose(host);
            var e = await CreateClose(edge);
            createHost.Add(d.Total);
            createEdge.Add(e.Total);
            hopsAdded.Add(e.Hops - d.Hops);
        }
        report.Add("create() pool hit, host", createHost);
        report.Add("create() pool hit, edge", createEdge, (createHost, "host"));
        hopsAdded.Sort();
        report.Note("edge_added_ms_p50[create, beside the host's own time]", Percentile(hopsAdded, 0.5),
            string.Create(CultureInfo.InvariantCulture, $"edge adds at p50 [create, each less the host's own time]: {Percentile(hopsAdded, 0.5):F3} ms"));

        await WaitPoolFull(host, "default", ct);
        await using var sandbox = await Sandbox.CreateAsync(client: edge, ct: ct);
        var direct = await Sandbox.ConnectAsync(sandbox.Id, host, ct);
        await WaitPoolFull(host, "default", ct);
        await Interleaved(100, () => direct.RunCodeAsync("print(1)", ct: ct), () => sandbox.RunCodeAsync("print(1)", ct: ct)); // warm-up
        var (runHost, runEdge) = await Interleaved(iterations, () => direct.RunCodeAsync("print(1)", ct: ct), () => sandbox.RunCodeAsync("print(1)", ct: ct));
        report.Add("run_code(\"print(1)\") hot, host", runHost);
        report.Add("run_code(\"print(1)\") hot, edge", runEdge, (runHost, "host"));
        foreach (var (name, viaHost, viaEdge) in new[] { ("create", createHost, createEdge), ("run_code", runHost, runEdge), ("healthz", healthHost, healthEdge) })
            report.Note($"edge_added_ms_p50[{name}]", Percentile(viaEdge, 0.5) - Percentile(viaHost, 0.5),
                string.Create(CultureInfo.InvariantCulture, $"edge adds at p50 [{name}]: {Percentile(viaEdge, 0.5) - Percentile(viaHost, 0.5):F3} ms"));
    }

    /// <summary>Times <paramref name="a"/> then <paramref name="b"/> in each iteration (after one warm-up of each).</summary>
    private static async Task<(List<double> A, List<double> B)> Interleaved<T>(int n, Func<Task<T>> a, Func<Task<T>> b)
    {
        var (sa, sb) = (new List<double>(n), new List<double>(n));
        for (var i = 0; i <= n; i++)
        {
            var t = Stopwatch.GetTimestamp();
            await a();
            var ma = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            t = Stopwatch.GetTimestamp();
            await b();
            var mb = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            if (i == 0) continue;
            sa.Add(ma);
            sb.Add(mb);
        }
        return (sa, sb);
    }

    /// <summary>
    /// fork(1) and fork(5) of a warm sandbox of <paramref name="template"/> holding the state
    /// <paramref name="setup"/> makes, end to end and server side, beside two floors measured in the
    /// same run: a bare fork() of the parent process itself (inside the sandbox, so the same size),
    /// and the server's snapshot of the writable layer alone. Also the private memory of a fresh fork.
    /// </summary>
    private static async Task ForkFigures(ForkboxClient client, Report report, int iterations, string template, string setup, CancellationToken ct)
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

    /// <summary>
    /// Spaces: pause and resume (default template only), then hibernate and resume of a persistent
    /// sandbox holding the state <paramref name="setup"/> makes, beside the floor measured in the same
    /// run inside the same sandbox: writing the same number of bytes to a file with fsync, and reading them back.
    /// </summary>
    private static async Task SpaceFigures(ForkboxClient client, Report report, int iterations, string template, string label, string setup,
        List<double> http, CancellationToken ct)
    {
        await WaitPoolFull(client, template, ct);
        await using var sb = await Sandbox.CreateAsync(new CreateSandboxRequest { Template = template, Persistent = true, MemoryMb = 2048 }, client, ct);
        var ready = await sb.RunCodeAsync(setup, ct: ct);
        if (ready.ExitCode != 0) throw new InvalidOperationException($"space bench set-up failed: {ready.Stderr}");
        static double Since(long t) => Stopwatch.GetElapsedTime(t).TotalMilliseconds;
        if (template == "default")
        {
            var (pause, thaw) = (new List<double>(), new List<double>());
            for (var i = 0; i <= iterations; i++)
            {
                var t = Stopwatch.GetTimestamp();
                await sb.PauseAsync(ct);
                if (i > 0) pause.Add(Since(t));
                t = Stopwatch.GetTimestamp();
                await sb.ResumeAsync(ct);
                if (i > 0) thaw.Add(Since(t));
            }
            report.Add("pause", pause, (http, "http"));
            report.Add("resume from paused", thaw, (http, "http"));
        }
        var (hibernate, resume, freed) = (new List<double>(), new List<double>(), new List<double>());
        long bytes = 0;
        for (var i = 0; i <= iterations; i++)
        {
            var t = Stopwatch.GetTimestamp();
            var h = await sb.HibernateAsync(ct);
            var hMs = Since(t);
            t = Stopwatch.GetTimestamp();
            await sb.ResumeAsync(ct);
            if (i == 0) continue;
            hibernate.Add(hMs);
            resume.Add(Since(t));
            freed.Add((h.MemoryFreedBytes ?? 0) / 1048576.0);
            bytes = h.Bytes ?? 0;
        }
        var floor = await sb.RunCodeAsync($$"""
            import os, time
            data = os.urandom({{bytes}})
            for i in range({{iterations + 1}}):
                t = time.perf_counter()
                with open("/root/floor.bin", "wb") as f:
                    f.write(data); f.flush(); os.fsync(f.fileno())
                w = time.perf_counter() - t
                t = time.perf_counter()
                with open("/root/floor.bin", "rb") as f:
                    f.read()
                if i: print(w * 1000, (time.perf_counter() - t) * 1000)
            os.remove("/root/floor.bin")
            del data
            """, ct: ct);
        var pairs = floor.StdoutLines.Select(l => l.Split(' ').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToList();
        var mb = bytes / 1048576.0;
        var write = report.Add($"floor: write + fsync {mb:F0} MB [{template}]", pairs.Select(p => p[0]).ToList());
        var read = report.Add($"floor: read {mb:F0} MB [{template}]", pairs.Select(p => p[1]).ToList());
        report.Add($"hibernate, {label} [{template}]", hibernate, (write, "write"));
        report.Add($"resume from hibernated, {label} [{template}]", resume, (read, "read"));
        freed.Sort();
        report.Note($"hibernate_freed_mib[{template}]", freed[freed.Count / 2],
            $"memory freed by hibernating, {label} [{template}]: p50 {freed[freed.Count / 2]:F1} MiB ({mb:F1} MB written)");
    }

    /// <summary>merge_into of a fresh fork into its parent; each parent is new, so the measurement does not deepen one family.</summary>
    private static async Task MergeFigures(ForkboxClient client, Report report, int iterations, CancellationToken ct)
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
    private static async Task ForkCycles(ForkboxClient client, Report report, int cycles, CancellationToken ct)
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

    private static async Task<List<double>> Measure<T>(int n, Func<Task<T>> op, Func<Task>? before = null, Func<T, Task>? after = null)
    {
        var samples = new List<double>(n);
        for (var i = 0; i <= n; i++) // the first run is a warm-up, discarded
        {
            if (before is not null) await before();
            var t = Stopwatch.GetTimestamp();
            var result = await op();
            var ms = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            if (after is not null) await after(result);
            if (i > 0) samples.Add(ms);
        }
        return samples;
    }

    /// <summary>
    /// Pool-hit create with "network": "egress" beside "none", alternated in one run with both pools
    /// full; then a small GET through the ports proxy beside the same GET made inside the sandbox
    /// (python's http.client to 127.0.0.1) and beside the host's empty HTTP round trip to hostd.
    /// </summary>
    private static async Task NetworkFigures(ForkboxClient client, Report report, int iterations, List<double> http, CancellationToken ct)
    {
        var egress = new CreateSandboxRequest { Network = "egress" };
        try
        {
            // The egress pool is made by the first egress create.
            await (await Sandbox.CreateAsync(egress, client, ct)).CloseAsync(ct);
        }
        catch (ForkboxApiException e) when (e.Status == 400)
        {
            Console.WriteLine($"network figures skipped: {e.ServerMessage}");
            return;
        }
        var (none, withEgress, noneServer, egressServer) = (new List<double>(), new List<double>(), new List<double>(), new List<double>());
        for (var i = 0; i <= iterations; i++)
        {
            foreach (var (request, e2e, server) in new[] { (new CreateSandboxRequest(), none, noneServer), (egress, withEgress, egressServer) })
            {
                await WaitPoolFull(client, "default", ct);
                await WaitPoolFull(client, "default", ct, egress: true);
                var t = Stopwatch.GetTimestamp();
                var sb = await Sandbox.CreateAsync(request, client, ct);
                var ms = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
                if (i > 0 && sb.Info.PoolHit == true)
                {
                    e2e.Add(ms);
                    server.Add(sb.Info.TimingsMs!["total"]);
                }
                await sb.CloseAsync(ct);
            }
        }
        var noneHit = report.Add("create() pool hit [network none]", none, (http, "http"));
        report.Add("create() pool hit [network egress]", withEgress, (noneHit, "none"), (http, "http"));
        var noneServerHit = report.Add("create() pool hit, server [network none]", noneServer);
        report.Add("create() pool hit, server [network egress]", egressServer, (noneServerHit, "none"));

        await WaitPoolFull(client, "default", ct);
        await using var web = await Sandbox.CreateAsync(client: client, ct: ct);
        await web.UploadAsync("/tmp/www/small.txt", "hello\n"u8.ToArray(), ct);
        await web.ExecAsync("(setsid nohup /usr/bin/python3 -m http.server 8000 --directory /tmp/www >/dev/null 2>&1 &) ; sleep 0.5", ct: ct);
        var inside = await web.RunCodeAsync($$"""
            import http.client, time
            for i in range({{iterations + 1}}):
                t = time.perf_counter()
                c = http.client.HTTPConnection("127.0.0.1", 8000)
                c.request("GET", "/small.txt")
                c.getresponse().read()
                c.close()
                if i: print((time.perf_counter() - t) * 1000)
            """, ct: ct);
        var direct = report.Add("floor: GET inside the sandbox (python)", inside.StdoutLines.Select(l => double.Parse(l, CultureInfo.InvariantCulture)).ToList());
        using var proxied = new HttpClient { BaseAddress = client.BaseAddress };
        if (client.ApiKey is { } key) proxied.DefaultRequestHeaders.Authorization = new("Bearer", key);
        report.Add("GET through the ports proxy", await Measure(iterations, () => proxied.GetStringAsync($"v1/sandboxes/{web.Id}/ports/8000/small.txt", ct)),
            (direct, "inside"), (http, "http"));
    }

    /// <summary>Waits until a template's pool is full, so no refill runs during a measurement.</summary>
    private static async Task WaitPoolFull(ForkboxClient client, string template, CancellationToken ct, bool egress = false)
    {
        var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 60;
        while (true)
        {
            var pool = (await client.CapacityAsync(ct)).Pools?.FirstOrDefault(p => p.Template == template && (p.Network == "egress") == egress);
            if (pool is null || pool.Ready >= pool.Target) return;
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException("the pool did not refill within 60 s");
            await Task.Delay(5, ct);
        }
    }

    /// <summary>Collects figures, prints each as it is measured, and writes them all as JSON.</summary>
    private sealed class Report
    {
        private readonly Dictionary<string, object> _all = new();

        public List<double> Add(string name, List<double> samples, params (List<double>? Floor, string Name)[] ratios)
        {
            samples.Sort();
            _all[name] = samples;
            var p50 = Percentile(samples, 0.5);
            var text = string.Concat(ratios.Where(r => r.Floor is { Count: > 0 })
                .Select(r => string.Create(CultureInfo.InvariantCulture, $"  {p50 / Percentile(r.Floor!, 0.5):F2}x {r.Name}")));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name,-42} {samples[0],8:F3} {p50,8:F3} {Percentile(samples, 0.95),8:F3} {samples.Average(),8:F3}{text}"));
            return samples;
        }

        public void Note(string key, double value, string line)
        {
            _all[key] = value;
            Console.WriteLine(line);
        }

        public string ToJson() => JsonSerializer.Serialize(_all, new JsonSerializerOptions { WriteIndented = true });
    }

    private static double Percentile(List<double> sorted, double p) =>
        sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    private static async Task<int> RunProcess(string file, string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, UseShellExecute = false })!;
        await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        return p.ExitCode;
    }

    /// <summary>Round trip of a line to a python process over pipes: the floor under run_code.</summary>
    private static List<double> RawPipeRoundTrip(string python, int n) =>
        RunPythonSamples(python, $$"""
            import os, sys, time
            r1, w1 = os.pipe(); r2, w2 = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(w1)
                while True:
                    d = os.read(r1, 64)
                    if not d: os._exit(0)
                    os.write(w2, d)
            for i in range({{n + 1}}):
                t = time.perf_counter(); os.write(w1, b"x\n"); os.read(r2, 64)
                if i: print((time.perf_counter() - t) * 1000)
            os.close(w1); os.waitpid(pid, 0)
            """);

    /// <summary>fork() of a bare python until the child answers on a pipe: the floor under create.</summary>
    /// <summary>
    /// fork() of a python until the child answers on a pipe: the floor under a sandbox's start.
    /// With preload, the process first imports what the default template's zygote imports; with
    /// unshare, the child also unshares mount, network, IPC and UTS namespaces (needs root).
    /// </summary>
    private static List<double> RawFork(string python, int n, bool preload = false, bool unshare = false) =>
        RunPythonSamples(python, $$"""
            import ctypes, gc, os, time
            if {{(preload ? "True" : "False")}}:
                import json, re, subprocess, pathlib, collections, itertools, functools, math, random, datetime, typing, dataclasses, io, shutil, tempfile, textwrap, traceback, selectors, socket, ast
            libc = ctypes.CDLL(None, use_errno=True)
            gc.freeze()
            for i in range({{n + 1}}):
                r, w = os.pipe()
                t = time.perf_counter()
                pid = os.fork()
                if pid == 0:
                    if {{(unshare ? "True" : "False")}} and libc.unshare(0x00020000 | 0x40000000 | 0x08000000 | 0x04000000) != 0:
                        os._exit(1)
                    os.write(w, b"1"); os._exit(0)
                ok = os.read(r, 1)
                if i and ok: print((time.perf_counter() - t) * 1000)
                os.waitpid(pid, 0); os.close(r); os.close(w)
            """);

    private static List<double> RunPythonSamples(string python, string script)
    {
        var psi = new ProcessStartInfo(python, ["-c", script]) { RedirectStandardOutput = true, UseShellExecute = false };
        using var p = Process.Start(psi)!;
        var samples = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToList();
        p.WaitForExit();
        return samples;
    }
}
