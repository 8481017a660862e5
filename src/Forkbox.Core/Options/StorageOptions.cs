namespace Forkbox.Core.Options;

/// <summary>Where sandbox layers live and how forks snapshot them. Config section <c>Storage</c>.</summary>
public sealed record StorageOptions
{
    /// <summary>How forks snapshot writable layers: auto (the best DATA/sandboxes' filesystem can do), btrfs, reflink or copy.</summary>
    public string Strategy { get; init; } = "auto";
    /// <summary>When set, a sparse image file of this size (DATA/storage.img) is made and loop-mounted on DATA/sandboxes.</summary>
    public long? ImageBytes { get; init; }
    /// <summary>The filesystem of the storage image: btrfs (snapshots) or xfs (made with reflink=1).</summary>
    public string ImageFs { get; init; } = "btrfs";

    /// <summary>The smallest storage image: xfs refuses less than 300 MiB, and sandboxes need room.</summary>
    public const long MinImageBytes = 512L << 20;

    internal void Validate()
    {
        ServerOptions.Require(Strategy.ToLowerInvariant() is "auto" or "btrfs" or "reflink" or "copy",
            $"storage '{Strategy}' must be auto, btrfs, reflink or copy");
        ServerOptions.Require(ImageBytes is null or >= MinImageBytes,
            $"storage_image_bytes {ImageBytes} is too small: the storage image must be at least 512M");
        ServerOptions.Require(ImageFs.ToLowerInvariant() is "btrfs" or "xfs",
            $"storage_image_fs '{ImageFs}' must be btrfs or xfs");
    }
}
