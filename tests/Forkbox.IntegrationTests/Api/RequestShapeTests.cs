using System.Net;
using System.Text;
using Microsoft.AspNetCore.Routing;

namespace Forkbox.IntegrationTests.Api;

/// <summary>
/// The general rules of the API's input: every JSON body refuses an unknown field by name (never
/// dropped; typos and wrong types in a create body are rows of ApiInputTests.Bad_create_bodies),
/// and a known route asked with a method it does not take is 405 with Allow (not 404).
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class RequestShapeTests(ServerFixture fx)
{
    private async Task<(HttpStatusCode Status, string Code, string Message, string Allow)> Send(HttpMethod method, string path, string? body)
    {
        using var req = new HttpRequestMessage(method, path) { Content = body is null ? null : new StringContent(body, Encoding.UTF8, "application/json") };
        return await ApiError.SendAsync(fx.Http, req);
    }

    [Fact]
    public async Task Every_json_body_refuses_an_unknown_field_by_name_and_lists_the_known_ones()
    {
        await using var sb = await fx.NewSandbox();
        // Each route that reads a JSON body, with a body that is valid but for one field.
        var routes = new (HttpMethod Method, string Path, string Valid, string Known)[]
        {
            (HttpMethod.Post, "/v1/sandboxes", "\"template\": \"default\"", "template"),
            (HttpMethod.Post, $"/v1/sandboxes/{sb.Id}/exec", "\"code\": \"1\"", "code"),
            (HttpMethod.Post, $"/v1/sandboxes/{sb.Id}/fork", "\"n\": 1", "n"),
            (HttpMethod.Put, "/v1/templates/default/pool", "\"size\": 2", "size"),
            (HttpMethod.Post, $"/v1/sandboxes/{sb.Id}/ports/8080/url", "\"expires_in_s\": 60", "expires_in_s"),
        };
        foreach (var (method, path, valid, known) in routes)
        {
            var (status, code, message, _) = await Send(method, path, $"{{{valid}, \"no_such_field\": 1}}");
            Assert.True(status == HttpStatusCode.BadRequest, $"{path}: {status} {message}");
            Assert.Equal("bad_request", code);
            Assert.Contains("unknown field \"no_such_field\"", message);
            Assert.Contains(known, message);
        }
        Assert.Equal(0, fx.Server.Sandboxes.All.Count(s => s.ForkedFrom == sb.Id)); // the refused fork made nothing
    }

    [Fact]
    public async Task Every_route_asked_with_a_method_it_does_not_take_is_405_with_allow()
    {
        var routes = fx.Server.Routes.Endpoints.OfType<RouteEndpoint>()
            .Select(e => (Pattern: e.RoutePattern.RawText!, Methods: e.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods))
            .Where(r => r.Methods is { Count: > 0 })
            // Under a port, every other method goes to the sandbox's own server: the proxy takes them all.
            .Where(r => !r.Pattern.StartsWith("/v1/sandboxes/{id}/ports/{port:int}/", StringComparison.Ordinal)).ToList();
        Assert.True(routes.Count > 20, $"only {routes.Count} routes found");
        Assert.DoesNotContain(routes, r => r.Methods!.Contains("PATCH")); // so PATCH is wrong for every one of them
        foreach (var (pattern, methods) in routes)
        {
            var path = System.Text.RegularExpressions.Regex.Replace(pattern, @"\{[^}]*port[^}]*\}", "8080");
            path = System.Text.RegularExpressions.Regex.Replace(path, @"\{[^}]+\}", "x");
            var (status, code, message, allow) = await Send(HttpMethod.Patch, path, null);
            Assert.True(status == HttpStatusCode.MethodNotAllowed, $"PATCH {path} ({pattern}): {status} {message}");
            Assert.Equal("method_not_allowed", code);
            foreach (var m in methods!)
            {
                Assert.Contains(m, allow);
                Assert.Contains(m, message);
            }
        }
        var unknown = await Send(HttpMethod.Patch, "/v1/no-such-route", null);
        Assert.Equal(HttpStatusCode.NotFound, unknown.Status);
    }
}
