using System.Diagnostics;
using System.Globalization;
using Forkbox.Client;
using static Forkbox.Cli.Bench.Sampling;

namespace Forkbox.Cli.Bench;

/// <summary>`forkbox bench --edge`: what an edge adds to the calls it forwards.</summary>
internal static class EdgeFigures
{
    /// <summary>
    /// The latency an edge adds: the same calls straight to a host and through the edge, one after
    /// the other in each iteration so that both see the same machine. The creates are pool hits
    /// (the host's pool is full before each); the edge places them on any host, so the figure is
    /// only clean with one host behind the edge.
    /// </summary>
    public static async Task RunAsync(ForkboxClient host, ForkboxClient edge, BenchReport report, int iterations, CancellationToken ct)
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
}
