using System.Text.Json;
using System.Text.Json.Serialization;

namespace Forkbox.Core.Wire;

// The HTTP API's JSON shapes, shared by the host and the C# SDK. Property names are snake_case on the wire.

/// <summary>Body of POST /v1/sandboxes. Every field is optional; an empty body is valid.</summary>
public sealed record CreateSandboxRequest
{
    public string? Template { get; init; }
    public double? TimeoutS { get; init; }
    public int? MemoryMb { get; init; }
    public double? Cpus { get; init; }
    public Dictionary<string, string>? Env { get; init; }
    public Dictionary<string, string>? Metadata { get; init; }
    /// <summary>A Space: not reaped at timeout_s; freezes when idle (paused, then hibernated) and survives a server restart.</summary>
    public bool? Persistent { get; init; }
    /// <summary>A name unique per owner (API key), for persistent sandboxes: GET /v1/sandboxes?name= finds it.</summary>
    public string? Name { get; init; }
    /// <summary>Idle seconds before a persistent sandbox is paused.</summary>
    public double? IdleTimeoutS { get; init; }
    /// <summary>Idle seconds before a persistent sandbox is hibernated (counted from its last call, like idle_timeout_s).</summary>
    public double? HibernateAfterS { get; init; }
    /// <summary>Quota of the writable layer (files the sandbox writes, /tmp included), in MB.</summary>
    public int? DiskMb { get; init; }
    /// <summary>"none" (loopback only, the default) or "egress" (an address of its own, NAT through the host).</summary>
    public string? Network { get; init; }
    /// <summary>With "egress": destinations (CIDRs or host names) it may reach, or may not.</summary>
    public NetworkPolicy? NetworkPolicy { get; init; }
}

/// <summary>
/// An egress policy. Entries are IPv4 addresses, CIDRs or host names (resolved once, at create; the
/// answers are pinned in the sandbox's /etc/hosts). Deny wins over allow; an empty or absent allow
/// list allows everything not denied. The host, link-local addresses and other sandboxes stay denied
/// whatever the policy says.
/// </summary>
public sealed record NetworkPolicy
{
    public IReadOnlyList<string>? Allow { get; init; }
    public IReadOnlyList<string>? Deny { get; init; }
}

/// <summary>Body of POST /v1/sandboxes/{id}/ports/{port}/url.</summary>
public sealed record PortUrlRequest
{
    /// <summary>How long the URL works; 3600 when absent.</summary>
    public double? ExpiresInS { get; init; }
}

/// <summary>A signed URL to a sandbox's port: works without an API key until it expires.</summary>
public sealed record PortUrlResponse(string Url, DateTimeOffset ExpiresAt);

public sealed record LimitsInfo(int MemoryMb, double Cpus, int Pids, int? DiskMb = null);

/// <summary>A sandbox as the API reports it.</summary>
public sealed record SandboxInfo
{
    public required string Id { get; init; }
    public required string State { get; init; }
    public required string Template { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }
    /// <summary>When the sandbox is closed for its timeout_s; absent for persistent sandboxes, which never expire.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }
    public Dictionary<string, string> Metadata { get; init; } = new();
    public bool? Persistent { get; init; }
    public string? Name { get; init; }
    public double? IdleTimeoutS { get; init; }
    public double? HibernateAfterS { get; init; }
    public DateTimeOffset? LastActiveAt { get; init; }
    /// <summary>Why the sandbox is lost, and whether resume can bring back its last hibernated state.</summary>
    public string? LostReason { get; init; }
    /// <summary>Disk held by the sandbox's last hibernated state (its checkpoint), when it has one.</summary>
    public long? HibernatedBytes { get; init; }
    public LimitsInfo? Limits { get; init; }
    /// <summary>Why the sandbox is dead, when it is.</summary>
    public string? DeadReason { get; init; }
    /// <summary>Processes the kernel killed for memory in this sandbox so far.</summary>
    public long? OomKills { get; init; }
    public long? MemoryBytes { get; init; }
    /// <summary>Disk its writable layer takes, where the host enforces disk quotas (see capacity's disk_quota).</summary>
    public long? DiskBytes { get; init; }
    public Dictionary<string, double>? TimingsMs { get; init; }
    /// <summary>Whether create took a ready sandbox from the template's warm pool.</summary>
    public bool? PoolHit { get; init; }
    /// <summary>Extension: the sandbox this one is a fork of.</summary>
    public string? ForkedFrom { get; init; }
    /// <summary>Extension: the live forks of this sandbox.</summary>
    public IReadOnlyList<string>? Children { get; init; }
    /// <summary>"none" or "egress".</summary>
    public string? Network { get; init; }
    public NetworkPolicy? NetworkPolicy { get; init; }
    /// <summary>The sandbox's own address, with egress.</summary>
    public string? Address { get; init; }
    /// <summary>Bytes the sandbox sent and received on its network link (egress only; loopback is not counted).</summary>
    public long? NetSentBytes { get; init; }
    public long? NetReceivedBytes { get; init; }
}

