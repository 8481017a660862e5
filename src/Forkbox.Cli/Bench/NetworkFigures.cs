using System.Diagnostics;
using System.Globalization;
using Forkbox.Client;
using Forkbox.Core.Wire;
using static Forkbox.Cli.Bench.Sampling;

namespace Forkbox.Cli.Bench;

/// <summary>Network figures: pool-hit create with egress beside none, and the ports proxy.</summary>
internal static class NetworkFigures
{
    /// <summary>
    /// Pool-hit create with "network": "egress" beside "none", alternated in one run with both pools
    /// full; then a small GET through the ports proxy beside the same GET made inside the sandbox
    /// (python's http.client to 127.0.0.1) and beside the host's empty HTTP round trip to hostd.
    /// </summary>
    public static async Task RunAsync(ForkboxClient client, BenchReport report, int iterations, List<double> http, CancellationToken ct)
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
}
