using Forkbox.Core.Errors;

namespace Forkbox.Core;

/// <summary>
/// hostd's configuration, bound from (lowest to highest precedence) defaults, a JSON config file,
/// FORKBOX_* environment variables and command-line flags. Validated once at start-up.
/// </summary>
public sealed record ServerOptions
{
    /// <summary>host:port to listen on. Non-loopback addresses require API keys.</summary>
    public string Listen { get; init; } = "127.0.0.1:7070";
    public string DataDir { get; init; } = "/var/lib/forkbox";
    public string Region { get; init; } = "local";
    /// <summary>The continent this host's region is on (AF, AN, AS, EU, NA, OC, SA): an edge sends clients from there to it.</summary>
    public string? Continent { get; init; }
    /// <summary>
    /// The Redis (host:port) of a cluster to join: the host then registers itself there with a
    /// heartbeat, and every edge that reads the same Redis routes to it. Null: a standalone host.
    /// </summary>
    public string? Join { get; init; }
    /// <summary>This host's name in its cluster; it is part of every sandbox id made here. Required with <see cref="Join"/>.</summary>
    public string? HostId { get; init; }
    /// <summary>The URL edges use to reach this host (default: http:// and the listen address, which must then not be a wildcard).</summary>
    public string? Advertise { get; init; }
    /// <summary>Seconds between two heartbeats to the cluster's Redis; a host missing three in a row leaves rotation.</summary>
    public double HeartbeatS { get; init; } = 1;
    /// <summary>The API keys file (default DATA_DIR/keys.json). Hosts and edges of one cluster may share one.</summary>
    public string? Keys { get; init; }
    /// <summary>Sandboxes this host runs at once; also the number of user-namespace uid ranges.</summary>
    public int MaxSandboxes { get; init; } = 500;
    public double DefaultTimeoutS { get; init; } = 300;
    public double MaxTimeoutS { get; init; } = 86_400;
    public int DefaultMemoryMb { get; init; } = 1024;
    public int MaxMemoryMb { get; init; } = 8192;
    public double DefaultCpus { get; init; } = 1;
    public double MaxCpus { get; init; } = 2;
    public int PidsLimit { get; init; } = 256;
    /// <summary>Ready sandboxes kept per template (the warm pool); PUT /v1/templates/{name}/pool changes it at run time.</summary>
    public int PoolSize { get; init; } = 8;
    public int TmpSizeMb { get; init; } = 512;
    /// <summary>How long a fork waits for the sandbox's running call to end before it answers 409.</summary>
    public double ForkWaitS { get; init; } = 10;
    public TimeSpan ForkWait => TimeSpan.FromSeconds(ForkWaitS);
    /// <summary>Idle seconds before a persistent sandbox is paused, unless its create named idle_timeout_s.</summary>
    public double PauseAfterS { get; init; } = 300;
    /// <summary>Idle seconds before a persistent sandbox is hibernated, unless its create named hibernate_after_s.</summary>
    public double HibernateAfterS { get; init; } = 1800;
    /// <summary>When the host's available memory falls below this percentage, the longest-idle persistent sandboxes are hibernated.</summary>
    public double MemoryPressurePercent { get; init; } = 10;
    /// <summary>Whether a clean shutdown hibernates the persistent sandboxes that run (else they are lost).</summary>
    public bool HibernateOnShutdown { get; init; } = true;
    /// <summary>Quota of a sandbox's writable layer when its create names none, and the most it may ask for.</summary>
    public int DefaultDiskMb { get; init; } = 10_240;
    public int MaxDiskMb { get; init; } = 102_400;
    public long MaxUploadBytes { get; init; } = 64L << 20;
    public long MaxDownloadBytes { get; init; } = 256L << 20;
    /// <summary>Output one call may produce before it is truncated with a marker line.</summary>
    public long OutputLimitBytes { get; init; } = 16L << 20;
    /// <summary>Default per-call timeout when the request names none.</summary>
    public double DefaultExecTimeoutS { get; init; } = 300;
    /// <summary>First host uid given to sandboxes; sandbox slot i maps root to UidBase + i * 65536.</summary>
    public long UidBase { get; init; } = 1_000_000_000;
    /// <summary>The interpreter the default template's zygote runs.</summary>
    public string Python { get; init; } = "/usr/bin/python3";
    /// <summary>How forks snapshot writable layers: auto (the best DATA/sandboxes' filesystem can do), btrfs, reflink or copy.</summary>
    public string Storage { get; init; } = "auto";
    /// <summary>When set, a sparse image file of this size (DATA/storage.img) is made and loop-mounted on DATA/sandboxes.</summary>
    public long? StorageImageBytes { get; init; }
    /// <summary>The filesystem of the storage image: btrfs (snapshots) or xfs (made with reflink=1).</summary>
    public string StorageImageFs { get; init; } = "btrfs";

