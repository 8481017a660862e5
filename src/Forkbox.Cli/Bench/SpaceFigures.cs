using System.Diagnostics;
using System.Globalization;
using Forkbox.Client;
using Forkbox.Core.Wire;
using static Forkbox.Cli.Bench.Sampling;

namespace Forkbox.Cli.Bench;

/// <summary>Spaces figures: pause, resume, hibernate, beside the disk floors measured in the same sandbox.</summary>
internal static class SpaceFigures
{
    /// <summary>
    /// Spaces: pause and resume (default template only), then hibernate and resume of a persistent
    /// sandbox holding the state <paramref name="setup"/> makes, beside the floor measured in the same
    /// run inside the same sandbox: writing the same number of bytes to a file with fsync, and reading them back.
    /// </summary>
    public static async Task RunAsync(ForkboxClient client, BenchReport report, int iterations, string template, string label, string setup,
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
}
