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
    IReadOnlyDictionary<string, string>? Env);

/// <summary>The zygote's answer: the sandbox's PID 1 as the host sees it, or why set-up failed.</summary>
public sealed record SpawnResult(bool Ok, int Pid, double SetupMs, IReadOnlyDictionary<string, double>? Steps, string? Error);
