using Forkbox.Linux.Interop;

namespace Forkbox.Linux;

/// <summary>Signals and priorities of host processes by pid, for callers outside this assembly.</summary>
public static class Processes
{
    public const int SIGINT = 2;
    public const int SIGKILL = Libc.SIGKILL;
    public const int SIGUSR2 = 12;

    /// <summary>Sends <paramref name="signal"/>; a process already gone is not an error.</summary>
    public static void Signal(int pid, int signal) => Libc.Kill(pid, signal);

    /// <summary>
    /// Sets the nice value of every thread of every process in the process group
    /// <paramref name="pgid"/>; a group already gone is not an error.
    /// </summary>
    public static void SetGroupNice(int pgid, int nice) => Libc.SetPriority(Libc.PRIO_PGRP, pgid, nice);
}
