using System.Runtime.InteropServices;
using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Storage;

/// <summary>
/// The names in a directory and nothing more. .NET's enumeration stats each symbolic link's target
/// to tell whether it is a directory; in a sandbox's layer that would follow links the sandbox
/// controls, as host root, and it updates the links' access times, which snapshots preserve.
/// </summary>
public static class DirectoryNames
{
    public static List<string> List(string dir)
    {
        var names = new List<string>();
        var handle = Libc.Opendir(dir);
        if (handle == 0) throw new IOException($"cannot open directory {dir}: {Libc.LastError()}");
        try
        {
            while (true)
            {
                Marshal.SetLastPInvokeError(0);
                var entry = Libc.Readdir(handle);
                if (entry == 0)
                {
                    if (Marshal.GetLastPInvokeError() != 0) throw new IOException($"cannot read directory {dir}: {Libc.LastError()}");
                    return names;
                }
                var name = Marshal.PtrToStringUTF8(entry + 19)!; // struct dirent: ino, off, reclen, type, name
                if (name is not ("." or "..")) names.Add(name);
            }
        }
        finally
        {
            Libc.Closedir(handle);
        }
    }
}
