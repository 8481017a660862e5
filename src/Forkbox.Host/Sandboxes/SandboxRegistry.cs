using System.Collections.Concurrent;
using Forkbox.Core.Errors;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Which sandboxes this server holds, and the only writer of those maps: the live sandboxes by id
/// and by their PID 1, the frozen records (hibernated, and lost ones: a restart found them running),
/// and each owner's names. The moves between live and frozen are single methods here, so no id is
/// in neither map while it moves. Thread-safe; a lookup may miss a sandbox that is moving.
/// </summary>
public sealed class SandboxRegistry
{
    /// <summary>What holds a name while its sandbox is being made (the id is not known until then).</summary>
    public const string CreatingPrefix = "creating-";

    private readonly ConcurrentDictionary<string, Sandbox> _live = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, Sandbox> _byPid = new();
    private readonly ConcurrentDictionary<string, SandboxRecord> _frozen = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _names = new(StringComparer.Ordinal);
    private readonly Lock _merge = new();

    /// <summary>What every lookup of an unknown id answers.</summary>
    public static NotFoundException NotFound(string id) => new(NotFoundMessage(id));

    public static string NotFoundMessage(string id) => $"sandbox '{id}' not found (it may have been closed or have expired)";

    /// <summary>A live sandbox (paused ones included); a frozen one is a 409 that says to resume it.</summary>
    public Sandbox Get(string id) =>
        _live.TryGetValue(id, out var sb) ? sb
        : _frozen.TryGetValue(id, out var r) ? throw new ConflictException($"sandbox '{id}' is {r.State}; resume it first (POST /v1/sandboxes/{id}/resume)", "wrong_state")
        : throw NotFound(id);

    // ---- live ----------------------------------------------------------------------------------

    public IEnumerable<Sandbox> Live => _live.Values;
    public int LiveCount => _live.Count;
    public bool TryGetLive(string id, out Sandbox sb) => _live.TryGetValue(id, out sb!);
    public bool IsLive(string id) => _live.ContainsKey(id);

    public void AddLive(Sandbox sb) => _live[sb.Id] = sb;

    public bool TryRemoveLive(string id, out Sandbox sb) => _live.TryRemove(id, out sb!);

    /// <summary>Removes <paramref name="id"/> only if it is still <paramref name="sb"/> (a merge may have put another in its place).</summary>
    public bool RemoveLive(string id, Sandbox sb) => _live.TryRemove(new KeyValuePair<string, Sandbox>(id, sb));

    /// <summary>
    /// merge_into: <paramref name="winner"/> takes <paramref name="target"/>'s id, if both are still
    /// listed as themselves; <paramref name="adopt"/> runs in between, under the same lock.
    /// </summary>
    public bool TryMerge(Sandbox target, Sandbox winner, Action adopt)
    {
        lock (_merge)
        {
            var targetId = target.Id;
            if (!_live.TryGetValue(targetId, out var t) || t != target || !_live.TryGetValue(winner.Id, out var w) || w != winner)
                return false;
            _live.TryRemove(winner.Id, out _);
            adopt();
            _live[targetId] = winner;
            return true;
        }
    }

    // ---- PID 1s --------------------------------------------------------------------------------

    public void TrackPid(int pid, Sandbox sb) => _byPid[pid] = sb;
    public void ForgetPid(int pid) => _byPid.TryRemove(pid, out _);
    public bool TryGetByPid(int pid, out Sandbox sb) => _byPid.TryGetValue(pid, out sb!);
    /// <summary>Every sandbox whose processes hostd still holds: clients', the pools', those being made or warmed up.</summary>
    public IEnumerable<Sandbox> Tracked => _byPid.Values;

    // ---- frozen --------------------------------------------------------------------------------

    public IEnumerable<SandboxRecord> Frozen => _frozen.Values;
    public bool TryGetFrozen(string id, out SandboxRecord rec) => _frozen.TryGetValue(id, out rec!);
    public SandboxRecord? FrozenOrNull(string id) => _frozen.GetValueOrDefault(id);
    public bool IsFrozen(string id) => _frozen.ContainsKey(id);

    public void AddFrozen(SandboxRecord rec) => _frozen[rec.Id] = rec;
    public bool TryRemoveFrozen(string id, out SandboxRecord rec) => _frozen.TryRemove(id, out rec!);

    /// <summary>A live sandbox stopped and became its record (hibernated, or lost when that failed).</summary>
    public void Freeze(Sandbox sb, SandboxRecord rec)
    {
        _frozen[rec.Id] = rec;
        RemoveLive(rec.Id, sb);
    }

    /// <summary>A frozen record came back as a live sandbox.</summary>
    public void Thaw(Sandbox sb)
    {
        _live[sb.Id] = sb;
        _frozen.TryRemove(sb.Id, out _);
    }

    // ---- owners and names ----------------------------------------------------------------------

    private static string NameKey(string owner, string name) => owner + "\n" + name;

    /// <summary>Claims a name for an id; 409 while another sandbox of the owner (frozen or lost ones included) holds it.</summary>
    public void ReserveName(string owner, string? name, string id)
    {
        if (name is null) return;
        var holder = _names.GetOrAdd(NameKey(owner, name), id);
        if (holder != id)
            throw new ConflictException(holder.StartsWith(CreatingPrefix, StringComparison.Ordinal)
                ? $"a sandbox named '{name}' is being created by another request; choose another name or find it with GET /v1/sandboxes?name={name}"
                : $"a sandbox named '{name}' already exists ({holder}); delete it first or choose another name", "name_taken");
    }

    /// <summary>Gives the owner's name to <paramref name="id"/> (its reservation was made under a placeholder, or a restart found it).</summary>
    public void SetName(string owner, string? name, string id)
    {
        if (name is not null) _names[NameKey(owner, name)] = id;
    }

    /// <summary>Releases a name, only if <paramref name="id"/> still holds it.</summary>
    public void ReleaseName(string owner, string? name, string id)
    {
        if (name is not null) _names.TryRemove(new KeyValuePair<string, string>(NameKey(owner, name), id));
    }

    public bool TryGetNamed(string owner, string name, out string id) => _names.TryGetValue(NameKey(owner, name), out id!);

    /// <summary>The owner of a sandbox this server holds, live or frozen; null for an unknown id.</summary>
    public string? OwnerOf(string id) =>
        _live.TryGetValue(id, out var sb) ? sb.Owner : _frozen.TryGetValue(id, out var r) ? r.Owner : null;

    /// <summary>Owner → ids of every sandbox held for it, live and frozen.</summary>
    public Dictionary<string, List<string>> IdsByOwner()
    {
        var byOwner = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        void Add(string owner, string id)
        {
            if (!byOwner.TryGetValue(owner, out var ids)) byOwner[owner] = ids = [];
            ids.Add(id);
        }
        foreach (var (id, sb) in _live) Add(sb.Owner, id);
        foreach (var (id, r) in _frozen) Add(r.Owner, id);
        return byOwner;
    }
}
