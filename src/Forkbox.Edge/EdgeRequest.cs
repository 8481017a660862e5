using Forkbox.Edge.Limits;
using Microsoft.AspNetCore.Http;

namespace Forkbox.Edge;

/// <summary>What the edge's middleware learnt about a request before it is routed: who sends it, their tier, the region named in its path.</summary>
public sealed class EdgeRequest
{
    private static readonly object ItemKey = new();

    public required string Owner { get; init; }
    public required Tier Tier { get; init; }
    /// <summary>The region of a /r/REGION/v1/… path, whose prefix was taken off.</summary>
    public string? PathRegion { get; init; }

    public static EdgeRequest Of(HttpContext ctx) => (EdgeRequest)ctx.Items[ItemKey]!;

    public void AttachTo(HttpContext ctx) => ctx.Items[ItemKey] = this;
}
