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

    /// <summary>
    /// SIGKILL every process in the cgroup but <paramref name="spare"/> (none when 0) and wait
    /// (bounded) until no other is left.
    /// </summary>
    void KillAll(TimeSpan wait, int spare = 0);

    /// <summary>Moves a running process (and none of its threads' siblings elsewhere) into the cgroup.</summary>
    void Attach(int pid)
    {
        foreach (var file in ProcsFiles)
            File.WriteAllText(file, pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// Stops (true) or restarts (false) every process in the cgroup with the freezer, and waits
    /// (bounded) until the kernel reports them all stopped. Memory stays where it is.
    /// </summary>
    void Freeze(bool frozen);

    /// <summary>Remove the cgroup; it must be empty.</summary>
    void Delete();
}
