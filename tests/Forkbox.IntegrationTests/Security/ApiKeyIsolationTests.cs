using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// On a server with API keys, each key is a tenant: it neither lists nor reaches another key's
/// sandboxes, even knowing their ids; every such call is the 404 of an unknown id.
/// </summary>
public sealed class ApiKeyIsolationTests
{
    [Fact]
    public async Task Another_keys_sandboxes_are_neither_listed_nor_reachable_by_id()
    {
        await using var server = new TestServer("tenants", o => o with { Pool = o.Pool with { Size = 1 } });
        var (alice, mallory) = (server.CreateKey("alice"), server.CreateKey("mallory"));
        await server.StartAsync();
        var a = server.ClientWithKey(alice);
        var m = server.ClientWithKey(mallory);
        var victim = await a.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true });
        await victim.RunCodeAsync("secret = 'alice only'");
        var hibernated = await a.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true });
        await hibernated.HibernateAsync();
        var own = await m.CreateSandboxAsync();

        Assert.Equal([own.Id], (await m.ListSandboxesAsync()).Sandboxes.Select(s => s.Id));
        Assert.Equal(2, (await a.ListSandboxesAsync()).Sandboxes.Count);

        using var http = server.HttpWithKey(mallory);
        foreach (var id in new[] { victim.Id, hibernated.Id })
        {
            foreach (var (method, path, body) in new (HttpMethod, string, string?)[]
                     {
                         (HttpMethod.Get, $"/v1/sandboxes/{id}", null),
                         (HttpMethod.Post, $"/v1/sandboxes/{id}/exec", "{\"code\": \"secret\"}"),
                         (HttpMethod.Get, $"/v1/sandboxes/{id}/files?path=/etc/hostname", null),
                         (HttpMethod.Put, $"/v1/sandboxes/{id}/files?path=/root/planted", "x"),
                         (HttpMethod.Get, $"/v1/sandboxes/{id}/files/list", null),
                         (HttpMethod.Delete, $"/v1/sandboxes/{id}/files?path=/root", null),
                         (HttpMethod.Post, $"/v1/sandboxes/{id}/fork", "{}"),
                         (HttpMethod.Post, $"/v1/sandboxes/{id}/pause", null),
                         (HttpMethod.Post, $"/v1/sandboxes/{id}/hibernate", null),
                         (HttpMethod.Post, $"/v1/sandboxes/{id}/resume", null),
                         (HttpMethod.Post, $"/v1/sandboxes/{own.Id}/merge_into/{id}", null),
                         (HttpMethod.Get, $"/v1/sandboxes/{own.Id}/diff/{id}", null),
                         (HttpMethod.Get, $"/v1/sandboxes/{id}/ports/8000/", null),
                         (HttpMethod.Post, $"/v1/sandboxes/{id}/ports/8000/url", "{}"),
                         (HttpMethod.Delete, $"/v1/sandboxes/{id}", null),
                     })
            {
                using var req = new HttpRequestMessage(method, path);
                if (body is not null) req.Content = new StringContent(body);
                using var resp = await http.SendAsync(req);
                Assert.True((int)resp.StatusCode == 404, $"mallory's {method} {path} answered {(int)resp.StatusCode}: {await resp.Content.ReadAsStringAsync()}");
            }
        }

        // Alice's sandboxes are untouched: running, hibernated, no planted file.
        Assert.Equal("alice only", (await victim.RunCodeAsync("secret")).Result!.Value.GetString());
        Assert.Equal("ready", (await victim.RefreshAsync()).State);
        Assert.DoesNotContain(await victim.ListAsync("/root"), e => e.Name == "planted");
        Assert.Equal("hibernated", (await hibernated.RefreshAsync()).State);
    }
}
