using System.Runtime.InteropServices;
using System.Text;
using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Storage;

/// <summary>
/// One layer directory of a sandbox (an overlay upper, or a template's lower), held open, and the
/// only way hostd reads what is beneath it. hostd runs as host root and a sandbox changes its upper
/// while hostd reads it: a path resolved by name there follows whatever symlink the sandbox has just
/// put in place of a directory, onto the host. So every lookup here is one openat2 from this
/// directory's descriptor with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS and
/// O_NOFOLLOW, and every call after it works on the descriptor it returned, never on a path again.
/// Relative paths only ("root/x"); an entry that is a symlink is reported as one, never followed.
/// The agent's zygote has the same rule in forkbox_agent/confined.py.
/// </summary>
public sealed class LayerFiles : IDisposable
{
    private const ulong Beneath = Libc.RESOLVE_BENEATH | Libc.RESOLVE_NO_SYMLINKS | Libc.RESOLVE_NO_MAGICLINKS;
    private readonly int _fd;

    public LayerFiles(string dir)
    {
        Dir = dir;
        _fd = Libc.Openat2(Libc.AT_FDCWD, dir, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (_fd < 0) throw new IOException($"cannot open layer directory {dir}: {Libc.LastError()}");
    }

    /// <summary>The layer's own path (named by hostd), for messages.</summary>
    public string Dir { get; }

    /// <summary>lstat of <paramref name="rel"/> ("" for the layer itself); null when nothing is there or some component on the way is not a directory.</summary>
    public FileStat? TryLstat(string rel)
    {
        var fd = TryOpen(rel, Libc.O_PATH | Libc.O_NOFOLLOW);
        if (fd < 0) return Absent() ? null : throw new IOException($"cannot open {Describe(rel)}: {Libc.LastError()}");
        try
        {
            if (Libc.Statx(fd, "", Libc.AT_EMPTY_PATH | Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_BASIC_STATS, out var b) != 0)
                throw new IOException($"cannot stat {Describe(rel)}: {Libc.LastError()}");
            return FileStat.From(b);
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    /// <summary>
    /// The names in the directory <paramref name="rel"/> (not "." or ".."); nothing is followed or
    /// stat-ed. Empty when it is no longer a directory: the sandbox may have changed it since it was seen.
    /// </summary>
    public List<string> Names(string rel)
    {
        var fd = TryOpen(rel, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW);
        if (fd < 0) return Absent() ? [] : throw new IOException($"cannot open {Describe(rel)}: {Libc.LastError()}");
        var dir = Libc.Fdopendir(fd);
        if (dir == 0)
        {
            var error = Libc.LastError();
            Libc.Close(fd);
            throw new IOException($"cannot read directory {Describe(rel)}: {error}");
        }
        var names = new List<string>();
        try
        {
            while (true)
            {
                Marshal.SetLastPInvokeError(0);
                var entry = Libc.Readdir(dir);
                if (entry == 0)
                {
                    if (Marshal.GetLastPInvokeError() != 0) throw new IOException($"cannot read directory {Describe(rel)}: {Libc.LastError()}");
                    return names;
                }
                var name = Marshal.PtrToStringUTF8(entry + 19)!; // struct dirent: ino, off, reclen, type, name
                if (name is not ("." or "..")) names.Add(name);
            }
        }
        finally
        {
            Libc.Closedir(dir);
        }
    }

    /// <summary>The target a symlink holds (read, not followed); null when <paramref name="rel"/> is not a symlink.</summary>
    public string? ReadLink(string rel)
    {
        var fd = TryOpen(rel, Libc.O_PATH | Libc.O_NOFOLLOW);
        if (fd < 0) return Absent() ? null : throw new IOException($"cannot open {Describe(rel)}: {Libc.LastError()}");
        try
        {
            var buffer = new byte[4096];
            var n = Libc.Readlinkat(fd, "", ref MemoryMarshal.GetArrayDataReference(buffer), (nuint)buffer.Length);
            return n < 0 ? null : Encoding.UTF8.GetString(buffer, 0, (int)n);
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    /// <summary>The value of the extended attribute <paramref name="name"/> of the directory <paramref name="rel"/>; null when it has none or is not a directory.</summary>
    public byte[]? DirectoryAttribute(string rel, string name)
    {
        var fd = TryOpen(rel, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW);
        if (fd < 0) return Absent() ? null : throw new IOException($"cannot open {Describe(rel)}: {Libc.LastError()}");
        try
        {
            var buffer = new byte[256];
            var n = Libc.Fgetxattr(fd, name, ref MemoryMarshal.GetArrayDataReference(buffer), (nuint)buffer.Length);
            if (n >= 0) return buffer[..(int)n];
            var errno = Marshal.GetLastPInvokeError();
            if (errno is Libc.ENODATA or Libc.ERANGE) return null; // overlay's markers are a byte or two
            throw new IOException($"cannot read xattr {name} of {Describe(rel)}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    /// <summary>
    /// A stream over the regular file <paramref name="rel"/>; null when it is not one (any more): a
    /// FIFO that would block or a device is never read.
    /// </summary>
    public FileStream? TryOpenRegularFile(string rel)
    {
        var fd = TryOpen(rel, Libc.O_RDONLY | Libc.O_NOFOLLOW | Libc.O_NONBLOCK);
        if (fd < 0) return Absent() ? null : throw new IOException($"cannot open {Describe(rel)}: {Libc.LastError()}");
        var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        if (Libc.Statx(fd, "", Libc.AT_EMPTY_PATH, Libc.STATX_BASIC_STATS, out var b) == 0 && FileStat.From(b).Type == UnixFileType.RegularFile)
            return new FileStream(handle, FileAccess.Read, 1);
        handle.Dispose();
        return null;
    }

    /// <summary>
    /// Every entry beneath the layer (not the layer itself), parents before their children, each
    /// with its lstat; a directory is entered only if it is one, so no symlink is ever followed.
    /// An entry that is gone by the time it is looked at is skipped.
    /// </summary>
    public IEnumerable<(string Rel, FileStat Stat)> Entries()
    {
        var pending = new Stack<string>([""]);
        while (pending.TryPop(out var dir))
            foreach (var name in Names(dir))
            {
                var rel = dir.Length == 0 ? name : dir + "/" + name;
                if (TryLstat(rel) is not { } stat) continue;
                if (stat.Type == UnixFileType.Directory) pending.Push(rel);
                yield return (rel, stat);
            }
    }

    /// <summary>Deletes <paramref name="dir"/> (a path of hostd's) and everything beneath it, never following a symlink inside it; nothing there is not an error.</summary>
    public static void DeleteTree(string dir)
    {
        LayerFiles tree;
        try
        {
            tree = new LayerFiles(dir);
        }
        catch (IOException) when (!Directory.Exists(dir) && !File.Exists(dir))
        {
            return;
        }
        using (tree) tree.EmptyDirectory("");
        if (Libc.Unlinkat(Libc.AT_FDCWD, dir, Libc.AT_REMOVEDIR) != 0 && Marshal.GetLastPInvokeError() != 2)
            throw new IOException($"cannot remove {dir}: {Libc.LastError()}");
    }

    private void EmptyDirectory(string rel)
    {
        foreach (var name in Names(rel))
        {
            var child = rel.Length == 0 ? name : rel + "/" + name;
            var isDir = TryLstat(child) is { Type: UnixFileType.Directory };
            if (isDir) EmptyDirectory(child);
            Unlink(child, isDir ? Libc.AT_REMOVEDIR : 0);
        }
    }

    /// <summary>Unlinks the entry <paramref name="rel"/> (not a directory) itself: a symlink or node is removed, never what it names.</summary>
    public void RemoveEntry(string rel) => Unlink(rel, 0);

    /// <summary>unlinkat in the directory of <paramref name="rel"/>, opened beneath the layer; an entry already gone is not an error.</summary>
    private void Unlink(string rel, int flags)
    {
        var slash = rel.LastIndexOf('/');
        var parent = Libc.Openat2(_fd, slash < 0 ? "." : rel[..slash], Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, Beneath);
        if (parent < 0) throw new IOException($"cannot open the directory of {Describe(rel)}: {Libc.LastError()}");
        try
        {
            if (Libc.Unlinkat(parent, rel[(slash + 1)..], flags) != 0 && Marshal.GetLastPInvokeError() != 2)
                throw new IOException($"cannot remove {Describe(rel)}: {Libc.LastError()}");
        }
        finally
        {
            Libc.Close(parent);
        }
    }

    /// <summary>Sets the permission bits of the regular file <paramref name="rel"/> through a descriptor of it; false when it is not one.</summary>
    public bool TrySetFilePermissions(string rel, int permissions)
    {
        using var file = TryOpenRegularFile(rel);
        if (file is null) return false;
        File.SetUnixFileMode(file.SafeFileHandle, (UnixFileMode)permissions);
        return true;
    }

    public void Dispose() => Libc.Close(_fd);

    /// <summary>openat2 beneath the layer; -1 with errno set when it fails (ENOENT, ENOTDIR, ELOOP for a symlink on the way, …).</summary>
    private int TryOpen(string rel, int flags) =>
        Libc.Openat2(_fd, rel.Length == 0 ? "." : rel, flags | Libc.O_CLOEXEC, Beneath);

    /// <summary>Whether the last openat2 failed because nothing openable is there: ENOENT, ENOTDIR, or ELOOP for a symlink on the way (which the merged view would follow, and hostd does not).</summary>
    private static bool Absent() => Marshal.GetLastPInvokeError() is 2 or 20 or 40;

    private string Describe(string rel) => rel.Length == 0 ? Dir : Dir + "/" + rel;
}
