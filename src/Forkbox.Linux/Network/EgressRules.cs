namespace Forkbox.Linux.Network;

/// <summary>
/// One sandbox's egress policy with names already resolved: destinations it may not reach, and
/// (when not empty) the only ones it may reach. Deny wins over allow. Neither list can open what the
/// server always denies (the host, link-local, other sandboxes): only the operator can (network_operator_allow).
/// </summary>
public sealed record EgressRules(IReadOnlyList<Ipv4Cidr> Allow, IReadOnlyList<Ipv4Cidr> Deny)
{
    public static readonly EgressRules Open = new([], []);

    public bool IsOpen => Allow.Count == 0 && Deny.Count == 0;
}
