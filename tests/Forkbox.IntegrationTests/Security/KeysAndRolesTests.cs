using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Forkbox.Client;
using Forkbox.Edge;
using Forkbox.Hosting.Auth;
using Forkbox.Host.Templates;
using Forkbox.IntegrationTests.Cluster;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// Keys fail closed: once a server has keys, nothing done to the keys file while it runs turns
/// authentication off or breaks it; the last good keys stay in force and the operator is told once.
/// Roles: server-wide settings (pools, template deletion, metrics) need an admin key; any key,
/// admin or not, reaches only its own sandboxes.
/// </summary>
public sealed class KeysAndRolesTests
{
    [Fact]
    public async Task A_keys_file_emptied_removed_or_broken_while_running_keeps_the_last_good_keys()
    {
        var log = new CapturedLog();
        await using var server = new TestServer("keys-fail-closed", o => o with { Pool = o.Pool with { Size = 0 } }, log.Configure);
        var file = server.Options.KeysFile;
        var alice = server.CreateKey("alice");
        var good = await File.ReadAllTextAsync(file);
        string WithFirstKey(string field, JsonNode value)
        {
            var keys = JsonNode.Parse(good)!.AsArray();
            keys[0]![field] = value;
            return keys.ToJsonString();
        }
        await server.StartAsync();
        var anonymous = server.Http;
        using var http = server.HttpWithKey(alice);
        int Errors() => log.Lines.Count(l => l.StartsWith("Error", StringComparison.Ordinal) && l.Contains(file, StringComparison.Ordinal));
        var steps = new (string What, Action Change)[]
        {
            ("an empty list", () => File.WriteAllText(file, "[]")),
            ("emptied", () => File.WriteAllText(file, "")),
            ("removed", () => File.Delete(file)),
            ("malformed", () => File.WriteAllText(file, "[{\"name\": \"alice\", \"sha256\": ")),
            // Variants the report did not try: a directory in the file's place, a wrongly typed
            // field (which made every route a 500), and a role the server does not know.
            ("replaced by a directory", () =>
            {
                File.Delete(file);
                Directory.CreateDirectory(file);
            }),
            ("a hash that is not a string", () =>
            {
                Directory.Delete(file);
                File.WriteAllText(file, WithFirstKey("sha256", 5));
            }),
            ("a key of an unknown role", () => File.WriteAllText(file, WithFirstKey("role", "root"))),
        };
        var errors = 0;
        foreach (var (what, change) in steps)
        {
            change();
            // Every answer to alice counts, the one to the request that found the change above all.
            var answers = new List<string>();
            await PokeUntil(() => Errors() > errors, async () =>
            {
                using var resp = await http.GetAsync("/v1/sandboxes");
                if (resp.StatusCode != HttpStatusCode.OK) answers.Add($"{(int)resp.StatusCode}: {await resp.Content.ReadAsStringAsync()}");
                return false;
            });
            Assert.True(answers.Count == 0, $"keys file {what}: alice's GET /v1/sandboxes answered {string.Join("; ", answers)}");
            using (var resp = await anonymous.GetAsync("/v1/sandboxes"))
                Assert.True(resp.StatusCode == HttpStatusCode.Unauthorized,
                    $"keys file {what}: a request without a key answered {(int)resp.StatusCode}: {await resp.Content.ReadAsStringAsync()}");
            foreach (var (method, path, body, status) in new (HttpMethod, string, string?, HttpStatusCode)[]
                     {
                         (HttpMethod.Get, "/v1/sandboxes", null, HttpStatusCode.OK),
                         (HttpMethod.Get, "/v1/capacity", null, HttpStatusCode.OK),
                         (HttpMethod.Post, "/v1/sandboxes/sbx_none/exec", "{\"code\": \"1\"}", HttpStatusCode.NotFound),
                     })
            {
                using var req = new HttpRequestMessage(method, path);
                if (body is not null) req.Content = new StringContent(body, Encoding.UTF8, "application/json");
                using var resp = await http.SendAsync(req);
                var text = await resp.Content.ReadAsStringAsync();
                Assert.True(resp.StatusCode == status && !text.Contains("not valid JSON", StringComparison.Ordinal),
                    $"keys file {what}: alice's {method} {path} answered {(int)resp.StatusCode}: {text}");
            }
            Assert.True(Errors() == errors + 1,
                $"keys file {what}: expected one error line naming {file}, got:\n{string.Join("\n", log.Lines)}");
            errors++;
        }

        // A good file after the bad ones is read: a key taken out of it stops working.
        File.Delete(file);
        var bob = new ApiKeyStore(file).Create("bob");
        using var asBob = server.HttpWithKey(bob);
        await PokeUntil(() => false, async () =>
        {
            using var resp = await asBob.GetAsync("/v1/sandboxes");
            return resp.StatusCode == HttpStatusCode.OK;
        });
        using (var resp = await asBob.GetAsync("/v1/sandboxes")) Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        using (var resp = await http.GetAsync("/v1/sandboxes")) Assert.Equal(HttpStatusCode.Unauthorized, resp.StatusCode);
        using (var resp = await anonymous.GetAsync("/v1/sandboxes")) Assert.Equal(HttpStatusCode.Unauthorized, resp.StatusCode);
        Assert.Equal(steps.Length, Errors());
    }

