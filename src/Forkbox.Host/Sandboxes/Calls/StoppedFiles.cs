using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Linux.Storage;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// GET files and files/list of a dead sandbox: no agent is left to ask, but its writable layers are
/// on disk until it is deleted, so hostd reads them itself (<see cref="StoppedRoot"/>: descriptor-
/// relative, its symlinks followed only inside its own root) and answers what the live routes answer,
/// failures included (the agent's error codes, mapped the same way).
/// </summary>
public static class StoppedFiles
{
    /// <summary>The entries of a directory, as the agent lists them: sorted by name, symlinks not followed.</summary>
    public static FileList List(Sandbox sb, string path) => Read(sb, root => new FileList(root.List(path)
        .Select(e => new FileEntry(e.Name, e.Stat.Type switch
        {
            UnixFileType.Directory => "dir",
            UnixFileType.RegularFile => "file",
            UnixFileType.SymbolicLink => "symlink",
            _ => "other",
        }, e.Stat.Size, e.Stat.MtimeNs / 1e9)).ToList()));

    /// <summary>A regular file opened for reading (the caller disposes it), refused over <paramref name="max"/> bytes as the agent refuses it.</summary>
    public static FileStream Open(Sandbox sb, string path, long max) => Read(sb, root =>
    {
        var file = root.OpenRead(path, out var size);
        if (size <= max) return file;
        file.Dispose();
        throw AgentErrorCodes.Default.ToException("too_large", $"{path} is {size} bytes, over the limit of {max}");
    });

    private static T Read<T>(Sandbox sb, Func<StoppedRoot, T> read)
    {
        try
        {
            using var root = new StoppedRoot(sb.Template.Layers.Select((layer, i) =>
                (layer.Target, (IReadOnlyList<string>)[sb.Dirs.Layers[i].Upper, .. layer.LowerDir.Split(':')])));
            return read(root);
        }
        catch (StoppedRootException e)
        {
            throw AgentErrorCodes.Default.ToException(e.Code, e.Message);
        }
        catch (IOException e)
        {
            // Its layers moved (a restart or a delete) while this read them.
            throw new ConflictException($"sandbox '{sb.Id}' changed while its files were read ({e.Message}); retry", "wrong_state");
        }
    }
}
