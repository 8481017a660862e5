namespace Forkbox.Core.Options;

/// <summary>This host's region and its membership of a cluster. Config section <c>Cluster</c>.</summary>
public sealed record ClusterOptions
{
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

    /// <summary>The listen address matters when no <see cref="Advertise"/> URL is given: edges must be able to reach it.</summary>
    internal void Validate(string listen)
    {
        ServerOptions.Require(Core.Validate.IsSlug(Region), $"region '{Region}' must be 1 to 32 of a-z, 0-9 and '-'");
        ServerOptions.Require(Continent is null or "AF" or "AN" or "AS" or "EU" or "NA" or "OC" or "SA",
            $"continent '{Continent}' must be one of AF, AN, AS, EU, NA, OC, SA");
        ServerOptions.Require(HostId is null || SandboxId.IsValidHostId(HostId), $"host_id '{HostId}' must be 1 to 32 of a-z, 0-9 and '-'");
        ServerOptions.Require(Join is null || HostId is not null, "join needs a host_id: the name this host has in the cluster (e.g. --host-id eu-1)");
        ServerOptions.Require(Join is null || ListenAddress.IsHostPort(Join), $"join '{Join}' is not the host:port of a Redis (e.g. 10.0.0.2:6379)");
        ServerOptions.Require(Advertise is null || (Uri.TryCreate(Advertise, UriKind.Absolute, out var advertised) && advertised.Scheme is "http" or "https"),
            $"advertise '{Advertise}' must be an http:// or https:// URL");
        ServerOptions.Require(Join is null || Advertise is not null || !ListenAddress.IsWildcard(listen),
            $"join with listen {listen} needs advertise: the URL edges reach this host at (e.g. --advertise http://10.0.0.5:7070)");
        ServerOptions.Require(HeartbeatS is > 0 and <= 60, "heartbeat_s must be > 0 and <= 60");
    }
}
