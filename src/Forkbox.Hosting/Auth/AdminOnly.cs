using Forkbox.Core.Errors;
using Microsoft.AspNetCore.Http;

namespace Forkbox.Hosting.Auth;

/// <summary>
/// Endpoint metadata for a route whose effect is server-wide (a pool's size, deleting a template,
/// /metrics, which lists every owner's sandboxes): on a server with keys it needs an admin key.
/// The host and the edge check it in the middleware after routing, so a refusal comes before the
/// route looks anything up (an ordinary key cannot probe for template names either).
/// </summary>
public sealed class AdminOnly
{
    public static readonly AdminOnly Route = new();

    private AdminOnly()
    {
    }

    /// <summary>
    /// Throws <see cref="AdminRequiredException"/> when the matched route is admin-only and the key
    /// is not an admin's. Only for a request whose key was checked: without keys everything is allowed.
    /// </summary>
    public static void Check(HttpContext ctx, ApiKey key)
    {
        if (!key.Admin && ctx.GetEndpoint()?.Metadata.GetMetadata<AdminOnly>() is not null)
            throw new AdminRequiredException($"{ctx.Request.Method} {ctx.Request.Path}");
    }
}
