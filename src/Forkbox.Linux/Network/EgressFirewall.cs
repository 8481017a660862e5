using System.Globalization;
using System.Net;
using System.Text;

namespace Forkbox.Linux.Network;

/// <summary>
/// The server's own nftables table (inet forkbox_HASH, one per data directory, so several servers on
/// one host never touch each other's rules, nor anyone else's). It owns:
/// <list type="bullet">
/// <item>prerouting: a packet from a sandbox link goes no further unless its source is that link's own
/// address (the links set, one element per link): a sandbox cannot send as another, so it cannot
/// take another's policy, and every later rule can judge by source address. Before conntrack, so a
/// forged packet leaves no state either. IPv6 and anything else but IPv4 from a link stop here too.</item>
/// <item>forward: traffic from sandbox links goes through from_sandbox; nothing new enters a sandbox link.</item>
/// <item>from_sandbox: a per-sandbox upload rate (a policer keyed by source address), always-denied destinations (link-local 169.254/16, the sandbox subnet, unless
/// the operator allows them; DNS to the resolvers excepted), a per-sandbox connection limit, then the egress verdict map keyed by
/// sandbox address: accept, or a jump to that sandbox's policy chain. An address not in the map is dropped.</item>
/// <item>input: a sandbox link reaches the host (any of its addresses, so the forkbox API too) only for
/// DNS to the named resolvers or an operator-allowed address.</item>
/// <item>postrouting: sandbox addresses are masqueraded behind the host on the way out.</item>
/// </list>
/// Each link's element is added by <see cref="AddLink"/> and removed by <see cref="RemoveLink"/>; each
/// sandbox's egress element and chain by <see cref="Admit"/> and <see cref="Revoke"/>; disposing deletes
/// the whole table.
/// </summary>
public sealed class EgressFirewall : IDisposable
{
    private readonly Nftables _nft;
    private readonly string _table;
    private readonly string _ifPattern;
    private bool _installed;

    public EgressFirewall(Nftables nft, string table, string linkPrefix, Ipv4Cidr subnet,
        IReadOnlyList<Ipv4Cidr> operatorAllow, IReadOnlyList<IPAddress> dns, int maxConnections, int uploadMbit)
    {
        _nft = nft;
        _table = "inet " + table;
        _ifPattern = $"\"{linkPrefix}*\"";
        Dns = dns;
        var ruleset = new StringBuilder()
            // Deleting a table that may not exist: add it first (a no-op if it does), then delete it.
            .Append($"add table {_table}\ndelete table {_table}\n")
            .Append($"table {_table} {{\n")
            .Append("  set operator_allow { type ipv4_addr; flags interval; ").Append(Elements(operatorAllow.Select(c => c.ToString()))).Append("}\n")
            .Append("  set dns { type ipv4_addr; ").Append(Elements(dns.Select(d => d.ToString()))).Append("}\n")
            .Append("  set connlimit { type ipv4_addr; size 65535; flags dynamic; }\n")
            .Append("  set upload { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }\n")
            .Append("  map egress { type ipv4_addr : verdict; }\n")
            .Append("  set links { type ifname . ipv4_addr; }\n")
            .Append("  chain prerouting { type filter hook prerouting priority raw; policy accept;\n")
            .Append($"    iifname {_ifPattern} iifname . ip saddr @links accept\n")
            .Append($"    iifname {_ifPattern} drop\n  }}\n")
            .Append("  chain forward { type filter hook forward priority filter - 10; policy accept;\n")
            .Append($"    iifname {_ifPattern} jump from_sandbox\n")
            .Append($"    oifname {_ifPattern} ct state established,related accept\n")
            .Append($"    oifname {_ifPattern} drop\n  }}\n")
            .Append("  chain from_sandbox {\n");
        if (uploadMbit > 0)
            ruleset.Append($"    add @upload {{ ip saddr limit rate over {uploadMbit * 125} kbytes/second burst {Math.Max(32, uploadMbit * 4)} kbytes }} drop\n");
        ruleset
            .Append("    ct state established,related accept\n")
            // Always denied, but for DNS to the resolvers, which may live there (a cloud's 169.254.169.254
            // answers DNS as well as metadata): only port 53 to them passes, on to the sandbox's policy.
            .Append($"    ip daddr != @operator_allow ip daddr {{ 169.254.0.0/16, {subnet} }} meta l4proto . th dport != {{ tcp . 53, udp . 53 }} drop\n")
            .Append($"    ip daddr != @operator_allow ip daddr {{ 169.254.0.0/16, {subnet} }} ip daddr != @dns drop\n");
        if (maxConnections > 0)
            ruleset.Append($"    ct state new add @connlimit {{ ip saddr ct count over {maxConnections} }} drop\n");
        ruleset
            .Append("    ip saddr vmap @egress\n    drop\n  }\n")
            .Append("  chain input { type filter hook input priority filter - 10; policy accept;\n")
            .Append($"    iifname {_ifPattern} ct state established,related accept\n")
            .Append($"    iifname {_ifPattern} ip daddr @operator_allow accept\n")
            .Append($"    iifname {_ifPattern} ip daddr @dns meta l4proto {{ tcp, udp }} th dport 53 accept\n")
            .Append($"    iifname {_ifPattern} drop\n  }}\n")
            .Append("  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n")
            .Append($"    ip saddr {subnet} oifname != {_ifPattern} masquerade\n  }}\n")
            .Append("}\n");
        Ruleset = ruleset.ToString();
    }

