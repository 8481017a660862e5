using System.CommandLine;

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
}
