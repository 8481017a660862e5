using Forkbox.Core.Errors;
using Forkbox.Core.Options;

namespace Forkbox.Core;

/// <summary>
/// hostd's configuration, bound from (lowest to highest precedence) defaults, a JSON config file,
/// FORKBOX_* environment variables and command-line flags. Validated once at start-up.
/// Server-wide settings are here; each feature's are in its own section (Options/), which is
/// also its section in the config file: {"Spaces": {"PauseAfterS": 300}}.
/// </summary>
public sealed record ServerOptions
{
    /// <summary>host:port to listen on. Non-loopback addresses require API keys.</summary>
    public string Listen { get; init; } = "127.0.0.1:7070";
    public string DataDir { get; init; } = "/var/lib/forkbox";
    /// <summary>The API keys file (default DATA_DIR/keys.json). Hosts and edges of one cluster may share one.</summary>
    public string? Keys { get; init; }
    /// <summary>The interpreter the default template's zygote runs.</summary>
    public string Python { get; init; } = "/usr/bin/python3";

    public LimitsOptions Limits { get; init; } = new();
    public PoolOptions Pool { get; init; } = new();
    public ForksOptions Forks { get; init; } = new();
    public SpacesOptions Spaces { get; init; } = new();
    public StorageOptions Storage { get; init; } = new();
    public IsolationOptions Isolation { get; init; } = new();
    public NetworkOptions Network { get; init; } = new();
    public PortsOptions Ports { get; init; } = new();
    public ClusterOptions Cluster { get; init; } = new();

    public string RunDir => Path.Combine(DataDir, "run");
    public string SandboxesDir => Path.Combine(DataDir, "sandboxes");
    public string TemplatesDir => Path.Combine(DataDir, "templates");
    public string KeysFile => Keys ?? Path.Combine(DataDir, "keys.json");
    /// <summary>The sandbox records (SQLite).</summary>
    public string DatabaseFile => Path.Combine(DataDir, "forkbox.db");
    /// <summary>Hibernated states, on the same filesystem as the sandbox layers so that saving one is a rename.</summary>
    public string SpacesDir => Path.Combine(SandboxesDir, ".spaces"); // SandboxLayers.SpacesDirName
    public string StorageImageFile => Path.Combine(DataDir, "storage.img");
    /// <summary>The HMAC key of signed port URLs: made once, so URLs survive a restart.</summary>
    public string PortUrlKeyFile => Path.Combine(DataDir, "port-url.key");

    /// <summary>The items of a comma-separated option, trimmed, empty ones dropped.</summary>
    public static IReadOnlyList<string> List(string? value) =>
        (value ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>Throws a message a user can act on for the first invalid setting.</summary>
    public void Validate()
    {
        Require(ListenAddress.TryParse(Listen, out _), $"listen '{Listen}' is not host:port (e.g. 127.0.0.1:7070)");
        Require(Path.IsPathRooted(DataDir), $"data_dir '{DataDir}' must be an absolute path");
        Limits.Validate();
        Pool.Validate(Limits.MaxSandboxes);
        Forks.Validate();
        Spaces.Validate();
        Isolation.Validate(Limits.MaxSandboxes);
        Require(Path.IsPathRooted(Python), $"python '{Python}' must be an absolute path");
        Storage.Validate();
        Cluster.Validate(Listen);
        Require(Keys is null || Path.IsPathRooted(Keys), $"keys '{Keys}' must be an absolute path");
        Network.Validate();
        Ports.Validate();
    }

    internal static void Require(bool ok, string message)
    {
        if (!ok) throw new BadRequestException("invalid configuration: " + message);
    }
}
