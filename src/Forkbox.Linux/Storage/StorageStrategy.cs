namespace Forkbox.Linux.Storage;

/// <summary>
/// How a sandbox's writable layer is snapshotted for a fork: a btrfs subvolume snapshot, a walk
/// that clones each file's extents (FICLONE, e.g. xfs with reflink=1), or a walk that copies bytes.
/// </summary>
public enum StorageKind
{
    Btrfs,
    Reflink,
    Copy,
}

/// <summary>The wire and configuration names of <see cref="StorageKind"/>: "btrfs", "reflink", "copy".</summary>
public static class StorageStrategy
{
    /// <summary>The setting that means "the best the sandboxes directory's filesystem can do".</summary>
    public const string Auto = "auto";

    public static string Name(this StorageKind kind) => kind switch
    {
        StorageKind.Btrfs => "btrfs",
        StorageKind.Reflink => "reflink",
        StorageKind.Copy => "copy",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    public static bool TryParse(string? name, out StorageKind kind)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case "btrfs": kind = StorageKind.Btrfs; return true;
            case "reflink": kind = StorageKind.Reflink; return true;
            case "copy": kind = StorageKind.Copy; return true;
            default: kind = default; return false;
        }
    }

    public static StorageKind Parse(string name) => TryParse(name, out var kind)
        ? kind
        : throw new ArgumentException($"unknown storage strategy '{name}': use btrfs, reflink or copy", nameof(name));
}
