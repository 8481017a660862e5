using System.Text.Json;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Edge.Forwarding;
using Forkbox.Edge.Limits;
using Forkbox.Edge.Registry;
using Forkbox.Edge.Routing;
using Forkbox.Hosting.Auth;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Forkbox.Hosting;

namespace Forkbox.Edge;

/// <summary>The edge's routes: the host API, each call sent where it belongs (see <see cref="SandboxProxy"/>).</summary>
public static class EdgeEndpoints
{
    public static void Map(IEndpointRouteBuilder app, SandboxProxy proxy, HostRegistry registry, TierLimiter limiter, EdgeMetrics metrics,
        HttpMessageInvoker client)
    {
        app.MapGet("/v1/healthz", () => Results.Text("ok"));

        app.MapPost("/v1/sandboxes", proxy.CreateAsync);

        app.MapGet("/v1/sandboxes", (HttpContext ctx) => ListAsync(ctx, registry, client));

        app.MapPost("/v1/sandboxes/{id}/fork", (HttpContext ctx, string id) => proxy.ForkAsync(ctx, id));

        // A close frees the key's slot (a 404 too: the sandbox is gone either way).
        app.MapDelete("/v1/sandboxes/{id}", (HttpContext ctx, string id) => proxy.ForwardAsync(ctx, id, async answer =>
        {
            if (answer.IsSuccessStatusCode || answer.StatusCode == System.Net.HttpStatusCode.NotFound)
                await limiter.ReleaseAsync(EdgeRequest.Of(ctx).Owner, id).ConfigureAwait(false);
        }));

        // merge_into ends the winner: its id stops existing, and its slot is free.
        app.MapPost("/v1/sandboxes/{id}/merge_into/{winner}", (HttpContext ctx, string id, string winner) => proxy.ForwardAsync(ctx, id, async answer =>
        {
            if (answer.IsSuccessStatusCode) await limiter.ReleaseAsync(EdgeRequest.Of(ctx).Owner, winner).ConfigureAwait(false);
        }));

        // Every other call about one sandbox: exec (NDJSON), files (streamed both ways), pause, hibernate, resume, diff, describe.
        app.MapGet("/v1/sandboxes/{id}", (HttpContext ctx, string id) => proxy.ForwardAsync(ctx, id));
        app.Map("/v1/sandboxes/{id}/{**rest}", (HttpContext ctx, string id) => proxy.ForwardAsync(ctx, id));

        // Templates are built and sized on each host; reading them asks the host a create would go to.
        app.MapGet("/v1/templates", (HttpContext ctx) =>
        {
            var (host, _) = Placement.Choose(registry.Hosts, SandboxProxy.RegionOf(ctx), null, new HashSet<string>());
            return proxy.ForwardToAsync(ctx, host, "the template list");
        });
        app.Map("/v1/templates/{**rest}", () =>
        {
            throw new BadRequestException("templates are built and sized on each host: run `forkbox template …` with --host set to each host's URL");
        }).WithMetadata(AdminOnly.Route); // the host routes under it are

        app.MapGet("/v1/capacity", () =>
        {
            var hosts = registry.Hosts.OrderBy(h => h.Region, StringComparer.Ordinal).ThenBy(h => h.Id, StringComparer.Ordinal).ToList();
            return ServerBuilder.Json(new CapacityInfo
            {
                Region = string.Join(",", hosts.Select(h => h.Region).Distinct()),
                Running = hosts.Sum(h => h.Announcement.Running),
                Maximum = hosts.Sum(h => h.Announcement.Maximum),
                IsolationBackend = "namespaces",
                CgroupVersion = 0,
                StorageStrategy = "per host",
                Templates = hosts.SelectMany(h => h.Announcement.Templates).Distinct().Order(StringComparer.Ordinal).ToList(),
                Hosts = hosts.Select(h => new HostCapacity(h.Id, h.Region, h.Announcement.Continent, h.Announcement.Running, h.Announcement.Maximum)).ToList(),
            }, WireJson.Default.CapacityInfo);
        });

        app.MapGet("/metrics", () => Results.Text(metrics.Render(registry.Hosts.GroupBy(h => h.Region).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => (g.Key, g.Count(), g.Sum(h => h.Announcement.Running), g.Sum(h => h.Announcement.Maximum)))), "text/plain; version=0.0.4")).WithMetadata(AdminOnly.Route);

        app.MapFallback(() =>
        {
            throw new NotFoundException("no such route: the edge serves the host API under /v1 (and /r/REGION/v1 to name a region)");
        });
    }

    /// <summary>GET /v1/sandboxes: every host's list for this owner, merged; hosts that do not answer are left out and named in X-Forkbox-Partial.</summary>
    private static async Task ListAsync(HttpContext ctx, HostRegistry registry, HttpMessageInvoker client)
    {
        var answers = await Task.WhenAll(registry.Hosts.Select(h => ListOneAsync(ctx, h, client))).ConfigureAwait(false);
        // A query the hosts refuse (a bad name) is refused alike by all: pass the first refusal on.
        if (answers.FirstOrDefault(a => a.Refusal is not null) is { Refusal: { } refusal } refused)
        {
            ctx.Response.StatusCode = refused.Status;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(refusal).ConfigureAwait(false);
            return;
        }
        var missing = answers.Where(a => a.Sandboxes is null).Select(a => a.Host.Id).ToList();
        if (missing.Count > 0) ctx.Response.Headers["X-Forkbox-Partial"] = string.Join(",", missing);
        var merged = answers.SelectMany(a => a.Sandboxes ?? []).OrderBy(i => i.CreatedAt).ToList();
        await ServerBuilder.Json(new SandboxList(merged), WireJson.Default.SandboxList).ExecuteAsync(ctx).ConfigureAwait(false);
    }

    private static async Task<HostList> ListOneAsync(HttpContext ctx, HostEntry host, HttpMessageInvoker client)
    {
        using var message = SandboxProxy.ToHost(ctx, HttpMethod.Get, new Uri(host.Url, "v1/sandboxes" + ctx.Request.QueryString));
        try
        {
            using var response = await client.SendAsync(message, ctx.RequestAborted).ConfigureAwait(false);
            if ((int)response.StatusCode is >= 400 and < 500)
                return new HostList(host, null, (int)response.StatusCode, await response.Content.ReadAsStringAsync(ctx.RequestAborted).ConfigureAwait(false));
            if (!response.IsSuccessStatusCode) return new HostList(host, null, 0, null);
            var list = await JsonSerializer.DeserializeAsync(await response.Content.ReadAsStreamAsync(ctx.RequestAborted).ConfigureAwait(false),
                WireJson.Default.SandboxList, ctx.RequestAborted).ConfigureAwait(false);
            return new HostList(host, list?.Sandboxes, 0, null);
        }
        catch (HttpRequestException)
        {
            return new HostList(host, null, 0, null);
        }
    }

    private sealed record HostList(HostEntry Host, IReadOnlyList<SandboxInfo>? Sandboxes, int Status, string? Refusal);
}
