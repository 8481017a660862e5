namespace Forkbox.Linux.Network;

/// <summary>A sandbox link's bandwidth cap in each direction, in Mbit/s; 0 leaves it unlimited.</summary>
public sealed record LinkLimits(int RateMbit);
