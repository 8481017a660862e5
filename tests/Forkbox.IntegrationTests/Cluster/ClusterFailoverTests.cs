using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core;
using Forkbox.Core.Cluster;
using StackExchange.Redis;

namespace Forkbox.IntegrationTests.Cluster;

/// <summary>
/// A fourth host, ap-1 (region ap, on AS), joins, takes sandboxes, and is killed with SIGKILL:
/// creates fail over, calls to its sandboxes fail fast with 503, it leaves rotation by itself,
/// and its key's tier slots come back. Restarted on the same data directory, it rejoins.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterFailoverTests(ClusterFixture fx)
{
    [Fact]
    public async Task A_killed_host_leaves_rotation_its_creates_fail_over_its_sandboxes_fail_fast_and_its_slots_come_back()
    {
        var dataDir = Path.Combine(fx.Root, "ap-1");
        var ap = await fx.StartHostAsync("ap-1", "ap", "AS", 30, dataDir);
        await fx.WaitForHosts(h => h.Contains("ap-1")); // joined: no edge restarted

        // Three sandboxes of a key that may hold three, all on ap-1.
        using var tiny = fx.Http(fx.EdgeA, "tiny");
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            using var made = await tiny.PostAsJsonAsync("r/ap/v1/sandboxes", new { });
            Assert.Equal(HttpStatusCode.OK, made.StatusCode);
            Assert.Equal("ap", made.Headers.GetValues("X-Forkbox-Region").Single());
            ids.Add((await made.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!);
        }
        Assert.Equal(HttpStatusCode.TooManyRequests, (await tiny.PostAsJsonAsync("v1/sandboxes", new { })).StatusCode);

        ap.Kill();
        await ap.WaitForExitAsync();

        // A call to a sandbox on the dead host: 503 at once, saying why; never retried elsewhere.
        using var open = fx.Http(fx.EdgeB);
        var clock = Stopwatch.StartNew();
        using var exec = await tiny.PostAsJsonAsync($"v1/sandboxes/{ids[0]}/exec", new { code = "print(1)" });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, exec.StatusCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"the 503 took {clock.Elapsed}");
        var error = await exec.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("host_unavailable", error.GetProperty("code").GetString());
        Assert.Contains("ap-1", error.GetProperty("error").GetString());

        // A create placed by continent on the dead host is retried once elsewhere, and says where it went.
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/sandboxes") { Content = JsonContent.Create(new { }) };
        request.Headers.Add("X-Client-Continent", "AS");
        using var failedOver = await open.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, failedOver.StatusCode);
        Assert.NotEqual("ap", failedOver.Headers.GetValues("X-Forkbox-Region").Single());
        var movedId = (await failedOver.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        Assert.NotEqual("ap-1", SandboxId.HostOf(movedId));
        await open.DeleteAsync($"v1/sandboxes/{movedId}");

        // It leaves rotation by itself (its announcement expires), and then its region is unknown.
        await fx.WaitForHosts(h => !h.Contains("ap-1"), 10);
        using var pinned = await open.PostAsJsonAsync("r/ap/v1/sandboxes", new { });
        Assert.Equal(HttpStatusCode.BadRequest, pinned.StatusCode);

        // The key's slots on the dead host are repaired: it may create again.
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(fx.Redis.Endpoint))
        {
            var db = redis.GetDatabase();
            await ServerFixture.WaitUntil(() => db.SortedSetLength(ClusterKeys.Live("tiny")) == 0, "the dead host's slots repaired", 15);
        }
        using var again = await tiny.PostAsJsonAsync("v1/sandboxes", new { });
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        await tiny.DeleteAsync($"v1/sandboxes/{(await again.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()}");

        // Restarted on its data directory, the host cleans what the kill left and rejoins; a clean stop leaves at once.
        await fx.StartHostAsync("ap-1", "ap", "AS", 30, dataDir);
        await fx.WaitForHosts(h => h.Contains("ap-1"));
        await fx.StopHostAsync("ap-1");
        await fx.WaitForHosts(h => !h.Contains("ap-1"), 2);
    }
}
