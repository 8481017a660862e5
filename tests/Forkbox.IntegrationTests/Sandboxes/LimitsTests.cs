namespace Forkbox.IntegrationTests.Sandboxes;

/// <summary>cgroup limits: memory and processes are capped per sandbox and the server survives what hits them.</summary>
[Collection(ServerCollection.Name)]
public sealed class LimitsTests(ServerFixture fx)
{
    [Fact]
    public async Task A_process_allocating_2GiB_is_killed_and_the_sandbox_goes_on()
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.ExecAsync("python3 -c \"b = b'x' * (2 * 1024**3)\"", timeoutS: 60);
        Assert.Equal(137, r.ExitCode); // SIGKILL from the OOM killer
        var info = await sb.RefreshAsync();
        Assert.True(info.OomKills >= 1, $"oom_kills = {info.OomKills}");
        Assert.Equal("ready", info.State);
        Assert.Equal("ok", (await sb.RunCodeAsync("print('ok')")).Stdout);
    }

    [Fact]
    public async Task A_cell_that_exhausts_memory_kills_its_sandbox_which_is_marked_dead()
    {
        await using var sb = await fx.NewSandbox(new() { MemoryMb = 256 });
        var r = await sb.RunCodeAsync("hog = b'x' * (1024**3)", timeoutS: 60);
        Assert.Equal(137, r.ExitCode);
        Assert.Equal("SandboxDied", r.Error!.Name);
        Assert.Contains("out of memory", r.Stderr);
        var info = await sb.RefreshAsync();
        Assert.Equal("dead", info.State);
        Assert.Contains("256 MB", info.DeadReason);
        var again = await Assert.ThrowsAnyAsync<Forkbox.Client.ForkboxApiException>(() => sb.RunCodeAsync("1"));
        Assert.Equal(409, again.Status);
        // The server is unharmed: a new sandbox works.
        await using var next = await fx.NewSandbox();
        Assert.Equal("2", (await next.RunCodeAsync("print(1 + 1)")).Stdout);
    }

    [Fact]
    public async Task A_fork_bomb_hits_the_pids_limit_and_spares_its_neighbours()
    {
        await using var bomb = await fx.NewSandbox();
        await using var neighbour = await fx.NewSandbox();
        var run = bomb.ExecAsync("bomb() { bomb | bomb & }; bomb; sleep 3", timeoutS: 4);
        await Task.Delay(1500);
        var pids = fx.Server.Sandboxes.Get(bomb.Id).Cgroup.Pids().Count;
        Assert.InRange(pids, 1, fx.Options.Limits.PidsLimit);
        Assert.Equal("fine", (await neighbour.RunCodeAsync("print('fine')")).Stdout);
        await run;
        Assert.Equal("fine", (await neighbour.ExecAsync("echo fine")).Stdout);
    }

    [Fact]
    public async Task Per_request_limits_apply_within_the_server_maximum()
    {
        await using var sb = await fx.NewSandbox(new() { MemoryMb = 300, Cpus = 0.5 });
        Assert.Equal(300, sb.Info.Limits!.MemoryMb);
        Assert.Equal(0.5, sb.Info.Limits.Cpus);
        Assert.Equal(fx.Options.Limits.PidsLimit, sb.Info.Limits.Pids);
        var tooBig = await Assert.ThrowsAnyAsync<Forkbox.Client.ForkboxApiException>(() => fx.NewSandbox(new() { MemoryMb = fx.Options.Limits.MaxMemoryMb + 1 }));
        Assert.Equal(400, tooBig.Status);
        Assert.Contains("memory_mb", tooBig.ServerMessage);
    }
}
