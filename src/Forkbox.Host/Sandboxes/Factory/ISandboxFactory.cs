using Forkbox.Core;
using Forkbox.Core.Templates;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// What a warm pool needs to keep itself full (room, a ready sandbox, and a way to drop one), and
/// a create to make one while its caller waits: the factory as the pool and the creator see it.
/// </summary>
public interface ISandboxFactory
{
    /// <summary>True while another sandbox may be made without passing MaxSandboxes.</summary>
    bool HasRoom { get; }

    /// <summary>
    /// A sandbox for a pool: made with the server's default limits at the pool's low priority,
    /// warmed up, and (for an egress pool) given its link and admitted without a policy.
    /// </summary>
    Task<Sandbox> SpawnPooledAsync(TemplateDefinition template, bool egress);

    /// <summary>
    /// Makes a sandbox now (for a create, a pool miss: the caller waits for it), with a link and an
    /// address when <paramref name="egress"/>, not yet let out. Counts against MaxSandboxes; the
    /// other parameters are <see cref="SandboxFactory.SpawnAsync"/>'s.
    /// </summary>
    Task<Sandbox> SpawnAsync(TemplateDefinition template, SandboxLimits limits, Dictionary<string, string>? env, CancellationToken ct,
        SandboxRecord? resume = null, bool egress = false, bool foreground = true);

    /// <summary>Kills a sandbox's processes now and releases what it holds in the background.</summary>
    Task DestroyAsync(Sandbox sb);
}
