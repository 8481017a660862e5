using Forkbox.Client;
using Forkbox.Core.Wire;
using Forkbox.IntegrationTests.Security;
using Forkbox.Linux;
using Forkbox.Linux.Cgroups;

namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>
/// Stopping the server with agents that do not answer, and starting one after a server was killed:
/// SIGTERM kills what does not stop within the grace and says what it killed; a start on any data
/// directory sweeps what a killed server left (processes, cgroups, mounts) and nothing of a live
/// one. Each test runs `forkbox serve` as its own process, since the signals must be real.
/// </summary>
public sealed class ShutdownTests
{
    private const int SIGSTOP = 19;
    private const double GraceS = 2;

    private static readonly Dictionary<string, string> NoPool = new() { ["FORKBOX_POOLSIZE"] = "0" };

    [Fact]
    public async Task Sigterm_with_agents_that_never_answer_kills_them_after_the_grace_names_each_and_exits()
    {
        var dataDir = DataDir("shutdown-wedged");
        var parent = CgroupDriver.ParentName(dataDir);
        var server = await ServerProcess.StartAsync(dataDir, env: new Dictionary<string, string>(NoPool) { ["FORKBOX_SHUTDOWNGRACES"] = $"{GraceS}" });
        try
        {
            var client = server.Client;
            var space = await client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true }); // to hibernate at the stop
            var busy = await client.CreateSandboxAsync(); // a call running at the stop
            var idle = await client.CreateSandboxAsync(); // nothing to wait for: destroyed at once
            await using var running = busy.StreamAsync(new ExecRequest { Code = "import time\nprint('started', flush=True)\ntime.sleep(600)" })
                .GetAsyncEnumerator();
            Assert.True(await running.MoveNextAsync());
            var call = Task.Run(async () =>
            {
                try
                {
                    while (await running.MoveNextAsync()) { }
                }
                catch (Exception)
                {
                    // the connection is cut when the grace ends
                }
            });
            // Stopped agents answer nothing, not the hibernate, not the interrupt, not the end of a call.
            var wedged = Pids(parent, space.Id).Concat(Pids(parent, busy.Id)).ToList();
            Assert.NotEmpty(wedged);
            foreach (var pid in wedged) Processes.Signal(pid, SIGSTOP);
            var all = wedged.Concat(Pids(parent, idle.Id)).ToList();

            var clock = System.Diagnostics.Stopwatch.StartNew();
            server.Terminate();
            var exited = await server.WaitForExitAsync(TimeSpan.FromSeconds(GraceS + 15));
            Console.WriteLine($"exited: {exited} after {clock.Elapsed.TotalSeconds:F1} s");
            Assert.True(exited, $"forkbox serve was still running {clock.Elapsed.TotalSeconds:F0} s after SIGTERM with a grace of {GraceS} s");
            await call.WaitAsync(TimeSpan.FromSeconds(10));

            var log = server.Log;
            Assert.Contains(log, l => l.Contains($"stopping: 3 sandboxes (1 persistent) get {GraceS} s to stop"));
            var spaceLine = Assert.Single(log, l => l.Contains($"sandbox {space.Id} killed at shutdown"));
            Assert.Contains("save its state (hibernate)", spaceLine);
            var busyLine = Assert.Single(log, l => l.Contains($"sandbox {busy.Id} killed at shutdown"));
            Assert.Contains("its running call to end", busyLine);
            Assert.DoesNotContain(log, l => l.Contains($"sandbox {idle.Id} killed"));
            Assert.Contains(log, l => l.Contains($"sandbox {idle.Id} destroyed: the server is stopping"));
            var summary = Assert.Single(log, l => l.Contains("stopped sandboxes in"));
            Assert.Contains("0 hibernated, 1 destroyed, 2 killed", summary);
            Assert.Contains(space.Id, summary);
            Assert.Contains(busy.Id, summary);

