using Forkbox.Core.Templates;

namespace Forkbox.Linux.Storage;

/// <summary>The directories of one sandbox's copy-on-write layers and its root mount point.</summary>
public sealed record SandboxLayerDirs(string Dir, string Root, IReadOnlyList<(string Upper, string Work)> Layers);

/// <summary>
/// Writable layers as overlayfs upper directories under DATA/sandboxes/ID. Creating one is a few
/// mkdirs; the overlay itself is mounted by the sandbox inside its own mount namespace, so it
/// disappears with the sandbox and nothing is ever mounted on the host. Removal renames the
/// directory away first so a new sandbox never races the (possibly slow) recursive delete.
/// With <see cref="StorageKind.Btrfs"/> each upper directory is a subvolume, so that a fork can
/// snapshot it; the other kinds use plain directories and copy (or clone) files on fork.
/// </summary>
public sealed class SandboxLayers(string sandboxesDir, StorageKind kind)
{
    private readonly string _trash = Path.Combine(sandboxesDir, ".trash");

    /// <summary>The directory under DATA/sandboxes that holds hibernated states, which a restart keeps.</summary>
    public const string SpacesDirName = ".spaces";

    public StorageKind Kind => kind;

    /// <summary>What `/v1/capacity` reports: "btrfs", "reflink" or "copy".</summary>
    public string Strategy => kind.Name();

    /// <summary>The directories of a new sandbox, with empty upper directories (subvolumes on btrfs).</summary>
    public SandboxLayerDirs Create(string id, TemplateDefinition template)
    {
        var dirs = Make(id, template);
        foreach (var (upper, _) in dirs.Layers)
        {
            if (kind == StorageKind.Btrfs) BtrfsSubvolume.Create(upper);
            else Directory.CreateDirectory(upper);
        }
        return dirs;
    }

    /// <summary>
    /// The directories of a forked sandbox: like <see cref="Create"/> but the upper directories
    /// are not made, because the snapshot of the parent's upper directories creates them.
    /// </summary>
    public SandboxLayerDirs CreateFork(string id, TemplateDefinition template) => Make(id, template);

    private SandboxLayerDirs Make(string id, TemplateDefinition template)
    {
        var dir = Path.Combine(sandboxesDir, id);
        var root = Path.Combine(dir, "root");
        Directory.CreateDirectory(root);
        var layers = new List<(string, string)>(template.Layers.Count);
        for (var i = 0; i < template.Layers.Count; i++)
        {
            var work = Path.Combine(dir, $"work{i}");
            Directory.CreateDirectory(work);
            layers.Add((Path.Combine(dir, $"upper{i}"), work));
        }
        return new SandboxLayerDirs(dir, root, layers);
    }

    /// <summary>Moves the sandbox's directory out of the way now and deletes it in the background.</summary>
    public Task RemoveAsync(SandboxLayerDirs dirs)
    {
        Directory.CreateDirectory(_trash);
        // Unique in the trash: the same id (a sandbox hibernated and resumed) may be removed again before the last delete ends.
        var target = Path.Combine(_trash, Path.GetFileName(dirs.Dir) + "." + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            Directory.Move(dirs.Dir, target);
        }
        catch (DirectoryNotFoundException)
        {
            return Task.CompletedTask;
        }
        return Task.Run(() => DeleteTree(target));
    }

    /// <summary>Deletes everything an earlier run left (crash or kill -9); returns how many sandboxes.</summary>
    public int RemoveStale()
    {
        if (!Directory.Exists(sandboxesDir)) return 0;
        var n = 0;
        foreach (var dir in Directory.GetDirectories(sandboxesDir))
        {
            if (Path.GetFileName(dir) == SpacesDirName) continue; // hibernated sandboxes: their records decide
            DeleteTree(dir);
            if (Path.GetFileName(dir) != ".trash") n++;
        }
        return n;
    }

    // Subvolumes and snapshots need no special case: as root, rmdir deletes an empty subvolume.
    // Through LayerFiles: a sandbox's process that outlived its kill could still swap a directory
    // of its layer for a symlink while the tree is deleted.
    private static void DeleteTree(string dir) => LayerFiles.DeleteTree(dir);
}
