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
        var networkSubnet = new Option<string?>("--network-subnet")
        {
            HelpName = "CIDR", Description = "Private IPv4 network for sandboxes with egress (default 10.201.0.0/16); distinct per server on one host",
        };
        var networkDns = new Option<string?>("--network-dns") { HelpName = "IP,…", Description = "Resolvers written to the /etc/resolv.conf of sandboxes with egress" };
        var cmd = new Command("serve", "Run the Forkbox server (hostd) on this host; needs root.")
        {
            listen, dataDir, config, storage, storageImage, storageImageFs, networkSubnet, networkDns,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            ServerOptions options;
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
            try
            {
                options = ServerOptionsLoader.Load(parse.GetValue(config), new Dictionary<string, string?>
                {
                    [nameof(ServerOptions.Listen)] = parse.GetValue(listen),
                    [nameof(ServerOptions.DataDir)] = parse.GetValue(dataDir),
                    [nameof(ServerOptions.Storage)] = parse.GetValue(storage),
                    [nameof(ServerOptions.StorageImageBytes)] = imageBytes?.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    [nameof(ServerOptions.StorageImageFs)] = parse.GetValue(storageImageFs),
                    [nameof(ServerOptions.NetworkSubnet)] = parse.GetValue(networkSubnet),
                    [nameof(ServerOptions.NetworkDns)] = parse.GetValue(networkDns),
                });
            }
            catch (Exception e) when (e is Forkbox.Core.Errors.ForkboxException or FileNotFoundException or InvalidDataException)
            {
                Console.Error.WriteLine($"forkbox serve: {e.Message}");
                return 2;
            }
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
}
