using Forkbox.Core;
using Forkbox.Linux.Storage;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>What a restart of hostd finds of an earlier run's sandboxes, and what it makes of them.</summary>
public sealed partial class SpacesRecovery(SandboxRegistry registry, SandboxRecords records, SandboxLayers layers, BackgroundWork background,
    string spacesDir, ILogger<SpacesRecovery> log)
{
    private readonly ILogger _log = log;

    /// <summary>
    /// Loads the records an earlier run left: hibernated sandboxes stay resumable; those that were
    /// live are marked lost, saying why and whether their last hibernated state can be resumed.
    /// Saved states that no record points at (a hibernate cut short) are removed.
    /// </summary>
    public (int Hibernated, int Lost) Run()
    {
        var now = DateTimeOffset.UtcNow;
        int hibernated = 0, lost = 0;
        foreach (var r in records.Store.LoadAll())
        {
            var hasImage = r.Image is not null && Directory.Exists(Path.Combine(records.SpacesDir(r.Id), r.Image));
            var rec = r;
            if (r.State == SandboxState.Hibernated && hasImage)
            {
                hibernated++;
            }
            else if (!r.Persistent && r.ExpiresAt < now)
            {
                records.Store.Delete(r.Id);
                continue;
            }
            else if (r.State != SandboxState.Lost || (r.Image is not null && !hasImage))
            {
                var why = r.State switch
                {
                    SandboxState.Hibernated => $"its hibernated state is missing from {records.SpacesDir(r.Id)}",
                    SandboxState.Lost => $"it was lost, and its last hibernated state is missing from {records.SpacesDir(r.Id)}",
                    _ => $"the server restarted while the sandbox was {r.State} (last used {r.LastActiveAt:u}); its processes and memory did not survive",
                };
                rec = r with
                {
                    State = SandboxState.Lost,
                    LostReason = SandboxRecords.LostReason(why, hasImage ? r.HibernatedAt : null),
                    Image = hasImage ? r.Image : null,
                    ImageBytes = hasImage ? r.ImageBytes : null,
                };
                records.Store.Save(rec);
                lost++;
            }
            else
            {
                lost++;
            }
            registry.AddFrozen(rec);
            registry.SetName(rec.Owner, rec.Name, rec.Id);
        }
        if (Directory.Exists(spacesDir))
            foreach (var dir in Directory.GetDirectories(spacesDir))
            {
                registry.TryGetFrozen(Path.GetFileName(dir), out var rec);
                foreach (var gen in Directory.GetDirectories(dir))
                    if (rec?.Image != Path.GetFileName(gen))
                        background.Track(layers.RemoveAsync(new SandboxLayerDirs(gen, gen, [])));
                if (rec?.Image is null) background.Track(layers.RemoveAsync(new SandboxLayerDirs(dir, dir, [])));
            }
        if (hibernated + lost > 0) LogRecovered(hibernated, lost);
        return (hibernated, lost);
    }

    [LoggerMessage(EventId = 3208, Level = LogLevel.Warning, Message = "records of an earlier run: {Hibernated} hibernated sandboxes resumable, {Lost} lost")]
    private partial void LogRecovered(int hibernated, int lost);
}
