using System.Text;
using Forkbox.Core;
using Forkbox.Host.Templates;
using Forkbox.Host.Sandboxes;

namespace Forkbox.Host.Networking;

/// <summary>
/// Egress for sandboxes: a sandbox made with "network": "egress" gets a link (veth pair, address)
/// right after its agent says hello, in the pool refill when it is pooled, so a pool hit only adds
/// its firewall entry (one in-process nftables batch) and, for a policy with names, pins them in its
/// /etc/hosts. Forks and resumed sandboxes get links of their own, with fresh addresses, and the
/// same policy. The link and entry go when the sandbox's processes do (destroy, hibernate).
/// </summary>
public sealed class SandboxEgress(SandboxNetworking network, SandboxCalls calls, SandboxRegistry registry)
{
    private const int MaxHostsBytes = 1 << 20;

    /// <summary>Egress, address pool, firewall and the sockets the ports proxy uses.</summary>
    public SandboxNetworking Networking => network;

    /// <summary>Prometheus lines with each egress sandbox's byte counters.</summary>
    public void RenderMetrics(StringBuilder text)
    {
        text.Append("# HELP forkbox_sandbox_network_bytes_total Bytes through a sandbox's network link (egress sandboxes; loopback is not counted)\n")
            .Append("# TYPE forkbox_sandbox_network_bytes_total counter\n");
        foreach (var sb in registry.Live)
        {
            if (sb.Network is not { } net) continue;
            text.Append("forkbox_sandbox_network_bytes_total{sandbox=\"").Append(sb.Id).Append("\",direction=\"sent\"} ").Append(net.Link.SentBytes).Append('\n')
                .Append("forkbox_sandbox_network_bytes_total{sandbox=\"").Append(sb.Id).Append("\",direction=\"received\"} ").Append(net.Link.ReceivedBytes).Append('\n');
        }
    }

    /// <summary>
    /// Gives a just-spawned sandbox its link, writes its /etc/resolv.conf and, when it is
    /// <paramref name="fresh"/> (not a resumed one, whose files are its own) from a built-in template,
    /// its /etc/pip.conf for egress (see <see cref="PipConfig"/>); traffic stays dropped until admitted.
    /// </summary>
    public async Task AttachAsync(Sandbox sb, bool fresh, CancellationToken ct)
    {
        sb.NetworkMode = NetworkModes.Egress;
        sb.Network = await network.AttachAsync(sb.Id, sb.Pid).ConfigureAwait(false);
        if (network.ResolvConf is { } conf)
            await WriteFileAsync(sb, "/etc/resolv.conf", conf, ct).ConfigureAwait(false);
        if (fresh && PipConfig.IsIn(sb.Template))
            await WriteFileAsync(sb, PipConfig.Path, PipConfig.WithEgress, ct).ConfigureAwait(false);
    }

    /// <summary>Admits a pooled egress sandbox with no policy, so that taking it for plain egress changes nothing (see <see cref="SandboxNetworking.Admit"/>).</summary>
    public void PreAdmit(Sandbox sb) => network.Admit(sb.Network!, ResolvedPolicy.Open);

    /// <summary>Lets the sandbox out under <paramref name="policy"/>, its policy's names pinned in /etc/hosts first.</summary>
    public async Task AdmitAsync(Sandbox sb, ResolvedPolicy policy, CancellationToken ct)
    {
        if (policy.HostsLines.Count > 0)
        {
            var read = await calls.FileCallAsync(sb, (agent, t) => agent.ReadAsync("/etc/hosts", MaxHostsBytes, t), ct).ConfigureAwait(false);
            var hosts = Encoding.UTF8.GetString(read.Payload);
            if (hosts.Length > 0 && !hosts.EndsWith('\n')) hosts += "\n";
            await WriteFileAsync(sb, "/etc/hosts", hosts + "# pinned by forkbox for network_policy\n" + string.Join('\n', policy.HostsLines) + "\n", ct)
                .ConfigureAwait(false);
        }
        network.Admit(sb.Network!, policy);
        sb.NetworkPolicy = policy.Policy;
    }

    private async Task WriteFileAsync(Sandbox sb, string path, string text, CancellationToken ct)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        await calls.FileCallAsync(sb, (agent, t) => agent.WriteAsync(path, bytes, t), ct).ConfigureAwait(false);
    }

    /// <summary>Gives each fork of an egress sandbox a link and address of its own, under its parent's policy.</summary>
    public async Task AttachForksAsync(Sandbox parent, IReadOnlyList<Sandbox> children, CancellationToken ct)
    {
        if (parent.NetworkMode != NetworkModes.Egress) return;
        var policy = await network.ResolveAsync(parent.NetworkPolicy, ct).ConfigureAwait(false);
        foreach (var child in children)
        {
            child.NetworkMode = NetworkModes.Egress;
            child.Network = await network.AttachAsync(child.Id, child.Pid).ConfigureAwait(false);
            network.Admit(child.Network, policy);
            child.NetworkPolicy = policy.Policy;
        }
    }

    /// <summary>Takes the sandbox's link and firewall entry away (its processes are going).</summary>
    public Task DetachAsync(Sandbox sb)
    {
        var net = sb.Network;
        sb.Network = null;
        return net is null ? Task.CompletedTask : network.DetachAsync(sb.Id, net);
    }
}
