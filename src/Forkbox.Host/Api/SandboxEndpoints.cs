using System.Text.Json;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Hosting.Auth;
using Forkbox.Host.Agents;
using Forkbox.Host.Sandboxes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Forkbox.Hosting;

namespace Forkbox.Host.Api;

/// <summary>The /v1 routes. Each handler validates, calls <see cref="SandboxManager"/>, and shapes the answer.</summary>
public static class SandboxEndpoints
{
    /// <summary>How long a download waits for each 64 KiB of its file from the agent before the agent counts as stuck.</summary>
    private static readonly TimeSpan DownloadPieceTimeout = TimeSpan.FromSeconds(30);

    /// <summary>HttpContext.Items key of the request's owner: its API key's name, set by the auth middleware.</summary>
    public const string OwnerItem = "forkbox.owner";

    private static string Owner(HttpContext ctx) => ctx.Items[OwnerItem] as string ?? Owners.Local;

    /// <summary>The live sandbox a call goes to, resumed first if it was frozen; the reply says so in a header.</summary>
    private static async Task<Sandbox> ActiveAsync(HttpContext ctx, SandboxManager manager, string id)
    {
        var (sb, from) = await manager.ActiveAsync(id, ctx.RequestAborted).ConfigureAwait(false);
        if (from is not null) ctx.Response.Headers[SandboxManager.ResumedHeader] = from;
        return sb;
    }

