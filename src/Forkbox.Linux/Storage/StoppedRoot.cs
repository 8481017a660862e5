namespace Forkbox.Linux.Storage;

/// <summary>
/// The root filesystem of a sandbox whose processes are gone (killed at its memory limit, say), read
/// from its layers as its overlays showed it, so that its files stay readable until it is deleted.
/// Its mounts went with its mount namespace, so hostd resolves the merged view itself: each lookup
/// is <see cref="LayerDiff"/>'s overlay resolution over <see cref="LayerFiles"/> (one openat2 per
/// step with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, never a path by name on the host), and a symlink
/// the sandbox left is followed here, component by component, inside the sandbox's own root: an
/// absolute target starts again at its "/", ".." stops at it (as RESOLVE_IN_ROOT would), and it may
/// lead into another of its mounts (e.g. "/usr"), never out of them.
/// </summary>
public sealed class StoppedRoot : IDisposable
{
    /// <summary>What Linux allows on one path before ELOOP.</summary>
    private const int MaxLinks = 40;

    private readonly List<(string Target, List<LayerFiles> Stack)> _mounts = [];

    /// <param name="mounts">Each overlay: its mount point inside the sandbox and its directories, upper first, then the lowers.</param>
    public StoppedRoot(IEnumerable<(string Target, IReadOnlyList<string> Stack)> mounts)
    {
        try
        {
            foreach (var (target, dirs) in mounts)
            {
                var stack = new List<LayerFiles>(dirs.Count);
                _mounts.Add(("/" + target.Trim('/'), stack));
                foreach (var dir in dirs) stack.Add(new LayerFiles(dir));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        // Longest mount point first: "/usr/x" is in the "/usr" mount, not in "/".
        _mounts.Sort((a, b) => b.Target.Length.CompareTo(a.Target.Length));
    }

    /// <summary>The names in the directory <paramref name="path"/> (its symlinks followed), each not followed, as lstat shows them inside the sandbox.</summary>
    public List<(string Name, FileStat Stat)> List(string path)
    {
        var (dirPath, dir) = Walk(path, followLast: true);
        if (!dir.IsDirectory) throw new StoppedRootException("not_a_directory", $"{path}: Not a directory");
        var (_, stack, rel) = MountOf(dirPath);
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var layer in dir.Chain!)
            foreach (var name in layer.Names(rel))
                names.Add(name);
        var entries = new List<(string, FileStat)>();
        foreach (var name in names)
        {
            var child = dirPath == "/" ? "/" + name : dirPath + "/" + name;
            if (Lookup(child) is { } found) entries.Add((name, found.Stat));
        }
        return entries;
    }

    /// <summary>The regular file at <paramref name="path"/> (its symlinks followed), opened for reading, and its size.</summary>
    public FileStream OpenRead(string path, out long size)
    {
        var (_, found) = Walk(path, followLast: true);
        if (found.IsDirectory) throw new StoppedRootException("is_a_directory", $"{path}: Is a directory");
        if (found.Stat.Type != UnixFileType.RegularFile)
            throw new StoppedRootException("not_a_regular_file", $"{path}: it is {Kind(found.Stat.Type)}; only regular files can be read or written");
        var file = found.Layer.TryOpenRegularFile(found.Rel)
                   ?? throw new StoppedRootException("not_found", $"{path}: No such file or directory");
        size = file.Length;
        return file;
    }

    /// <summary>
    /// Resolves an absolute path inside the sandbox: every component but the last (and the last when
    /// <paramref name="followLast"/>) is followed if it is a symlink. Returns the path it ended at
    /// (symlinks resolved) and what is there.
    /// </summary>
    private (string Path, LayerDiff.Resolved Found) Walk(string path, bool followLast)
    {
        if (!path.StartsWith('/')) throw new ArgumentException($"'{path}' is not an absolute path inside the sandbox", nameof(path));
        var done = new List<string>();
        var todo = new LinkedList<string>(path.Split('/', StringSplitOptions.RemoveEmptyEntries));
        var links = 0;
        LayerDiff.Resolved? found = Lookup("/");
        while (todo.First is { } first)
        {
            todo.RemoveFirst();
            var part = first.Value;
            if (part == ".") continue;
            if (part == "..")
            {
                if (done.Count > 0) done.RemoveAt(done.Count - 1);
                found = Lookup(Join(done));
                continue;
            }
            if (found is not { IsDirectory: true })
                throw new StoppedRootException("not_a_directory", $"{path}: Not a directory");
            done.Add(part);
            found = Lookup(Join(done)) ?? throw new StoppedRootException("not_found", $"{path}: No such file or directory");
            if (found.Stat.Type != UnixFileType.SymbolicLink || (todo.Count == 0 && !followLast)) continue;
            if (++links > MaxLinks) throw new StoppedRootException("file_error", $"{path}: Too many levels of symbolic links");
            var target = found.Layer.ReadLink(found.Rel) ?? throw new StoppedRootException("not_found", $"{path}: No such file or directory");
            done.RemoveAt(done.Count - 1);
            if (target.StartsWith('/')) done.Clear();
            foreach (var p in target.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse()) todo.AddFirst(p);
            found = Lookup(Join(done));
        }
        return (Join(done), found ?? throw new StoppedRootException("not_found", $"{path}: No such file or directory"));
    }

    /// <summary>What the merged view holds at a path whose parents are all directories (no symlink on the way); null when nothing.</summary>
    private LayerDiff.Resolved? Lookup(string path)
    {
        var (_, stack, rel) = MountOf(path);
        return LayerDiff.Resolve(stack, rel);
    }

    private (string Target, List<LayerFiles> Stack, string Rel) MountOf(string path)
    {
        foreach (var (target, stack) in _mounts)
        {
            if (target == "/") return (target, stack, path.TrimStart('/'));
            if (path == target) return (target, stack, "");
            if (path.StartsWith(target + "/", StringComparison.Ordinal)) return (target, stack, path[(target.Length + 1)..]);
        }
        throw new StoppedRootException("not_found", $"{path}: No such file or directory"); // no mount at "/": nothing is there
    }

    private static string Join(List<string> parts) => "/" + string.Join('/', parts);

    private static string Kind(UnixFileType type) => type switch
    {
        UnixFileType.Fifo => "a named pipe",
        UnixFileType.Socket => "a socket",
        UnixFileType.CharacterDevice => "a character device",
        UnixFileType.BlockDevice => "a block device",
        UnixFileType.SymbolicLink => "a symbolic link",
        _ => "not a regular file",
    };

    public void Dispose()
    {
        foreach (var (_, stack) in _mounts)
            foreach (var layer in stack)
                layer.Dispose();
    }
}

/// <summary>
/// A path of a stopped sandbox that cannot be read; <see cref="Code"/> is the agent's error code for
/// the same failure (not_found, not_a_directory, is_a_directory, not_a_regular_file, …), so that the
/// client gets the answer a live sandbox gives.
/// </summary>
public sealed class StoppedRootException(string code, string message) : IOException(message)
{
    public string Code { get; } = code;
}
