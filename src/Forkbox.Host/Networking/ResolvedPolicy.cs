using Forkbox.Core.Wire;
using Forkbox.Linux.Network;

namespace Forkbox.Host.Networking;

/// <summary>A policy with its names resolved: the rules for the firewall, and the /etc/hosts lines that pin the names the sandbox will use.</summary>
public sealed record ResolvedPolicy(NetworkPolicy? Policy, EgressRules Rules, IReadOnlyList<string> HostsLines)
{
    public static readonly ResolvedPolicy Open = new(null, EgressRules.Open, []);
}
