using Forkbox.Core;
using Forkbox.Core.Templates;
using Forkbox.Host.Agents;
using Forkbox.Host.Sandboxes;
using Forkbox.Linux.Namespaces;
using Forkbox.Linux.Storage;

namespace Forkbox.Testing;

/// <summary>Sandbox objects with no processes, cgroup or layers behind them, for the pool, the creator and the calls without a kernel.</summary>
internal static class KernelFreeSandbox
{
    public static readonly TemplateDefinition Template = new("default", [], [], "/usr/bin/python3");

    /// <summary>A running sandbox of <see cref="Template"/> with the server's default limits, whose agent is at the end of <paramref name="agent"/>.</summary>
    public static Sandbox New(string id, AgentConnection agent, int slot = 0, string dir = "")
    {
        var limits = new ServerOptions().Limits;
        return new Sandbox
        {
            Id = id, Template = Template, Limits = new SandboxLimits(limits.DefaultMemoryMb, limits.DefaultCpus, limits.PidsLimit),
            CreatedAt = DateTimeOffset.UnixEpoch, ExpiresAt = DateTimeOffset.MaxValue, Metadata = new(), Pid = 0, Agent = agent,
            Cgroup = new NoCgroup(), Slot = new UserNamespaceSlot(slot, 0, ""), Dirs = new SandboxLayerDirs(dir, dir, []), TimingsMs = new(),
        };
    }
}
