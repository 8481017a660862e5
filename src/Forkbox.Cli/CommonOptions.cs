using System.CommandLine;
using Forkbox.Core;
using Forkbox.Host;

namespace Forkbox.Cli;

/// <summary>Options several commands share.</summary>
internal static class CommonOptions
{
    public static Option<string?> Host() => new("--host")
    {
        Description = "Forkbox server URL (default: $FORKBOX_HOST or http://127.0.0.1:7070)",
    };

    public static Option<string?> ApiKey() => new("--api-key")
    {
        Description = "API key for the Forkbox server (default: $FORKBOX_API_KEY)",
    };

    public static Option<string?> DataDir() => new("--data-dir")
    {
        Description = "Where the server keeps its state (default /var/lib/forkbox)",
    };

    public static Option<string?> Keys() => new("--keys")
    {
        HelpName = "FILE",
        Description = "The API keys file (default DATA_DIR/keys.json); hosts and edges of a cluster may share one",
    };

    public static Option<string?> Config() => new("--config")
    {
        Description = "JSON configuration file (default DATA_DIR/config.json when present)",
    };

    /// <summary>
    /// The server's options as <paramref name="command"/> sees them (see <see cref="ServerOptionsLoader"/>);
    /// null, with the reason printed as "forkbox COMMAND: …", when the file, a variable or a flag is wrong.
    /// </summary>
    public static ServerOptions? LoadServerOptions(string command, string? config, IReadOnlyDictionary<string, string?> flags)
    {
        try
        {
            return ServerOptionsLoader.Load(config, flags);
        }
        catch (Exception e) when (e is Forkbox.Core.Errors.ForkboxException or FileNotFoundException or InvalidDataException)
        {
            Console.Error.WriteLine($"forkbox {command}: {e.Message}");
            return null;
        }
    }
}
