using System.Net;
using System.Net.Sockets;

namespace Forkbox.Core.Options;

/// <summary>The links of sandboxes with egress: their addresses, resolvers, caps and the operator's exceptions. Config section <c>Network</c>.</summary>
public sealed record NetworkOptions
{
    /// <summary>The private IPv4 network sandboxes with egress take their addresses from; its first address is the host's end of every link. Servers on one host need distinct ones.</summary>
    public string Subnet { get; init; } = "10.201.0.0/16";
    /// <summary>Comma-separated IPv4 resolvers written to the /etc/resolv.conf of sandboxes with egress; always reachable on port 53. Empty: the host's own (see <see cref="HostResolvConf"/>).</summary>
    public string Dns { get; init; } = "";
    /// <summary>
    /// Comma-separated resolv.conf files that give sandboxes their resolvers when <see cref="Dns"/> is empty:
    /// the first that names a non-loopback IPv4 nameserver wins (systemd-resolved's upstream list stands in
    /// for its 127.0.0.53 stub, which a sandbox's own network namespace cannot reach).
    /// </summary>
    public string HostResolvConf { get; init; } = "/etc/resolv.conf,/run/systemd/resolve/resolv.conf";
    /// <summary>Comma-separated CIDRs that sandboxes may reach although they are always denied otherwise (the host, 169.254.0.0/16, other sandboxes). Empty by default.</summary>
    public string OperatorAllow { get; init; } = "";
    /// <summary>Comma-separated name=address pairs that policies resolve before DNS (pinned names for internal hosts).</summary>
    public string Hosts { get; init; } = "";
    /// <summary>Bandwidth cap of a sandbox's link in each direction, Mbit/s; 0 for none.</summary>
    public int RateMbit { get; init; } = 100;
    /// <summary>Connections a sandbox may have open through its link at once; 0 for no limit.</summary>
    public int MaxConnections { get; init; } = 256;

    internal void Validate()
    {
        ServerOptions.Require(IPNetwork.TryParse(Subnet, out var subnet) && subnet.BaseAddress.AddressFamily == AddressFamily.InterNetwork
                && subnet.PrefixLength is >= 8 and <= 29,
            $"network_subnet '{Subnet}' must be an IPv4 network between /8 and /29 (e.g. 10.201.0.0/16)");
        foreach (var dns in ServerOptions.List(Dns))
            ServerOptions.Require(IPAddress.TryParse(dns, out var a) && a.AddressFamily == AddressFamily.InterNetwork,
                $"network_dns '{dns}' is not an IPv4 address");
        foreach (var cidr in ServerOptions.List(OperatorAllow))
            ServerOptions.Require(IPNetwork.TryParse(cidr.Contains('/') ? cidr : cidr + "/32", out _), $"network_operator_allow '{cidr}' is not an IPv4 address or CIDR");
        foreach (var pair in ServerOptions.List(Hosts))
            ServerOptions.Require(pair.Split('=') is [var n, var ip] && n.Length > 0 && IPAddress.TryParse(ip, out _),
                $"network_hosts entry '{pair}' must be name=address");
        ServerOptions.Require(RateMbit >= 0 && MaxConnections >= 0, "network_rate_mbit and network_max_connections must be 0 (no limit) or more");
    }
}
