using System.Net;
using System.Text;
using Forkbox.Client;

namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>
/// A sandbox killed at its memory limit keeps its files: they stay readable from its layers until it
/// is deleted, and a restart gives it a fresh interpreter on them. Resume does not revive it.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class DeadSandboxTests(ServerFixture fx)
{
    private static async Task KillWithMemory(Sandbox sb)
    {
        var r = await sb.RunCodeAsync("hog = b'x' * (1024**3)", timeoutS: 60);
        Assert.Equal("SandboxDied", r.Error?.Name);
        Assert.Equal("dead", (await sb.RefreshAsync()).State);
    }

    [Fact]
    public async Task Files_of_a_sandbox_killed_out_of_memory_can_be_downloaded_listed_and_diffed()
    {
        await using var sb = await fx.NewSandbox(new() { MemoryMb = 256 });
        await using var fresh = await fx.NewSandbox();
        await sb.UploadAsync("/root/data/kept.txt", "kept"u8.ToArray());
        var setup = await sb.ExecAsync("mkdir -p /root/sub && printf hi > /root/sub/a && ln -s sub/a /root/rel && ln -s /root/sub /root/abs" +
                                       " && printf inside > /tmp/inside.txt && ln -s ../../../../../../tmp/inside.txt /root/up" +
                                       " && rm /etc/hostname && mkfifo /root/fifo");
        Assert.Equal(0, setup.ExitCode);
        await KillWithMemory(sb);

        Assert.Equal("kept", Encoding.UTF8.GetString(await sb.DownloadAsync("/root/data/kept.txt")));
        // Symlinks are followed as the sandbox saw them, inside its own root.
        Assert.Equal("hi", Encoding.UTF8.GetString(await sb.DownloadAsync("/root/rel")));
        Assert.Equal("hi", Encoding.UTF8.GetString(await sb.DownloadAsync("/root/abs/a")));
        Assert.Equal("inside", Encoding.UTF8.GetString(await sb.DownloadAsync("/root/up")));
        var root = (await sb.ListAsync("/root")).ToDictionary(e => e.Name);
        Assert.Equal(("dir", "file", "symlink", "other"), (root["data"].Type, (await sb.ListAsync("/root/data"))[0].Type, root["rel"].Type, root["fifo"].Type));
        Assert.Equal(4, (await sb.ListAsync("/root/data")).Single().Size);
        Assert.Contains(await sb.ListAsync("/root/abs"), e => e.Name == "a");
        // Lower layers show through; a file the sandbox removed stays removed.
        Assert.Contains(await sb.ListAsync("/usr"), e => e.Name == "bin");
        Assert.DoesNotContain(await sb.ListAsync("/etc"), e => e.Name == "hostname");

        // Failures answer as the live routes do.
        var missing = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync("/root/nope"));
        Assert.Equal((404, "file_not_found"), (missing.Status, missing.Code));
        Assert.Equal(404, (await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync("/etc/hostname"))).Status);
        Assert.Equal(400, (await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync("/root/sub"))).Status);
        var fifo = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync("/root/fifo"));
        Assert.Equal(400, fifo.Status);
        Assert.Contains("named pipe", fifo.ServerMessage);
        Assert.Equal(400, (await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.ListAsync("/root/data/kept.txt"))).Status);

        var diff = await sb.DiffAsync(fresh);
        Assert.Contains("/root/data/kept.txt", diff.Removed); // what sb has and the fresh one has not
        Assert.Contains("/tmp/inside.txt", diff.Removed);

        // What needs its processes says so, and names the way back.
        var exec = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.RunCodeAsync("1"));
        Assert.Equal((409, "sandbox_dead"), (exec.Status, exec.Code));
        Assert.Contains($"/v1/sandboxes/{sb.Id}/restart", exec.ServerMessage);
        var upload = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.UploadAsync("/root/x", "x"u8.ToArray()));
        Assert.Equal((409, "sandbox_dead"), (upload.Status, upload.Code));
        Assert.Contains("restart", upload.ServerMessage);
    }

    [Fact]
    public async Task A_dead_sandbox_never_reads_host_files_through_its_symlinks()
    {
        var secretDir = Directory.CreateTempSubdirectory("forkbox-host-secret-");
        try
        {
            var secret = Path.Combine(secretDir.FullName, "secret.txt");
            await File.WriteAllTextAsync(secret, "host secret");
            await using var sb = await fx.NewSandbox(new() { MemoryMb = 256 });
            var upper = fx.Server.Sandboxes.Get(sb.Id).Dirs.Layers[0].Upper;
            var setup = await sb.ExecAsync(
                $"ln -s {secret} /root/abs && ln -s ../../../../../../../../..{secret} /root/dots && ln -s {secretDir.FullName} /root/dir" +
                $" && ln -s {upper}/root /root/upper && ln -s /proc/1/root/etc /root/magic");
            Assert.Equal(0, setup.ExitCode);
            await KillWithMemory(sb);
            foreach (var path in new[] { "/root/abs", "/root/dots", "/root/dir/secret.txt", "/root/magic/hostname" })
            {
                var e = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync(path));
                Assert.Equal(404, e.Status);
            }
            Assert.Equal(404, (await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.ListAsync("/root/dir"))).Status);
            Assert.Equal(404, (await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.ListAsync("/root/upper"))).Status);
        }
        finally
        {
            secretDir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Restart_brings_a_dead_sandbox_back_to_ready_with_its_files_and_without_its_variables()
    {
        await using var sb = await fx.NewSandbox(new() { MemoryMb = 256, Env = new() { ["GREETING"] = "hello" } });
        await sb.UploadAsync("/root/kept.txt", "kept"u8.ToArray());
        await sb.RunCodeAsync("x = 41");
        await KillWithMemory(sb);

        var reply = await sb.RestartAsync();
        Assert.Equal((sb.Id, "ready"), (reply.Id, reply.State));
        Assert.Equal("ready", (await sb.RefreshAsync()).State);
        Assert.Null(sb.Info.DeadReason);
        Assert.Equal("1", (await sb.RunCodeAsync("print(1)")).Stdout);
        Assert.Equal("kept", Encoding.UTF8.GetString(await sb.DownloadAsync("/root/kept.txt")));
        Assert.Equal("NameError", (await sb.RunCodeAsync("x")).Error?.Name);
        Assert.Equal("hello", (await sb.RunCodeAsync("import os; print(os.environ['GREETING'])")).Stdout);
        // Its files are its own again: it can change them.
        Assert.Equal("kept!", (await sb.ExecAsync("echo -n '!' >> /root/kept.txt && cat /root/kept.txt")).Stdout);
        Assert.Equal(256, (await sb.RefreshAsync()).Limits!.MemoryMb);
    }

    [Fact]
    public async Task Restart_of_a_live_sandbox_ends_its_running_call_and_keeps_its_files()
    {
        await using var sb = await fx.NewSandbox();
        await sb.RunCodeAsync("x = 1");
        await sb.UploadAsync("/root/kept.txt", "kept"u8.ToArray());
        var started = new TaskCompletionSource();
        var running = sb.RunCodeAsync("print('started', flush=True); import time; time.sleep(60)", onStdout: _ => started.TrySetResult(), timeoutS: 120);
        await started.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var oldPid = fx.Server.Sandboxes.Get(sb.Id).Pid;

        var reply = await sb.RestartAsync();
        Assert.Equal("ready", reply.State);
        var cut = await running.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains("restarted", cut.Stderr);
        Assert.NotEqual(oldPid, fx.Server.Sandboxes.Get(sb.Id).Pid);
        Assert.Equal("NameError", (await sb.RunCodeAsync("x")).Error?.Name);
        Assert.Equal("kept", Encoding.UTF8.GetString(await sb.DownloadAsync("/root/kept.txt")));
        Assert.Equal("2", (await sb.RunCodeAsync("print(1 + 1)")).Stdout);
    }

    [Fact]
    public async Task Resume_of_a_dead_sandbox_is_409_sandbox_dead()
    {
        await using var sb = await fx.NewSandbox(new() { MemoryMb = 256 });
        await KillWithMemory(sb);
        var e = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.ResumeAsync());
        Assert.Equal((409, "sandbox_dead"), (e.Status, e.Code));
        Assert.Contains("restart", e.ServerMessage);
        using var raw = await fx.Http.PostAsync($"/v1/sandboxes/{sb.Id}/resume", null);
        Assert.Equal(HttpStatusCode.Conflict, raw.StatusCode);
    }

    [Fact]
    public async Task Restart_of_an_unknown_sandbox_is_404()
    {
        var e = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => Sandbox.ConnectAsync("sb-nope", fx.Client));
        Assert.Equal(404, e.Status);
        using var raw = await fx.Http.PostAsync("/v1/sandboxes/sb-nope/restart", null);
        Assert.Equal(HttpStatusCode.NotFound, raw.StatusCode);
    }
}
