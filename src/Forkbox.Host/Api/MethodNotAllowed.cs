using System.Runtime.CompilerServices;
using Forkbox.Hosting.Errors;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Template;
using Microsoft.Extensions.DependencyInjection;

namespace Forkbox.Host.Api;

/// <summary>
/// The fallback's answer for a path that is a route, asked with a method the route does not take:
/// 405 with the Allow header and a message naming the methods, rather than the 404 of an unknown
/// path. Every route counts, wherever it is mapped: they are read from the endpoint data source.
/// </summary>
internal sealed class MethodNotAllowed
{
    private readonly List<(TemplateMatcher Path, IReadOnlyList<string> Methods)> _routes = [];

    private MethodNotAllowed(EndpointDataSource endpoints)
    {
        foreach (var e in endpoints.Endpoints.OfType<RouteEndpoint>())
            if (e.Metadata.GetMetadata<HttpMethodMetadata>() is { HttpMethods.Count: > 0 } methods)
                _routes.Add((new TemplateMatcher(new RouteTemplate(e.RoutePattern), new RouteValueDictionary()), methods.HttpMethods));
    }

    // One per server: the tests run several in one process.
    private static readonly ConditionalWeakTable<EndpointDataSource, MethodNotAllowed> ByServer = new();

    /// <summary>True when it answered 405: the path is a route of other methods.</summary>
    public static async Task<bool> TryAnswerAsync(HttpContext ctx)
    {
        var routes = ByServer.GetValue(ctx.RequestServices.GetRequiredService<EndpointDataSource>(), e => new MethodNotAllowed(e));
        var allowed = routes._routes.Where(r => r.Path.TryMatch(ctx.Request.Path, new RouteValueDictionary()))
            .SelectMany(r => r.Methods).Distinct(StringComparer.OrdinalIgnoreCase).Order(StringComparer.Ordinal).ToList();
        if (allowed.Count == 0) return false;
        ctx.Response.Headers.Allow = string.Join(", ", allowed);
        await ErrorResponses.WriteAsync(ctx, StatusCodes.Status405MethodNotAllowed, "method_not_allowed",
            $"{ctx.Request.Path} does not take {ctx.Request.Method}; it takes {string.Join(", ", allowed)}").ConfigureAwait(false);
        return true;
    }
}
