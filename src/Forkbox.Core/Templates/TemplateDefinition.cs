namespace Forkbox.Core.Templates;

/// <summary>
/// A template: what a sandbox's root filesystem is made of and which modules its zygote imports.
/// A root filesystem is one or more read-only layers, each mounted at a target path under a
/// private copy-on-write layer. The default template is a small skeleton at "/" plus the host's
/// /usr at "/usr"; a template built into a directory is one layer at "/".
/// A template with a <see cref="RootDir"/> has a Python of its own: its zygote runs chrooted
/// into that directory (which every sandbox of it then sees as its lower layer "/").
/// </summary>
public sealed record TemplateDefinition(
    string Name,
    IReadOnlyList<TemplateLayer> Layers,
    IReadOnlyList<string> Preload,
    string Python,
    string? RootDir = null,
    long? SizeBytes = null);

/// <summary>
/// One read-only tree of a template, mounted at <paramref name="Target"/> inside the sandbox.
/// <paramref name="Writable"/> lists directories (relative to the target) that each sandbox gets
/// as its own, so that root inside can create files there.
/// </summary>
public sealed record TemplateLayer(string Target, string LowerDir, IReadOnlyList<WritableDir> Writable);

/// <summary>A directory a sandbox's root owns in its copy-on-write layer, with its mode.</summary>
public sealed record WritableDir(string Path, int Mode);
