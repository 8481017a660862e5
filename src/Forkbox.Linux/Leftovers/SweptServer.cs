namespace Forkbox.Linux.Leftovers;

/// <summary>What <see cref="LeftoverSweep"/> removed of one server that is gone.</summary>
/// <param name="KilledPids">Processes that still ran in its sandboxes' cgroups (agents, their children), now killed.</param>
/// <param name="Cgroups">Sandbox cgroups removed (with the parent).</param>
/// <param name="Mounts">Mounts removed: user-namespace pins, the slots directory, a storage image.</param>
public sealed record SweptServer(ServerMarker Marker, IReadOnlyList<int> KilledPids, int Cgroups, int Mounts);
