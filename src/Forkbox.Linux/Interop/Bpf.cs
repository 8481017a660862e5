using System.Runtime.InteropServices;

namespace Forkbox.Linux.Interop;

/// <summary>
/// The bpf(2) system call (glibc has no wrapper), for the one thing hostd loads: a cgroup v2
/// device program. see: man 2 bpf, linux/bpf.h
/// </summary>
internal static unsafe partial class Bpf
{
    public const int BPF_PROG_LOAD = 5, BPF_PROG_ATTACH = 8;
    public const uint BPF_PROG_TYPE_CGROUP_DEVICE = 15;
    public const uint BPF_CGROUP_DEVICE = 6;
    /// <summary>Other programs may be attached beside this one; a device is allowed only if all allow it.</summary>
    public const uint BPF_F_ALLOW_MULTI = 2;

    private static long Nr => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 321,
        Architecture.Arm64 => 280,
        var other => throw new PlatformNotSupportedException($"no bpf system call number for {other}"),
    };

    /// <summary>union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ProgLoadAttr
    {
        public uint ProgType;
        public uint InsnCnt;
        public ulong Insns;
        public ulong License;
        public uint LogLevel;
        public uint LogSize;
        public ulong LogBuf;
        public uint KernVersion;
        public uint ProgFlags;
        public fixed byte ProgName[16];
        public uint ProgIfindex;
        public uint ExpectedAttachType;
    }

    /// <summary>union bpf_attr for BPF_PROG_ATTACH, up to replace_bpf_fd.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ProgAttachAttr
    {
        public uint TargetFd;
        public uint AttachBpfFd;
        public uint AttachType;
        public uint AttachFlags;
        public uint ReplaceBpfFd;
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, int cmd, void* attr, uint size);

    /// <summary>Loads a program; returns its descriptor, or -1 with errno set.</summary>
    public static int ProgLoad(ref ProgLoadAttr attr)
    {
        fixed (ProgLoadAttr* p = &attr)
            return (int)Syscall(Nr, BPF_PROG_LOAD, p, (uint)sizeof(ProgLoadAttr));
    }

    /// <summary>Attaches a loaded program to a cgroup; 0, or -1 with errno set.</summary>
    public static int ProgAttach(ref ProgAttachAttr attr)
    {
        fixed (ProgAttachAttr* p = &attr)
            return (int)Syscall(Nr, BPF_PROG_ATTACH, p, (uint)sizeof(ProgAttachAttr));
    }
}
