using System.Runtime.InteropServices;

namespace Forkbox.Linux.Interop;

/// <summary>The C library calls hostd makes. Callers use the intention-named wrappers in this project.</summary>
internal static partial class Libc
{
    public const int SIGKILL = 9;
    public const int MNT_DETACH = 2;
    public const ulong MS_BIND = 4096;
    public const ulong MS_SHARED = 1 << 20;
    public const int O_RDONLY = 0;
    public const int O_DIRECTORY = 0x10000;
    public const int O_CLOEXEC = 0x80000;
    public const int AT_FDCWD = -100;
    public const int AT_SYMLINK_NOFOLLOW = 0x100;
    public const uint STATX_BASIC_STATS = 0x7ff;
    public const int ENODATA = 61;
    public const int ERANGE = 34;
    /// <summary>_IOW(0x94, 9, int): share the extents of the fd given with the fd called on.</summary>
    public const ulong FICLONE = 0x40049409;
    /// <summary>_IOW(0x94, 14, struct btrfs_ioctl_vol_args), 4096 bytes: {s64 fd; char name[4088]}.</summary>
    public const ulong BTRFS_IOC_SUBVOL_CREATE = 0x5000940E;
    public const long BTRFS_SUPER_MAGIC = 0x9123683E;

    /// <summary>see: man 2 mount</summary>
    [LibraryImport("libc", EntryPoint = "mount", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Mount(string? source, string target, string? fstype, ulong flags, nint data);

    /// <summary>see: man 2 syncfs</summary>
    [LibraryImport("libc", EntryPoint = "syncfs", SetLastError = true)]
    public static partial int SyncFs(int fd);

    /// <summary>see: man 2 umount2</summary>
    [LibraryImport("libc", EntryPoint = "umount2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Umount2(string target, int flags);

    public const int PRIO_PGRP = 1;

    /// <summary>see: man 2 setpriority</summary>
    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    public static partial int SetPriority(int which, int who, int prio);

    /// <summary>see: man 2 kill</summary>
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    /// <summary>see: man 2 geteuid</summary>
    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint Geteuid();

    /// <summary>see: man 2 open</summary>
    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Open(string path, int flags);

    /// <summary>see: man 2 setns (nstype CLONE_NEWNET: the calling thread only)</summary>
    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    public static partial int Setns(int fd, int nstype);

    public const int CLONE_NEWNET = 0x40000000;

    /// <summary>see: man 2 close</summary>
    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    /// <summary>see: man 2 ioctl (the argument is an int or a pointer, passed as a word)</summary>
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, ulong request, nint arg);

    /// <summary>_IOWR(0x94, 40, struct btrfs_ioctl_quota_ctl_args {u64 cmd; u64 status;}); cmd 1 enables quotas.</summary>
    public const ulong BTRFS_IOC_QUOTA_CTL = 0xC0109428;
    /// <summary>_IOR(0x94, 43, struct btrfs_ioctl_qgroup_limit_args {u64 qgroupid; struct btrfs_qgroup_limit {u64 flags, max_rfer, max_excl, rsv_rfer, rsv_excl;}}), 48 bytes.</summary>
    public const ulong BTRFS_IOC_QGROUP_LIMIT = 0x8030942B;
    /// <summary>_IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args {u64 treeid; u64 objectid; char name[4080];}), 4096 bytes.</summary>
    public const ulong BTRFS_IOC_INO_LOOKUP = 0xD0009412;
    /// <summary>_IOR(0x94, 31, struct btrfs_ioctl_fs_info_args), 1024 bytes; fsid (16 bytes) at offset 16.</summary>
    public const ulong BTRFS_IOC_FS_INFO = 0x8400941F;

    /// <summary>see: man 2 statfs (only f_type, the first word, is read)</summary>
    [LibraryImport("libc", EntryPoint = "statfs", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Statfs(string path, out StatfsBuffer buf);

    /// <summary>see: man 2 statx (its struct is the same on every architecture, unlike struct stat)</summary>
    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Statx(int dirfd, string path, int flags, uint mask, out StatxBuffer buf);

    /// <summary>see: man 2 lgetxattr</summary>
    [LibraryImport("libc", EntryPoint = "lgetxattr", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial nint Lgetxattr(string path, string name, ref byte value, nuint size);

    /// <summary>see: man 2 llistxattr</summary>
    [LibraryImport("libc", EntryPoint = "llistxattr", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial nint Llistxattr(string path, ref byte list, nuint size);

    /// <summary>see: man 3 opendir</summary>
    [LibraryImport("libc", EntryPoint = "opendir", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial nint Opendir(string path);

    /// <summary>see: man 3 readdir; the struct dirent it returns has d_name at offset 19 on 64-bit Linux</summary>
    [LibraryImport("libc", EntryPoint = "readdir", SetLastError = true)]
    public static partial nint Readdir(nint dir);

    /// <summary>see: man 3 closedir</summary>
    [LibraryImport("libc", EntryPoint = "closedir", SetLastError = true)]
    public static partial int Closedir(nint dir);

    public const int O_PATH = 0x200000;
    public const int O_NOFOLLOW = 0x20000;
    public const int O_NONBLOCK = 0x800;
    public const int AT_EMPTY_PATH = 0x1000;
    public const int AT_REMOVEDIR = 0x200;
    public const ulong RESOLVE_NO_XDEV = 0x01, RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04, RESOLVE_BENEATH = 0x08;
    private const long SYS_openat2 = 437;

    /// <summary>struct open_how (linux/openat2.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    [LibraryImport("libc", EntryPoint = "syscall", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial long Syscall(long number, int dirfd, string path, ref OpenHow how, nuint size);

    /// <summary>see: man 2 openat2 (glibc 2.36 has no wrapper)</summary>
    public static int Openat2(int dirfd, string path, int flags, ulong resolve)
    {
        var how = new OpenHow { Flags = (ulong)flags, Resolve = resolve };
        return (int)Syscall(SYS_openat2, dirfd, path, ref how, (nuint)Marshal.SizeOf<OpenHow>());
    }

    private const long SYS_pidfd_send_signal = 424, SYS_pidfd_open = 434;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, long a, long b, long c, long d);

    /// <summary>see: man 2 pidfd_open</summary>
    public static int PidfdOpen(int pid) => (int)Syscall(SYS_pidfd_open, pid, 0, 0, 0);

    /// <summary>see: man 2 pidfd_send_signal</summary>
    public static int PidfdSendSignal(int pidfd, int signal) => (int)Syscall(SYS_pidfd_send_signal, pidfd, signal, 0, 0);

    /// <summary>see: man 2 openat</summary>
    [LibraryImport("libc", EntryPoint = "openat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Openat(int dirfd, string path, int flags, int mode);

    /// <summary>see: man 2 unlinkat</summary>
    [LibraryImport("libc", EntryPoint = "unlinkat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Unlinkat(int dirfd, string path, int flags);

    /// <summary>see: man 2 readlinkat</summary>
    [LibraryImport("libc", EntryPoint = "readlinkat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial nint Readlinkat(int dirfd, string path, ref byte buf, nuint size);

    /// <summary>see: man 2 fgetxattr</summary>
    [LibraryImport("libc", EntryPoint = "fgetxattr", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial nint Fgetxattr(int fd, string name, ref byte value, nuint size);

    public const int LOCK_SH = 1;
    public const int LOCK_EX = 2;
    public const int LOCK_NB = 4;
    public const int O_RDWR = 2;
    public const int O_CREAT = 0x40;

    /// <summary>see: man 2 flock (blocks until the lock is taken; released when the descriptor closes)</summary>
    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);

    /// <summary>see: man 3 fdopendir (the directory stream owns the fd from then on)</summary>
    [LibraryImport("libc", EntryPoint = "fdopendir", SetLastError = true)]
    public static partial nint Fdopendir(int fd);

    /// <summary>struct statfs: f_type is the first word on every 64-bit Linux; the rest is room.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 128)]
    public struct StatfsBuffer
    {
        public long Type;
    }

    /// <summary>struct statx (linux/stat.h), 256 bytes.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    public struct StatxBuffer
    {
        [FieldOffset(0)] public uint Mask;
        [FieldOffset(16)] public uint Nlink;
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(24)] public uint Gid;
        [FieldOffset(28)] public ushort Mode;
        [FieldOffset(32)] public ulong Ino;
        [FieldOffset(40)] public ulong Size;
        [FieldOffset(64)] public long AtimeSec;
        [FieldOffset(72)] public uint AtimeNsec;
        [FieldOffset(112)] public long MtimeSec;
        [FieldOffset(120)] public uint MtimeNsec;
        [FieldOffset(128)] public uint RdevMajor;
        [FieldOffset(132)] public uint RdevMinor;
        [FieldOffset(136)] public uint DevMajor;
        [FieldOffset(140)] public uint DevMinor;
    }

    public static string LastError() => Marshal.GetLastPInvokeErrorMessage();

    /// <summary>A read-only, close-on-exec descriptor of a directory (for ioctls and syncfs on it); the caller closes it.</summary>
    public static int OpenDirectory(string dir)
    {
        var fd = Open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fd >= 0 ? fd : throw new IOException($"cannot open {dir}: {LastError()}");
    }
}
