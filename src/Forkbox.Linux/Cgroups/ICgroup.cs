using Forkbox.Core;

namespace Forkbox.Linux.Cgroups;

/// <summary>One sandbox's cgroup. The sandbox joins it by writing its pid to <see cref="ProcsFiles"/>.</summary>
public interface ICgroup
{
    /// <summary>The cgroup.procs files a process writes its pid to (one per v1 controller, one on v2).</summary>
    IReadOnlyList<string> ProcsFiles { get; }

    /// <summary>Changes memory and CPU limits of a live cgroup (a pooled sandbox taken with its own limits).</summary>
    void SetLimits(SandboxLimits limits, SandboxLimits? previous);

    /// <summary>Memory in use, page cache and tmpfs included.</summary>
    long MemoryBytes();

    /// <summary>How many processes the kernel has killed in this cgroup for exceeding its memory limit.</summary>
    long OomKills();

    /// <summary>Pids currently in the cgroup.</summary>
    IReadOnlyList<int> Pids();

    /// <summary>SIGKILL every process in the cgroup and wait (bounded) until it is empty.</summary>
    void KillAll(TimeSpan wait);

    /// <summary>Remove the cgroup; it must be empty.</summary>
    void Delete();
}
