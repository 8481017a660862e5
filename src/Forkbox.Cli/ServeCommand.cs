using System.CommandLine;
using Forkbox.Core;
using Forkbox.Host;

namespace Forkbox.Cli;

/// <summary>`forkbox serve`: run hostd in the foreground until SIGINT or SIGTERM.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var listen = new Option<string?>("--listen") { Description = "host:port to listen on (default 127.0.0.1:7070)" };
        var dataDir = CommonOptions.DataDir();
        var config = CommonOptions.Config();
        var storage = new Option<string?>("--storage") { HelpName = "auto|btrfs|reflink|copy", Description = "How forks snapshot sandbox layers: auto (default), btrfs, reflink or copy" };
        var storageImage = new Option<string?>("--storage-image")
        {
            HelpName = "SIZE",
            Description = "Make and loop-mount a sparse image of SIZE (e.g. 4G, 512M) on DATA/sandboxes, for snapshots on an ext4 host",
        };
        var storageImageFs = new Option<string?>("--storage-image-fs") { HelpName = "btrfs|xfs", Description = "The storage image's filesystem: btrfs (default) or xfs" };
        var region = new Option<string?>("--region") { Description = "The region this host serves (default: local)" };
        var continent = new Option<string?>("--continent") { HelpName = "AF|AN|AS|EU|NA|OC|SA", Description = "The continent of this host's region: an edge sends clients from there here" };
        var join = new Option<string?>("--join") { HelpName = "REDIS", Description = "Join a cluster: register with the Redis (host:port) its edges read" };
        var hostId = new Option<string?>("--host-id") { Description = "This host's name in the cluster, part of every sandbox id made here (default: the machine's name)" };
        var advertise = new Option<string?>("--advertise") { HelpName = "URL", Description = "The URL edges reach this host at (default: http:// and --listen)" };
        var keys = CommonOptions.Keys();
        var networkSubnet = new Option<string?>("--network-subnet")
        {
            HelpName = "CIDR", Description = "Private IPv4 network for sandboxes with egress (default 10.201.0.0/16); distinct per server on one host",
        };
        var networkDns = new Option<string?>("--network-dns") { HelpName = "IP,…", Description = "Resolvers written to the /etc/resolv.conf of sandboxes with egress (default: the host's own, loopback ones left out)" };
        var cmd = new Command("serve", "Run the Forkbox server (hostd) on this host; needs root.")
        {
            listen, dataDir, config, storage, storageImage, storageImageFs, region, continent, join, hostId, advertise, keys, networkSubnet, networkDns,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            long? imageBytes = null;
            if (parse.GetValue(storageImage) is { } size)
            {
                if (!ByteSize.TryParse(size, out var bytes))
                {
                    Console.Error.WriteLine($"forkbox serve: --storage-image '{size}' is not a size: give bytes or a number with K, M, G or T (e.g. 4G, 512M)");
                    return 2;
                }
                imageBytes = bytes;
            }
            // Keys are option paths (ServerOptionsLoader.KnownKeys); the loader refuses any other.
            var options = CommonOptions.LoadServerOptions("serve", parse.GetValue(config), new Dictionary<string, string?>
            {
                [nameof(ServerOptions.Listen)] = parse.GetValue(listen),
                [nameof(ServerOptions.DataDir)] = parse.GetValue(dataDir),
                ["Storage:Strategy"] = parse.GetValue(storage),
                ["Storage:ImageBytes"] = imageBytes?.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["Storage:ImageFs"] = parse.GetValue(storageImageFs),
                ["Cluster:Region"] = parse.GetValue(region),
                ["Cluster:Continent"] = parse.GetValue(continent),
                ["Cluster:Join"] = parse.GetValue(join),
                ["Cluster:HostId"] = parse.GetValue(hostId) ?? (parse.GetValue(join) is null ? null : MachineHostId()),
                ["Cluster:Advertise"] = parse.GetValue(advertise),
                [nameof(ServerOptions.Keys)] = parse.GetValue(keys) is { } k ? Path.GetFullPath(k) : null,
                ["Network:Subnet"] = parse.GetValue(networkSubnet),
                ["Network:Dns"] = parse.GetValue(networkDns),
            });
            if (options is null) return 2;
            HostServer server;
            try
            {
                server = await HostServer.StartAsync(options, ct: ct);
            }
            catch (InvalidOperationException e)
            {
                Console.Error.WriteLine($"forkbox serve: {e.Message}");
                return 1;
            }
            await server.RunUntilStoppedAsync();
            return 0;
        });
        return cmd;
    }

    /// <summary>The machine's name as a host id: lowercase, with anything but a-z, 0-9 and '-' made '-'.</summary>
    private static string MachineHostId()
    {
        var name = new string(Environment.MachineName.ToLowerInvariant()
            .Select(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) ? c : '-').ToArray()).TrimStart('-');
        return name.Length == 0 ? "host" : name[..Math.Min(name.Length, 32)];
    }
}
