using System.Runtime.InteropServices;

namespace Forkbox.Linux.Interop;

/// <summary>libseccomp (Debian package libseccomp2). see: man 3 seccomp_init, seccomp_rule_add, seccomp_export_bpf</summary>
internal static partial class LibSeccomp
{
    private const string Lib = "libseccomp.so.2";

    public const uint SCMP_ACT_ALLOW = 0x7fff0000;
    public const uint SCMP_ACT_ERRNO_BASE = 0x00050000;
    public const int SCMP_CMP_EQ = 4;
    public const int SCMP_CMP_MASKED_EQ = 7;
    public const int SCMP_FLTATR_CTL_NNP = 3;

    public static uint ActErrno(int errno) => SCMP_ACT_ERRNO_BASE | ((uint)errno & 0xffff);

    /// <summary>struct scmp_arg_cmp { unsigned int arg; enum scmp_compare op; scmp_datum_t datum_a, datum_b; }</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ArgCmp
    {
        public uint Arg;
        public int Op;
        public ulong DatumA;
        public ulong DatumB;
    }

    [LibraryImport(Lib, EntryPoint = "seccomp_init")]
    public static partial nint Init(uint defaultAction);

    [LibraryImport(Lib, EntryPoint = "seccomp_release")]
    public static partial void Release(nint ctx);

    [LibraryImport(Lib, EntryPoint = "seccomp_attr_set")]
    public static partial int AttrSet(nint ctx, int attr, uint value);

    [LibraryImport(Lib, EntryPoint = "seccomp_syscall_resolve_name", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int ResolveName(string name);

    [LibraryImport(Lib, EntryPoint = "seccomp_rule_add_array")]
    public static partial int RuleAddArray(nint ctx, uint action, int syscall, uint argCount, ArgCmp[]? args);

    [LibraryImport(Lib, EntryPoint = "seccomp_export_bpf")]
    public static partial int ExportBpf(nint ctx, int fd);
}
