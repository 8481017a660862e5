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
        var cmd = new Command("serve", "Run the Forkbox server (hostd) on this host; needs root.") { listen, dataDir, config };
        cmd.SetAction(async (parse, ct) =>
        {
            ServerOptions options;
            try
            {
                options = ServerOptionsLoader.Load(parse.GetValue(config), new Dictionary<string, string?>
                {
                    [nameof(ServerOptions.Listen)] = parse.GetValue(listen),
                    [nameof(ServerOptions.DataDir)] = parse.GetValue(dataDir),
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