    [Fact]
    public async Task A_malformed_keys_file_at_start_is_an_error_that_names_it_on_a_host_and_an_edge()
    {
        await using var server = new TestServer("keys-malformed", o => o with { Pool = o.Pool with { Size = 0 } });
        var options = server.Options;
        Directory.CreateDirectory(options.DataDir);
        await File.WriteAllTextAsync(options.KeysFile, "[{\"name\": \"alice\",");
        var host = await Assert.ThrowsAnyAsync<Exception>(server.StartAsync);
        Assert.Contains(options.KeysFile, host.Message);
        // The keys are read before Redis is reached: nothing listens on port 1.
        var edge = await Assert.ThrowsAnyAsync<Exception>(() => EdgeServer.StartAsync(
            new EdgeOptions { Listen = "127.0.0.1:0", Redis = "127.0.0.1:1", Keys = options.KeysFile }, ServerFixture.LogToConsole));
        Assert.Contains(options.KeysFile, edge.Message);
    }

    [Fact]
    public async Task Server_wide_settings_need_an_admin_key_and_an_ordinary_key_keeps_its_own_sandboxes()
    {
        await using var server = new TestServer("roles", o => o with { Pool = o.Pool with { Size = 1 } });
        var options = server.Options;
        var (alice, root) = (server.CreateKey("alice"), server.CreateKey("root", admin: true));
        // A built template to delete: a root that starts (its build runs it once).
        var source = await Templates.TemplateTests.MiniRoot("forkbox-roles-" + Guid.NewGuid().ToString("N")[..8]);
        await TemplateBuilder.BuildAsync(options, "built", source, [], [], _ => { }, default);
        var built = Path.Combine(options.TemplatesDir, "built");
        try
        {
            await server.StartAsync();
            using var asAlice = server.HttpWithKey(alice);
            using var asRoot = server.HttpWithKey(root);
            var own = await server.ClientWithKey(alice).CreateSandboxAsync();

            var serverWide = new (HttpMethod, string, string?)[]
            {
                (HttpMethod.Put, "/v1/templates/default/pool", "{\"size\": 3}"),
                (HttpMethod.Delete, "/v1/templates/built", null),
                (HttpMethod.Get, "/metrics", null),
                // Refused before the template is looked up: an ordinary key cannot probe for names either.
                (HttpMethod.Put, "/v1/templates/no-such-template/pool", "{\"size\": 3}"),
                (HttpMethod.Delete, "/v1/templates/no-such-template", null),
            };
            foreach (var (method, path, body) in serverWide)
            {
                using var req = new HttpRequestMessage(method, path);
                if (body is not null) req.Content = new StringContent(body, Encoding.UTF8, "application/json");
                using var resp = await asAlice.SendAsync(req);
                var text = await resp.Content.ReadAsStringAsync();
                Assert.True(resp.StatusCode == HttpStatusCode.Forbidden, $"alice's {method} {path} answered {(int)resp.StatusCode}: {text}");
                var error = JsonNode.Parse(text)!;
                Assert.Equal("admin_required", error["code"]!.GetValue<string>());
                Assert.Contains("--admin", error["error"]!.GetValue<string>());
            }
            Assert.Equal(1, server.Sandboxes.Pool("default").Target);
            Assert.True(Directory.Exists(built));
            // The C# SDK names the refusal.
            var refused = await Assert.ThrowsAnyAsync<ForkboxApiException>(() =>
                server.ClientWithKey(alice).SetPoolSizeAsync("default", 3));
            Assert.Equal((403, "admin_required"), (refused.Status, refused.Code));

            // What stays an ordinary key's: its own sandboxes, and reading what the server offers.
            Assert.Equal("2", (await own.RunCodeAsync("print(1 + 1)")).Stdout);
            using (var resp = await asAlice.GetAsync("/v1/capacity")) Assert.Equal(HttpStatusCode.OK, resp.StatusCode);

            // An admin key may; it is no superuser of sandboxes (another key's stay 404 to it).
            using (var resp = await asRoot.PutAsync("/v1/templates/default/pool", new StringContent("{\"size\": 3}", Encoding.UTF8, "application/json")))
                Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            Assert.Equal(3, server.Sandboxes.Pool("default").Target);
            Assert.Contains("forkbox_sandboxes_running 1", await asRoot.GetStringAsync("/metrics"));
            using (var resp = await asRoot.DeleteAsync("/v1/templates/built")) Assert.Equal(HttpStatusCode.NoContent, resp.StatusCode);
            Assert.False(Directory.Exists(built));
            using (var resp = await asRoot.GetAsync($"/v1/sandboxes/{own.Id}")) Assert.Equal(HttpStatusCode.NotFound, resp.StatusCode);
        }
        finally
        {
            Directory.Delete(source, recursive: true);
        }
    }

