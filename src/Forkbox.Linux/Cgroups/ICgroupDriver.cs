using Forkbox.Core;

namespace Forkbox.Linux.Cgroups;

/// <summary>Creates sandbox cgroups under one parent ("forkbox") on cgroup v1 or v2.</summary>
public interface ICgroupDriver
{
    int Version { get; }

    ICgroup Create(string name, SandboxLimits limits);

    /// <summary>Kill and remove every cgroup left under the parent by an earlier run; returns how many.</summary>
    int RemoveStale();
}
