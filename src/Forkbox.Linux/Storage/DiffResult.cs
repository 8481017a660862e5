namespace Forkbox.Linux.Storage;

/// <summary>
/// What differs between two sandboxes' filesystems, as sorted paths inside the sandbox: in B and
/// not in A (added), in A and not in B (removed), in both but different (changed: type, mode,
/// symlink target or content; directories are only ever added or removed).
/// </summary>
public sealed record DiffResult(IReadOnlyList<string> Added, IReadOnlyList<string> Removed, IReadOnlyList<string> Changed);
