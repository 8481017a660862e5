using System.CommandLine;
using Forkbox.Cli.Bench;
using Forkbox.Client;

namespace Forkbox.Cli;

/// <summary>
/// `forkbox bench`: latency of the API on this host over HTTP on loopback with the C# SDK and one
/// shared connection, beside floors measured in the same run (a pipe round trip and a fork() of
/// python, an HTTP round trip to an empty handler) and the alternative a user would otherwise
/// pick (a cold bubblewrap sandbox running python3). Each figure is over N iterations after one
/// discarded warm-up; each ratio is p50 over the floor's p50. The figure set is in Bench/.
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
            var report = new BenchReport();
            if (parse.GetValue(edge) is { } edgeUrl)
            {
                await EdgeFigures.RunAsync(client, new ForkboxClient(edgeUrl, parse.GetValue(apiKey)), report, iterations, ct);
                if (parse.GetValue(json) is { } edgeJson) await File.WriteAllTextAsync(edgeJson, report.ToJson(), ct);
                return;
            }
            await HostFigures.RunAsync(client, report, iterations, parse.GetValue(hold), parse.GetValue(cycles), parse.GetValue(networkOnly),
                parse.GetValue(json), ct);
        }));
        return cmd;
    }
}
