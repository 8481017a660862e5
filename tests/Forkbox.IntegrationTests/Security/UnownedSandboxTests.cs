using System.Net;
using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// Sandboxes made before the first API key belong to no key ("local"): the first key would orphan
/// them, Spaces (which never expire) included. `forkbox keys create --adopt-local` makes the new key
/// their owner, on a running server or at its next start; without it, start-up names them and the
/// command that reclaims them.
/// </summary>
public sealed class UnownedSandboxTests
{
    private static async Task<string> CreateKeyWithCli(TestServer server, params string[] flags)
    {
        var r = await CliProcess.RunAsync(["keys", "create", .. flags, "--data-dir", server.Options.DataDir]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r.Stdout.Trim();
    }

    /// <summary>The key's sandboxes once the server has noticed the key (it re-reads the keys file within a second).</summary>
    private static async Task<List<SandboxInfo>> ListOnceKnown(TestServer server, string key)
    {
        // Until a server notices its first key it has no auth, and a request with a key is "local".
        await ServerFixture.WaitUntil(() => server.Http.GetAsync("/v1/sandboxes").Result.StatusCode == HttpStatusCode.Unauthorized, "auth on", 15);
        var client = server.ClientWithKey(key);
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            try
            {
                return (await client.ListSandboxesAsync()).Sandboxes.ToList();
            }
            catch (ForkboxApiException e) when (e.Status == (int)HttpStatusCode.Unauthorized && DateTime.UtcNow < deadline)
            {
                await Task.Delay(200);
            }
        }
    }

    [Fact]
    public async Task The_first_key_created_with_adopt_local_owns_the_sandboxes_and_spaces_made_without_keys()
    {
        var log = new CapturedLog();
        await using var server = await TestServer.StartAsync("adopt-local", o => o with { Pool = o.Pool with { Size = 0 } }, log.Configure);
        var sandbox = await server.Client.CreateSandboxAsync();
        var space = await server.Client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true, Name = "notes" });
        await space.RunCodeAsync("kept = 'before the first key'");

        var alice = await CreateKeyWithCli(server, "--name", "alice", "--adopt-local");
        var mine = await ListOnceKnown(server, alice);
        Assert.Equal([sandbox.Id, space.Id], mine.Select(s => s.Id));
        Assert.Contains(log.Lines, l => l.Contains("key alice adopted 2 sandboxes", StringComparison.Ordinal));
        var asAlice = server.ClientWithKey(alice);
        Assert.Equal(space.Id, Assert.Single((await asAlice.ListSandboxesAsync("notes")).Sandboxes).Id);
        var reached = await Sandbox.ConnectAsync(space.Id, asAlice);
        Assert.Equal("before the first key", (await reached.RunCodeAsync("kept")).Result!.Value.GetString());

        // A later key adopts nothing: they are alice's now, and 404 to anyone else.
        var bob = await CreateKeyWithCli(server, "--name", "bob", "--adopt-local");
        Assert.Empty(await ListOnceKnown(server, bob));
        var notBobs = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => Sandbox.ConnectAsync(sandbox.Id, server.ClientWithKey(bob)));
        Assert.Equal(404, notBobs.Status);

        // Recorded: alice still owns the Space after a restart.
        await server.StopAsync();
        await server.StartAsync();
        Assert.Equal(space.Id, Assert.Single((await server.ClientWithKey(alice).ListSandboxesAsync("notes")).Sandboxes).Id);
        Assert.True(await server.ClientWithKey(alice).DeleteSandboxAsync(space.Id));
    }

    [Fact]
    public async Task Without_adopt_local_start_up_names_the_unowned_sandboxes_and_the_command_that_reclaims_them()
    {
        var log = new CapturedLog();
        await using var server = await TestServer.StartAsync("unowned-log", o => o with { Pool = o.Pool with { Size = 0 } }, log.Configure);
        var space = await server.Client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true, Name = "project" });
        await server.StopAsync();
        var alice = await CreateKeyWithCli(server, "--name", "alice");
        await server.StartAsync();

        var warning = Assert.Single(log.Lines, l => l.Contains("made before the first API key", StringComparison.Ordinal));
        Assert.Contains($"{space.Id} (Space 'project')", warning, StringComparison.Ordinal);
        Assert.Contains("1 sandboxes (1 of them Spaces", warning, StringComparison.Ordinal);
        Assert.Contains("forkbox keys create --name NAME --adopt-local", warning, StringComparison.Ordinal);
        Assert.Empty(await ListOnceKnown(server, alice));

        // What the line says to do works on the running server.
        var owner = await CreateKeyWithCli(server, "--name", "owner", "--adopt-local");
        Assert.Equal(space.Id, Assert.Single(await ListOnceKnown(server, owner)).Id);
    }
}
