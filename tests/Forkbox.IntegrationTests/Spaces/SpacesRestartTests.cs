using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Spaces;

/// <summary>
/// Spaces across restarts of the server: a clean stop, a kill -9, and a kill -9 injected in the
/// middle of a hibernate. The crash cases run `forkbox serve` as a separate process, so the kill is real.
/// </summary>
public sealed class SpacesRestartTests
{
    [Fact]
    public async Task A_clean_restart_hibernates_running_spaces_and_marks_the_others_lost()
    {
        await using var server = await TestServer.StartAsync("restart-clean", o => o with { Pool = o.Pool with { Size = 1 } });
        string hibernated, running, ephemeral;
        {
            var client = server.Client;
            var a = await client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true, Name = "a" });
            await a.RunCodeAsync("state = 'hibernated before the stop'");
            await a.HibernateAsync();
            var b = await client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true, Name = "b" });
            await b.RunCodeAsync("state = 'running at the stop'");
            await b.UploadAsync("/root/b.txt", "b's file"u8.ToArray());
            var c = await client.CreateSandboxAsync();
            (hibernated, running, ephemeral) = (a.Id, b.Id, c.Id);
        }

        await server.StopAsync();
        await server.StartAsync();
        {
            var client = server.Client;
            var all = (await client.ListSandboxesAsync()).Sandboxes.ToDictionary(s => s.Id);
            Assert.Equal("hibernated", all[hibernated].State);
            Assert.Equal("hibernated", all[running].State);
            Assert.Equal("lost", all[ephemeral].State);
            Assert.Contains("persistent", all[ephemeral].LostReason);

            var b = await Sandbox.ConnectAsync(running, client);
            var r = await b.RunCodeAsync("[state, open('/root/b.txt').read()]");
            Assert.Equal("""["running at the stop","b's file"]""", r.Result!.Value.GetRawText());
            var a = await Sandbox.ConnectAsync(hibernated, client);
            Assert.Equal("hibernated before the stop", (await a.RunCodeAsync("state")).Result!.Value.GetString());
            Assert.Equal(hibernated, Assert.Single((await client.ListSandboxesAsync("a")).Sandboxes).Id);
            var lost = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => Sandbox.ConnectAsync(ephemeral, client).ContinueWith(t => t.Result.RunCodeAsync("1")).Unwrap());
            Assert.Equal(409, lost.Status);
            Assert.Equal("lost", lost.Code);
        }
    }

    [Fact]
    public async Task Names_are_unique_per_api_key()
    {
        await using var server = new TestServer("names", o => o with { Pool = o.Pool with { Size = 1 } });
        var (alice, bob) = (server.CreateKey("alice"), server.CreateKey("bob"));
        await server.StartAsync();
        var a = server.ClientWithKey(alice);
        var b = server.ClientWithKey(bob);
        var mine = await a.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true, Name = "project" });
        var theirs = await b.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true, Name = "project" });
        Assert.NotEqual(mine.Id, theirs.Id);
        Assert.Equal(mine.Id, Assert.Single((await a.ListSandboxesAsync("project")).Sandboxes).Id);
        Assert.Equal(theirs.Id, Assert.Single((await b.ListSandboxesAsync("project")).Sandboxes).Id);
        var again = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => a.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true, Name = "project" }));
        Assert.Equal("name_taken", again.Code);
    }

    [Fact]
    public async Task After_kill_9_hibernated_spaces_resume_and_running_ones_are_lost_with_a_reason()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), $"forkbox-test-kill9-{Environment.ProcessId}");
        string hibernated, running, ephemeral;
        await using (var server = await ServerProcess.StartAsync(dataDir))
        {
            var a = await server.Client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true });
            await a.RunCodeAsync("value = 'acknowledged'");
            await a.UploadAsync("/root/a.txt", "a's file"u8.ToArray());
            await a.HibernateAsync();
            var b = await server.Client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true });
            await b.RunCodeAsync("value = 'in memory only'");
            var c = await server.Client.CreateSandboxAsync();
            (hibernated, running, ephemeral) = (a.Id, b.Id, c.Id);
            server.Kill();
        }

        await using (var server = await ServerProcess.StartAsync(dataDir))
        {
            var all = (await server.Client.ListSandboxesAsync()).Sandboxes.ToDictionary(s => s.Id);
            Assert.Equal("hibernated", all[hibernated].State);
            Assert.Equal("lost", all[running].State);
            Assert.Contains("restarted", all[running].LostReason);
            Assert.Equal("lost", all[ephemeral].State);
            var a = await Sandbox.ConnectAsync(hibernated, server.Client);
            var r = await a.RunCodeAsync("[value, open('/root/a.txt').read()]");
            Assert.Equal("""["acknowledged","a's file"]""", r.Result!.Value.GetRawText());
            // Nothing of the killed run is left running: only this run's sandboxes have processes.
            Assert.DoesNotContain(Directory.GetDirectories("/sys/fs/cgroup/pids"), d => Directory.Exists(Path.Combine(d, running)));
        }
        Directory.Delete(dataDir, true);
    }

    [Theory]
    [InlineData("hibernate.saved")]
    [InlineData("hibernate.moved")]
    public async Task A_crash_in_the_middle_of_a_hibernate_loses_nothing_that_was_acknowledged(string point)
    {
        var dataDir = Path.Combine(Path.GetTempPath(), $"forkbox-test-fault-{point}-{Environment.ProcessId}");
        string id;
        await using (var server = await ServerProcess.StartAsync(dataDir))
        {
            var sb = await server.Client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true });
            await sb.RunCodeAsync("value = 'first, acknowledged'");
            await sb.UploadAsync("/root/f.txt", "first"u8.ToArray());
            await sb.HibernateAsync();
            id = sb.Id;
        }

        await using (var server = await ServerProcess.StartAsync(dataDir, fault: point))
        {
            var sb = await Sandbox.ConnectAsync(id, server.Client);
            await sb.RunCodeAsync("value = 'second, never acknowledged'");
            await sb.UploadAsync("/root/f.txt", "second"u8.ToArray());
            await Assert.ThrowsAnyAsync<Exception>(() => sb.HibernateAsync()); // the server dies on the way
            await server.WaitForExitAsync();
        }

        await using (var server = await ServerProcess.StartAsync(dataDir))
        {
            var info = Assert.Single((await server.Client.ListSandboxesAsync()).Sandboxes, s => s.Id == id);
            Assert.Equal("lost", info.State);
            Assert.Contains("resume brings back its last hibernated state", info.LostReason);
            var sb = await Sandbox.ConnectAsync(id, server.Client);
            var resumed = await sb.ResumeAsync();
            Assert.Equal("lost", resumed.ResumedFrom);
            var r = await sb.RunCodeAsync("[value, open('/root/f.txt').read()]");
            Assert.Equal("""["first, acknowledged","first"]""", r.Result!.Value.GetRawText());
            // Only the acknowledged generation is kept on disk.
            Assert.Single(Directory.GetDirectories(Path.Combine(dataDir, "sandboxes", ".spaces", id)));
        }
        Directory.Delete(dataDir, true);
    }
}
