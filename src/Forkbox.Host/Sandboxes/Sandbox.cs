using Forkbox.Core;
using Forkbox.Core.Templates;
using Forkbox.Core.Wire;
using Forkbox.Host.Agents;
using Forkbox.Linux.Cgroups;
using Forkbox.Linux.Namespaces;
using Forkbox.Linux.Storage;
using Forkbox.Hosting;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// One live sandbox and everything it holds: its PID 1 on the host, control connection, cgroup,
/// uid slot and layer directories. <see cref="SandboxFactory"/> is the single owner that releases them.
/// </summary>
public sealed class Sandbox
{
    private readonly Lock _deadLock = new();
    private string _state = SandboxState.Ready;

    /// <summary>Changes once at most: a merge_into winner takes over its target's id.</summary>
    public required string Id { get; set; }
    public required TemplateDefinition Template { get; init; }
    public required SandboxLimits Limits { get; set; }
    public required DateTimeOffset CreatedAt { get; set; }
    public required DateTimeOffset ExpiresAt { get; set; }
    public required Dictionary<string, string> Metadata { get; set; }

    /// <summary>The timeout_s that <see cref="ExpiresAt"/> was last set from (at create, or by POST /timeout), for the message of its expiry.</summary>
    public double TimeoutS { get; set; }

    /// <summary>The environment the client gave at create, which a restart gives the new interpreter again.</summary>
    public Dictionary<string, string>? Env { get; set; }

    /// <summary>The API key's name that created it ("local" on a server without keys); names are unique per owner.</summary>
    public string Owner { get; set; } = Owners.Local;
    public string? Name { get; set; }
    /// <summary>A Space: never expires; the idle policy pauses then hibernates it; it survives a restart.</summary>
    public bool Persistent { get; set; }
    public double? IdleTimeoutS { get; set; }
    public double? HibernateAfterS { get; set; }
    public int DiskMb { get; set; }

    /// <summary>The last hibernated state of this id, kept as a checkpoint while the sandbox runs again.</summary>
    public SandboxRecord? Checkpoint { get; set; }

    /// <summary>Serializes pause, hibernate and resume of this sandbox (calls take <see cref="AgentConnection.CallLock"/>).</summary>
    public SemaphoreSlim LifecycleLock { get; } = new(1, 1);

    private long _lastActive = TimeProvider.System.GetTimestamp();

    /// <summary>Marks a call starting or ending: the idle policy counts from the last one.</summary>
    public void Touch() => Volatile.Write(ref _lastActive, TimeProvider.System.GetTimestamp());

    /// <summary>When the last call started or ended, as a <see cref="TimeProvider.System"/> timestamp.</summary>
    public long LastActive => Volatile.Read(ref _lastActive);

    public TimeSpan IdleFor => TimeProvider.System.GetElapsedTime(LastActive);

    /// <summary>Whether the caller got it ready-made from the warm pool.</summary>
    public bool PoolHit { get; set; }
    public required int Pid { get; init; }
    public required AgentConnection Agent { get; init; }
    public required ICgroup Cgroup { get; init; }
    public required UserNamespaceSlot Slot { get; init; }
    public required SandboxLayerDirs Dirs { get; init; }
    public required Dictionary<string, double> TimingsMs { get; init; }

    /// <summary>"none" or "egress"; kept when the sandbox is hibernated, forked or resumed.</summary>
    public string NetworkMode { get; set; } = Forkbox.Core.NetworkModes.None;
    public NetworkPolicy? NetworkPolicy { get; set; }
    /// <summary>Its link and firewall entry while it runs with egress.</summary>
    public Networking.SandboxNetwork? Network { get; set; }

    /// <summary>The sandbox this one was forked from, and the id it had then.</summary>
    public Sandbox? Parent { get; set; }
    public string? ForkedFrom { get; set; }

    /// <summary>
    /// Forks of this sandbox until their resources are released (closed forks whose own forks
    /// still run included): while one is here, this sandbox's PID 1 must live. Guarded by itself.
    /// </summary>
    public List<Sandbox> Children { get; } = new();

    /// <summary>One of <see cref="SandboxState"/>; it changes only by the moves <see cref="SandboxLifecycle"/> allows.</summary>
    public string State => Volatile.Read(ref _state);