    public static void Map(IEndpointRouteBuilder app, SandboxManager manager, ServerOptions options, HostInfo host, HostMetrics metrics)
    {
        app.MapGet("/v1/healthz", () => Results.Text("ok"));
        var sandboxes = app.MapGroup("/v1/sandboxes/{id}");

        app.MapPost("/v1/sandboxes", async (HttpContext ctx) =>
        {
            var req = await RequestJson.ReadAsync(ctx, WireJson.Default.CreateSandboxRequest).ConfigureAwait(false) ?? new CreateSandboxRequest();
            var sb = await manager.CreateAsync(req, Owner(ctx), ctx.RequestAborted).ConfigureAwait(false);
            return ServerBuilder.Json(sb.ToInfo(withUsage: false), WireJson.Default.SandboxInfo);
        });

        app.MapGet("/v1/sandboxes", (HttpContext ctx, string? name) =>
            ServerBuilder.Json(new SandboxList(manager.List(Owner(ctx), name)), WireJson.Default.SandboxList));

        sandboxes.MapGet("", (string id) => ServerBuilder.Json(manager.Describe(id), WireJson.Default.SandboxInfo));

        sandboxes.MapPost("/pause", async (HttpContext ctx, string id) =>
            ServerBuilder.Json(await manager.PauseAsync(id, ctx.RequestAborted).ConfigureAwait(false), WireJson.Default.LifecycleResponse));

        sandboxes.MapPost("/hibernate", async (HttpContext ctx, string id) =>
            ServerBuilder.Json(await manager.HibernateAsync(id, ctx.RequestAborted).ConfigureAwait(false), WireJson.Default.LifecycleResponse));

        sandboxes.MapPost("/resume", async (HttpContext ctx, string id) =>
            ServerBuilder.Json((await manager.ResumeAsync(id, ctx.RequestAborted).ConfigureAwait(false)).Reply, WireJson.Default.LifecycleResponse));

        sandboxes.MapPost("/restart", async (HttpContext ctx, string id) =>
            ServerBuilder.Json(await manager.RestartAsync(id, ctx.RequestAborted).ConfigureAwait(false), WireJson.Default.LifecycleResponse));

        sandboxes.MapPost("/timeout", async (HttpContext ctx, string id) =>
        {
            var req = await RequestJson.ReadAsync(ctx, WireJson.Default.SetTimeoutRequest).ConfigureAwait(false);
            return ServerBuilder.Json(manager.SetTimeout(id, req?.TimeoutS), WireJson.Default.SandboxInfo);
        });

        sandboxes.MapDelete("", async (string id) =>
        {
            await manager.DeleteAsync(id, "DELETE by client").ConfigureAwait(false);
            return Results.NoContent();
        });

        sandboxes.MapPost("/fork", async (HttpContext ctx, string id) =>
        {
            var req = await RequestJson.ReadAsync(ctx, WireJson.Default.ForkRequest).ConfigureAwait(false) ?? new ForkRequest();
            await ActiveAsync(ctx, manager, id).ConfigureAwait(false);
            var children = await manager.ForkAsync(id, req.N, ctx.RequestAborted).ConfigureAwait(false);
            return ServerBuilder.Json(new ForkResponse(children.Select(c => c.Id).ToList()), WireJson.Default.ForkResponse);
        });

        sandboxes.MapPost("/merge_into/{winner}", async (HttpContext ctx, string id, string winner) =>
        {
            await ActiveAsync(ctx, manager, id).ConfigureAwait(false);
            await ActiveAsync(ctx, manager, winner).ConfigureAwait(false);
            await manager.MergeIntoAsync(id, winner).ConfigureAwait(false);
            return Results.NoContent();
        });

        sandboxes.MapGet("/diff/{other}", async (HttpContext ctx, string id, string other, string? paths) =>
        {
            await ActiveAsync(ctx, manager, id).ConfigureAwait(false);
            await ActiveAsync(ctx, manager, other).ConfigureAwait(false);
            return ServerBuilder.Json(manager.Diff(id, other, paths), WireJson.Default.DiffResponse);
        });

        sandboxes.MapPost("/exec", async (HttpContext ctx, string id) =>
        {
            var req = await RequestJson.ReadAsync(ctx, WireJson.Default.ExecRequest).ConfigureAwait(false)
                      ?? throw new BadRequestException("a JSON body with 'code' is required");
            var sb = await ActiveAsync(ctx, manager, id).ConfigureAwait(false);
            await manager.ExecAsync(sb, req, new NdjsonExecSink(ctx.Response), ctx.RequestAborted).ConfigureAwait(false);
        });

        sandboxes.MapPost("/interrupt", (string id) =>
            ServerBuilder.Json(new InterruptResponse(manager.Interrupt(id)), WireJson.Default.InterruptResponse));

        sandboxes.MapPut("/files", async (HttpContext ctx, string id, string? path) =>
        {
            var target = Validate.SandboxPath(path, "path");
            if (ctx.Request.ContentLength > options.Limits.MaxUploadBytes)
                throw new PayloadTooLargeException($"upload of {ctx.Request.ContentLength} bytes is over this server's limit of {options.Limits.MaxUploadBytes} bytes");
            var sb = await ActiveAsync(ctx, manager, id).ConfigureAwait(false);
            // One upload per sandbox is read into memory at a time: sixteen concurrent 64 MiB
            // uploads to one sandbox would otherwise hold a gigabyte of hostd's memory.
            await sb.Agent.UploadGate.WaitAsync(ctx.RequestAborted).ConfigureAwait(false);
            long size;
            try
            {
                using var body = await UploadBuffer.ReadAsync(ctx, options.Limits.MaxUploadBytes).ConfigureAwait(false);
                size = body.Length;
                var memory = body.Memory;
                await manager.Calls.FileCallAsync(sb, (agent, ct) => agent.WriteAsync(target, memory, ct), ctx.RequestAborted).ConfigureAwait(false);
            }
            finally
            {
                sb.Agent.UploadGate.Release();
            }
            return ServerBuilder.Json(new FileEntry(Path.GetFileName(target), "file", size, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0),
                WireJson.Default.FileEntry);
        });

        sandboxes.MapGet("/files", async (HttpContext ctx, string id, string? path) =>
        {
            var target = Validate.SandboxPath(path, "path");
            var sb = await ActiveAsync(ctx, manager, id).ConfigureAwait(false);
            if (sb.IsDead)
            {
                // No agent to ask: read from its layers (see StoppedFiles).
                var file = StoppedFiles.Open(sb, target, options.Limits.MaxDownloadBytes);
                return Results.Stream(file, "application/octet-stream");
            }
            // Streamed from the agent's socket to the response: hostd holds 64 KiB of a download, never the file.
            await manager.Calls.FileCallAsync(sb, (agent, ct) => agent.ReadToAsync(target, options.Limits.MaxDownloadBytes, size =>
            {
                ctx.Response.ContentType = "application/octet-stream";
                ctx.Response.ContentLength = size;
                return ctx.Response.Body;
            }, DownloadPieceTimeout, ct), ctx.RequestAborted).ConfigureAwait(false);
            return Results.Empty;
        });

        sandboxes.MapDelete("/files", async (HttpContext ctx, string id, string? path, bool? recursive) =>
        {
            var target = Validate.SandboxPath(path, "path");
            var sb = await ActiveAsync(ctx, manager, id).ConfigureAwait(false);
            await manager.Calls.FileCallAsync(sb, (agent, ct) => agent.RemoveAsync(target, recursive == true, ct), ctx.RequestAborted).ConfigureAwait(false);
            return Results.NoContent();
        });

        sandboxes.MapGet("/files/list", async (HttpContext ctx, string id, string? path) =>
        {
            var target = Validate.SandboxPath(path ?? "/root", "path");
            var sb = await ActiveAsync(ctx, manager, id).ConfigureAwait(false);
            if (sb.IsDead) return ServerBuilder.Json(StoppedFiles.List(sb, target), WireJson.Default.FileList);
            var ok = await manager.Calls.FileCallAsync(sb, (agent, ct) => agent.ListAsync(target, ct), ctx.RequestAborted).ConfigureAwait(false);
            var entries = ok.Ok!.Entries
                .Select(e => new FileEntry(e.Name, e.Type, e.Size, e.Mtime))
                .ToList();
            return ServerBuilder.Json(new FileList(entries), WireJson.Default.FileList);
        });

        app.MapGet("/v1/capacity", () => ServerBuilder.Json(new CapacityInfo
        {
            Region = options.Cluster.Region,
            Running = manager.Running,
            Maximum = options.Limits.MaxSandboxes,
            IsolationBackend = "namespaces",
            CgroupVersion = host.CgroupVersion,
            StorageStrategy = host.StorageStrategy,
            StorageFilesystem = host.StorageFilesystem,
            Retired = manager.Retired,
            DiskQuota = manager.DiskQuotaKind,
            Paused = manager.Paused,
            Hibernated = manager.Hibernated,
            HibernatedBytes = manager.HibernatedBytes,
            Templates = manager.Templates.Names.ToList(),
            Pools = manager.Pools.Select(p => p.ToInfo()).ToList(),
        }, WireJson.Default.CapacityInfo));

        app.MapGet("/v1/templates", () => ServerBuilder.Json(new TemplateList(manager.Templates.All.Select(t => new TemplateInfo
        {
            Name = t.Name,
            Builtin = t.RootDir is null,
            SizeBytes = manager.Templates.SizeOf(t),
            Preload = t.Preload,
            Pool = manager.Pool(t.Name).ToInfo(),
        }).ToList()), WireJson.Default.TemplateList));

        app.MapDelete("/v1/templates/{name}", async (string name) =>
        {
            await manager.RemoveTemplateAsync(name).ConfigureAwait(false);
            return Results.NoContent();
        }).WithMetadata(AdminOnly.Route);

        app.MapPut("/v1/templates/{name}/pool", async (HttpContext ctx, string name) =>
        {
            var pool = manager.Pool(name);
            var req = await RequestJson.ReadAsync(ctx, WireJson.Default.PoolSizeRequest).ConfigureAwait(false);
            if (req?.Size is not { } size)
                throw new BadRequestException("send {\"size\": N}: the number of ready sandboxes to keep for this template");
            pool.Target = Validate.Range(size, 0, options.Limits.MaxSandboxes, "size");
            return ServerBuilder.Json(pool.ToInfo(), WireJson.Default.PoolInfo);
        }).WithMetadata(AdminOnly.Route);

        app.MapGet("/metrics", () => Results.Text(metrics.Render(
        [
            ("forkbox_sandboxes_running", "Sandboxes alive on this host", manager.Running),
            ("forkbox_sandboxes_maximum", "Sandboxes this host may run", options.Limits.MaxSandboxes),
            ("forkbox_sandboxes_retired", "Closed sandboxes whose PID 1 waits for their forks to end", manager.Retired),
            ("forkbox_sandboxes_paused", "Persistent sandboxes stopped by the cgroup freezer", manager.Paused),
            ("forkbox_sandboxes_hibernated", "Persistent sandboxes saved to disk", manager.Hibernated),
            ("forkbox_hibernated_bytes", "Disk held by hibernated states", manager.HibernatedBytes),
        ]) + NetworkMetrics(manager), "text/plain; version=0.0.4")).WithMetadata(AdminOnly.Route); // it lists every owner's sandbox ids

        app.MapFallback(async (HttpContext ctx) =>
        {
            if (!await MethodNotAllowed.TryAnswerAsync(ctx).ConfigureAwait(false))
                throw new NotFoundException($"no route for {ctx.Request.Method} {ctx.Request.Path}; the API is under /v1");
        });
    }

    private static string NetworkMetrics(SandboxManager manager)
    {
        var text = new System.Text.StringBuilder();
        manager.RenderNetworkMetrics(text);
        return text.ToString();
    }
}

/// <summary>Facts about this host that /v1/capacity reports.</summary>
public sealed record HostInfo(int CgroupVersion, string StorageStrategy, string StorageFilesystem);
