using Forkbox.Core;
using Microsoft.Extensions.Configuration;

namespace Forkbox.Host;

/// <summary>
/// Builds <see cref="ServerOptions"/> from, lowest precedence first: defaults, a JSON file
/// (--config, else DATA_DIR/config.json if present), FORKBOX_* environment variables
/// (e.g. FORKBOX_MAXSANDBOXES=100) and command-line flags. Keys match property names without
/// regard to case: {"MaxSandboxes": 100} or {"maxsandboxes": 100}.
/// </summary>
public static class ServerOptionsLoader
{
    public static ServerOptions Load(string? configFile, IReadOnlyDictionary<string, string?> flags)
    {
        var builder = new ConfigurationBuilder();
        if (configFile is not null)
        {
            if (!File.Exists(configFile)) throw new FileNotFoundException($"config file {configFile} does not exist");
            builder.AddJsonFile(Path.GetFullPath(configFile), optional: false);
        }
        else
        {
            var dataDir = flags.GetValueOrDefault(nameof(ServerOptions.DataDir))
                          ?? Environment.GetEnvironmentVariable("FORKBOX_DATADIR") ?? new ServerOptions().DataDir;
            builder.AddJsonFile(Path.Combine(dataDir, "config.json"), optional: true);
        }
        builder.AddEnvironmentVariables("FORKBOX_");
        builder.AddInMemoryCollection(flags.Where(kv => kv.Value is not null));
        var options = builder.Build().Get<ServerOptions>(o => o.ErrorOnUnknownConfiguration = false) ?? new ServerOptions();
        options.Validate();
        return options;
    }
}