            var survivors = all.Where(IsRunning).ToList();
            Assert.True(survivors.Count == 0, $"sandbox processes still running after the stop: {string.Join(", ", survivors)}");
            Assert.Empty(CgroupDirs(parent));
            Assert.Empty(MountsUnder(dataDir));
        }
        finally
        {
            if (!server.HasExited) server.Kill();
            await server.DisposeAsync();
        }
        RemoveDataDir(dataDir);
    }

    [Fact]
    public async Task A_start_on_another_data_directory_sweeps_what_a_killed_server_left_and_spares_a_live_one()
    {
        var (killedDir, nextDir, liveDir) = (DataDir("sweep-killed"), DataDir("sweep-next"), DataDir("sweep-live"));
        var (killedParent, liveParent) = (CgroupDriver.ParentName(killedDir), CgroupDriver.ParentName(liveDir));
        await using var live = await ServerProcess.StartAsync(liveDir, env: NoPool, label: "live");
        var kept = await live.Client.CreateSandboxAsync();
        await kept.RunCodeAsync("x = 41");
        var keptPids = Pids(liveParent, kept.Id);

        List<int> orphans;
        int killedPid;
        await using (var killed = await ServerProcess.StartAsync(killedDir, env: NoPool, label: "killed"))
        {
            killedPid = killed.Pid;
            var sb = await killed.Client.CreateSandboxAsync();
            await sb.RunCodeAsync("print('soon an orphan')");
            orphans = Pids(killedParent, sb.Id);
            // Stopped, its agent cannot notice that its channel closed: it stays, as a wedged one does.
            foreach (var pid in orphans) Processes.Signal(pid, SIGSTOP);
            // Frozen by the cgroup freezer: on cgroup v1 its processes die of SIGKILL only once thawed.
            var paused = await killed.Client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true });
            await paused.PauseAsync();
            orphans.AddRange(Pids(killedParent, paused.Id));
            killed.Kill();
            await killed.WaitForExitAsync();
        }
        // What the killed server left: its sandbox's processes, its cgroups, its user-namespace mounts.
        Assert.NotEmpty(orphans);
        Assert.All(orphans, pid => Assert.True(IsRunning(pid), $"pid {pid} of the killed server's sandbox already gone"));
        Assert.NotEmpty(CgroupDirs(killedParent));
        Assert.NotEmpty(MountsUnder(killedDir));

        await using var next = await ServerProcess.StartAsync(nextDir, env: NoPool, label: "next");
        var survivors = orphans.Where(IsRunning).ToList();
        Assert.True(survivors.Count == 0, $"processes of the killed server still running after the next start: {string.Join(", ", survivors)}");
        Assert.Empty(CgroupDirs(killedParent));
        Assert.Empty(MountsUnder(killedDir));
        var swept = Assert.Single(next.Log, l => l.Contains($"swept what a killed server left (pid {killedPid}, data dir {killedDir})"));
        Assert.Contains($"{orphans.Count} sandbox processes killed", swept);
        Assert.Contains("2 cgroups under", swept);

        // The live server's sandbox is untouched: same processes, same cgroup, same REPL.
        Assert.DoesNotContain(next.Log, l => l.Contains(liveDir));
        Assert.All(keptPids, pid => Assert.True(IsRunning(pid), $"pid {pid} of the live server's sandbox was killed"));
        Assert.Equal(keptPids, Pids(liveParent, kept.Id));
        Assert.Equal("42", (await kept.RunCodeAsync("x + 1")).Result!.Value.GetRawText());
        RemoveDataDir(killedDir);
    }

    [Fact]
    public async Task The_sweep_detaches_a_killed_servers_storage_image_and_its_next_start_finds_its_spaces_in_it()
    {
        var (killedDir, otherDir) = (DataDir("sweep-image"), DataDir("sweep-image-other"));
        string space;
        await using (var killed = await ServerProcess.StartAsync(killedDir, args: ["--storage-image", "512M"], env: NoPool, label: "killed"))
        {
            var sb = await killed.Client.CreateSandboxAsync(new CreateSandboxRequest { Persistent = true });
            await sb.RunCodeAsync("kept = 'in the image'");
            await sb.HibernateAsync();
            space = sb.Id;
            killed.Kill();
            await killed.WaitForExitAsync();
        }
        var sandboxes = Path.Combine(killedDir, "sandboxes");
        Assert.Contains(sandboxes, MountsUnder(killedDir));

        await using (var other = await ServerProcess.StartAsync(otherDir, env: NoPool, label: "other"))
        {
            Assert.DoesNotContain(sandboxes, MountsUnder(killedDir));
            Assert.Empty(MountsUnder(killedDir));
            Assert.Single(other.Log, l => l.Contains($"swept what a killed server left") && l.Contains($"data dir {killedDir})"));
        }

        // Detached, not deleted: the image, and the hibernated Space in it, are there for the next start on its directory.
        await using (var again = await ServerProcess.StartAsync(killedDir, args: ["--storage-image", "512M"], env: NoPool, label: "again"))
        {
            var sb = await Sandbox.ConnectAsync(space, again.Client);
            Assert.Equal("in the image", (await sb.RunCodeAsync("kept")).Result!.Value.GetString());
            await sb.CloseAsync();
        }
        RemoveDataDir(killedDir);
        RemoveDataDir(otherDir);
    }

    /// <summary>Once nothing is mounted in it any more; a directory still busy is left for the temp cleaner.</summary>
    private static void RemoveDataDir(string dataDir)
    {
        try
        {
            Directory.Delete(dataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static string DataDir(string name) => Path.Combine(Path.GetTempPath(), $"forkbox-test-{name}-{Environment.ProcessId}");

    /// <summary>The host pids in a sandbox's cgroup (its agent and what it started).</summary>
    private static List<int> Pids(string parent, string id) =>
        File.ReadAllLines(Path.Combine(SandboxCgroup.PidsParentDir(parent), id, "cgroup.procs")).Select(int.Parse).ToList();

    /// <summary>A process that still exists and has not exited (a zombie has, and only waits for its parent).</summary>
    private static bool IsRunning(int pid) => !ProcFs.IsZombie(pid);

    /// <summary>The server's cgroup directories in every hierarchy (v1 controllers, or the v2 tree), the freezer pin included.</summary>
    private static List<string> CgroupDirs(string parent) =>
        Directory.GetDirectories("/sys/fs/cgroup").Append("/sys/fs/cgroup")
            .SelectMany(root => new[] { Path.Combine(root, parent), Path.Combine(root, parent + "-pin") })
            .Where(Directory.Exists).ToList();

    private static List<string> MountsUnder(string dataDir) =>
        ProcFs.Mounts().Select(m => m.MountPoint).Where(m => m.StartsWith(dataDir + "/", StringComparison.Ordinal)).ToList();
}
