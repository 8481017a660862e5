using System.Runtime.InteropServices;
using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Storage;

/// <summary>Finds out which <see cref="StorageKind"/> a directory's filesystem supports, by trying it.</summary>
public static class StorageProbe
{
    /// <summary>btrfs → Btrfs; a filesystem where FICLONE works (xfs with reflink=1) → Reflink; else Copy.</summary>
    public static StorageKind Detect(string dir)
    {
        if (Magic(dir) == Libc.BTRFS_SUPER_MAGIC) return StorageKind.Btrfs;
        return CanReflink(dir) ? StorageKind.Reflink : StorageKind.Copy;
    }

    /// <summary>
    /// The kind a setting asks for ("auto" or a kind's name), checked against what
    /// <paramref name="dir"/>'s filesystem can do; throws a message naming the way out if it cannot.
    /// </summary>
    public static StorageKind Choose(string dir, string setting)
    {
        if (string.Equals(setting, StorageStrategy.Auto, StringComparison.OrdinalIgnoreCase)) return Detect(dir);
        if (!StorageStrategy.TryParse(setting, out var kind))
            throw new InvalidOperationException($"storage '{setting}' is not one of auto, btrfs, reflink, copy");
        var ok = kind switch
        {
            StorageKind.Btrfs => Magic(dir) == Libc.BTRFS_SUPER_MAGIC,
            StorageKind.Reflink => CanReflink(dir),
            _ => true,
        };
        if (!ok)
            throw new InvalidOperationException(
                $"storage '{kind.Name()}' needs {(kind == StorageKind.Btrfs ? "btrfs" : "a filesystem with reflinks (btrfs, or xfs with reflink=1)")}, " +
                $"but {dir} is on {FilesystemType(dir)}: use --storage auto, or --storage-image SIZE to put sandboxes on an image of their own");
        return kind;
    }

    /// <summary>The name of the filesystem <paramref name="dir"/> is on ("ext4", "btrfs", "xfs", …; "0x…" when unknown).</summary>
    public static string FilesystemType(string dir) => Magic(dir) switch
    {
        Libc.BTRFS_SUPER_MAGIC => "btrfs",
        0x58465342 => "xfs",
        0xEF53 => "ext4", // ext2, ext3 and ext4 share the magic; ext4 is the one in use today
        0x01021994 => "tmpfs",
        0x794C7630 => "overlay",
        0x2FC12FC1 => "zfs",
        0xF2F52010 => "f2fs",
        0xCA451A4E => "bcachefs",
        0x6969 => "nfs",
        var m => $"0x{m:x}",
    };

    private static long Magic(string dir)
    {
        if (Libc.Statfs(dir, out var buf) != 0)
            throw new IOException($"cannot statfs {dir}: {Libc.LastError()}");
        return buf.Type & 0xFFFFFFFF;
    }

    /// <summary>Clones one small temporary file into another: the only sure test of FICLONE.</summary>
    private static bool CanReflink(string dir)
    {
        var src = Path.Combine(dir, $".reflink-probe-{Environment.ProcessId}-a");
        var dst = Path.Combine(dir, $".reflink-probe-{Environment.ProcessId}-b");
        try
        {
            File.WriteAllBytes(src, new byte[4096]);
            using var from = File.OpenHandle(src);
            using var to = File.OpenHandle(dst, FileMode.Create, FileAccess.Write);
            return Libc.Ioctl((int)to.DangerousGetHandle(), Libc.FICLONE, from.DangerousGetHandle()) == 0;
        }
        finally
        {
            File.Delete(src);
            File.Delete(dst);
        }
    }
}
