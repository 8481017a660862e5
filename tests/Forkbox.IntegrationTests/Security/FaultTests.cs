using Forkbox.Client;
using Forkbox.Core.Wire;
using Forkbox.Host;
using Forkbox.Linux;
using Forkbox.Linux.Cgroups;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// Faults: the agent or the zygote killed under a call, the server killed with SIGKILL while
/// creates, forks and hibernates are in flight, and the disk filling up during a hibernate. Each
/// test runs its own server, since it breaks it on purpose.
/// </summary>
public sealed class FaultTests
{
    [Fact]
    public async Task An_agent_killed_mid_call_ends_the_stream_with_an_error_event_and_its_sandbox_is_dead()
    {
        await using var server = await TestServer.StartAsync("fault-agent", o => o with { Pool = o.Pool with { Size = 1 } });
        var client = server.Client;
        var sb = await Sandbox.CreateAsync(null, client);
        var victim = server.Sandboxes.Get(sb.Id);
        var events = new List<ExecEvent>();
        await foreach (var ev in sb.StreamAsync(new ExecRequest { Code = "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.05)", Rich = true }))
        {
            events.Add(ev);
            if (events.Count == 1) Processes.Signal(victim.Pid, Processes.SIGKILL);
        }

        Assert.Contains(events, e => e.Type == "stderr" && e.Data.GetString()!.StartsWith("forkbox:", StringComparison.Ordinal));
        Assert.Equal("SandboxDied", Assert.Single(events, e => e.Type == "error").Name);
        Assert.Equal(137, events[^1].Data.GetInt32());
        Assert.Equal("exit", events[^1].Type);
        var info = await sb.RefreshAsync();
        Assert.Equal("dead", info.State);
        Assert.False(string.IsNullOrEmpty(info.DeadReason));
        var again = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.RunCodeAsync("1"));
        Assert.Equal((409, "sandbox_dead"), (again.Status, again.Code));
        await sb.CloseAsync();
        // A close answers at once and kills in the background (SandboxManager.DestroyAsync).
        await ServerFixture.WaitUntil(() => victim.Cgroup.Pids().Count == 0, "the dead sandbox's cgroup emptying", 10);
        await using var next = await Sandbox.CreateAsync(null, client);
        Assert.Equal("fine", (await next.RunCodeAsync("print('fine')")).Stdout);
    }

    [Fact]
    public async Task Killing_the_zygote_spares_its_sandboxes_and_the_next_create_starts_a_new_one()
    {
        await using var server = await TestServer.StartAsync("fault-zygote", o => o with { Pool = o.Pool with { Size = 0 } });
        var client = server.Client;
        // A block of its own, so that its sandboxes close before the server stops and the leak check runs.
        {
            await using var survivor = await Sandbox.CreateAsync(null, client);
            await survivor.RunCodeAsync("kept = 'still here'");
            var zygote = server.Sandboxes.ZygotePid("default") ?? throw new InvalidOperationException("no zygote after a create");

            // Killed with creates in flight: each either succeeds or fails with an API error, none hangs.
            var inFlight = Enumerable.Range(0, 4).Select(_ => Sandbox.CreateAsync(null, client)).ToList();
            Processes.Signal(zygote, Processes.SIGKILL);
            var outcomes = await Task.WhenAll(inFlight.Select(async t =>
            {
                try
                {
                    await using var sb = await t.WaitAsync(TimeSpan.FromSeconds(60));
                    return (await sb.RunCodeAsync("print('ok')")).Stdout;
                }
                catch (ForkboxApiException e)
                {
                    return $"{e.Status} {e.Code}";
                }
            }));
            Console.WriteLine("creates in flight when the zygote died: " + string.Join(", ", outcomes));
            Assert.All(outcomes, o => Assert.True(o == "ok" || o.StartsWith('5'), o));

            Assert.Equal("still here", (await survivor.RunCodeAsync("kept")).Result!.Value.GetString());
            await using var after = await Sandbox.CreateAsync(null, client);
            Assert.Equal("ok", (await after.RunCodeAsync("print('ok')")).Stdout);
            Assert.NotEqual(zygote, server.Sandboxes.ZygotePid("default"));
        }

        await server.DisposeAsync();
        AssertNothingLeft(server.Options.DataDir);
    }

    [Fact]
    public async Task A_kill_9_with_creates_forks_and_hibernates_in_flight_leaks_nothing_and_keeps_every_acknowledged_space()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), $"forkbox-test-kill9-inflight-{Environment.ProcessId}");
        var parent = CgroupDriver.ParentName(dataDir);
        var acknowledged = new Dictionary<string, string>(); // id -> the value its REPL held when acknowledged
        var hibernatedAck = new HashSet<string>();
        var killedRun = new HashSet<string>();
        var leftPids = new List<int>();
        await using (var server = await ServerProcess.StartAsync(dataDir, env: new Dictionary<string, string> { ["FORKBOX_POOLSIZE"] = "2" }))
        {
            var client = server.Client;
            var a = await client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true, Name = "before" });
            await a.RunCodeAsync("value = 'hibernated before'");
            await a.HibernateAsync();
            (acknowledged[a.Id], _) = ("hibernated before", hibernatedAck.Add(a.Id));
            var running = new List<Sandbox>();
            for (var i = 0; i < 3; i++)
            {
                var s = await client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true });
                await s.RunCodeAsync($"value = 'space {i}'");
                running.Add(s);
            }
            var forkParent = await client.CreateSandboxAsync();
            await forkParent.RunCodeAsync("value = 'fork parent'");

            var creates = Enumerable.Range(0, 6).Select(i => client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = i % 2 == 0 })).ToList();
            var forks = Enumerable.Range(0, 2).Select(_ => forkParent.ForkAsync(2)).ToList();
            var hibernates = running.Select(s => s.HibernateAsync()).ToList();
            // Killed once a few have been answered, so that some are acknowledged and others in flight.
            var inFlight = creates.Cast<Task>().Concat(forks).Concat(hibernates).ToList();
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (inFlight.Count(t => t.IsCompleted) < 4 && DateTime.UtcNow < deadline) await Task.WhenAny(inFlight.Where(t => !t.IsCompleted));
            foreach (var dir in Directory.GetDirectories(SandboxCgroup.PidsParentDir(parent)))
                killedRun.Add(Path.GetFileName(dir));
            server.Kill();
            await server.WaitForExitAsync();

            foreach (var t in creates)
                if (await Succeeded(t)) acknowledged[(await t).Id] = "";
            for (var i = 0; i < running.Count; i++)
                if (await Succeeded(hibernates[i]))
                    (acknowledged[running[i].Id], _) = ($"space {i}", hibernatedAck.Add(running[i].Id));
            foreach (var t in forks)
                if (await Succeeded(t))
                    foreach (var c in await t) killedRun.Add(c.Id);
            // Another server starting meanwhile (a test running in parallel) may already have swept
            // them as a dead server's leftovers: what is gone is not left running either.
            var left = SandboxCgroup.PidsParentDir(parent);
            foreach (var dir in Directory.Exists(left) ? Directory.GetDirectories(left) : [])
            {
                killedRun.Add(Path.GetFileName(dir));
                try
                {
                    leftPids.AddRange(File.ReadAllLines(Path.Combine(dir, "cgroup.procs")).Select(int.Parse));
                }
                catch (IOException)
                {
                }
            }
            Console.WriteLine($"killed with {killedRun.Count} sandboxes and {inFlight.Count(t => !t.IsCompletedSuccessfully)} of {inFlight.Count} calls unanswered; " +
                              $"acknowledged: {acknowledged.Count} sandboxes ({hibernatedAck.Count} hibernated); processes left running: {leftPids.Count}");
        }

        await using (var server = await ServerProcess.StartAsync(dataDir))
        {
            // No process of the killed run survives its restart.
            var survivors = leftPids.Where(p => Directory.Exists($"/proc/{p}") && !File.ReadAllText($"/proc/{p}/stat").Contains(") Z ")).ToList();
            Assert.True(survivors.Count == 0, $"processes of the killed run still alive: {string.Join(", ", survivors)}");
            // Every acknowledged sandbox is listed; every acknowledged hibernate resumes with its state.
            var all = (await server.Client.ListSandboxesAsync()).Sandboxes.ToDictionary(s => s.Id);
            foreach (var (id, value) in acknowledged)
            {
                Assert.True(all.ContainsKey(id), $"acknowledged sandbox {id} is gone after the restart");
                if (!hibernatedAck.Contains(id)) continue;
                Assert.Equal("hibernated", all[id].State);
                var sb = await Sandbox.ConnectAsync(id, server.Client);
                Assert.Equal(value, (await sb.RunCodeAsync("value")).Result!.Value.GetString());
            }
            // Nothing of the killed run's sandboxes is left but their records and saved states.
            var layers = Directory.GetDirectories(Path.Combine(dataDir, "sandboxes")).Select(Path.GetFileName).ToHashSet();
            var leftovers = killedRun.Where(id => layers.Contains(id) && !all.ContainsKey(id)).ToList();
            Assert.True(leftovers.Count == 0, $"layers left by the killed run: {string.Join(", ", leftovers)}");
            var cgroups = CgroupDirs(parent).Select(Path.GetFileName).ToHashSet();
            Assert.DoesNotContain(killedRun, id => cgroups.Contains(id) && !(all.TryGetValue(id, out var s) && s.State == "ready"));
            var spaces = Directory.GetDirectories(Path.Combine(dataDir, "sandboxes", ".spaces")).Select(Path.GetFileName);
            Assert.All(spaces, id => Assert.True(all.ContainsKey(id!), $"saved state of unknown sandbox {id}"));
        }
        AssertNothingLeft(dataDir);
        Directory.Delete(dataDir, true);
    }

    [Fact]
    public async Task A_disk_full_during_a_hibernate_answers_507_and_loses_nothing()
    {
        await using var server = await TestServer.StartAsync("fault-diskfull", o => o with { Storage = o.Storage with { ImageBytes = 640L << 20, ImageFs = "btrfs" }, Pool = o.Pool with { Size = 1 } });
        var options = server.Options;
        var client = server.Client;
        await using var sb = await Sandbox.CreateAsync(new() { Persistent = true, DiskMb = options.Limits.MaxDiskMb }, client);
        await sb.RunCodeAsync("keep = 'acknowledged'");
        await sb.HibernateAsync();
        await sb.ResumeAsync();
        await sb.RunCodeAsync("big = bytes(range(256)) * (50 << 12)"); // 50 MiB of REPL state
        var fill = await sb.ExecAsync("dd if=/dev/zero of=/root/fill bs=1M status=none; sync; echo rc=$?", timeoutS: 280);
        Assert.Contains("No space left on device", fill.Stderr);

        var full = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.HibernateAsync());
        Console.WriteLine($"hibernate on a full disk: {full.Status} {full.Code}: {full.ServerMessage}");
        Assert.Equal((507, "no_space"), (full.Status, full.Code));
        // The sandbox runs on, with everything in memory and on disk.
        Assert.Equal("ready", (await sb.RefreshAsync()).State);
        Assert.Equal("""["acknowledged",52428800]""", (await sb.RunCodeAsync("[keep, len(big)]")).Result!.Value.GetRawText());

        await sb.ExecAsync("rm -f /root/fill; sync");
        await sb.HibernateAsync();
        await sb.ResumeAsync();
        Assert.Equal("""["acknowledged",52428800]""", (await sb.RunCodeAsync("[keep, len(big)]")).Result!.Value.GetRawText());
    }

    private static async Task<bool> Succeeded(Task t)
    {
        try
        {
            await t.WaitAsync(TimeSpan.FromSeconds(30));
            return true;
        }
        catch (Exception)
        {
            return false;
        }
    }

    private static IEnumerable<string> CgroupDirs(string parent)
    {
        var roots = File.Exists("/sys/fs/cgroup/cgroup.controllers")
            ? ["/sys/fs/cgroup"]
            : new[] { "memory", "cpu", "pids", "freezer" }.Select(c => Path.Combine("/sys/fs/cgroup", c));
        return roots.Select(r => Path.Combine(r, parent)).Where(Directory.Exists).SelectMany(Directory.GetDirectories);
    }

    /// <summary>After a server on <paramref name="dataDir"/> stopped: no mount, cgroup or process of it remains.</summary>
    private static void AssertNothingLeft(string dataDir)
    {
        var full = Path.GetFullPath(dataDir);
        var mounts = File.ReadLines("/proc/self/mountinfo").Where(l => l.Split(' ')[4].StartsWith(full, StringComparison.Ordinal)).ToList();
        Assert.True(mounts.Count == 0, "mounts left: " + string.Join(" | ", mounts));
        var parent = CgroupDriver.ParentName(dataDir);
        var roots = File.Exists("/sys/fs/cgroup/cgroup.controllers") ? ["/sys/fs/cgroup"] : Directory.GetDirectories("/sys/fs/cgroup");
        var cgroups = roots.Select(r => Path.Combine(r, parent)).Where(Directory.Exists).ToList();
        Assert.True(cgroups.Count == 0, "cgroups left: " + string.Join(", ", cgroups));
        var processes = Directory.GetDirectories("/proc").Where(d => Path.GetFileName(d).All(char.IsDigit)).Where(d =>
        {
            try
            {
                return File.ReadAllText(Path.Combine(d, "cmdline")).Contains(full, StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false;
            }
        }).ToList();
        Assert.True(processes.Count == 0, "processes left: " + string.Join(", ", processes));
    }
}
