using System.Net;
using Forkbox.Client;
using Forkbox.Host;

namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>Servers of their own: shutdown, expiry, authentication, refusing unsafe configurations.</summary>
public sealed class LifecycleTests
{
    [Fact]
    public async Task Shutdown_leaves_no_process_mount_or_cgroup_behind()
    {
        await using var server = await TestServer.StartAsync("shutdown");
        var options = server.Options;
        var client = server.Client;
        var a = await Sandbox.CreateAsync(client: client);
        var b = await Sandbox.CreateAsync(client: client);
        // Background processes outlive the call that started it (the call returns at once) but not the server.
        var started = await b.ExecAsync("sleep 1000 & sleep 1000 & echo started", timeoutS: 10);
        Assert.Equal(["started"], started.StdoutLines);
        Assert.False(started.TimedOut);
        var pids = new[] { a.Id, b.Id }.SelectMany(id => server.Sandboxes.Get(id).Cgroup.Pids()).ToList();
        Assert.True(pids.Count >= 4, $"expected agents and sleeps, saw {pids.Count} pids");
        // cgroup v1: the empty cgroup kept frozen so that freezing a sandbox never toggles the kernel's static key.
        var freezerPin = $"/sys/fs/cgroup/freezer/{Forkbox.Linux.Cgroups.CgroupDriver.ParentName(options.DataDir)}-pin";
        if (!File.Exists("/sys/fs/cgroup/cgroup.controllers"))
            Assert.Equal("FROZEN", File.ReadAllText(Path.Combine(freezerPin, "freezer.state")).Trim());

        await server.StopAsync();
        Assert.False(Directory.Exists(freezerPin), "the frozen pin cgroup outlived the server");

        Assert.All(pids, pid => Assert.False(Directory.Exists($"/proc/{pid}"), $"pid {pid} survived shutdown"));
        foreach (var id in new[] { a.Id, b.Id })
            foreach (var controller in Directory.GetDirectories("/sys/fs/cgroup"))
                Assert.False(Directory.Exists(Path.Combine(controller, Forkbox.Linux.Cgroups.CgroupDriver.ParentName(options.DataDir), id)),
                    $"cgroup of {id} left behind in {controller}");
        Assert.DoesNotContain(File.ReadLines("/proc/self/mountinfo"), l => l.Contains(options.DataDir));
        var layersLeft = Directory.GetFileSystemEntries(options.SandboxesDir, "*", SearchOption.AllDirectories)
            .Where(e => Path.GetFileName(e) != ".trash").ToList();
        Assert.True(layersLeft.Count == 0, "left behind: " + string.Join(", ", layersLeft.Take(5)));
        Assert.False(File.Exists(Path.Combine(options.RunDir, "agent.sock")));
    }

    [Fact]
    public async Task Sandboxes_past_their_timeout_are_reaped()
    {
        await using var server = await TestServer.StartAsync("expiry");
        var client = server.Client;
        var sb = await Sandbox.CreateAsync(new() { TimeoutS = 1 }, client);
        Assert.True(sb.Info.ExpiresAt - sb.Info.CreatedAt <= TimeSpan.FromSeconds(1.01));
        var deadline = DateTime.UtcNow.AddSeconds(10);
        ForkboxApiException? gone = null;
        while (gone is null && DateTime.UtcNow < deadline)
        {
            await Task.Delay(250);
            gone = await Record.ExceptionAsync(() => sb.RefreshAsync()) as ForkboxApiException;
        }
        Assert.Equal(404, gone?.Status);
    }

    [Fact]
    public async Task With_a_key_configured_requests_need_it()
    {
        await using var server = new TestServer("auth");
        var key = server.CreateKey("test");
        Assert.DoesNotContain(key, File.ReadAllText(server.Options.KeysFile));
        await server.StartAsync();
        var http = server.Http;
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/v1/healthz")).StatusCode);
        var anonymous = await http.PostAsync("/v1/sandboxes", null);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Contains("\"code\":\"unauthorized\"", await anonymous.Content.ReadAsStringAsync());
        var wrong = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => Sandbox.CreateAsync(client: server.ClientWithKey("fbx_wrong")));
        Assert.Equal(401, wrong.Status);
        await using var sb = await Sandbox.CreateAsync(client: server.ClientWithKey(key));
        Assert.Equal("1", (await sb.RunCodeAsync("print(1)")).Stdout);
    }

    [Fact]
    public async Task A_non_loopback_listener_without_keys_refuses_to_start()
    {
        await using var server = new TestServer("exposed", o => o with { Listen = "0.0.0.0:0" });
        var e = await Assert.ThrowsAsync<InvalidOperationException>(server.StartAsync);
        Assert.Contains("without API keys", e.Message);
    }

    [Fact]
    public async Task A_second_server_on_the_same_data_directory_refuses_to_start()
    {
        await using var first = await TestServer.StartAsync("twice");
        await using var sb = await Sandbox.CreateAsync(client: first.Client);
        // The second start is the subject, on the first one's options: started raw, so that its failure removes nothing.
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => HostServer.StartAsync(first.Options, ServerFixture.LogToConsole));
        Assert.Contains("already using", e.Message);
        Assert.Equal("still", (await sb.RunCodeAsync("print('still')")).Stdout);
    }
}
