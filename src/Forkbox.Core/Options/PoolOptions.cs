namespace Forkbox.Core.Options;

/// <summary>The warm pool: ready sandboxes kept per template so that a create takes one. Config section <c>Pool</c>.</summary>
public sealed record PoolOptions
{
    /// <summary>Ready sandboxes kept per template; PUT /v1/templates/{name}/pool changes it at run time.</summary>
    public int Size { get; init; } = 8;
    /// <summary>Ready sandboxes with egress kept per template, from the first egress create on (0: egress creates always make one).</summary>
    public int EgressSize { get; init; } = 2;

    /// <summary>Both sizes are bounded by the sandboxes the host may run at all.</summary>
    internal void Validate(int maxSandboxes)
    {
        ServerOptions.Require(Size >= 0 && Size <= maxSandboxes, "pool_size must be between 0 and max_sandboxes");
        ServerOptions.Require(EgressSize >= 0 && EgressSize <= maxSandboxes, "egress_pool_size must be between 0 and max_sandboxes");
    }
}
