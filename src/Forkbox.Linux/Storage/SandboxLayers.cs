using Forkbox.Core.Templates;

namespace Forkbox.Linux.Storage;

/// <summary>The directories of one sandbox's copy-on-write layers and its root mount point.</summary>
public sealed record SandboxLayerDirs(string Dir, string Root, IReadOnlyList<(string Upper, string Work)> Layers);

/// <summary>
/// Writable layers as overlayfs upper directories under DATA/sandboxes/ID. Creating one is a few
/// mkdirs; the overlay itself is mounted by the sandbox inside its own mount namespace, so it
/// disappears with the sandbox and nothing is ever mounted on the host. Removal renames the
/// directory away first so a new sandbox never races the (possibly slow) recursive delete.
/// </summary>
public sealed class SandboxLayers(string sandboxesDir)
{
    private readonly string _trash = Path.Combine(sandboxesDir, ".trash");

    /// <summary>What `/v1/capacity` reports: this is the plain-directory strategy.</summary>
    public string Strategy => "overlay";

    public SandboxLayerDirs Create(string id, TemplateDefinition template)
    {
        var dir = Path.Combine(sandboxesDir, id);
        var root = Path.Combine(dir, "root");
        Directory.CreateDirectory(root);
        var layers = new List<(string, string)>(template.Layers.Count);
        for (var i = 0; i < template.Layers.Count; i++)
        {
            var upper = Path.Combine(dir, $"upper{i}");
            var work = Path.Combine(dir, $"work{i}");
            Directory.CreateDirectory(upper);
            Directory.CreateDirectory(work);
            layers.Add((upper, work));
        }
        return new SandboxLayerDirs(dir, root, layers);
    }

    /// <summary>The directories of a fork: like <see cref="Create"/> but without the uppers, which are snapshots of its parent's.</summary>
    public SandboxLayerDirs CreateFork(string id, TemplateDefinition template)
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
        var target = Path.Combine(_trash, Path.GetFileName(dirs.Dir));
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
            DeleteTree(dir);
            if (Path.GetFileName(dir) != ".trash") n++;
        }
        return n;
    }

    private static void DeleteTree(string dir)
    {
        try
        {
            Directory.Delete(dir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
