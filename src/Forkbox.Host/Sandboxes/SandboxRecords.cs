using Forkbox.Core;
using Forkbox.Linux.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// What survives a restart of hostd: each sandbox's record in <see cref="SandboxStore"/> and the
/// saved states under DATA/sandboxes/.spaces/ID. A failed write is logged, never thrown: the
/// sandbox works without its record; it would only be missing after a restart.
/// </summary>
public sealed partial class SandboxRecords(SandboxStore store, SandboxRegistry registry, SandboxLayers layers, BackgroundWork background,
    string spacesDir, ILogger<SandboxRecords> log)
{
    private readonly ILogger _log = log;

    public SandboxStore Store => store;

    /// <summary>The directory of an id's saved states.</summary>
    public string SpacesDir(string id) => Path.Combine(spacesDir, id);

    /// <summary>Records a sandbox's new state, committed before this returns (a restart brings it back, or reports it lost).</summary>
    public void Save(Sandbox sb)
    {
        try
        {
            store.Save(sb.ToRecord());
        }
        catch (Exception e) when (e is SqliteException or IOException)
        {
            LogStoreFailed(sb.Id, e);
        }
    }

    /// <summary>Forgets an id for good: its record, its name and its saved state.</summary>
    public void Forget(string id, string owner, string? name)
    {
        try
        {
            store.Delete(id);
        }
        catch (Exception e)
        {
            LogStoreFailed(id, e);
        }
        registry.ReleaseName(owner, name, id);
        var dir = SpacesDir(id);
        if (Directory.Exists(dir)) background.Track(layers.RemoveAsync(new SandboxLayerDirs(dir, dir, [])));
    }

    /// <summary>Records that a sandbox's processes are gone for good, and whether its last saved state remains.</summary>
    public SandboxRecord MarkLost(Sandbox sb, string reason)
    {
        var rec = sb.ToRecord(SandboxState.Lost) with
        {
            LostReason = LostReason(reason, sb.Checkpoint?.Image is not null ? sb.Checkpoint.HibernatedAt : null),
        };
        try
        {
            store.Save(rec);
        }
        catch (Exception e)
        {
            LogStoreFailed(sb.Id, e);
        }
        return rec;
    }

    /// <summary>Why a sandbox is lost, and what the client can do: resume its checkpoint if there is one, else start over.</summary>
    public static string LostReason(string why, DateTimeOffset? checkpointAt) => checkpointAt is { } at
        ? $"{why}; resume brings back its last hibernated state, from {at:u}"
        : $"{why}; delete it and create a new one";

    [LoggerMessage(EventId = 3207, Level = LogLevel.Warning, Message = "sandbox {SandboxId}: its record could not be written")]
    private partial void LogStoreFailed(string sandboxId, Exception error);
}