/// <summary>
/// The reply of POST /v1/sandboxes/{id}/pause, /hibernate and /resume: the state now, what was
/// saved or restored and what was not (names, with the reason), and where the time went.
/// </summary>
public sealed record LifecycleResponse
{
    public required string Id { get; init; }
    public required string State { get; init; }
    /// <summary>resume: the state it resumed from ("paused", "hibernated" or "lost").</summary>
    public string? ResumedFrom { get; init; }
    /// <summary>hibernate: the REPL globals written to disk; resume: those restored.</summary>
    public IReadOnlyList<string>? Saved { get; init; }
    public IReadOnlyList<string>? Restored { get; init; }
    /// <summary>Globals, modules, threads and processes that did not survive, each with the reason.</summary>
    public Dictionary<string, string>? NotRestored { get; init; }
    /// <summary>Modules imported again on resume.</summary>
    public IReadOnlyList<string>? Modules { get; init; }
    /// <summary>hibernate: bytes written (writable layer plus REPL state).</summary>
    public long? Bytes { get; init; }
    /// <summary>hibernate: memory the sandbox held before it was freed.</summary>
    public long? MemoryFreedBytes { get; init; }
    public Dictionary<string, double>? TimingsMs { get; init; }
}

/// <summary>Body of POST /v1/sandboxes/{id}/fork.</summary>
public sealed record ForkRequest
{
    /// <summary>How many forks, 1 to 32; 1 when absent.</summary>
    public int? N { get; init; }
}

public sealed record ForkResponse(IReadOnlyList<string> Children);

/// <summary>Body of POST /v1/sandboxes/{id}/timeout: the sandbox expires timeout_s seconds from now.</summary>
public sealed record SetTimeoutRequest
{
    public double? TimeoutS { get; init; }
}

/// <summary>GET /v1/sandboxes/{a}/diff/{b}: paths inside the sandboxes, sorted.</summary>
public sealed record DiffResponse(IReadOnlyList<string> Added, IReadOnlyList<string> Removed, IReadOnlyList<string> Changed);

public sealed record SandboxList(IReadOnlyList<SandboxInfo> Sandboxes);

/// <summary>Body of POST /v1/sandboxes/{id}/exec.</summary>
public sealed record ExecRequest
{
    public string? Code { get; init; }
    /// <summary>"python" (default: the persistent REPL) or "bash" (a fresh subprocess).</summary>
    public string? Language { get; init; }
    public double? TimeoutS { get; init; }
    public Dictionary<string, string>? Env { get; init; }
    public string? Cwd { get; init; }
    /// <summary>Extension: also send result and error events.</summary>
    public bool? Rich { get; init; }
    /// <summary>Whether the call is interrupted when its client closes the stream (default true); false lets it run to its end.</summary>
    public bool? InterruptOnDisconnect { get; init; }
}

/// <summary>The answer of POST /v1/sandboxes/{id}/interrupt: whether an exec was running to interrupt.</summary>
public sealed record InterruptResponse(bool Interrupted);

/// <summary>One NDJSON line of an exec stream: stdout, stderr, result, display, error or exit.</summary>
public sealed record ExecEvent
{
    public required string Type { get; init; }
    public JsonElement Data { get; init; }
    /// <summary>A result's: "json" when <see cref="Data"/> is the value itself, "repr" when it is the value's repr.</summary>
    public string? DataKind { get; init; }
    /// <summary>
    /// A result's or a display's MIME bundle: MIME type (text/plain, text/html, image/png,
    /// image/svg+xml, application/json, …) → its content, text or base64 for binary types, a JSON
    /// value for application/json.
    /// </summary>
    public JsonElement? Mime { get; init; }
    public long Seq { get; init; }
    public long Ts { get; init; }
    public string? Name { get; init; }
    public string? Value { get; init; }
    public string? Traceback { get; init; }
    public bool? Timeout { get; init; }
}

