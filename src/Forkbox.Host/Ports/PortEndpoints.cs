using System.Text.Json;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Host.Api;
using Forkbox.Host.Sandboxes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Forkbox.Hosting;

namespace Forkbox.Host.Ports;

/// <summary>
/// ANY /v1/sandboxes/{id}/ports/{port}/{**path}: a sandbox's port through the API (same auth as the
/// rest, or a signed URL's token); POST /v1/sandboxes/{id}/ports/{port}/url signs such a URL.
/// </summary>
public static class PortEndpoints
{
    public static void Map(IEndpointRouteBuilder app, SandboxManager manager, PortForwarder forwarder, PortUrlSigner signer, ServerOptions options)
    {
        app.MapPost("/v1/sandboxes/{id}/ports/{port:int}/url", async (HttpContext ctx, string id, int port) =>
        {
            CheckPort(port);
            manager.Describe(id); // 404 for an unknown sandbox
            var req = await RequestJson.ReadAsync(ctx, WireJson.Default.PortUrlRequest).ConfigureAwait(false);
            var ttl = Validate.Range(req?.ExpiresInS ?? 3600, 1, options.Ports.UrlMaxTtlS, "expires_in_s");
            var expires = DateTimeOffset.UtcNow.AddSeconds(ttl);
            // Behind an edge the URL must name the edge, which says where the client reached it.
            var scheme = ctx.Request.Headers["X-Forwarded-Proto"].ToString() is { Length: > 0 } proto ? proto : ctx.Request.Scheme;
            var authority = ctx.Request.Headers["X-Forwarded-Host"].ToString() is { Length: > 0 } host ? host : ctx.Request.Host.ToString();
            var url = $"{scheme}://{authority}{signer.SignedPath(id, port, expires)}";
            return ServerBuilder.Json(new PortUrlResponse(url, DateTimeOffset.FromUnixTimeSeconds(expires.ToUnixTimeSeconds())), WireJson.Default.PortUrlResponse);
        });

        app.Map("/v1/sandboxes/{id}/ports/{port:int}/{**path}", async (HttpContext ctx, string id, int port) =>
        {
            CheckPort(port);
            if (!PortPath.TryParse(ctx.Request.Path.Value, out var path))
                throw new BadRequestException("a ports path is /v1/sandboxes/{id}/ports/{port}/{path}");
            if (path.Signature is not null && !signer.IsValid(path))
                throw new UnauthorizedException("this port URL's signature is invalid or has expired; ask for a new one (POST /v1/sandboxes/{id}/ports/{port}/url)");
            var (sb, from) = await manager.ActiveAsync(id, ctx.RequestAborted).ConfigureAwait(false);
            if (from is not null) ctx.Response.Headers[SandboxManager.ResumedHeader] = from;
            sb.Touch();
            await forwarder.ForwardAsync(ctx, sb.Id, port, path.Rest).ConfigureAwait(false);
        });
    }

    private static void CheckPort(int port)
    {
        if (port is < 1 or > 65535) throw new BadRequestException($"port {port} is not between 1 and 65535");
    }
}
