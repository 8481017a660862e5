using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Options;
using Forkbox.Core.Wire;
using Forkbox.Linux;
using Forkbox.Linux.Network;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Networking;

/// <summary>
/// Egress for sandboxes on this server: the address pool, the nftables table, and the veth links.
/// Every link and firewall entry it makes for a sandbox it removes in <see cref="DetachAsync"/>; the
/// table goes on <see cref="DisposeAsync"/>. Also makes the sockets the ports proxy connects with.
/// Names are per data directory (table forkbox_HASH, links fbHASHh0…), so servers never clash.
/// </summary>
public sealed partial class SandboxNetworking : IAsyncDisposable
{
    private readonly ServerOptions _options;
    private readonly ILogger _log;
    private readonly Nftables? _nft;
    private readonly EgressFirewall? _firewall;
    private readonly AddressPool _addresses;
    private readonly Dictionary<string, IPAddress> _pinned = new(StringComparer.OrdinalIgnoreCase);

    private SandboxNetworking(ServerOptions options, ILogger log, Nftables? nft, EgressFirewall? firewall, string linkPrefix, string? unavailable)
    {
        _options = options;
        _log = log;
        _nft = nft;
        _firewall = firewall;
        LinkPrefix = linkPrefix;
        Unavailable = unavailable;
        _addresses = new AddressPool(Ipv4Cidr.Parse(options.Network.Subnet));
        foreach (var pair in ServerOptions.List(options.Network.Hosts))
        {
            var (name, ip) = (pair.Split('=')[0], pair.Split('=')[1]);
            _pinned[name] = IPAddress.Parse(ip);
        }
    }

    /// <summary>Why egress cannot be offered here (no nftables), or null when it can.</summary>
    public string? Unavailable { get; }

    /// <summary>The start of the host end's name of every link of this server.</summary>
    public string LinkPrefix { get; }

    public NetnsSocketFactory Sockets { get; } = new();

    /// <summary>Sandbox entries in the firewall now (elements and policy chains), for leak checks.</summary>
    public int FirewallEntries => _firewall?.CountSandboxEntries() ?? 0;

    /// <summary>Host ends of this server's links now, for leak checks.</summary>
    public int Links => SandboxLink.List(LinkPrefix).Count;

    /// <summary>Networking that offers no egress, for <paramref name="why"/>, touching no link or table (the benchmarks' hostd parts).</summary>
    public static SandboxNetworking Without(ServerOptions options, ILogger log, string why) => new(options, log, null, null, "fbnone", why);

