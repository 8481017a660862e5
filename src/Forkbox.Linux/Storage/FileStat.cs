using System.Runtime.InteropServices;
using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Storage;

/// <summary>
/// What lstat says about a path, with nanosecond times and device numbers, which
/// <see cref="FileSystemInfo"/> does not give: layer diffs and snapshot checks need both.
/// </summary>
public readonly record struct FileStat(
    UnixFileType Type, int Mode, uint Uid, uint Gid, long Size, ulong Inode, uint Links,
    long AtimeNs, long MtimeNs, uint RdevMajor, uint RdevMinor, ulong Device)
{
    private const int S_IFMT = 0xF000;

    /// <summary>An overlayfs whiteout: a character device 0:0.</summary>
    public bool IsWhiteout => Type == UnixFileType.CharacterDevice && RdevMajor == 0 && RdevMinor == 0;

    /// <summary>The permission bits with setuid, setgid and sticky (mode &amp; 07777).</summary>
    public int Permissions => Mode & 0xFFF;

    /// <summary>lstat of <paramref name="path"/> (a symbolic link is not followed); null when nothing is there.</summary>
    public static FileStat? TryLstat(string path)
    {
        if (Libc.Statx(Libc.AT_FDCWD, path, Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_BASIC_STATS, out var b) == 0)
            return From(b);
        var errno = Marshal.GetLastPInvokeError();
        if (errno is 2 or 20) return null; // ENOENT, ENOTDIR: some component is not there or is a file
        throw new IOException($"cannot stat {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
    }

    public static FileStat Lstat(string path) =>
        TryLstat(path) ?? throw new FileNotFoundException($"{path} does not exist", path);

    internal static FileStat From(in Libc.StatxBuffer b) => new(
        (b.Mode & S_IFMT) switch
        {
            0x4000 => UnixFileType.Directory,
            0x8000 => UnixFileType.RegularFile,
            0xA000 => UnixFileType.SymbolicLink,
            0x2000 => UnixFileType.CharacterDevice,
            0x6000 => UnixFileType.BlockDevice,
            0x1000 => UnixFileType.Fifo,
            0xC000 => UnixFileType.Socket,
            _ => UnixFileType.Unknown,
        },
        b.Mode, b.Uid, b.Gid, (long)b.Size, b.Ino, b.Nlink,
        b.AtimeSec * 1_000_000_000 + b.AtimeNsec, b.MtimeSec * 1_000_000_000 + b.MtimeNsec,
        b.RdevMajor, b.RdevMinor, ((ulong)b.DevMajor << 32) | b.DevMinor);
}

/// <summary>The kind of a directory entry, as in st_mode &amp; S_IFMT.</summary>
public enum UnixFileType { Unknown, RegularFile, Directory, SymbolicLink, CharacterDevice, BlockDevice, Fifo, Socket }
