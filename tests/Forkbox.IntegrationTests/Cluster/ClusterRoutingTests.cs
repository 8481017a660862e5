using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Cluster;

/// <summary>Where the edges send creates, and that every later call reaches the host its sandbox's id names.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterRoutingTests(ClusterFixture fx)
{
    private static readonly string[] EuHosts = ["eu-1"];
    private static readonly string[] UsHosts = ["us-1", "us-2"];

    private async Task<(string Id, string Region, string Host, string Placement)> Create(HttpClient http, string path = "v1/sandboxes",
        Action<HttpRequestMessage>? configure = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(new { }) };
        configure?.Invoke(request);
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        return (id, response.Headers.GetValues("X-Forkbox-Region").Single(), response.Headers.GetValues("X-Forkbox-Host").Single(),
            response.Headers.GetValues("X-Forkbox-Placement").Single());
    }

    private static async Task Delete(HttpClient http, string id) =>
        Assert.Equal(HttpStatusCode.NoContent, (await http.DeleteAsync($"v1/sandboxes/{id}")).StatusCode);

    [Fact]
    public async Task A_region_header_pins_the_create_to_that_region()
    {
        using var http = fx.Http(fx.EdgeA);
        foreach (var region in new[] { "eu", "us", "eu" })
        {
            var made = await Create(http, configure: r => r.Headers.Add("X-Forkbox-Region", region));
            Assert.Equal(region, made.Region);
            Assert.Equal("named", made.Placement);
            Assert.Contains(SandboxId.HostOf(made.Id), region == "eu" ? EuHosts : UsHosts);
            Assert.Equal(made.Host, SandboxId.HostOf(made.Id));
            await Delete(http, made.Id);
        }
    }

    [Fact]
    public async Task A_region_path_prefix_pins_the_create_and_later_calls_work_under_it()
    {
        using var http = fx.Http(fx.EdgeB);
        var made = await Create(http, "r/eu/v1/sandboxes");
        Assert.Equal(("eu", "eu-1"), (made.Region, made.Host));
        // A call about the sandbox under another region's prefix still goes where the sandbox is.
        using var info = await http.GetAsync($"r/us/v1/sandboxes/{made.Id}");
        Assert.Equal(HttpStatusCode.OK, info.StatusCode);
        Assert.Equal("eu", info.Headers.GetValues("X-Forkbox-Region").Single());
        await Delete(http, made.Id);
    }

    [Fact]
    public async Task An_unknown_region_is_refused_with_400_naming_the_known_ones()
    {
        using var http = fx.Http(fx.EdgeA);
        foreach (var send in new Func<Task<HttpResponseMessage>>[]
                 {
                     () => http.PostAsJsonAsync("r/mars/v1/sandboxes", new { }),
                     () => http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "v1/sandboxes")
                         { Content = JsonContent.Create(new { }), Headers = { { "X-Forkbox-Region", "mars" } } }),
                 })
        {
            using var response = await send();
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var error = await response.Content.ReadFromJsonAsync<JsonElement>();
            Assert.Equal("bad_request", error.GetProperty("code").GetString());
            Assert.Contains("unknown region 'mars'", error.GetProperty("error").GetString());
            Assert.Contains("eu, us", error.GetProperty("error").GetString());
        }
    }

    [Fact]
    public async Task The_clients_continent_picks_the_region_on_it()
    {
        using var http = fx.Http(fx.EdgeA);
        foreach (var (continent, region) in new[] { ("EU", "eu"), ("NA", "us"), ("eu", "eu") })
        {
            var made = await Create(http, configure: r => r.Headers.Add("X-Client-Continent", continent));
            Assert.Equal((region, "continent"), (made.Region, made.Placement));
            await Delete(http, made.Id);
        }
        // A continent no region is on falls back to room.
        var elsewhere = await Create(http, configure: r => r.Headers.Add("X-Client-Continent", "OC"));
        Assert.Equal("capacity", elsewhere.Placement);
        await Delete(http, elsewhere.Id);
    }

    [Fact]
    public async Task Without_a_hint_the_create_goes_to_the_roomiest_host_of_the_roomiest_region()
    {
        // us has 30 + 20 slots against eu's 12; within us, us-1 has 30 against us-2's 20.
        using var http = fx.Http(fx.EdgeB);
        var made = await Create(http);
        Assert.Equal(("us", "us-1", "capacity"), (made.Region, made.Host, made.Placement));
        await Delete(http, made.Id);
    }

    [Fact]
    public async Task Every_call_about_a_sandbox_reaches_its_host_through_either_edge()
    {
        var a = fx.Client(fx.EdgeA);
        var b = fx.Client(fx.EdgeB);
        await using var sb = await Sandbox.CreateAsync(new CreateSandboxRequest { Persistent = true }, a);
        var host = SandboxId.HostOf(sb.Id)!;
        var viaB = await Sandbox.ConnectAsync(sb.Id, b);

        var lines = new List<string>();
        var run = await viaB.RunCodeAsync("import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.05)\nx = 41", onStdout: lines.Add);
        Assert.Equal(["0", "1", "2"], lines); // streamed line by line through the edge
        Assert.Equal("ok", (await sb.ExecAsync("echo ok")).Stdout.Trim());

        await sb.UploadAsync("/root/f.txt", "through the edge"u8.ToArray());
        Assert.Equal("through the edge"u8.ToArray(), await viaB.DownloadAsync("/root/f.txt"));
        Assert.Contains(await viaB.ListAsync("/root"), e => e.Name == "f.txt");

        var children = await viaB.ForkAsync(2);
        Assert.All(children, c => Assert.Equal(host, SandboxId.HostOf(c.Id))); // forks live on the parent's host
        await children[0].RunCodeAsync("x += 1\nopen('/root/winner.txt', 'w').write('won')");
        Assert.Contains("root/winner.txt", (await sb.DiffAsync(children[0])).Added.Select(p => p.TrimStart('/')));
        await sb.MergeIntoAsync(children[0]);
        Assert.Equal("42", (await viaB.RunCodeAsync("print(x)")).Stdout.Trim());
        await children[1].CloseAsync();

        Assert.Equal("paused", (await viaB.PauseAsync()).State);
        Assert.Contains((await sb.ResumeAsync()).State, new[] { "ready", "running" });
        Assert.Equal("hibernated", (await sb.HibernateAsync()).State);
        Assert.Equal("42", (await viaB.RunCodeAsync("print(x)")).Stdout.Trim()); // resumed on its host by the call
        await viaB.DeleteFileAsync("/root/f.txt");
        Assert.Equal(sb.Id, (await viaB.RefreshAsync()).Id);

        await sb.CloseAsync();
        var gone = await Assert.ThrowsAsync<ForkboxNotFoundException>(() => viaB.RefreshAsync());
        Assert.Contains(sb.Id, gone.ServerMessage);
    }

    [Fact]
    public async Task A_sandboxs_port_is_reached_through_the_edge_with_a_key_or_a_signed_url_that_names_the_edge()
    {
        await using var sb = await Sandbox.CreateAsync(client: fx.Client(fx.EdgeA));
        await sb.RunCodeAsync("import subprocess, os\nos.makedirs('/root/site', exist_ok=True)\n" +
                              "open('/root/site/hello.txt', 'w').write('served')\n" +
                              "server = subprocess.Popen(['python3', '-m', 'http.server', '8000', '--bind', '127.0.0.1'], cwd='/root/site')");
        using var http = fx.Http(fx.EdgeB);
        var path = $"v1/sandboxes/{sb.Id}/ports/8000/hello.txt";
        await ServerFixture.WaitUntil(() => http.GetAsync(path).Result.StatusCode == HttpStatusCode.OK, "the sandbox's server answering through the edge", 15);
        Assert.Equal("served", await http.GetStringAsync(path));
        using var anonymous = new HttpClient();
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync(new Uri(fx.EdgeB.Address, path))).StatusCode);

        var signed = await sb.SignPortUrlAsync(8000, 60);
        Assert.StartsWith(fx.EdgeA.Address.ToString().TrimEnd('/'), signed.Url); // the edge it was asked through, not the host
        Assert.Equal("served", await anonymous.GetStringAsync(signed.Url + "hello.txt"));
    }

    [Fact]
    public async Task An_id_that_names_no_host_in_rotation_gets_503_and_one_that_names_none_404()
    {
        using var http = fx.Http(fx.EdgeA);
        using var unknownHost = await http.GetAsync("v1/sandboxes/sbx_zz-9_00000000000000000000000000000000");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, unknownHost.StatusCode);
        var error = await unknownHost.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("host_unavailable", error.GetProperty("code").GetString());
        Assert.Contains("host 'zz-9'", error.GetProperty("error").GetString());
        using var noHost = await http.PostAsJsonAsync("v1/sandboxes/sbx_00000000000000000000000000000000/exec", new { code = "1" });
        Assert.Equal(HttpStatusCode.NotFound, noHost.StatusCode);
    }

    [Fact]
    public async Task Lists_and_capacity_cover_every_host_and_only_the_keys_own_sandboxes()
    {
        var open = fx.Client(fx.EdgeA);
        var other = fx.Client(fx.EdgeB, "tiny");
        await using var listed = await Sandbox.CreateAsync(new CreateSandboxRequest { Persistent = true, Name = "listed" }, open);
        await using var mine = await Sandbox.CreateAsync(new CreateSandboxRequest { Persistent = true, Name = "listed" }, other); // names are per key
        var found = await fx.Client(fx.EdgeB).ListSandboxesAsync("listed");
        Assert.Equal([listed.Id], found.Sandboxes.Select(s => s.Id));

        var capacity = await open.CapacityAsync();
        Assert.Equal(["eu-1", "us-1", "us-2"], capacity.Hosts!.Select(h => h.HostId).Where(h => h is "eu-1" or "us-1" or "us-2"));
        Assert.Equal(capacity.Hosts!.Sum(h => h.Maximum), capacity.Maximum);
        Assert.Contains("default", capacity.Templates);
    }

    [Fact]
    public async Task A_request_without_a_known_key_is_refused_by_the_edge()
    {
        using var http = new HttpClient { BaseAddress = fx.EdgeA.Address };
        using var none = await http.PostAsJsonAsync("v1/sandboxes", new { });
        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        http.DefaultRequestHeaders.Authorization = new("Bearer", "fbx_not_a_key");
        using var wrong = await http.GetAsync("v1/sandboxes");
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("v1/healthz")).StatusCode);
    }
}
