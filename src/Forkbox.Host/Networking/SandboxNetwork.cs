using Forkbox.Core.Wire;
using Forkbox.Linux.Network;

namespace Forkbox.Host.Networking;

/// <summary>
/// A sandbox's egress: its link (veth pair and address) and, once it is let out, its firewall entry.
/// Owned by the sandbox's <see cref="Sandboxes.Sandbox"/>; <see cref="SandboxNetworking.DetachAsync"/> releases all of it.
/// </summary>
public sealed class SandboxNetwork
{
    public required SandboxLink Link { get; init; }

    /// <summary>The policy as the client wrote it (names unresolved), for the API and for forks and resumes.</summary>
    public NetworkPolicy? Policy { get; set; }

    /// <summary>The rules in force, once admitted; null while the sandbox waits in the pool (all its traffic dropped).</summary>
    public EgressRules? Admitted { get; set; }

    public string Address => Link.Address.ToString();
}