    /// <summary>Moves to <paramref name="to"/> from whatever the state is, if the table allows it; else throws (a conflict if it died or was hibernated meanwhile).</summary>
    public void MoveTo(string to)
    {
        if (!SandboxLifecycle.TryMoveTo(ref _state, to, out var from)) throw SandboxLifecycle.Refusal(this, from, to);
    }

    /// <summary>Moves from exactly <paramref name="from"/> to <paramref name="to"/>; false if the state is something else now.</summary>
    public bool TryMove(string from, string to)
    {
        if (!SandboxLifecycle.CanMove(from, to)) throw SandboxLifecycle.Refusal(this, from, to);
        return ReferenceEquals(Interlocked.CompareExchange(ref _state, to, from), from);
    }

    public string? DeadReason { get; private set; }

    public bool IsDead => State == SandboxState.Dead;

    /// <summary>Marks the sandbox dead once; later reasons are ignored. Returns whether this call did it.</summary>
    public bool TryMarkDead(string reason)
    {
        lock (_deadLock)
        {
            if (IsDead) return false;
            DeadReason = reason;
            MoveTo(SandboxState.Dead);
            return true;
        }
    }

    /// <summary>What the API reports: the record's view (in its live state, "running" included) and what only a live sandbox has.</summary>
    public SandboxInfo ToInfo(bool withUsage) => ToRecord(State).ToInfo() with
    {
        DeadReason = DeadReason,
        OomKills = withUsage ? Cgroup.OomKills() : null,
        MemoryBytes = withUsage ? Cgroup.MemoryBytes() : null,
        TimingsMs = TimingsMs,
        PoolHit = PoolHit,
        Children = LiveChildIds(),
        Address = Network?.Address,
        NetSentBytes = withUsage ? Network?.Link.SentBytes : null,
        NetReceivedBytes = withUsage ? Network?.Link.ReceivedBytes : null,
    };

    /// <summary>
    /// Takes on what an id keeps when another sandbox comes to answer to it (a merge_into winner, a
    /// resumed sandbox): owner, name, idle policy, metadata, times, parent and last saved state.
    /// Limits stay this sandbox's own.
    /// </summary>
    public void Adopt(SandboxRecord rec)
    {
        Owner = rec.Owner;
        Name = rec.Name;
        Persistent = rec.Persistent;
        IdleTimeoutS = rec.IdleTimeoutS;
        HibernateAfterS = rec.HibernateAfterS;
        Metadata = rec.Metadata;
        CreatedAt = rec.CreatedAt;
        ExpiresAt = rec.ExpiresAt ?? DateTimeOffset.MaxValue;
        ForkedFrom = rec.ParentId;
        Checkpoint = rec.Image is null ? null : rec;
    }

    /// <summary>The durable part, as <see cref="SandboxStore"/> keeps it; the checkpoint's image stays attached.</summary>
    public SandboxRecord ToRecord(string? state = null) => new()
    {
        Id = Id,
        Owner = Owner,
        Name = Name,
        Template = Template.Name,
        State = state ?? (State == SandboxState.Running ? SandboxState.Ready : State),
        Persistent = Persistent,
        MemoryMb = Limits.MemoryMb,
        Cpus = Limits.Cpus,
        Pids = Limits.Pids,
        DiskMb = DiskMb,
        Metadata = Metadata,
        ParentId = ForkedFrom,
        CreatedAt = CreatedAt,
        ExpiresAt = Persistent ? null : ExpiresAt,
        IdleTimeoutS = IdleTimeoutS,
        HibernateAfterS = HibernateAfterS,
        LastActiveAt = DateTimeOffset.UtcNow - IdleFor,
        Image = Checkpoint?.Image,
        ImageBytes = Checkpoint?.ImageBytes,
        ImageUidBase = Checkpoint?.ImageUidBase,
        HibernatedAt = Checkpoint?.HibernatedAt,
        NotSaved = Checkpoint?.NotSaved,
        Network = NetworkMode == Forkbox.Core.NetworkModes.None ? null : NetworkMode,
        NetworkPolicy = NetworkPolicy,
    };

    private List<string>? LiveChildIds()
    {
        lock (Children)
        {
            var ids = Children.Where(c => !c.IsDead).Select(c => c.Id).ToList();
            return ids.Count > 0 ? ids : null;
        }
    }
}
