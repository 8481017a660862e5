using Forkbox.Hosting.Auth;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// The sandboxes made before the first API key (owner "local"): once keys exist no request is
/// "local", so no key could list, reach or delete them, and Spaces among them never expire. A key
/// created with `--adopt-local` becomes their owner; without one, the operator is told which they
/// are and the command that reclaims them. Checked at start-up and whenever the keys file changes.
/// </summary>
public sealed partial class UnownedSandboxes(SandboxManager manager, ILogger<UnownedSandboxes> log)
{
    private readonly ILogger _log = log;
    private readonly Lock _check = new();

    /// <summary>Hands the unowned sandboxes to the first of <paramref name="all"/> that adopts them, else logs them; nothing to do without keys.</summary>
    public void Check(IReadOnlyCollection<ApiKey> all)
    {
        lock (_check)
        {
            if (all.Count == 0) return;
            foreach (var key in all.Where(k => k.AdoptLocal).OrderBy(k => k.Name, StringComparer.Ordinal))
                if (manager.AdoptLocal(key.Name) is { Count: > 0 } adopted)
                    LogAdopted(key.Name, adopted.Count, string.Join(", ", adopted));
            var left = manager.Unowned();
            if (left.Count == 0) return;
            const int shown = 20;
            var listed = string.Join(", ", left.Take(shown).Select(i => i.Persistent == true ? $"{i.Id} (Space{(i.Name is { } n ? $" '{n}'" : "")})" : i.Id))
                         + (left.Count > shown ? $" and {left.Count - shown} more" : "");
            LogUnowned(left.Count, left.Count(i => i.Persistent == true), listed);
        }
    }

    [LoggerMessage(EventId = 3291, Level = LogLevel.Warning, Message = "key {Owner} adopted {Count} sandboxes made before the first API key: {Ids}")]
    private partial void LogAdopted(string owner, int count, string ids);

    [LoggerMessage(EventId = 3292, Level = LogLevel.Warning, Message = "{Count} sandboxes ({Spaces} of them Spaces, which never expire) were made before the first API key " +
        "and no key can list, reach or delete them: {Ids}. Reclaim them with `forkbox keys create --name NAME --adopt-local` " +
        "(a new key that owns them; a running server hands them over within a second)")]
    private partial void LogUnowned(int count, int spaces, string ids);
}
