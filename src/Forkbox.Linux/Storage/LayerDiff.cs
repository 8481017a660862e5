namespace Forkbox.Linux.Storage;

/// <summary>
/// Compares two sandboxes by their overlay layers instead of by reading both trees: only what
/// is in either upper directory can differ (the lowers are the same template), so only those
/// entries are looked at, each resolved through its stack the way overlayfs does (a whiteout
/// hides it, an opaque directory hides the lowers below it, else the topmost layer that has it).
/// Where one side hides a lower directory's entries and the other does not (an opaque or removed
/// directory), that directory's entries are looked at too. Redirected directories
/// (redirect_dir=on) and metacopy are not followed: Forkbox mounts with neither.
/// </summary>
public static class LayerDiff
{
    private const string Opaque = "trusted.overlay.opaque";

    /// <summary>
    /// Compares the overlay mounted at "/" of A and of B. A stack is [upper, lower1, lower2, …],
    /// topmost first; <paramref name="paths"/> are the directories (absolute, inside the sandbox)
    /// to compare, e.g. ["/root", "/tmp"].
    /// </summary>
    public static DiffResult Compare(IReadOnlyList<string> stackA, IReadOnlyList<string> stackB, IReadOnlyList<string> paths) =>
        Compare(stackA, stackB, paths, "/");

    /// <summary>
    /// The same for an overlay mounted at <paramref name="mountPoint"/> (e.g. "/usr"): paths outside
    /// it are ignored, and the result's paths are still paths inside the sandbox.
    /// </summary>
    public static DiffResult Compare(IReadOnlyList<string> stackA, IReadOnlyList<string> stackB, IReadOnlyList<string> paths, string mountPoint)
    {
        if (stackA.Count == 0 || stackB.Count == 0) throw new ArgumentException("a stack needs at least its upper directory");
        var opened = new List<LayerFiles>();
        try
        {
            List<LayerFiles> Open(IReadOnlyList<string> stack)
            {
                var layers = new List<LayerFiles>(stack.Count);
                foreach (var dir in stack)
                {
                    var layer = new LayerFiles(dir);
                    opened.Add(layer);
                    layers.Add(layer);
                }
                return layers;
            }
            return Compare(Open(stackA), Open(stackB), paths, mountPoint);
        }
        finally
        {
            foreach (var layer in opened) layer.Dispose();
        }
    }

    private static DiffResult Compare(List<LayerFiles> stackA, List<LayerFiles> stackB, IReadOnlyList<string> paths, string mountPoint)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var queue = new Queue<string>();
        void Enqueue(string rel)
        {
            if (seen.Add(rel)) queue.Enqueue(rel);
        }
        foreach (var path in paths)
        {
            if (RelativeToMount(path, mountPoint) is not { } rel) continue;
            if (rel.Length > 0) Enqueue(rel); // even when only a lower has it: an upper may hide an ancestor
            WalkUpper(stackA[0], rel, Enqueue);
            WalkUpper(stackB[0], rel, Enqueue);
        }

