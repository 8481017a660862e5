using Forkbox.Hosting.Errors;
using Microsoft.AspNetCore.Http;

namespace Forkbox.Hosting.Auth;

/// <summary>
/// The one key check of hostd and the edge, placed after routing: on a server with keys, a request
/// that is not exempt needs a key the store knows (else 401), and an admin key for an
/// <see cref="AdminOnly"/> route (else 403). The key it admitted is <see cref="KeyOf"/>.
/// </summary>
public sealed class ApiKeyMiddleware(ApiKeyStore? keys, Func<HttpContext, bool> exempt)
{
    private static readonly object ItemKey = new();

    public const string Missing = "missing or unknown API key: send 'Authorization: Bearer KEY' (create one with `forkbox keys create`)";

    /// <summary>The key the request was admitted with; null on a server without keys, or for an exempt request.</summary>
    public static ApiKey? KeyOf(HttpContext ctx) => ctx.Items[ItemKey] as ApiKey;

    public Task InvokeAsync(HttpContext ctx, RequestDelegate next)
    {
        if (keys?.Enabled != true || exempt(ctx)) return next(ctx);
        var plain = ApiKeyStore.KeyOf(ctx.Request);
        if ((plain.Length > 0 ? keys.Find(plain) : null) is not { } key)
            return ErrorResponses.WriteAsync(ctx, 401, "unauthorized", Missing);
        AdminOnly.Check(ctx, key);
        ctx.Items[ItemKey] = key;
        return next(ctx);
    }
}
