using System.Diagnostics;
using Forkbox.Client;
using Forkbox.Core.Wire;
using static Forkbox.Cli.Bench.Floors;
using static Forkbox.Cli.Bench.Sampling;

namespace Forkbox.Cli.Bench;

/// <summary>
/// `forkbox bench` against one host: the floors, then create, run_code, files, fork, merge_into,
/// Spaces, pool miss and burst, refill and idle sandboxes held, each printed as it is measured.
/// </summary>
internal static class HostFigures
{
    public static async Task RunAsync(ForkboxClient client, BenchReport report, int iterations, int hold, int forkCycles, bool networkOnly,
        string? json, CancellationToken ct)
    {
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
        await NetworkFigures.RunAsync(client, report, iterations, empty, ct);
        if (networkOnly)
        {
            if (json is { } only) await File.WriteAllTextAsync(only, report.ToJson(), ct);
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

        await ForkFigures.ForkAsync(client, report, iterations, "default", "state = list(range(100000))", ct);
        await ForkFigures.ForkAsync(client, report, Math.Max(3, iterations / 3), "python-datasci",
            "import numpy as np, pandas as pd\ndf = pd.DataFrame(np.random.rand(1_310_720, 10))  # 100 MB", ct);
        await ForkFigures.MergeAsync(client, report, iterations, ct);
        await SpaceFigures.RunAsync(client, report, iterations, "default", "10 MB state", "import os\nstate = os.urandom(10 << 20)", empty, ct);
        await SpaceFigures.RunAsync(client, report, Math.Max(3, iterations / 3), "python-datasci", "100 MB DataFrame",
            "import numpy as np, pandas as pd\ndf = pd.DataFrame(np.random.rand(1_310_720, 10))  # 100 MB", empty, ct);
        await ForkFigures.CyclesAsync(client, report, forkCycles, ct);

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
        var want = Math.Max(20, hold);
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

        if (json is { } path)
        {
            await File.WriteAllTextAsync(path, report.ToJson(), ct);
            Console.WriteLine($"raw samples written to {path}");
        }
    }
}