public sealed record FileEntry(string Name, string Type, long Size, double Mtime);

public sealed record FileList(IReadOnlyList<FileEntry> Entries);

/// <summary>One template's warm pool: ready sandboxes, the size it is kept at, how fast it refills.</summary>
public sealed record PoolInfo
{
    public required string Template { get; init; }
    public required int Ready { get; init; }
    public required int Target { get; init; }
    /// <summary>The network mode its sandboxes are made with ("none" unless "egress").</summary>
    public string? Network { get; init; }
    /// <summary>Median server-side time to make one pooled sandbox, over the recent refills.</summary>
    public double? RefillMsP50 { get; init; }
    /// <summary>Sandboxes the refiller can make per second at that pace.</summary>
    public double? RefillPerS { get; init; }
}

/// <summary>A template as GET /v1/templates lists it.</summary>
public sealed record TemplateInfo
{
    public required string Name { get; init; }
    /// <summary>Built into the server (default, python-datasci) rather than built with `forkbox template build`.</summary>
    public required bool Builtin { get; init; }
    public long? SizeBytes { get; init; }
    public IReadOnlyList<string>? Preload { get; init; }
    public required PoolInfo Pool { get; init; }
}

public sealed record TemplateList(IReadOnlyList<TemplateInfo> Templates);

/// <summary>Body of PUT /v1/templates/{name}/pool.</summary>
public sealed record PoolSizeRequest
{
    public int? Size { get; init; }
}

public sealed record CapacityInfo
{
    public required string Region { get; init; }
    public required int Running { get; init; }
    public required int Maximum { get; init; }
    public required string IsolationBackend { get; init; }
    public required int CgroupVersion { get; init; }
    public required string StorageStrategy { get; init; }
    /// <summary>Extension: closed sandboxes kept until their forks end (their PID 1 and layers).</summary>
    public int? Retired { get; init; }
    /// <summary>Extension: how sandboxes' disk_mb is enforced ("xfs project quota"), or "none".</summary>
    public string? DiskQuota { get; init; }
    /// <summary>Extension: persistent sandboxes paused in memory, and hibernated to disk.</summary>
    public int? Paused { get; init; }
    public int? Hibernated { get; init; }
    /// <summary>Extension: disk held by hibernated states (checkpoints).</summary>
    public long? HibernatedBytes { get; init; }
    /// <summary>The filesystem under the sandbox layers: "ext4", "btrfs", "xfs", ….</summary>
    public string? StorageFilesystem { get; init; }
    public required IReadOnlyList<string> Templates { get; init; }
    public IReadOnlyList<PoolInfo>? Pools { get; init; }
    /// <summary>Extension, from an edge: each host in rotation (the sums above are over them).</summary>
    public IReadOnlyList<HostCapacity>? Hosts { get; init; }
}

/// <summary>One host as an edge's GET /v1/capacity reports it.</summary>
public sealed record HostCapacity(string HostId, string Region, string? Continent, int Running, int Maximum);

/// <summary>Every non-2xx body: {"error": "what went wrong and what to do", "code": "machine_code"}.</summary>
public sealed record ErrorBody(string Error, string Code);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(CreateSandboxRequest))]
[JsonSerializable(typeof(SandboxInfo))]
[JsonSerializable(typeof(SandboxList))]
[JsonSerializable(typeof(ExecRequest))]
[JsonSerializable(typeof(InterruptResponse))]
[JsonSerializable(typeof(ExecEvent))]
[JsonSerializable(typeof(FileList))]
[JsonSerializable(typeof(CapacityInfo))]
[JsonSerializable(typeof(ErrorBody))]
[JsonSerializable(typeof(PoolInfo))]
[JsonSerializable(typeof(TemplateList))]
[JsonSerializable(typeof(PoolSizeRequest))]
[JsonSerializable(typeof(ForkRequest))]
[JsonSerializable(typeof(SetTimeoutRequest))]
[JsonSerializable(typeof(LifecycleResponse))]
[JsonSerializable(typeof(ForkResponse))]
[JsonSerializable(typeof(DiffResponse))]
[JsonSerializable(typeof(Forkbox.Core.Cluster.HostAnnouncement))]
[JsonSerializable(typeof(PortUrlRequest))]
[JsonSerializable(typeof(PortUrlResponse))]
public sealed partial class WireJson : JsonSerializerContext;
