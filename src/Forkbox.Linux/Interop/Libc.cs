using System.Runtime.InteropServices;

namespace Forkbox.Linux.Interop;

/// <summary>The C library calls hostd makes. Callers use the intention-named wrappers in this project.</summary>
internal static partial class Libc
{
    public const int SIGKILL = 9;
    public const int MNT_DETACH = 2;
    public const ulong MS_BIND = 4096;
    public const ulong MS_SHARED = 1 << 20;

    /// <summary>see: man 2 mount</summary>
    [LibraryImport("libc", EntryPoint = "mount", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Mount(string? source, string target, string? fstype, ulong flags, nint data);

    /// <summary>see: man 2 umount2</summary>
    [LibraryImport("libc", EntryPoint = "umount2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Umount2(string target, int flags);

    /// <summary>see: man 2 kill</summary>
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    /// <summary>see: man 2 geteuid</summary>
    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint Geteuid();

    public static string LastError() => Marshal.GetLastPInvokeErrorMessage();
}
