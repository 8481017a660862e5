using System.Diagnostics;
using Forkbox.Client;

namespace Forkbox.Cli.Bench;

/// <summary>How `forkbox bench` takes its samples: N timed runs after a warm-up, pairs of calls interleaved, percentiles, and a full pool before each.</summary>
internal static class Sampling
{
    public static async Task<List<double>> Measure<T>(int n, Func<Task<T>> op, Func<Task>? before = null, Func<T, Task>? after = null)
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

    /// <summary>Times <paramref name="a"/> then <paramref name="b"/> in each iteration (after one warm-up of each).</summary>
    public static async Task<(List<double> A, List<double> B)> Interleaved<T>(int n, Func<Task<T>> a, Func<Task<T>> b)
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

    /// <summary>Waits until a template's pool is full, so no refill runs during a measurement.</summary>
    public static async Task WaitPoolFull(ForkboxClient client, string template, CancellationToken ct, bool egress = false)
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

    public static double Percentile(List<double> sorted, double p) =>
        sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
}
