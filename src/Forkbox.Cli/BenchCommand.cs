using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.Cli;

/// <summary>
/// `forkbox bench`: latency of the API on this host over HTTP on loopback with the C# SDK and one
/// shared connection, beside raw primitives measured in the same run. Each figure is over N
/// iterations after one discarded warm-up.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var host = CommonOptions.Host();
        var n = new Option<int>("-n", "--iterations") { Description = "Iterations per figure", DefaultValueFactory = _ => 30 };
        var cmd = new Command("bench", "Measure create, run_code, upload and idle memory against a running server.") { host, n };
        cmd.SetAction(async (parse, ct) => await SandboxCommand.Run(async () =>
        {
            var client = new ForkboxClient(parse.GetValue(host));
            var iterations = Math.Max(3, parse.GetValue(n));
            var python = "/usr/bin/python3";
            Console.WriteLine($"forkbox bench against {client.BaseAddress}, {iterations} iterations after 1 warm-up, {Environment.ProcessorCount} cores");
            Console.WriteLine($"{"figure",-34} {"min",8} {"p50",8} {"p95",8} {"mean",8}  ms");

            var rawRoundTrip = RawPipeRoundTrip(python, iterations * 10);
            var rawFork = RawFork(python, iterations);
            Print("raw: pipe round trip to python", rawRoundTrip);
            Print("raw: fork() of python until ack", rawFork);

            // Creates are timed with the pool full and idle, so they are pool hits and no refill
            // competes for the two cores; the close and the refill after it are not timed.
            var serverHit = new List<double>();
            var hit = await Measure(iterations, async () =>
            {
                var sb = await Sandbox.CreateAsync(client: client, ct: ct);
                serverHit.Add(sb.Info.TimingsMs!["total"]);
                return sb;
            }, before: () => WaitPoolFull(client, ct), after: sb => sb.CloseAsync(ct));
            Print("create() pool hit", hit, rawFork, "fork");
            Print("create() pool hit, server side", serverHit);

            var full = await Measure(iterations, async () =>
            {
                await using var sb = await Sandbox.CreateAsync(client: client, ct: ct);
                await sb.RunCodeAsync("print(1)", ct: ct);
                return 0;
            }, before: () => WaitPoolFull(client, ct));
            Print("create + run_code + close", full, rawFork, "fork");

            await WaitPoolFull(client, ct);
            await using (var sb = await Sandbox.CreateAsync(client: client, ct: ct))
            {
                await WaitPoolFull(client, ct);
                Print("run_code(\"print(1)\") hot", await Measure(iterations, () => sb.RunCodeAsync("print(1)", ct: ct)), rawRoundTrip, "pipe");
                Print("exec(\"true\") (bash)", await Measure(iterations, () => sb.ExecAsync("true", ct: ct)));
                var blob = new byte[256 * 1024];
                Random.Shared.NextBytes(blob);
                Print("upload 256 KB", await Measure(iterations, async () => { await sb.UploadAsync("/root/blob.bin", blob, ct); return 0; }));
                Print("download 256 KB", await Measure(iterations, () => sb.DownloadAsync("/root/blob.bin", ct)));
            }

            var target = (await client.CapacityAsync(ct)).Pools!.First(p => p.Template == "default").Target;
            await client.SetPoolSizeAsync("default", 0, ct);
            try
            {
                var miss = await Measure(iterations, () => Sandbox.CreateAsync(client: client, ct: ct), after: sb => sb.CloseAsync(ct));
                Print("create() pool miss", miss, rawFork, "fork");
            }
            finally
            {
                await client.SetPoolSizeAsync("default", target, ct);
            }
            await WaitPoolFull(client, ct);
            var pool = (await client.CapacityAsync(ct)).Pools!.First(p => p.Template == "default");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"pool refill per sandbox, server side: p50 {pool.RefillMsP50:F1} ms over the last refills ({pool.RefillPerS:F1}/s)"));

            var idle = new List<Sandbox>();
            for (var i = 0; i < 10; i++) idle.Add(await Sandbox.CreateAsync(client: client, ct: ct));
            await Task.Delay(500, ct);
            var memory = new List<double>();
            foreach (var sb in idle) memory.Add((await sb.RefreshAsync(ct)).MemoryBytes!.Value / 1048576.0);
            foreach (var sb in idle) await sb.CloseAsync(ct);
            memory.Sort();
            Console.WriteLine($"idle sandbox memory (cgroup, 10 sandboxes): p50 {memory[memory.Count / 2]:F2} MiB, max {memory[^1]:F2} MiB");
        }));
        return cmd;
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

    /// <summary>Waits until the default template's pool is full, so no refill runs during a measurement.</summary>
    private static async Task WaitPoolFull(ForkboxClient client, CancellationToken ct)
    {
        var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 60;
        while (true)
        {
            var pool = (await client.CapacityAsync(ct)).Pools?.FirstOrDefault(p => p.Template == "default");
            if (pool is null || pool.Ready >= pool.Target) return;
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException("the pool did not refill within 60 s");
            await Task.Delay(5, ct);
        }
    }

    private static void Print(string name, List<double> samples, List<double>? baseline = null, string? baselineName = null)
    {
        samples.Sort();
        var p50 = Percentile(samples, 0.5);
        var ratio = baseline is { Count: > 0 } ? $"  ({p50 / Percentile(Sorted(baseline), 0.5):F1}x {baselineName})" : "";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name,-34} {samples[0],8:F3} {p50,8:F3} {Percentile(samples, 0.95),8:F3} {samples.Average(),8:F3}{ratio}"));
    }

    private static List<double> Sorted(List<double> s)
    {
        s.Sort();
        return s;
    }

    private static double Percentile(List<double> sorted, double p) =>
        sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

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
    private static List<double> RawFork(string python, int n) =>
        RunPythonSamples(python, $$"""
            import os, time
            for i in range({{n + 1}}):
                r, w = os.pipe()
                t = time.perf_counter()
                pid = os.fork()
                if pid == 0:
                    os.write(w, b"1"); os._exit(0)
                os.read(r, 1)
                if i: print((time.perf_counter() - t) * 1000)
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
