using System.Buffers.Binary;
using System.Globalization;
using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Storage;

/// <summary>
/// Per-sandbox disk quotas with btrfs quota groups: each writable layer is a subvolume, and its
/// qgroup's limit on referenced bytes makes the kernel refuse writes past it with EDQUOT ("Disk
/// quota exceeded"). A snapshot (a fork, a resume) starts with its source's limit and counts the
/// bytes it shares with it, so a fork's quota covers what it sees, like its parent's.
/// Other filesystems have no quotas here: xfs and ext4 project quotas need kernel options
/// (XFS_QUOTA, QFMT_V2) that the hosts this was built on lack, so they are not offered untested.
/// </summary>
public sealed class DiskQuota
{
    private const ulong QuotaCtlEnable = 1;
    private const ulong LimitMaxRfer = 1; // BTRFS_QGROUP_LIMIT_MAX_RFER
    private const ulong FirstFreeObjectId = 256;
    private readonly string _sysfs;

    private DiskQuota(string sysfs) => _sysfs = sysfs;

    public string Kind => "btrfs qgroups";

    /// <summary>Turns quotas on for the btrfs filesystem of <paramref name="dir"/>; null, with the reason, where that cannot be done.</summary>
    public static unsafe DiskQuota? TryEnable(string dir, StorageKind kind, out string why)
    {
        if (kind != StorageKind.Btrfs)
        {
            why = $"sandbox layers are on {StorageProbe.FilesystemType(dir)} (storage {kind.Name()}), and quotas need btrfs: " +
                  "start with --storage-image SIZE (btrfs) to enforce each sandbox's disk_mb";
            return null;
        }
        var fd = Libc.OpenDirectory(dir);
        try
        {
            var args = stackalloc ulong[2] { QuotaCtlEnable, 0 };
            if (Libc.Ioctl(fd, Libc.BTRFS_IOC_QUOTA_CTL, (nint)args) != 0)
            {
                why = $"btrfs refused to enable quotas on {dir}: {Libc.LastError()}";
                return null;
            }
            var info = stackalloc byte[1024];
            new Span<byte>(info, 1024).Clear();
            if (Libc.Ioctl(fd, Libc.BTRFS_IOC_FS_INFO, (nint)info) != 0)
                throw new IOException($"cannot read the btrfs filesystem id of {dir}: {Libc.LastError()}");
            why = "";
            return new DiskQuota(Path.Combine("/sys/fs/btrfs", new Guid(new ReadOnlySpan<byte>(info + 16, 16), bigEndian: true).ToString(), "qgroups"));
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    /// <summary>Limits each writable layer (a subvolume) of a sandbox to <paramref name="bytes"/>.</summary>
    public unsafe void SetLimit(SandboxLayerDirs dirs, long bytes)
    {
        var args = stackalloc ulong[6];
        foreach (var (upper, _) in dirs.Layers)
        {
            var fd = Libc.OpenDirectory(upper);
            try
            {
                new Span<ulong>(args, 6).Clear();
                args[1] = LimitMaxRfer; // qgroupid (args[0]) 0: this subvolume's own
                args[2] = (ulong)bytes;
                if (Libc.Ioctl(fd, Libc.BTRFS_IOC_QGROUP_LIMIT, (nint)args) != 0)
                    throw new IOException($"cannot set the disk quota of {upper}: {Libc.LastError()}");
            }
            finally
            {
                Libc.Close(fd);
            }
        }
    }

    /// <summary>Bytes the sandbox's writable layers reference, as btrfs last accounted them (at its last commit).</summary>
    public long Used(SandboxLayerDirs dirs) =>
        dirs.Layers.Sum(l => long.Parse(File.ReadAllText(Path.Combine(_sysfs, $"0_{SubvolumeId(l.Upper)}", "referenced")).Trim(), CultureInfo.InvariantCulture));

    private static unsafe ulong SubvolumeId(string subvolume)
    {
        var fd = Libc.OpenDirectory(subvolume);
        try
        {
            var args = stackalloc byte[4096];
            var span = new Span<byte>(args, 4096);
            span.Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(span[8..], FirstFreeObjectId); // treeid 0: the fd's own tree
            if (Libc.Ioctl(fd, Libc.BTRFS_IOC_INO_LOOKUP, (nint)args) != 0)
                throw new IOException($"cannot look up the subvolume id of {subvolume}: {Libc.LastError()}");
            return BinaryPrimitives.ReadUInt64LittleEndian(span);
        }
        finally
        {
            Libc.Close(fd);
        }
    }
}
