using Forkbox.Linux.Interop;

namespace Forkbox.Linux;

/// <summary>
/// A process held by a pidfd (pidfd_open): unlike its pid, it cannot come to name another process
/// once this one has exited. hostd holds one for every process an agent names (a fork's PID 1)
/// from the moment it has checked that the process is the one it expects until it is done with it.
/// </summary>
public sealed class PidFd : IDisposable
{
    private readonly int _fd;

    private PidFd(int pid, int fd)
    {
        Pid = pid;
        _fd = fd;
    }

    public int Pid { get; }

    /// <summary>Holds <paramref name="pid"/>; null when no such process exists (any more).</summary>
    public static PidFd? TryOpen(int pid)
    {
        var fd = Libc.PidfdOpen(pid);
        return fd >= 0 ? new PidFd(pid, fd) : null;
    }

    /// <summary>Whether the process held has not exited (a zombie counts as exited).</summary>
    public bool IsAlive => Libc.PidfdSendSignal(_fd, 0) == 0 && !ProcFs.IsZombie(Pid);

    /// <summary>SIGKILL to the process held, never to whatever has its pid now.</summary>
    public void Kill() => Libc.PidfdSendSignal(_fd, Libc.SIGKILL);

    /// <summary>
    /// Whether the process held runs in the user namespace pinned at <paramref name="userNamespacePath"/>
    /// and is PID 1 of a PID namespace of its own: what a sandbox's fork is, and no host process.
    /// Read through /proc after the pidfd was opened, so a pid reused before the open fails it.
    /// </summary>
    public bool IsForkIn(string userNamespacePath)
    {
        try
        {
            var nspid = ProcFs.NsPids(Pid);
            return nspid.Length >= 2 && nspid[^1] == 1
                && Inode($"/proc/{Pid}/ns/user") == Inode(userNamespacePath)
                && IsAlive; // still the process held: the reads above were of it, not of a successor
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>The inode of a namespace (its /proc link or the file it is pinned at, both followed).</summary>
    private static ulong Inode(string path) =>
        Libc.Statx(Libc.AT_FDCWD, path, 0, Libc.STATX_BASIC_STATS, out var b) == 0 ? b.Ino : throw new IOException($"cannot stat {path}: {Libc.LastError()}");

    public void Dispose() => Libc.Close(_fd);
}
