using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core.Cluster;
using Forkbox.Core.Wire;
using StackExchange.Redis;

namespace Forkbox.IntegrationTests.Cluster;

/// <summary>Tier limits, held in Redis across both edges: concurrent sandboxes, creates per minute, and their repair.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterLimitTests(ClusterFixture fx)
{
    private async Task<long> Counted(string owner)
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(fx.Redis.Endpoint);
        return await redis.GetDatabase().SortedSetLengthAsync(ClusterKeys.Live(owner));
    }

    [Fact]
    public async Task Two_hundred_concurrent_creates_over_both_edges_get_exactly_the_tiers_twenty()
    {
        using var a = fx.Http(fx.EdgeA, "limited");
        using var b = fx.Http(fx.EdgeB, "limited");
        var responses = await Task.WhenAll(Enumerable.Range(0, 200).Select(async i =>
        {
            var response = await (i % 2 == 0 ? a : b).PostAsJsonAsync("v1/sandboxes", new { });
            return (response.StatusCode, Body: await response.Content.ReadFromJsonAsync<JsonElement>(), RetryAfter: response.Headers.RetryAfter?.Delta);
        }));
        var made = responses.Where(r => r.StatusCode == HttpStatusCode.OK).Select(r => r.Body.GetProperty("id").GetString()!).ToList();
        var refused = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        try
        {
            Assert.Equal(20, made.Count);
            Assert.Equal(180, refused.Count); // nothing else: no 5xx, no lost request
            Assert.All(refused, r =>
            {
                Assert.Equal("too_many_sandboxes", r.Body.GetProperty("code").GetString());
                Assert.Contains("may hold 20 sandboxes at once", r.Body.GetProperty("error").GetString());
                Assert.NotNull(r.RetryAfter);
            });
            Assert.Equal(20, await Counted("limited"));
            // Both edges refuse the 21st while the 20 live.
            Assert.Equal(HttpStatusCode.TooManyRequests, (await b.PostAsJsonAsync("v1/sandboxes", new { })).StatusCode);
        }
        finally
        {
            await Task.WhenAll(made.Select((id, i) => (i % 2 == 0 ? b : a).DeleteAsync($"v1/sandboxes/{id}")));
        }
        Assert.Equal(0, await Counted("limited")); // each close gave its slot back, whichever edge it went through
        using var again = await a.PostAsJsonAsync("v1/sandboxes", new { });
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        await a.DeleteAsync($"v1/sandboxes/{(await again.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()}");
    }

    [Fact]
    public async Task Forks_count_against_the_tier_and_merge_into_gives_the_winners_slot_back()
    {
        var client = fx.Client(fx.EdgeA, "tiny"); // 3 at once
        await using var parent = await Sandbox.CreateAsync(client: client);
        var over = await Assert.ThrowsAsync<ForkboxRateLimitedException>(() => parent.ForkAsync(3));
        Assert.Equal("too_many_sandboxes", over.Code);
        var children = await parent.ForkAsync(2);
        Assert.Equal(3, await Counted("tiny"));
        await parent.MergeIntoAsync(children[0]);
        Assert.Equal(2, await Counted("tiny"));
        await children[1].CloseAsync();
        Assert.Equal(1, await Counted("tiny"));
    }

    [Fact]
    public async Task Creates_over_the_tiers_rate_get_429_with_the_wait_in_Retry_After()
    {
        using var http = fx.Http(fx.EdgeB, "slow"); // 5 creates a minute
        using var other = fx.Http(fx.EdgeA, "slow");
        // The window is the clock's minute (Redis's clock): start well inside one, so all seven creates share it.
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(fx.Redis.Endpoint))
        {
            var now = await redis.GetServer(redis.GetEndPoints()[0]).TimeAsync();
            if (now.Second > 50) await Task.Delay(TimeSpan.FromSeconds(61 - now.Second));
        }
        var ids = new List<string>();
        HttpResponseMessage? limited = null;
        for (var i = 0; i < 7 && limited is null; i++)
        {
            var response = await (i % 2 == 0 ? http : other).PostAsJsonAsync("v1/sandboxes", new { });
            if (response.StatusCode == HttpStatusCode.OK) ids.Add((await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!);
            else limited = response;
        }
        foreach (var id in ids) await http.DeleteAsync($"v1/sandboxes/{id}");
        Assert.NotNull(limited);
        Assert.Equal(5, ids.Count);
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.Equal("rate_limited", (await limited.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("code").GetString());
        Assert.InRange(limited.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 1, 60);
    }

    [Fact]
    public async Task A_sandbox_that_expires_on_its_host_gives_its_slot_back_by_reconciliation()
    {
        var client = fx.Client(fx.EdgeB, "one");
        var first = await Sandbox.CreateAsync(new CreateSandboxRequest { TimeoutS = 1 }, client);
        await Assert.ThrowsAsync<ForkboxRateLimitedException>(() => Sandbox.CreateAsync(client: client));
        // The host ends it after a second; no edge hears of it but through the hosts' announcements.
        await ServerFixture.WaitUntil(() => Counted("one").Result == 0, "the expired sandbox's slot repaired", 15);
        await using var second = await Sandbox.CreateAsync(client: client);
        Assert.NotEqual(first.Id, second.Id);
    }

    [Fact]
    public async Task A_slot_the_counts_lack_is_added_back_from_the_hosts()
    {
        var client = fx.Client(fx.EdgeA, "one");
        await using var sb = await Sandbox.CreateAsync(client: client);
        // A lost update (an edge died between the create and its count): the reconciler restores it.
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(fx.Redis.Endpoint))
            await redis.GetDatabase().SortedSetRemoveAsync(ClusterKeys.Live("one"), sb.Id);
        await ServerFixture.WaitUntil(() => Counted("one").Result == 1, "the missing slot added back", 15);
        await Assert.ThrowsAsync<ForkboxRateLimitedException>(() => Sandbox.CreateAsync(client: client));
    }
}