    /// <summary>The resolvers sandboxes are told to use (and may always reach on port 53).</summary>
    public IReadOnlyList<IPAddress> Dns { get; }

    /// <summary>The batch <see cref="Install"/> runs (for operators: `nft list table inet forkbox_…` shows it live).</summary>
    public string Ruleset { get; }

    /// <summary>Replaces whatever a crashed run of this server left with a fresh table.</summary>
    public void Install()
    {
        _nft.Run(Ruleset);
        _installed = true;
    }

    /// <summary>Lets IPv4 from <paramref name="address"/>, and from no other address, in from the link whose host end is <paramref name="hostName"/>.</summary>
    public void AddLink(string hostName, IPAddress address) =>
        _nft.Run($"add element {_table} links {{ \"{hostName}\" . {address} }}\n");

    /// <summary>Takes the link's element out again (before the link goes, so a reused name starts closed).</summary>
    public void RemoveLink(string hostName, IPAddress address) =>
        _nft.Run($"delete element {_table} links {{ \"{hostName}\" . {address} }}\n");

    /// <summary>
    /// Lets the sandbox at <paramref name="address"/> out, under <paramref name="rules"/>, in place of
    /// <paramref name="replacing"/> when it was admitted already: one batch, so there is no moment
    /// when neither applies.
    /// </summary>
    public void Admit(IPAddress address, EgressRules rules, EgressRules? replacing = null)
    {
        var batch = new StringBuilder();
        if (replacing is not null) AppendRevoke(batch, address, hadPolicy: !replacing.IsOpen);
        if (rules.IsOpen)
        {
            batch.Append($"add element {_table} egress {{ {address} : accept }}\n");
            _nft.Run(batch.ToString());
            return;
        }
        var chain = ChainName(address);
        batch.Append($"add chain {_table} {chain}\n");
        if (rules.Deny.Count > 0)
            batch.Append($"add rule {_table} {chain} ip daddr {{ {string.Join(", ", rules.Deny)} }} drop\n");
        if (rules.Allow.Count > 0)
        {
            if (Dns.Count > 0) batch.Append($"add rule {_table} {chain} ip daddr @dns meta l4proto {{ tcp, udp }} th dport 53 accept\n");
            batch.Append($"add rule {_table} {chain} ip daddr {{ {string.Join(", ", rules.Allow)} }} accept\n");
            batch.Append($"add rule {_table} {chain} drop\n");
        }
        else
        {
            // A jump that falls off the end of the chain returns to from_sandbox, which drops.
            batch.Append($"add rule {_table} {chain} accept\n");
        }
        batch.Append($"add element {_table} egress {{ {address} : jump {chain} }}\n");
        _nft.Run(batch.ToString());
    }

    /// <summary>Takes the sandbox's element (and policy chain) out again; its traffic is dropped from now on.</summary>
    public void Revoke(IPAddress address, bool hadPolicy)
    {
        var batch = new StringBuilder();
        AppendRevoke(batch, address, hadPolicy);
        _nft.Run(batch.ToString());
    }

    private void AppendRevoke(StringBuilder batch, IPAddress address, bool hadPolicy)
    {
        batch.Append($"delete element {_table} egress {{ {address} }}\n");
        if (hadPolicy) batch.Append($"delete chain {_table} {ChainName(address)}\n");
    }

    /// <summary>Sandbox elements (egress and links) and policy chains now in the table: what a leak test counts.</summary>
    public int CountSandboxEntries()
    {
        var listing = _nft.Run($"list table {_table}\n");
        var chains = listing.Split('\n').Count(l => l.TrimStart().StartsWith("chain sb_", StringComparison.Ordinal));
        return chains + CountElements($"list map {_table} egress\n", ":") + CountElements($"list set {_table} links\n", "\" . ");
    }

    private int CountElements(string list, string separator)
    {
        var text = _nft.Run(list);
        var start = text.IndexOf("elements = {", StringComparison.Ordinal);
        if (start < 0) return 0;
        var elements = text[start..text.IndexOf('}', start)];
        var count = 0;
        for (var i = elements.IndexOf(separator, StringComparison.Ordinal); i >= 0; i = elements.IndexOf(separator, i + 1, StringComparison.Ordinal))
            count++;
        return count;
    }

    private static string ChainName(IPAddress address) =>
        "sb_" + Ipv4Cidr.ToUInt32(address).ToString("x8", CultureInfo.InvariantCulture);

    private static string Elements(IEnumerable<string> items)
    {
        var list = string.Join(", ", items);
        return list.Length == 0 ? "" : $"elements = {{ {list} }}; ";
    }

    public void Dispose()
    {
        if (!_installed) return;
        _installed = false;
        _nft.Run($"delete table {_table}\n");
    }
}
