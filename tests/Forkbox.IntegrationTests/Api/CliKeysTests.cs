using System.Net;

namespace Forkbox.IntegrationTests.Api;

/// <summary>`forkbox keys create|list|revoke`, the real CLI on a real server's data directory, and what the running server then accepts.</summary>
public sealed class CliKeysTests
{
    [Fact]
    public async Task Keys_create_refuses_a_name_used_twice_list_shows_keys_and_revoke_takes_one_out_of_a_running_server()
    {
        await using var server = new TestServer("cli-keys", o => o with { Pool = o.Pool with { Size = 0 } });
        string[] At(params string[] args) => [.. args, "--data-dir", server.Options.DataDir];

        var alice = await CliProcess.RunAsync(At("keys", "create", "--name", "alice"));
        Assert.True(alice.ExitCode == 0, alice.ToString());
        var aliceKey = alice.Stdout.Trim();
        var twice = await CliProcess.RunAsync(At("keys", "create", "--name", "alice", "--admin"));
        Assert.True(twice.ExitCode == 2, twice.ToString());
        Assert.Equal($"forkbox keys create: a key named 'alice' already exists in {server.Options.KeysFile} (prefix {aliceKey[..8]}); " +
                     "choose another --name, or revoke it first with `forkbox keys revoke alice`", twice.Stderr.Trim());
        Assert.Equal("", twice.Stdout);
        var bob = await CliProcess.RunAsync(At("keys", "create", "--name", "bob", "--admin"));
        Assert.True(bob.ExitCode == 0, bob.ToString());

        var list = await CliProcess.RunAsync(At("keys", "list"));
        Assert.True(list.ExitCode == 0, list.ToString());
        var rows = list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')).ToList();
        Assert.Equal([["alice", aliceKey[..8], "user", "-"], ["bob", bob.Stdout.Trim()[..8], "admin", "-"]], rows.Select(r => r[..4]));
        Assert.DoesNotContain(aliceKey, list.Stdout, StringComparison.Ordinal);

        await server.StartAsync();
        using var asAlice = server.HttpWithKey(aliceKey);
        Assert.Equal(HttpStatusCode.OK, (await asAlice.GetAsync("/v1/sandboxes")).StatusCode);
        var revoke = await CliProcess.RunAsync(At("keys", "revoke", "alice"));
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        Assert.Contains("revoked key 'alice'", revoke.Stderr, StringComparison.Ordinal);
        await ServerFixture.WaitUntil(() => asAlice.GetAsync("/v1/sandboxes").Result.StatusCode == HttpStatusCode.Unauthorized, "the revoked key refused", 10);

        var unknown = await CliProcess.RunAsync(At("keys", "revoke", "alice"));
        Assert.True(unknown.ExitCode == 2, unknown.ToString());
        Assert.Contains("no key named 'alice'", unknown.Stderr, StringComparison.Ordinal);
        var last = await CliProcess.RunAsync(At("keys", "revoke", "bob"));
        Assert.True(last.ExitCode == 2, last.ToString());
        Assert.Contains("'bob' is the only key", last.Stderr, StringComparison.Ordinal);
    }
}