    /// <summary>The private IPv4 network sandboxes with egress take their addresses from; its first address is the host's end of every link. Servers on one host need distinct ones.</summary>
    public string NetworkSubnet { get; init; } = "10.201.0.0/16";
    /// <summary>Comma-separated IPv4 resolvers written to the /etc/resolv.conf of sandboxes with egress; always reachable on port 53. Empty: the template's own file is left alone.</summary>
    public string NetworkDns { get; init; } = "";
    /// <summary>Comma-separated CIDRs that sandboxes may reach although they are always denied otherwise (the host, 169.254.0.0/16, other sandboxes). Empty by default.</summary>
    public string NetworkOperatorAllow { get; init; } = "";
    /// <summary>Comma-separated name=address pairs that policies resolve before DNS (pinned names for internal hosts).</summary>
    public string NetworkHosts { get; init; } = "";
    /// <summary>Bandwidth cap of a sandbox's link in each direction, Mbit/s; 0 for none.</summary>
    public int NetworkRateMbit { get; init; } = 100;
    /// <summary>Connections a sandbox may have open through its link at once; 0 for no limit.</summary>
    public int NetworkMaxConnections { get; init; } = 256;
    /// <summary>Ready sandboxes with egress kept per template, from the first egress create on (0: egress creates always make one).</summary>
    public int EgressPoolSize { get; init; } = 2;
    /// <summary>
    /// Whether sandboxes may make AF_VSOCK sockets. Off by default: vsock is not namespaced, so a
    /// port bound in one sandbox is taken in every other, and on a VM host it reaches the hypervisor.
    /// </summary>
    public bool AllowVsock { get; init; }
    /// <summary>The longest a signed port URL may live.</summary>
    public double PortUrlMaxTtlS { get; init; } = 7 * 86_400;

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

    /// <summary>The smallest storage image: xfs refuses less than 300 MiB, and sandboxes need room.</summary>
    public const long MinStorageImageBytes = 512L << 20;

