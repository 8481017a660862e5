using Forkbox.Core;

namespace Forkbox.Linux.Cgroups;

/// <summary>Creates sandbox cgroups under one parent per server (see <see cref="CgroupDriver.ParentName"/>) on cgroup v1 or v2.</summary>
public interface ICgroupDriver
{
    int Version { get; }

    ICgroup Create(string name, SandboxLimits limits);

    /// <summary>Kill and remove every cgroup left under the parent by an earlier run; returns how many.</summary>
    int RemoveStale();

    /// <summary>At shutdown: kill and remove whatever is left, then the parent itself; returns how many sandbox cgroups were left.</summary>
    int RemoveAll();

    /// <summary>Every process in a sandbox cgroup under the parent.</summary>
    IReadOnlyList<int> Pids();
}
