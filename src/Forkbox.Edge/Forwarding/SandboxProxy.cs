using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Core.Wire;
using Forkbox.Edge.Limits;
using Forkbox.Edge.Registry;
using Forkbox.Edge.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;
using Forkbox.Hosting;

namespace Forkbox.Edge.Forwarding;

/// <summary>
/// Sends each call where it belongs. A call about a sandbox goes, through YARP and streaming both
/// ways, to the host its id names, and is never retried: it may have run. A create goes to the
/// host <see cref="Placement"/> picks and, on a refused connection or a 5xx, once more to another.
/// Tier slots are taken before a create or fork and given back when a sandbox closes.
/// </summary>
public sealed partial class SandboxProxy(IHttpForwarder forwarder, HttpMessageInvoker client, HostRegistry registry, TierLimiter limiter,
    EdgeMetrics metrics, string continentHeader, ILogger log)
{
    public const string RegionHeader = EdgeTransformer.RegionHeader;
    public const string HostHeader = "X-Forkbox-Host";
    private const int MaxCreateBody = 1 << 20;

    private static readonly ForwarderRequestConfig Streaming = new()
    {
        // A call may stream nothing for as long as its code runs (exec timeouts go up to a day).
        ActivityTimeout = TimeSpan.FromHours(25),
        Version = HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
    };

    /// <summary>The host an id names; 404 for an id no host of a cluster made, 503 when that host is not in rotation.</summary>
    public HostEntry HostOf(string id)
    {
        if (SandboxId.HostOf(id) is not { } hostId)
            throw new NotFoundException($"sandbox '{id}' not found: its id names no host of this cluster (ids look like sbx_HOST_…)");
        if (registry.TryGet(hostId, out var host)) return host;
        metrics.Unavailable.Inc();
        throw new HostUnavailableException(
            $"sandbox '{id}' lives on host '{hostId}', which is not in rotation (no heartbeat in the last few seconds): " +
            "it is down or cut off, and its sandboxes are unreachable until it returns");
    }

    /// <summary>Any call about sandbox <paramref name="id"/>: streamed to its host, never retried.</summary>
    public Task ForwardAsync(HttpContext ctx, string id, Func<HttpResponseMessage, Task>? onAnswer = null) =>
        ForwardToAsync(ctx, HostOf(id), $"sandbox '{id}'", onAnswer);

    /// <summary>Streams the request to a host; a host that cannot be reached gets 503 with a message that says so.</summary>
    public async Task ForwardToAsync(HttpContext ctx, HostEntry host, string what, Func<HttpResponseMessage, Task>? onAnswer = null)
    {
        var request = EdgeRequest.Of(ctx);
        var error = await forwarder.SendAsync(ctx, host.Url.ToString(), client, Streaming,
            new EdgeTransformer(request.Owner, host.Region, onAnswer)).ConfigureAwait(false);
        if (error == ForwarderError.None) return;
        var cause = ctx.GetForwarderErrorFeature()?.Exception?.Message ?? error.ToString();
        if (error is ForwarderError.Request or ForwarderError.RequestTimedOut) host.MarkDown(TimeSpan.FromSeconds(3));
        LogForwardFailed(log, ctx.Request.Method, ctx.Request.Path, host.Id, error.ToString(), cause);
        if (ctx.Response.HasStarted) return; // the stream broke midway: the client sees it cut, as it would from the host
        if (error is ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled) return; // the client left
        metrics.Unavailable.Inc();
        ctx.Response.Clear();
        throw new HostUnavailableException($"{what} lives on host '{host.Id}' ({host.Url}), which did not answer: {cause}");
    }

    /// <summary>POST /v1/sandboxes: take a tier slot, place, forward; on a refused connection or a 5xx, once more elsewhere.</summary>
    public async Task CreateAsync(HttpContext ctx)
    {
        var started = Stopwatch.GetTimestamp();
        var request = EdgeRequest.Of(ctx);
        var body = await ReadBodyAsync(ctx).ConfigureAwait(false);
        var region = RegionOf(ctx);
        var continent = region is null ? HeaderOrNull(ctx, continentHeader) : null;
        var slots = await TakeSlotsAsync(request, 1, countsAsCreate: true).ConfigureAwait(false);
        await AnswerCountedAsync(ctx, slots, () => SendWithFailoverAsync(ctx, body, region, continent),
            bytes => TryRead(bytes, WireJson.Default.SandboxInfo)?.Id is { } id ? [id] : null).ConfigureAwait(false);
        metrics.CreateSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    /// <summary>POST /v1/sandboxes/{id}/fork: the children count against the tier; they live on the parent's host. Not retried.</summary>
    public async Task ForkAsync(HttpContext ctx, string id)
    {
        var request = EdgeRequest.Of(ctx);
        var host = HostOf(id);
        var body = await ReadBodyAsync(ctx).ConfigureAwait(false);
        var n = ForkCount(body);
        var slots = await TakeSlotsAsync(request, n, countsAsCreate: false).ConfigureAwait(false);
        await AnswerCountedAsync(ctx, slots, () => SendAsync(ctx, host, body, $"sandbox '{id}'"),
            bytes => TryRead(bytes, WireJson.Default.ForkResponse)?.Children).ConfigureAwait(false);
    }

    /// <summary>
    /// Passes on a host's answer to a call that makes sandboxes (a create, a fork): the tier slots
    /// taken for it are kept for the ids the answer names, or given back if it made none.
    /// </summary>
    private async Task AnswerCountedAsync(HttpContext ctx, TierLimiter.Slots slots, Func<Task<Answer>> send, Func<byte[], IReadOnlyList<string>?> made)
    {
        var committed = false;
        try
        {
            using var answer = await send().ConfigureAwait(false);
            var bytes = await answer.Response.Content.ReadAsByteArrayAsync(ctx.RequestAborted).ConfigureAwait(false);
            if (answer.Response.IsSuccessStatusCode && made(bytes) is { } ids)
            {
                await limiter.CommitAsync(slots, ids).ConfigureAwait(false);
                committed = true;
            }
            await CopyAsync(ctx, answer, bytes).ConfigureAwait(false);
        }
        finally
        {
            if (!committed) await limiter.ReleaseAsync(slots).ConfigureAwait(false);
        }
    }

    private async Task<TierLimiter.Slots> TakeSlotsAsync(EdgeRequest request, int n, bool countsAsCreate)
    {
        try
        {
            return await limiter.AcquireAsync(request.Owner, request.Tier, n, countsAsCreate).ConfigureAwait(false);
        }
        catch (RateLimitedException)
        {
            metrics.Limited.Inc();
            throw;
        }
    }

    private async Task<Answer> SendWithFailoverAsync(HttpContext ctx, byte[] body, string? region, string? continent)
    {
        var tried = new HashSet<string>(StringComparer.Ordinal);
        for (var attempt = 0; ; attempt++)
        {
            var (host, why) = Placement.Choose(registry.Hosts, region, continent, tried);
            tried.Add(host.Id);
            host.Sent();
            try
            {
                var answer = await SendAsync(ctx, host, body, "the create").ConfigureAwait(false);
                if ((int)answer.Response.StatusCode < 500 || attempt == 1) return answer with { Why = why };
                LogFailover(log, host.Id, $"{(int)answer.Response.StatusCode} {answer.Response.ReasonPhrase}");
                answer.Dispose();
            }
            catch (HostUnavailableException e) when (attempt == 0)
            {
                LogFailover(log, host.Id, e.Message);
            }
            metrics.Failovers.Inc();
            // A create whose region was named stays in it; one placed by continent or room may go anywhere.
            continent = null;
        }
    }

    private async Task<Answer> SendAsync(HttpContext ctx, HostEntry host, byte[] body, string what)
    {
        using var message = ToHost(ctx, HttpMethod.Post, new Uri(host.Url, ctx.Request.Path.Value!.TrimStart('/') + ctx.Request.QueryString));
        message.Content = new ByteArrayContent(body);
        if (ctx.Request.ContentType is { } type) message.Content.Headers.TryAddWithoutValidation("Content-Type", type);
        try
        {
            var response = await client.SendAsync(message, ctx.RequestAborted).ConfigureAwait(false);
            return new Answer(host, response, Placement.Reason.Named);
        }
        catch (HttpRequestException e)
        {
            host.MarkDown(TimeSpan.FromSeconds(3));
            metrics.Unavailable.Inc();
            throw new HostUnavailableException($"{what} could not reach host '{host.Id}' ({host.Url}): {e.Message}");
        }
    }

    /// <summary>
    /// A request the edge itself sends to a host on a client's behalf (creates, forks, list fan-out):
    /// the client's key as it came, and the owner the edge checked it to be.
    /// </summary>
    public static HttpRequestMessage ToHost(HttpContext ctx, HttpMethod method, Uri uri)
    {
        var message = new HttpRequestMessage(method, uri) { Version = HttpVersion.Version11 };
        if (ctx.Request.Headers.Authorization.ToString() is { Length: > 0 } auth) message.Headers.TryAddWithoutValidation("Authorization", auth);
        if (ctx.Request.Headers["X-API-Key"].ToString() is { Length: > 0 } apiKey) message.Headers.TryAddWithoutValidation("X-API-Key", apiKey);
        message.Headers.TryAddWithoutValidation(Owners.Header, EdgeRequest.Of(ctx).Owner);
        return message;
    }

    private static async Task CopyAsync(HttpContext ctx, Answer answer, byte[] bytes)
    {
        var response = answer.Response;
        ctx.Response.StatusCode = (int)response.StatusCode;
        foreach (var (name, values) in response.Headers)
            if (name.StartsWith("X-Forkbox-", StringComparison.OrdinalIgnoreCase) || name.Equals("Retry-After", StringComparison.OrdinalIgnoreCase))
                ctx.Response.Headers[name] = values.ToArray();
        if (response.Content.Headers.ContentType is { } type) ctx.Response.ContentType = type.ToString();
        ctx.Response.Headers[RegionHeader] = answer.Host.Region;
        ctx.Response.Headers[HostHeader] = answer.Host.Id;
        ctx.Response.Headers["X-Forkbox-Placement"] = answer.Why.ToString().ToLowerInvariant();
        ctx.Response.ContentLength = bytes.Length;
        await ctx.Response.Body.WriteAsync(bytes, ctx.RequestAborted).ConfigureAwait(false);
    }

    private static async Task<byte[]> ReadBodyAsync(HttpContext ctx)
    {
        if (ctx.Request.ContentLength > MaxCreateBody)
            throw new PayloadTooLargeException($"a create or fork body is at most {MaxCreateBody >> 20} MB");
        using var buffer = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(buffer, ctx.RequestAborted).ConfigureAwait(false);
        if (buffer.Length > MaxCreateBody) throw new PayloadTooLargeException($"a create or fork body is at most {MaxCreateBody >> 20} MB");
        return buffer.ToArray();
    }

    /// <summary>The region a client names: the region header, else the /r/REGION/ path prefix; null for none.</summary>
    public static string? RegionOf(HttpContext ctx) => HeaderOrNull(ctx, RegionHeader) ?? EdgeRequest.Of(ctx).PathRegion;

    private static string? HeaderOrNull(HttpContext ctx, string name) =>
        ctx.Request.Headers[name].ToString() is { Length: > 0 } v ? v.Trim() : null;

    /// <summary>A host's JSON answer (or a client's body) as <typeparamref name="T"/>; null if it is not that.</summary>
    private static T? TryRead<T>(byte[] body, JsonTypeInfo<T> type) where T : class
    {
        try
        {
            return JsonSerializer.Deserialize(body, type);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The n a fork asks for, as the host will read it; a body the host will refuse counts as 1 (it makes nothing).</summary>
    private static int ForkCount(byte[] body) =>
        TryRead(body, WireJson.Default.ForkRequest)?.N is { } n and >= 1 and <= 32 ? n : 1;

    private sealed record Answer(HostEntry Host, HttpResponseMessage Response, Placement.Reason Why) : IDisposable
    {
        public void Dispose() => Response.Dispose();
    }

    [LoggerMessage(EventId = 5101, Level = LogLevel.Warning, Message = "{Method} {Path}: host {HostId} failed ({Error}): {Cause}")]
    private static partial void LogForwardFailed(ILogger log, string method, string path, string hostId, string error, string cause);

    [LoggerMessage(EventId = 5102, Level = LogLevel.Warning, Message = "create: host {HostId} failed ({Cause}); trying another host once")]
    private static partial void LogFailover(ILogger log, string hostId, string cause);
}
