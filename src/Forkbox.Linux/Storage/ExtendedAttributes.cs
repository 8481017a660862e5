using System.Runtime.InteropServices;
using System.Text;
using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Storage;

/// <summary>
/// Extended attributes of a path, never following a symbolic link. Overlayfs keeps its state in
/// them (trusted.overlay.opaque marks a directory that hides the layers below it).
/// </summary>
public static class ExtendedAttributes
{
    /// <summary>The attribute's value; null when the path has no such attribute.</summary>
    public static byte[]? Get(string path, string name)
    {
        var buffer = new byte[256];
        while (true)
        {
            var n = Libc.Lgetxattr(path, name, ref MemoryMarshal.GetArrayDataReference(buffer), (nuint)buffer.Length);
            if (n >= 0) return buffer[..(int)n];
            var errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.ENODATA) return null;
            if (errno != Libc.ERANGE) throw new IOException($"cannot read xattr {name} of {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
            buffer = new byte[buffer.Length * 4];
        }
    }

    /// <summary>Every attribute name the path has (trusted.* and security.* only show to root).</summary>
    public static IReadOnlyList<string> List(string path)
    {
        var buffer = new byte[1024];
        while (true)
        {
            var n = Libc.Llistxattr(path, ref MemoryMarshal.GetArrayDataReference(buffer), (nuint)buffer.Length);
            if (n >= 0)
                return Encoding.UTF8.GetString(buffer, 0, (int)n).Split('\0', StringSplitOptions.RemoveEmptyEntries);
            var errno = Marshal.GetLastPInvokeError();
            if (errno != Libc.ERANGE) throw new IOException($"cannot list xattrs of {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
            buffer = new byte[buffer.Length * 4];
        }
    }
}
