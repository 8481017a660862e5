using System.Net;
using System.Text;
using System.Text.Json;
using Forkbox.Linux.Storage;

namespace Forkbox.IntegrationTests.Api;

/// <summary>Bad input gets the documented status and error body, and the server keeps serving.</summary>
[Collection(ServerCollection.Name)]
public sealed class ApiInputTests(ServerFixture fx)
{
    private async Task<(HttpStatusCode Status, string Code, string Message)> Send(HttpMethod method, string path, string? body = null, HttpContent? content = null)
    {
        using var req = new HttpRequestMessage(method, path)
        {
            Content = content ?? (body is null ? null : new StringContent(body, Encoding.UTF8, "application/json")),
        };
        // As curl does for big bodies: the server can answer (413) before the body is sent.
        req.Headers.ExpectContinue = content is not null;
        var (status, code, message, _) = await ApiError.SendAsync(fx.Http, req);
        return (status, code, message);
    }

    private async Task AssertStillServing()
    {
        Assert.Equal("ok", await fx.Http.GetStringAsync("/v1/healthz"));
    }

    [Theory]
    [InlineData("{not json", "not valid JSON")]
    [InlineData("{\"timeout_s\": \"soon\"}", "field \"timeout_s\" must be a number")]
    [InlineData("{\"timeout_s\": -5}", "timeout_s")]
    [InlineData("{\"memory_mb\": 99999999999}", "field \"memory_mb\" must be a whole number")]
    [InlineData("{\"cpus\": 0}", "cpus")]
    [InlineData("{\"template\": \"no-such-template\"}", "unknown template 'no-such-template'")]
    [InlineData("{\"env\": {\"A=B\": \"x\"}}", "env")]
    [InlineData("[1, 2]", "request body must be a JSON object")]
    [InlineData("{\"templat\": \"python-datasci\"}", "unknown field \"templat\" (did you mean \"template\"?)")]
    [InlineData("{\"network\": \"egress\", \"network_policy\": {\"alow\": [\"example.com\"]}}", "unknown field \"network_policy.alow\" (did you mean \"network_policy.allow\"?)")]
    [InlineData("{\"persistent\": \"yes\"}", "field \"persistent\" must be true or false")]
    [InlineData("{\"env\": [\"A=1\"]}", "field \"env\" must be an object of strings")]
    [InlineData("{\"cpus\": \"two\"}", "field \"cpus\" must be a number")]
    public async Task Bad_create_bodies_are_400_with_a_message(string body, string mentions)
    {
        var running = fx.Server.Sandboxes.Running;
        var (status, code, message) = await Send(HttpMethod.Post, "/v1/sandboxes", body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("bad_request", code);
        Assert.Contains(mentions, message);
        Assert.DoesNotContain("System.", message); // a field and a type the client knows, never a .NET type
        Assert.DoesNotContain("Forkbox.", message);
        Assert.Equal(running, fx.Server.Sandboxes.Running);
        await AssertStillServing();
    }

    [Fact]
    public async Task An_empty_create_body_is_valid()
    {
        using var resp = await fx.Http.PostAsync("/v1/sandboxes", null);
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        using var doc = JsonDocument.Parse(await resp.Content.ReadAsStringAsync());
        var id = doc.RootElement.GetProperty("id").GetString()!;
        Assert.Matches("^sbx_[0-9a-f]{32}$", id);
        Assert.Equal("ready", doc.RootElement.GetProperty("state").GetString());
        Assert.Equal("default", doc.RootElement.GetProperty("template").GetString());
        Assert.Equal(HttpStatusCode.NoContent, (await fx.Http.DeleteAsync($"/v1/sandboxes/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await fx.Http.DeleteAsync($"/v1/sandboxes/{id}")).StatusCode);
    }

    [Theory]
    [InlineData("GET", "/v1/sandboxes/sbx_00000000000000000000000000000000")]
    [InlineData("DELETE", "/v1/sandboxes/sbx_00000000000000000000000000000000")]
    [InlineData("POST", "/v1/sandboxes/nonsense/exec")]
    [InlineData("GET", "/v1/sandboxes/../../etc/passwd/files?path=/etc/passwd")]
    [InlineData("GET", "/v2/anything")]
    public async Task Unknown_sandboxes_and_routes_are_404(string method, string path)
    {
        var (status, code, _) = await Send(new HttpMethod(method), path, method == "POST" ? "{\"code\": \"1\"}" : null);
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("not_found", code);
        await AssertStillServing();
    }

    [Fact]
    public async Task Bad_exec_bodies_are_400()
    {
        await using var sb = await fx.NewSandbox();
        foreach (var (body, mentions) in new[]
                 {
                     ("{}", "'code' is required"),
                     ("{\"code\": \"1\", \"language\": \"ruby\"}", "ruby"),
                     ("{\"code\": \"1\", \"timeout_s\": -1}", "timeout_s"),
                     ("{\"code\": 5}", "field \"code\" must be a string"),
                     ("{\"code\": \"1\", \"cwd\": \"/root/../..\"}", ".."),
                 })
        {
            var (status, code, message) = await Send(HttpMethod.Post, $"/v1/sandboxes/{sb.Id}/exec", body);
            Assert.True(status == HttpStatusCode.BadRequest, $"{body} gave {status}");
            Assert.Equal("bad_request", code);
            Assert.Contains(mentions, message);
        }
        Assert.Equal("1", (await sb.RunCodeAsync("print(1)")).Stdout);
    }

    [Theory]
    [InlineData("/root/../../etc/passwd")]
    [InlineData("../x")]
    [InlineData("")]
    public async Task Path_tricks_are_refused(string path)
    {
        await using var sb = await fx.NewSandbox();
        var (status, code, _) = await Send(HttpMethod.Put, $"/v1/sandboxes/{sb.Id}/files?path={Uri.EscapeDataString(path)}", "x");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("bad_request", code);
    }

    [Fact]
    public async Task An_upload_over_the_limit_is_413()
    {
        await using var sb = await fx.NewSandbox();
        var big = new ByteArrayContent(new byte[100 * 1024 * 1024]);
        var (status, code, message) = await Send(HttpMethod.Put, $"/v1/sandboxes/{sb.Id}/files?path=/root/big", content: big);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal("too_large", code);
        Assert.Contains(fx.Options.Limits.MaxUploadBytes.ToString(), message);
        var listing = await sb.ListAsync("/root");
        Assert.DoesNotContain(listing, e => e.Name.StartsWith("big", StringComparison.Ordinal));
        await AssertStillServing();
    }

    /// <summary>
    /// A chunked body has no length to refuse up front: the limit is found while reading, and the
    /// message must name the limit itself, not one byte more (Kestrel's own cap is the limit + 1).
    /// </summary>
    [Fact]
    public async Task A_chunked_upload_over_the_limit_is_413_naming_the_limit()
    {
        await using var sb = await fx.NewSandbox();
        var limit = fx.Options.Limits.MaxUploadBytes;
        var body = new StreamContent(new MemoryStream(new byte[limit + 2 * 1024 * 1024]));
        using var req = new HttpRequestMessage(HttpMethod.Put, $"/v1/sandboxes/{sb.Id}/files?path=/root/big") { Content = body };
        req.Headers.TransferEncodingChunked = true;
        var (status, code, message, _) = await ApiError.SendAsync(fx.Http, req);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal("too_large", code);
        Assert.Contains($"limit of {limit} bytes", message);
        Assert.DoesNotContain((limit + 1).ToString(), message);
        var listing = await sb.ListAsync("/root");
        Assert.DoesNotContain(listing, e => e.Name.StartsWith("big", StringComparison.Ordinal));
        await AssertStillServing();
    }

    [Fact]
    public async Task The_exec_histogram_counts_clients_calls_not_the_pools_warm_up_cells()
    {
        await using var server = await TestServer.StartAsync("exec-metric", o => o with { Pool = o.Pool with { Size = 3 } });
        await ServerFixture.WaitUntil(() => server.Server.Sandboxes.Pool("default").Ready == 3, "the pool filling");
        await using (var sb = await Client.Sandbox.CreateAsync(null, server.Client))
        {
            await sb.RunCodeAsync("1");
            await sb.ExecAsync("true");
        }
        await ServerFixture.WaitUntil(() => server.Server.Sandboxes.Pool("default").Ready == 3, "the pool refilling"); // three more warm-ups each
        Assert.Matches(@"(?m)^forkbox_exec_seconds_count 2$", await server.Http.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task Capacity_and_metrics_describe_the_host()
    {
        await using var sb = await fx.NewSandbox();
        var capacity = await fx.Client.CapacityAsync();
        Assert.Equal("namespaces", capacity.IsolationBackend);
        Assert.Equal(File.Exists("/sys/fs/cgroup/cgroup.controllers") ? 2 : 1, capacity.CgroupVersion);
        Assert.Equal(StorageProbe.Detect(fx.Options.SandboxesDir).Name(), capacity.StorageStrategy);
        Assert.True(capacity.Running >= 1);
        Assert.Equal(fx.Options.Limits.MaxSandboxes, capacity.Maximum);
        var metrics = await fx.Http.GetStringAsync("/metrics");
        Assert.Contains("forkbox_sandboxes_running ", metrics);
        Assert.Matches(@"forkbox_create_seconds_count\{pool=""(hit|miss)""\} [1-9]", metrics);
    }
}