    /// <summary>
    /// Installs this server's table (replacing one a crash left) and removes stale links. Without
    /// libnftables the server still runs; creates that ask for egress are refused with the reason.
    /// </summary>
    public static async Task<SandboxNetworking> StartAsync(ServerOptions options, ILogger log)
    {
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(options.DataDir))))[..8];
        var prefix = "fb" + hash[..4] + "h";
        var stale = await SandboxLink.RemoveStaleAsync(prefix).ConfigureAwait(false);
        if (stale > 0) LogStaleLinks(log, stale);
        var nft = Nftables.TryOpen(out var why);
        if (nft is null)
        {
            LogNoEgress(log, why!);
            return new SandboxNetworking(options, log, null, null, prefix, why);
        }
        var firewall = new EgressFirewall(nft, "forkbox_" + hash, prefix, Ipv4Cidr.Parse(options.Network.Subnet),
            ServerOptions.List(options.Network.OperatorAllow).Select(Ipv4Cidr.Parse).ToList(),
            SandboxResolvers(options.Network, log), options.Network.MaxConnections, options.Network.RateMbit);
        try
        {
            firewall.Install();
            if (ProcFs.EnableIpv4Forwarding()) LogForwardingEnabled(log);
        }
        catch (Exception e)
        {
            nft.Dispose();
            LogNoEgress(log, e.Message);
            return new SandboxNetworking(options, log, null, null, prefix, e.Message);
        }
        LogEgress(log, "forkbox_" + hash, options.Network.Subnet, prefix);
        return new SandboxNetworking(options, log, nft, firewall, prefix, null);
    }

    /// <summary>
    /// The resolvers sandboxes with egress are told to use: network_dns, else the host's own (loopback
    /// ones left out: a sandbox's namespace has a loopback of its own). With none, names cannot resolve
    /// in any sandbox, which the operator is warned of here rather than users finding out one by one.
    /// </summary>
    private static List<IPAddress> SandboxResolvers(NetworkOptions network, ILogger log)
    {
        if (ServerOptions.List(network.Dns) is { Count: > 0 } named) return named.Select(IPAddress.Parse).ToList();
        var files = ServerOptions.List(network.HostResolvConf);
        var host = HostResolvers.Read(files);
        var skipped = host.Skipped.Count == 0 ? "none" : string.Join(", ", host.Skipped.Distinct());
        if (host.Servers.Count == 0) LogNoResolvers(log, string.Join(", ", files), skipped);
        else LogHostResolvers(log, string.Join(", ", host.Servers), host.Source!, skipped);
        return host.Servers.ToList();
    }

    /// <summary>The mode a create asks for, validated: "none" or "egress" (refused with the reason where egress cannot work).</summary>
    public string Mode(string? requested, NetworkPolicy? policy)
    {
        var mode = requested ?? NetworkModes.None;
        if (mode is not (NetworkModes.None or NetworkModes.Egress))
            throw new BadRequestException($"network '{mode}' is not a mode; use \"none\" (loopback only) or \"egress\"");
        if (policy is not null && mode != NetworkModes.Egress)
            throw new BadRequestException("network_policy applies to \"network\": \"egress\" only");
        if (mode == NetworkModes.Egress && Unavailable is not null)
            throw new BadRequestException($"network \"egress\" is not available on this server: {Unavailable}");
        return mode;
    }

    /// <summary>Resolves a policy's names (pinned names first, then DNS, IPv4 only); a name that does not resolve is a 400.</summary>
    public async Task<ResolvedPolicy> ResolveAsync(NetworkPolicy? policy, CancellationToken ct)
    {
        if (policy is null || (policy.Allow is not { Count: > 0 } && policy.Deny is not { Count: > 0 })) return ResolvedPolicy.Open with { Policy = policy };
        var hosts = new List<string>();
        async Task<List<Ipv4Cidr>> Resolve(IReadOnlyList<string>? entries, string field)
        {
            var list = new List<Ipv4Cidr>();
            if (entries is null) return list;
            if (entries.Count > 256) throw new BadRequestException($"network_policy.{field} has {entries.Count} entries; at most 256");
            foreach (var entry in entries)
            {
                if (Ipv4Cidr.TryParse(entry, out var cidr))
                {
                    list.Add(cidr);
                    continue;
                }
                if (Uri.CheckHostName(entry) != UriHostNameType.Dns)
                    throw new BadRequestException($"network_policy.{field}: '{entry}' is neither an IPv4 address, a CIDR nor a host name");
                IPAddress[] addresses;
                if (_pinned.TryGetValue(entry, out var pinned)) addresses = [pinned];
                else
                {
                    try
                    {
                        addresses = (await Dns.GetHostAddressesAsync(entry, AddressFamily.InterNetwork, ct).ConfigureAwait(false));
                    }
                    catch (SocketException e)
                    {
                        throw new BadRequestException($"network_policy.{field}: host name '{entry}' does not resolve: {e.Message}");
                    }
                }
                if (addresses.Length == 0) throw new BadRequestException($"network_policy.{field}: host name '{entry}' has no IPv4 address");
                foreach (var a in addresses)
                {
                    list.Add(new Ipv4Cidr(Ipv4Cidr.ToUInt32(a), 32));
                    hosts.Add($"{a} {entry}");
                }
            }
            return list;
        }
        var allow = await Resolve(policy.Allow, "allow").ConfigureAwait(false);
        var deny = await Resolve(policy.Deny, "deny").ConfigureAwait(false);
        return new ResolvedPolicy(policy, new EgressRules(allow, deny), hosts);
    }

    /// <summary>
    /// Gives the sandbox whose PID 1 is <paramref name="pid"/> a link and an address, and binds the
    /// two in the firewall: the link carries nothing from any other address. Its traffic is
    /// dropped until <see cref="Admit"/>: a pooled sandbox waits like this until a create takes it.
    /// </summary>
    public async Task<SandboxNetwork> AttachAsync(string sandboxId, int pid)
    {
        var address = _addresses.Take() ?? throw new AtCapacityException($"no free address left in network_subnet {_options.Network.Subnet}");
        var offset = Ipv4Cidr.ToUInt32(address) - _addresses.Subnet.Network;
        SandboxLink? link = null;
        try
        {
            link = await SandboxLink.AttachAsync(pid, LinkPrefix + offset, address, _addresses.Gateway, new LinkLimits(_options.Network.RateMbit))
                .ConfigureAwait(false);
            _firewall!.AddLink(link.HostName, address);
            LogAttached(_log, sandboxId, address, link.HostName);
            return new SandboxNetwork { Link = link };
        }
        catch
        {
            if (link is not null) await link.DisposeAsync().ConfigureAwait(false);
            _addresses.Release(address);
            throw;
        }
    }

    /// <summary>
    /// Lets the sandbox out under its policy. A pooled sandbox is let out with no policy while it
    /// waits (it runs only the agent, which opens no connection), so that the common pool hit, egress
    /// with no policy, costs no firewall change; a policy then replaces that entry in one batch.
    /// </summary>
    public void Admit(SandboxNetwork net, ResolvedPolicy policy)
    {
        if (net.Admitted is { IsOpen: true } && policy.Rules.IsOpen)
        {
            net.Policy = policy.Policy;
            return; // pre-admitted in the pool, as it should be
        }
        _firewall!.Admit(net.Link.Address, policy.Rules, replacing: net.Admitted);
        net.Admitted = policy.Rules;
        net.Policy = policy.Policy;
    }

    /// <summary>What a sandbox with egress finds in its /etc/resolv.conf: its resolvers, or why it has none.</summary>
    public string? ResolvConf => _firewall switch
    {
        null => null,
        { Dns.Count: > 0 } f => string.Concat(f.Dns.Select(d => $"nameserver {d}\n")),
        _ => "# forkbox: this server found no resolver for sandboxes (none in its network_dns, no non-loopback nameserver on the host); names do not resolve\n",
    };

    /// <summary>Removes the sandbox's firewall entries, then its link, then gives its address back. Never throws: it logs.</summary>
    public async Task DetachAsync(string sandboxId, SandboxNetwork net)
    {
        try
        {
            if (net.Admitted is { } rules)
            {
                net.Admitted = null;
                _firewall!.Revoke(net.Link.Address, hadPolicy: !rules.IsOpen);
            }
            _firewall!.RemoveLink(net.Link.HostName, net.Link.Address);
            await net.Link.DisposeAsync().ConfigureAwait(false);
            _addresses.Release(net.Link.Address);
        }
        catch (Exception e)
        {
            LogDetachFailed(_log, sandboxId, e);
        }
    }

    public ValueTask DisposeAsync()
    {
        try
        {
            _firewall?.Dispose();
        }
        catch (Exception e)
        {
            LogDetachFailed(_log, "-", e);
        }
        _nft?.Dispose();
        Sockets.Dispose();
        return ValueTask.CompletedTask;
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "egress: nftables table {Table}, sandbox subnet {Subnet}, links {Prefix}*")]
    private static partial void LogEgress(ILogger log, string table, string subnet, string prefix);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Warning, Message = "egress unavailable (creates with \"network\": \"egress\" are refused): {Why}")]
    private static partial void LogNoEgress(ILogger log, string why);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Warning, Message = "egress: net.ipv4.ip_forward was 0; set to 1 for NAT (left on at shutdown)")]
    private static partial void LogForwardingEnabled(ILogger log);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Warning, Message = "egress: removed {Count} links left by an earlier run")]
    private static partial void LogStaleLinks(ILogger log, int count);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Debug, Message = "sandbox {SandboxId}: link {Link}, address {Address}")]
    private static partial void LogAttached(ILogger log, string sandboxId, IPAddress address, string link);

    [LoggerMessage(EventId = 4007, Level = LogLevel.Information, Message = "egress: sandboxes resolve names through the host's resolvers {Servers} (from {File}; passed over: {Skipped})")]
    private static partial void LogHostResolvers(ILogger log, string servers, string file, string skipped);

    [LoggerMessage(EventId = 4008, Level = LogLevel.Warning,
        Message = "egress: no resolver for sandboxes: network_dns is empty and {Files} name no IPv4 nameserver a sandbox can reach (passed over: {Skipped}); names will not resolve in sandboxes with egress until you set --network-dns IP,…")]
    private static partial void LogNoResolvers(ILogger log, string files, string skipped);

    [LoggerMessage(EventId = 4006, Level = LogLevel.Error, Message = "sandbox {SandboxId}: network clean-up failed")]
    private static partial void LogDetachFailed(ILogger log, string sandboxId, Exception error);
}
