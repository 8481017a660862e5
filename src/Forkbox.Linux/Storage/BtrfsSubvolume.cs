using System.Text;
using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Storage;

/// <summary>
/// btrfs subvolumes: a writable layer that is one can be snapshotted in O(1). Removing one needs
/// nothing special: as root, rmdir of an empty subvolume deletes it (Linux 4.18 and later), so
/// <see cref="Directory.Delete(string, bool)"/> does.
/// </summary>
public static class BtrfsSubvolume
{
    /// <summary>The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).</summary>
    public const ulong RootInode = 256;

    /// <summary>Creates <paramref name="path"/> as an empty subvolume (BTRFS_IOC_SUBVOL_CREATE on its parent).</summary>
    public static unsafe void Create(string path)
    {
        path = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        var name = Encoding.UTF8.GetBytes(Path.GetFileName(path));
        if (name.Length is 0 or > 4087) throw new ArgumentException($"bad subvolume name in {path}", nameof(path));
        var parent = Libc.OpenDirectory(Path.GetDirectoryName(path)!);
        try
        {
            var args = stackalloc byte[4096]; // struct btrfs_ioctl_vol_args {s64 fd; char name[4088];}
            new Span<byte>(args, 4096).Clear();
            name.CopyTo(new Span<byte>(args + 8, 4087));
            if (Libc.Ioctl(parent, Libc.BTRFS_IOC_SUBVOL_CREATE, (nint)args) != 0)
                throw new IOException($"cannot create btrfs subvolume {path}: {Libc.LastError()}");
        }
        finally
        {
            Libc.Close(parent);
        }
    }

    /// <summary>Whether <paramref name="path"/> is the root of a subvolume (on a btrfs filesystem).</summary>
    public static bool IsSubvolume(string path) =>
        FileStat.TryLstat(path) is { Type: UnixFileType.Directory, Inode: RootInode } &&
        StorageProbe.FilesystemType(path) == "btrfs";
}