    /// <summary>The items of a comma-separated option, trimmed, empty ones dropped.</summary>
    public static IReadOnlyList<string> List(string? value) =>
        (value ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>Throws a message a user can act on for the first invalid setting.</summary>
    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok) throw new BadRequestException("invalid configuration: " + message);
        }
        Require(ListenAddress.TryParse(Listen, out _), $"listen '{Listen}' is not host:port (e.g. 127.0.0.1:7070)");
        Require(Path.IsPathRooted(DataDir), $"data_dir '{DataDir}' must be an absolute path");
        Require(MaxSandboxes is > 0 and <= 60_000, "max_sandboxes must be between 1 and 60000");
        Require(DefaultTimeoutS > 0 && DefaultTimeoutS <= MaxTimeoutS, "default_timeout_s must be > 0 and <= max_timeout_s");
        Require(DefaultMemoryMb >= 32 && DefaultMemoryMb <= MaxMemoryMb, "default_memory_mb must be >= 32 and <= max_memory_mb");
        Require(DefaultCpus > 0 && DefaultCpus <= MaxCpus, "default_cpus must be > 0 and <= max_cpus");
        Require(PidsLimit >= 8, "pids_limit must be at least 8");
        Require(PoolSize >= 0 && PoolSize <= MaxSandboxes, "pool_size must be between 0 and max_sandboxes");
        Require(TmpSizeMb >= 1, "tmp_size_mb must be at least 1");
        Require(ForkWaitS >= 0 && ForkWaitS <= 3600, "fork_wait_s must be between 0 and 3600");
        Require(PauseAfterS > 0 && HibernateAfterS > 0, "pause_after_s and hibernate_after_s must be positive");
        Require(MemoryPressurePercent is >= 0 and <= 100, "memory_pressure_percent must be between 0 and 100");
        Require(DefaultDiskMb >= 1 && DefaultDiskMb <= MaxDiskMb, "default_disk_mb must be >= 1 and <= max_disk_mb");
        Require(MaxUploadBytes > 0 && MaxDownloadBytes > 0, "max_upload_bytes and max_download_bytes must be positive");
        Require(OutputLimitBytes >= 4096, "output_limit_bytes must be at least 4096");
        Require(UidBase >= 65_536 && UidBase + (long)MaxSandboxes * 65_536 < uint.MaxValue,
            "uid_base must be >= 65536 and leave room for max_sandboxes ranges of 65536 below 2^32");
        Require(Path.IsPathRooted(Python), $"python '{Python}' must be an absolute path");
        Require(Storage.ToLowerInvariant() is "auto" or "btrfs" or "reflink" or "copy",
            $"storage '{Storage}' must be auto, btrfs, reflink or copy");
        Require(StorageImageBytes is null or >= MinStorageImageBytes,
            $"storage_image_bytes {StorageImageBytes} is too small: the storage image must be at least 512M");
        Require(StorageImageFs.ToLowerInvariant() is "btrfs" or "xfs",
            $"storage_image_fs '{StorageImageFs}' must be btrfs or xfs");
        Require(Core.Validate.IsSlug(Region), $"region '{Region}' must be 1 to 32 of a-z, 0-9 and '-'");
        Require(Continent is null or "AF" or "AN" or "AS" or "EU" or "NA" or "OC" or "SA",
            $"continent '{Continent}' must be one of AF, AN, AS, EU, NA, OC, SA");
        Require(HostId is null || SandboxId.IsValidHostId(HostId), $"host_id '{HostId}' must be 1 to 32 of a-z, 0-9 and '-'");
        Require(Join is null || HostId is not null, "join needs a host_id: the name this host has in the cluster (e.g. --host-id eu-1)");
        Require(Join is null || ListenAddress.IsHostPort(Join), $"join '{Join}' is not the host:port of a Redis (e.g. 10.0.0.2:6379)");
        Require(Advertise is null || (Uri.TryCreate(Advertise, UriKind.Absolute, out var advertised) && advertised.Scheme is "http" or "https"),
            $"advertise '{Advertise}' must be an http:// or https:// URL");
        Require(Join is null || Advertise is not null || !ListenAddress.IsWildcard(Listen),
            $"join with listen {Listen} needs advertise: the URL edges reach this host at (e.g. --advertise http://10.0.0.5:7070)");
        Require(HeartbeatS is > 0 and <= 60, "heartbeat_s must be > 0 and <= 60");
        Require(Keys is null || Path.IsPathRooted(Keys), $"keys '{Keys}' must be an absolute path");
        Require(System.Net.IPNetwork.TryParse(NetworkSubnet, out var subnet) && subnet.BaseAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork
                && subnet.PrefixLength is >= 8 and <= 29,
            $"network_subnet '{NetworkSubnet}' must be an IPv4 network between /8 and /29 (e.g. 10.201.0.0/16)");
        foreach (var dns in List(NetworkDns))
            Require(System.Net.IPAddress.TryParse(dns, out var a) && a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork,
                $"network_dns '{dns}' is not an IPv4 address");
        foreach (var cidr in List(NetworkOperatorAllow))
            Require(System.Net.IPNetwork.TryParse(cidr.Contains('/') ? cidr : cidr + "/32", out _), $"network_operator_allow '{cidr}' is not an IPv4 address or CIDR");
        foreach (var pair in List(NetworkHosts))
            Require(pair.Split('=') is [var n, var ip] && n.Length > 0 && System.Net.IPAddress.TryParse(ip, out _),
                $"network_hosts entry '{pair}' must be name=address");
        Require(NetworkRateMbit >= 0 && NetworkMaxConnections >= 0, "network_rate_mbit and network_max_connections must be 0 (no limit) or more");
        Require(EgressPoolSize >= 0 && EgressPoolSize <= MaxSandboxes, "egress_pool_size must be between 0 and max_sandboxes");
        Require(PortUrlMaxTtlS > 0, "port_url_max_ttl_s must be positive");
    }
}
