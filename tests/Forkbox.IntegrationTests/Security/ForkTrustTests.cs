using Forkbox.Client;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// Forks get no more than their parent, and nothing the parent's agent says about them is taken on
/// trust: user code runs in the agent's own process and can rewrite what it asks and answers. The
/// agent is reached the way an attacker would, from the REPL, through the garbage collector.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ForkTrustTests(ServerFixture fx)
{
    private const string FindAgent = """
        import gc
        from forkbox_agent import agent as _fa
        _agent = next(o for o in gc.get_objects() if isinstance(o, _fa.Agent))
        """;

    private static async Task Run(Sandbox sb, string code)
    {
        var r = await sb.RunCodeAsync(code);
        Assert.True(r.ExitCode == 0, r.Stderr);
    }

    /// <summary>Sandboxes listed, counted by the server, and cgroups on the host, with the pool full (so refills do not move them).</summary>
    private async Task<(int Listed, int Running, int Cgroups)> Census()
    {
        await fx.WaitForPool(fx.Options.Pool.Size);
        // Sandboxes that earlier tests closed release their cgroups in the background: count once
        // every cgroup is one the server holds (live or pooled) on five reads in a row, 20 ms
        // apart (one read can match while a refill and a release are both in flight), or after 10 s
        // whatever is there.
        var dir = SandboxCgroup.PidsParentDir(Forkbox.Linux.Cgroups.CgroupDriver.ParentName(fx.Options.DataDir));
        var manager = fx.Server.Sandboxes;
        int cgroups;
        var steady = 0;
        for (var waited = System.Diagnostics.Stopwatch.StartNew(); ; await Task.Delay(20))
        {
            cgroups = Directory.GetDirectories(dir).Length;
            // Retired ones too (an earlier test's parent, kept until its forks ended) are swept first:
            // one swept between two censuses made them differ by its cgroup.
            steady = cgroups == manager.Running + manager.Pools.Sum(p => p.Ready) && manager.Retired == 0 ? steady + 1 : 0;
            if (steady == 5 || waited.Elapsed > TimeSpan.FromSeconds(10)) break;
        }
        return ((await fx.Client.ListSandboxesAsync()).Sandboxes.Count, (await fx.Client.CapacityAsync()).Running, cgroups);
    }

    private IReadOnlyList<int> PidsOf(Sandbox sb) => fx.Server.Sandboxes.Get(sb.Id).Cgroup.Pids();

    [Fact]
    public async Task A_fork_of_one_that_the_agent_turns_into_three_makes_no_extra_sandbox()
    {
        await using var sb = await fx.NewSandbox();
        var before = await Census();
        await Run(sb, FindAgent + "\n" + """
            _read = _agent.chan.reader.read
            def _more():
                header, payload = _read()
                if header.get("op") == "fork":
                    header["n"] = 3
                return header, payload
            _agent.chan.reader.read = _more
            """);

        IReadOnlyList<Sandbox>? forks = null;
        try
        {
            forks = await sb.ForkAsync(1);
        }
        catch (ForkboxApiException e)
        {
            Assert.Contains("pid", e.Message);
        }
        Assert.True(forks is null, $"asked for 1 fork, got {forks?.Count}");
        Assert.Equal(before, await Census());
    }

    [Fact]
    public async Task A_fork_answer_naming_a_process_that_is_not_a_fork_takes_nothing_of_it()
    {
        await using var sb = await fx.NewSandbox();
        await Run(sb, "open('/root/marker', 'w').write('parent')");
        var before = await Census();
        // A process of the parent's own, in its namespaces: grafting a root onto it would move the
        // parent's own mount namespace, and its cgroup would be a fork's.
        await Run(sb, FindAgent + "\n" + """
            import subprocess
            _bystander = subprocess.Popen(["sleep", "600"])
            _send = _agent.chan.send
            def _lie(header, payload=b""):
                if "pids" in header:
                    header = {**header, "pids": [_bystander.pid]}
                return _send(header, payload)
            _agent.chan.send = _lie
            """);
        var parentPids = PidsOf(sb);

        await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.ForkAsync(1));

        Assert.Equal(before, await Census());
        Assert.True(parentPids.All(PidsOf(sb).Contains), "a process of the parent's left its cgroup");
        var after = await sb.RunCodeAsync("_agent.chan.send = _send\n[_bystander.poll() is None, open('/root/marker').read()]");
        Assert.True(after.ExitCode == 0, after.Stderr);
        Assert.Equal("[true,\"parent\"]", after.Result!.Value.GetRawText().Replace(" ", ""));
    }

    [Fact]
    public async Task A_fork_keeps_no_descriptor_into_its_parents_deleted_directories_or_sockets()
    {
        await using var sb = await fx.NewSandbox();
        await Run(sb, """
            import os, socket
            os.makedirs('/root/gone/sub')
            gone = os.open('/root/gone/sub', os.O_RDONLY | os.O_DIRECTORY)
            os.rmdir('/root/gone/sub')
            server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()
            client = socket.create_connection(server.getsockname())
            peer, _ = server.accept()
            """);
        var fork = (await sb.ForkAsync(1)).Single();
        await using var _ = fork;

        var tried = await fork.RunCodeAsync(SandboxProbe.Attempt + """
            def write_through_deleted_dir():
                up = os.open('..', os.O_RDONLY | os.O_DIRECTORY, dir_fd=gone)
                fd = os.open('from-the-fork', os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=up)
                os.write(fd, b'fork'); os.close(fd); os.close(up)
            [attempt(write_through_deleted_dir), attempt(lambda: client.sendall(b'from the fork'))]
            """);
        Assert.True(tried.ExitCode == 0, tried.Stderr);

        var parent = await sb.RunCodeAsync("""
            peer.settimeout(0.5)
            try:
                got = peer.recv(100).decode()
            except OSError:
                got = ''
            [os.path.exists('/root/gone/from-the-fork'), got]
            """);
        Assert.True(parent.ExitCode == 0, parent.Stderr);
        Assert.True(parent.Result!.Value[0].GetBoolean() == false, $"the fork wrote into the parent's /root through a deleted directory ({tried.Result})");
        Assert.True(parent.Result!.Value[1].GetString() == "", $"the fork sent on the parent's socket ({tried.Result})");
    }

    [Fact]
    public async Task A_fork_keeps_no_pipe_or_memory_file_shared_with_its_parent()
    {
        await using var sb = await fx.NewSandbox();
        await Run(sb, """
            import os
            r, w = os.pipe()
            os.set_blocking(r, False)
            mem = os.memfd_create('shared')
            os.write(mem, b'parent')
            """);
        var fork = (await sb.ForkAsync(1)).Single();
        await using var _ = fork;
        var tried = await fork.RunCodeAsync(SandboxProbe.Attempt + """
            [attempt(lambda: os.write(w, b'fork')), attempt(lambda: os.pwrite(mem, b'FORKED', 0))]
            """);
        Assert.True(tried.ExitCode == 0, tried.Stderr);
        var parent = await sb.RunCodeAsync("""
            try:
                got = os.read(r, 100).decode()
            except BlockingIOError:
                got = ''
            [got, os.pread(mem, 6, 0).decode()]
            """);
        Assert.True(parent.ExitCode == 0, parent.Stderr);
        Assert.True(parent.Result!.Value[0].GetString() == "", $"the fork wrote into the parent's pipe ({tried.Result})");
        Assert.True(parent.Result!.Value[1].GetString() == "parent", $"the fork wrote into the parent's memory file ({tried.Result})");
    }
}
