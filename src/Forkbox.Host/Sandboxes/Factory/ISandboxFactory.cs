using Forkbox.Core.Templates;

namespace Forkbox.Host.Sandboxes;

/// <summary>What a warm pool needs to keep itself full: room, a ready sandbox, and a way to drop one.</summary>
public interface ISandboxFactory
{
    /// <summary>True while another sandbox may be made without passing MaxSandboxes.</summary>
    bool HasRoom { get; }

    /// <summary>
    /// A sandbox for a pool: made with the server's default limits at the pool's low priority,
    /// warmed up, and (for an egress pool) given its link and admitted without a policy.
    /// </summary>
    Task<Sandbox> SpawnPooledAsync(TemplateDefinition template, bool egress);

    /// <summary>Kills a sandbox's processes now and releases what it holds in the background.</summary>
    Task DestroyAsync(Sandbox sb);
}
