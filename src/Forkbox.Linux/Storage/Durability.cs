using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Storage;

/// <summary>Making what was written survive a crash of the machine, not only of the process.</summary>
public static class Durability
{
    /// <summary>
    /// Flushes every file and directory of the filesystem that holds <paramref name="path"/> to disk
    /// (syncfs): one call for a whole tree of renamed and written files, where fsync would need one per entry.
    /// </summary>
    public static void SyncFilesystem(string path)
    {
        var fd = Libc.OpenDirectory(path);
        try
        {
            if (Libc.SyncFs(fd) != 0)
                throw new IOException($"syncfs of the filesystem under {path} failed: {Libc.LastError()}");
        }
        finally
        {
            Libc.Close(fd);
        }
    }
}