    [Fact]
    public async Task An_edge_keeps_its_keys_when_the_file_breaks_and_its_metrics_need_an_admin_key()
    {
        var dir = Directory.CreateTempSubdirectory("forkbox-edge-keys-").FullName;
        var file = Path.Combine(dir, "keys.json");
        var keys = new ApiKeyStore(file);
        var (alice, root) = (keys.Create("alice"), keys.Create("root", admin: true));
        var log = new CapturedLog();
        await using var redis = await RedisProcess.StartAsync();
        await using var edge = await EdgeServer.StartAsync(new EdgeOptions { Listen = "127.0.0.1:0", Redis = redis.Endpoint, Keys = file }, log.Configure);
        try
        {
            using var anonymous = new HttpClient { BaseAddress = edge.Address };
            using var asAlice = new HttpClient { BaseAddress = edge.Address };
            asAlice.DefaultRequestHeaders.Authorization = new("Bearer", alice);
            using var asRoot = new HttpClient { BaseAddress = edge.Address };
            asRoot.DefaultRequestHeaders.Authorization = new("Bearer", root);

            using (var resp = await asAlice.GetAsync("/metrics"))
            {
                Assert.True(resp.StatusCode == HttpStatusCode.Forbidden, $"alice's /metrics on the edge answered {(int)resp.StatusCode}");
                Assert.Contains("admin_required", await resp.Content.ReadAsStringAsync());
            }
            using (var resp = await asAlice.PutAsync("/v1/templates/default/pool", new StringContent("{\"size\": 3}")))
                Assert.Equal(HttpStatusCode.Forbidden, resp.StatusCode);
            Assert.Contains("forkbox_edge_hosts", await asRoot.GetStringAsync("/metrics"));

            await File.WriteAllTextAsync(file, "");
            await PokeUntil(() => log.Lines.Any(l => l.StartsWith("Error", StringComparison.Ordinal) && l.Contains(file, StringComparison.Ordinal)),
                () => asAlice.GetAsync("/v1/capacity"));
            using (var resp = await anonymous.GetAsync("/v1/capacity")) Assert.Equal(HttpStatusCode.Unauthorized, resp.StatusCode);
            using (var resp = await asAlice.GetAsync("/v1/capacity")) Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            using (var resp = await asAlice.GetAsync("/metrics")) Assert.Equal(HttpStatusCode.Forbidden, resp.StatusCode);
            Assert.Contains(log.Lines, l => l.StartsWith("Error", StringComparison.Ordinal) && l.Contains(file, StringComparison.Ordinal));
        }
        finally
        {
            await edge.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// A server reads its keys file again when a request comes, at most once a second: sends
    /// requests until <paramref name="done"/> holds or the request reports success, or 5 s pass
    /// (the assertions after it then say what was wrong).
    /// </summary>
    private static async Task PokeUntil(Func<bool> done, Func<Task<bool>> poke)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!done() && DateTime.UtcNow < deadline)
        {
            if (await poke()) return;
            await Task.Delay(50);
        }
    }

    private static Task PokeUntil(Func<bool> done, Func<Task<HttpResponseMessage>> request) =>
        PokeUntil(done, async () =>
        {
            using var _ = await request();
            return false;
        });
}
