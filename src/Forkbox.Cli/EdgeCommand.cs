using System.CommandLine;
using Forkbox.Edge;

namespace Forkbox.Cli;

/// <summary>`forkbox edge`: route the API over every host registered in one Redis, until SIGINT or SIGTERM.</summary>
internal static class EdgeCommand
{
    public static Command Create()
    {
        var listen = new Option<string?>("--listen") { Description = "host:port to listen on (default 127.0.0.1:8080)" };
        var redis = new Option<string>("--redis") { HelpName = "HOST:PORT", Description = "The cluster's Redis, where hosts register (forkbox serve --join)", Required = true };
        var keys = new Option<string?>("--keys")
        {
            HelpName = "FILE",
            Description = "The API keys file, as the hosts' (`forkbox keys create --keys FILE`); each key may name a tier. Without it the edge checks no keys (loopback only)",
        };
        var tiers = new Option<string?>("--tiers")
        {
            HelpName = "FILE",
            Description = "Tier limits per API key: {\"free\": {\"max_sandboxes\": 5, \"creates_per_minute\": 60}, …}",
        };
        var continentHeader = new Option<string?>("--continent-header") { Description = "The header naming the client's continent, set by what fronts the edge (default X-Client-Continent)" };
        var poll = new Option<double?>("--poll-s") { Description = "Seconds between two reads of the host registry (default 1)" };
        var reconcile = new Option<double?>("--reconcile-s") { Description = "Seconds between two repairs of the tier counts from the hosts (default 5)" };
        var cmd = new Command("edge", "Route the Forkbox API over many hosts and regions, with failover and tier limits.")
        {
            listen, redis, keys, tiers, continentHeader, poll, reconcile,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var defaults = new EdgeOptions { Redis = parse.GetValue(redis)! };
            var options = defaults with
            {
                Listen = parse.GetValue(listen) ?? defaults.Listen,
                Keys = parse.GetValue(keys) is { } k ? Path.GetFullPath(k) : null,
                Tiers = parse.GetValue(tiers) is { } t ? Path.GetFullPath(t) : null,
                ContinentHeader = parse.GetValue(continentHeader) ?? defaults.ContinentHeader,
                PollS = parse.GetValue(poll) ?? defaults.PollS,
                ReconcileS = parse.GetValue(reconcile) ?? defaults.ReconcileS,
            };
            EdgeServer server;
            try
            {
                server = await EdgeServer.StartAsync(options, ct: ct);
            }
            catch (Exception e) when (e is InvalidOperationException or Forkbox.Core.Errors.ForkboxException)
            {
                Console.Error.WriteLine($"forkbox edge: {e.Message}");
                return e is InvalidOperationException ? 1 : 2;
            }
            await server.RunUntilStoppedAsync();
            return 0;
        });
        return cmd;
    }
}
