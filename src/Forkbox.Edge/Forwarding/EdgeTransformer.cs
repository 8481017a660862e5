using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;
using Forkbox.Hosting;

namespace Forkbox.Edge.Forwarding;

/// <summary>
/// YARP's default request and response copy, plus: the owner header hosts use to keep names and
/// counts per key (a client's own is never passed on), the region that answered, and a step run
/// on the host's answer before the client sees it (a close frees its tier slot first, so that the
/// client's next create cannot be refused for a slot it has already given back).
/// </summary>
public sealed class EdgeTransformer(string owner, string region, Func<HttpResponseMessage, Task>? onAnswer = null) : HttpTransformer
{
    public const string RegionHeader = "X-Forkbox-Region";

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix,
        CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken).ConfigureAwait(false);
        proxyRequest.Headers.Remove(Owners.Header);
        proxyRequest.Headers.TryAddWithoutValidation(Owners.Header, owner);
        // Where the client reached the edge: a signed port URL the host makes must point here.
        proxyRequest.Headers.Remove("X-Forwarded-Host");
        proxyRequest.Headers.TryAddWithoutValidation("X-Forwarded-Host", httpContext.Request.Host.ToString());
        proxyRequest.Headers.Remove("X-Forwarded-Proto");
        proxyRequest.Headers.TryAddWithoutValidation("X-Forwarded-Proto", httpContext.Request.Scheme);
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse,
        CancellationToken cancellationToken)
    {
        var copy = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken).ConfigureAwait(false);
        httpContext.Response.Headers[RegionHeader] = region;
        if (proxyResponse is not null && onAnswer is not null) await onAnswer(proxyResponse).ConfigureAwait(false);
        return copy;
    }
}
