using Forkbox.Linux.Storage;

namespace Forkbox.Host.Templates;

/// <summary>
/// The bytes of a tree's regular files as they are on disk: a file with several hard links
/// (Debian's python3.11 and its versioned name) is counted once, and, since the walk never
/// follows a symlink, a link to a directory adds nothing.
/// </summary>
public sealed class TreeSize
{
    private readonly HashSet<(ulong Device, ulong Inode)> _seen = [];

    public long Bytes { get; private set; }

    public void Add(FileStat stat)
    {
        if (stat.Links <= 1 || _seen.Add((stat.Device, stat.Inode))) Bytes += stat.Size;
    }

    /// <summary>The size of the tree under <paramref name="dir"/> (a path of hostd's).</summary>
    public static long Of(string dir)
    {
        var size = new TreeSize();
        using var tree = new LayerFiles(dir);
        foreach (var (_, stat) in tree.Entries())
            if (stat.Type == UnixFileType.RegularFile) size.Add(stat);
        return size.Bytes;
    }
}
