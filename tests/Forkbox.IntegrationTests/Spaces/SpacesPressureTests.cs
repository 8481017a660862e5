using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Spaces;

/// <summary>Memory pressure hibernates persistent sandboxes, the longest idle first.</summary>
public sealed class SpacesPressureTests
{
    [Fact]
    public async Task Under_memory_pressure_the_longest_idle_space_is_hibernated_first()
    {
        // Pressure whenever less than 100% of memory is free: always, so the policy acts on every tick.
        await using var server = await TestServer.StartAsync("pressure", o => o with { Pool = o.Pool with { Size = 1 }, Spaces = o.Spaces with { MemoryPressurePercent = 100 } });
        var client = server.Client;
        var ephemeral = await client.CreateSandboxAsync();
        var idle = await client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true });
        var busy = await client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true });
        await idle.RunCodeAsync("x = 'idle'");
        string State(Sandbox s) => server.Sandboxes.Describe(s.Id).State;

        // Keep one in use; the other must go first.
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (State(idle) != "hibernated")
        {
            Assert.True(DateTime.UtcNow < deadline, "the idle space was not hibernated under memory pressure within 20 s");
            Assert.Equal(0, (await busy.RunCodeAsync("1")).ExitCode);
            Assert.NotEqual("hibernated", State(busy));
        }
        // Then the busy one, once it is the longest idle; never the ephemeral one.
        await ServerFixture.WaitUntil(() => State(busy) == "hibernated", "the second space hibernated", 20);
        Assert.Equal("ready", State(ephemeral));
        Assert.Equal("idle", (await idle.RunCodeAsync("x")).Result!.Value.GetString());
    }
}
