namespace Forkbox.Core;

/// <summary>A sandbox's network modes, chosen at create: "none" (loopback only, the default) or "egress".</summary>
public static class NetworkModes
{
    public const string None = "none";
    public const string Egress = "egress";
}
