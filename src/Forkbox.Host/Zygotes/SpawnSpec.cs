using Forkbox.Core.Templates;
using Forkbox.Linux.Namespaces;
using Forkbox.Linux.Storage;

namespace Forkbox.Host.Zygotes;

/// <summary>Everything a zygote's child needs to become one sandbox (see forkbox_agent/isolate.py).</summary>
public sealed record SpawnSpec(
    string Id,
    string Token,
    string AgentSocket,
    UserNamespaceSlot Slot,
    IReadOnlyList<string> CgroupProcs,
    SandboxLayerDirs Dirs,
    TemplateDefinition Template,
    int TmpSizeMb,
    IReadOnlyDictionary<string, string>? Env,
    bool Foreground);

/// <summary>The zygote's answer: the sandbox's PID 1 as the host sees it, or why set-up failed.</summary>
public sealed record SpawnResult(bool Ok, int Pid, double SetupMs, IReadOnlyDictionary<string, double>? Steps, string? Error);

/// <summary>One fork to finish: its id and token, its PID 1 on the host, and its (not yet filled) layer directories.</summary>
public sealed record GraftChild(string Id, string Token, int Pid, SandboxLayerDirs Dirs);

/// <summary>Everything the zygote needs to finish the forks of one parent (see forkbox_agent/graft.py).</summary>
public sealed record GraftSpec(
    string Id,
    string Strategy,
    string AgentSocket,
    TemplateDefinition Template,
    SandboxLayerDirs ParentDirs,
    int TmpSizeMb,
    string UserNamespace,
    IReadOnlyList<GraftChild> Children);

/// <summary>The zygote's answer to a graft: the helpers' step timings, or why one failed.</summary>
public sealed record GraftResult(bool Ok, IReadOnlyDictionary<string, double>? Steps, string? Error);

/// <summary>
/// Copy a hibernated sandbox's saved upper directories (<paramref name="Sources"/>) into a new
/// sandbox's (<paramref name="Dirs"/>, not yet made), re-owned from one uid range to another.
/// </summary>
public sealed record RestoreSpec(string Id, string Strategy, IReadOnlyList<string> Sources, SandboxLayerDirs Dirs, long UidFrom, long UidTo);