        var added = new List<string>();
        var removed = new List<string>();
        var changed = new List<string>();
        while (queue.TryDequeue(out var rel))
        {
            var a = Resolve(stackA, rel);
            var b = Resolve(stackB, rel);
            if (a is null && b is null) continue;
            if (a is null)
            {
                added.Add(rel);
                EnqueueChildren(b!, rel, Enqueue);
            }
            else if (b is null)
            {
                removed.Add(rel);
                EnqueueChildren(a, rel, Enqueue);
            }
            else if (a.IsDirectory && b.IsDirectory)
            {
                // Entries only lowers hold are the same on both sides unless the two see different lowers here.
                if (!a.LowerDirs.SequenceEqual(b.LowerDirs, StringComparer.Ordinal))
                {
                    EnqueueChildren(a, rel, Enqueue);
                    EnqueueChildren(b, rel, Enqueue);
                }
            }
            else if (a.IsDirectory || b.IsDirectory)
            {
                changed.Add(rel);
                EnqueueChildren(a.IsDirectory ? a : b, rel, Enqueue);
            }
            else if (Differ(a, b))
            {
                changed.Add(rel);
            }
        }
        return new DiffResult(Sorted(added, mountPoint), Sorted(removed, mountPoint), Sorted(changed, mountPoint));
    }

    /// <summary>
    /// A path as the merged view shows it: the layer whose entry wins and, for a directory, each
    /// layer whose directory is merged into it (0 = upper). Every layer holds it at the same
    /// relative path <paramref name="Rel"/>: Forkbox mounts without redirect_dir.
    /// </summary>
    internal sealed record Resolved(LayerFiles Upper, LayerFiles Layer, string Rel, FileStat Stat, List<LayerFiles>? Chain)
    {
        public bool IsDirectory => Chain is not null;

        public IEnumerable<string> LowerDirs => Chain!.Where(l => l != Upper).Select(l => l.Dir);
    }

    internal static Resolved? Resolve(List<LayerFiles> stack, string rel)
    {
        if (rel.Length == 0) return new Resolved(stack[0], stack[0], rel, stack[0].TryLstat("") ?? throw new DirectoryNotFoundException($"{stack[0].Dir} does not exist"), [.. stack]);
        var chain = stack;
        var parts = rel.Split('/');
        for (var i = 0; i < parts.Length; i++)
        {
            var sub = string.Join('/', parts, 0, i + 1);
            Resolved? found = null;
            var next = new List<LayerFiles>();
            foreach (var layer in chain)
            {
                if (layer.TryLstat(sub) is not { } st) continue;
                if (found is null)
                {
                    if (st.IsWhiteout) return null;
                    if (st.Type != UnixFileType.Directory)
                    {
                        found = new Resolved(stack[0], layer, sub, st, null);
                        break;
                    }
                    found = new Resolved(stack[0], layer, sub, st, next);
                }
                else if (st.Type != UnixFileType.Directory)
                {
                    break; // a whiteout or a file below a directory ends the merge there
                }
                next.Add(layer);
                if (IsOpaque(layer, sub)) break;
            }
            if (found is null) return null;
            if (i == parts.Length - 1) return found;
            if (!found.IsDirectory) return null; // a file where a directory would be: nothing below it
            chain = next;
        }
        return null;
    }

    internal static bool IsOpaque(LayerFiles layer, string rel) => layer.DirectoryAttribute(rel, Opaque) is [(byte)'y'];

    /// <summary>Every name in the merged directory (whiteouts among them: resolving them says they are absent).</summary>
    private static void EnqueueChildren(Resolved dir, string rel, Action<string> enqueue)
    {
        if (!dir.IsDirectory) return;
        foreach (var layer in dir.Chain!)
            foreach (var name in layer.Names(rel))
                enqueue(rel.Length == 0 ? name : rel + "/" + name);
    }

    private static void WalkUpper(LayerFiles upper, string rel, Action<string> add)
    {
        if (upper.TryLstat(rel) is not { } st) return;
        if (rel.Length > 0) add(rel);
        if (st.Type != UnixFileType.Directory) return;
        foreach (var name in upper.Names(rel))
            WalkUpper(upper, rel.Length == 0 ? name : rel + "/" + name, add);
    }

    private static bool Differ(Resolved a, Resolved b)
    {
        if ((a.Layer == b.Layer && a.Rel == b.Rel) || (a.Stat.Device == b.Stat.Device && a.Stat.Inode == b.Stat.Inode)) return false;
        if (a.Stat.Type != b.Stat.Type || a.Stat.Permissions != b.Stat.Permissions) return true;
        return a.Stat.Type switch
        {
            UnixFileType.RegularFile => a.Stat.Size != b.Stat.Size || (a.Stat.MtimeNs != b.Stat.MtimeNs && !SameBytes(a, b)),
            UnixFileType.SymbolicLink => a.Layer.ReadLink(a.Rel) != b.Layer.ReadLink(b.Rel),
            UnixFileType.CharacterDevice or UnixFileType.BlockDevice => (a.Stat.RdevMajor, a.Stat.RdevMinor) != (b.Stat.RdevMajor, b.Stat.RdevMinor),
            _ => false,
        };
    }

    private static bool SameBytes(Resolved a, Resolved b)
    {
        using var fa = a.Layer.TryOpenRegularFile(a.Rel);
        using var fb = b.Layer.TryOpenRegularFile(b.Rel);
        if (fa is null || fb is null) return false; // no longer a file: changed since it was looked at
        var ba = new byte[65536];
        var bb = new byte[65536];
        while (true)
        {
            var n = fa.ReadAtLeast(ba, ba.Length, throwOnEndOfStream: false);
            var m = fb.ReadAtLeast(bb, bb.Length, throwOnEndOfStream: false);
            if (n != m || !ba.AsSpan(0, n).SequenceEqual(bb.AsSpan(0, m))) return false;
            if (n < ba.Length) return true;
        }
    }

    /// <summary>"root/x" for "/root/x" under mount point "/"; "" for the mount's root; null outside it.</summary>
    private static string? RelativeToMount(string path, string mountPoint)
    {
        if (!path.StartsWith('/')) throw new ArgumentException($"'{path}' is not an absolute path inside the sandbox", nameof(path));
        var parts = new List<string>();
        foreach (var part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == "..") throw new ArgumentException($"'{path}' must not contain '..'", nameof(path));
            if (part != ".") parts.Add(part);
        }
        var normal = string.Join('/', parts);
        var mount = mountPoint.Trim('/');
        if (mount.Length == 0) return normal;
        if (normal == mount) return "";
        return normal.StartsWith(mount + "/", StringComparison.Ordinal) ? normal[(mount.Length + 1)..] : null;
    }

    private static List<string> Sorted(List<string> rels, string mountPoint)
    {
        var prefix = "/" + mountPoint.Trim('/');
        var result = rels.Select(r => prefix == "/" ? "/" + r : prefix + "/" + r).ToList();
        result.Sort(StringComparer.Ordinal);
        return result;
    }
}
