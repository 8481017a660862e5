namespace Forkbox.IntegrationTests.Security;

/// <summary>What a sandbox can see and do: only its own processes, files and loopback; no host privileges.</summary>
[Collection(ServerCollection.Name)]
public sealed class IsolationTests(ServerFixture fx)
{
    // Each line prints the errno a call failed with (0 if it succeeded).
    private const string TryCalls = """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        def errno_of(rc):
            return ctypes.get_errno() if rc != 0 else 0
        os.makedirs('/root/mnt', exist_ok=True)
        results = {
            'mount': errno_of(libc.mount(b'none', b'/root/mnt', b'tmpfs', 0, None)),
            'reboot': errno_of(libc.reboot(0)),
            'init_module': errno_of(libc.init_module(None, 0, b'')),
            'ptrace_pid1': errno_of(libc.ptrace(16, 1, None, None)),
            'unshare_user': errno_of(libc.unshare(0x10000000)),
            'chroot': errno_of(libc.chroot(b'/tmp')),
            'sethostname': errno_of(libc.sethostname(b'pwned', 5)),
            'clock_settime': errno_of(libc.clock_settime(0, (ctypes.c_long * 2)(0, 0))),
        }
        results
        """;

    // What fork needs the filter to allow (unshare of non-user namespaces) opens nothing else:
    // after such an unshare, mounting, netfilter, user and time namespaces and setns stay refused.
    private const string TryAfterUnshare = """
        import ctypes, os, socket
        libc = ctypes.CDLL(None, use_errno=True)
        def errno_of(rc):
            return ctypes.get_errno() if rc != 0 else 0
        def socket_errno(*args):
            try:
                socket.socket(*args).close()
                return 0
            except OSError as e:
                return e.errno
        pid = os.fork()
        if pid == 0:
            import json
            out = {'unshare_ns_net': libc.unshare(0x00020000 | 0x40000000)}
            os.makedirs('/tmp/m', exist_ok=True)
            out.update({
                'mount': errno_of(libc.mount(b'none', b'/tmp/m', b'tmpfs', 0, None)),
                'unshare_user': errno_of(libc.unshare(0x10000000)),
                'unshare_time': errno_of(libc.unshare(0x00000080)),
                'setns': errno_of(libc.setns(os.open('/proc/self/ns/net', os.O_RDONLY), 0)),
                'netfilter': socket_errno(socket.AF_NETLINK, socket.SOCK_RAW, 12),
            })
            open('/tmp/calls.json', 'w').write(json.dumps(out))
            os._exit(0)
        os.waitpid(pid, 0)
        import json
        json.load(open('/tmp/calls.json'))
        """;

    [Fact]
    public async Task Unsharing_namespaces_opens_no_privileged_call_in_a_sandbox_or_a_fork()
    {
        await using var sb = await fx.NewSandbox();
        var fork = (await sb.ForkAsync()).Single();
        await using var _ = fork;
        foreach (var target in new[] { sb, fork })
        {
            var r = await target.RunCodeAsync(TryAfterUnshare);
            Assert.True(r.ExitCode == 0, r.Stderr);
            var calls = r.Result!.Value;
            Assert.Equal(0, calls.GetProperty("unshare_ns_net").GetInt32());
            foreach (var call in calls.EnumerateObject().Where(c => c.Name != "unshare_ns_net"))
                Assert.True(call.Value.GetInt32() == 1, $"{call.Name} gave errno {call.Value.GetInt32()}, expected EPERM (1)");
        }
    }

    [Fact]
    public async Task Privileged_calls_fail_with_EPERM()
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.RunCodeAsync(TryCalls);
        Assert.Equal(0, r.ExitCode);
        foreach (var call in r.Result!.Value.EnumerateObject())
            Assert.True(call.Value.GetInt32() == 1, $"{call.Name} gave errno {call.Value.GetInt32()}, expected EPERM (1)");
        Assert.Equal("sandbox", (await sb.ExecAsync("hostname")).Stdout);
    }

    [Fact]
    public async Task Ps_sees_only_the_sandboxs_own_processes()
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.ExecAsync("ps -e -o pid=,comm=");
        Assert.Equal(0, r.ExitCode);
        var lines = r.StdoutLines.Select(l => l.Trim()).ToList();
        Assert.Contains(lines, l => l.StartsWith("1 ", StringComparison.Ordinal));
        Assert.True(lines.Count <= 4, "ps saw: " + string.Join(" | ", lines));
        Assert.DoesNotContain(lines, l => l.Contains("dotnet") || l.Contains("python3 -I"));
    }

    [Fact]
    public async Task Root_inside_is_an_unprivileged_host_uid_distinct_per_sandbox()
    {
        await using var a = await fx.NewSandbox();
        await using var b = await fx.NewSandbox();
        var uidA = HostUid(a.Id);
        var uidB = HostUid(b.Id);
        Assert.NotEqual(0, uidA);
        Assert.NotEqual(uidA, uidB);
        var inside = await a.ExecAsync("id -u; cat /proc/self/uid_map");
        Assert.Equal("0", inside.StdoutLines[0]);
        Assert.Equal(["0", uidA.ToString(), "65536"], inside.StdoutLines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
    }

    private int HostUid(string id)
    {
        var pid = fx.Server.Sandboxes.Get(id).Pid;
        var uidLine = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal));
        return int.Parse(uidLine.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1]);
    }

    [Fact]
    public async Task Host_files_are_not_reachable()
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.RunCodeAsync("""
            import os
            [p for p in ['/work', '/etc/shadow', '/home/' + str(os.listdir('/home')), '/var/lib/forkbox', '/sys/fs/cgroup', '/old_root', '/opt/nuget']
             if os.path.exists(p)]
            """);
        Assert.Equal("[]", r.Result!.Value.GetRawText());
        // The host's data directory, where every sandbox's layer lives, is not visible under any path.
        var find = await sb.ExecAsync($"find / -xdev -path /proc -prune -o -name '{Path.GetFileName(fx.Options.DataDir)}' -print 2>/dev/null | head -3");
        Assert.Empty(find.StdoutLines);
    }

    [Fact]
    public async Task Another_sandboxs_files_and_processes_are_not_reachable()
    {
        await using var a = await fx.NewSandbox();
        await using var b = await fx.NewSandbox();
        var marker = "secret-" + Guid.NewGuid().ToString("N");
        await a.ExecAsync($"echo x > /root/{marker}; echo x > /tmp/{marker}; echo x > /usr/local/{marker}");
        var search = await b.ExecAsync($"find / -path /proc -prune -o -name '{marker}' -print 2>/dev/null");
        Assert.Empty(search.StdoutLines);
        // kill -9 -1 signals everything the caller may signal: in A that is only A's own processes.
        await a.ExecAsync("kill -9 -1; true");
        Assert.Equal("alive", (await b.RunCodeAsync("print('alive')")).Stdout);
        Assert.Equal("alive", (await a.RunCodeAsync("print('alive')")).Stdout);
    }

    [Fact]
    public async Task Writes_to_template_files_never_reach_the_template()
    {
        await using var a = await fx.NewSandbox();
        await using var b = await fx.NewSandbox();
        var marker = "forkbox-marker-" + Guid.NewGuid().ToString("N");
        var r = await a.ExecAsync(
            $"echo hacked >> /usr/lib/os-release; echo hacked >> /etc/passwd; touch /usr/bin/{marker}; " +
            $"echo mine > /usr/local/bin/{marker} && echo wrote-local; echo mine > /etc/{marker} && echo wrote-etc");
        Assert.Equal(["wrote-local", "wrote-etc"], r.StdoutLines);
        Assert.False(File.Exists($"/usr/bin/{marker}"));
        Assert.False(File.Exists($"/usr/local/bin/{marker}"));
        Assert.DoesNotContain("hacked", File.ReadAllText("/usr/lib/os-release"));
        var inB = await b.ExecAsync(
            $"for f in /usr/local/bin/{marker} /etc/{marker} /usr/bin/{marker}; do test -e $f && echo found $f; done; " +
            "grep -c hacked /usr/lib/os-release /etc/passwd");
        Assert.Equal(["/usr/lib/os-release:0", "/etc/passwd:0"], inB.StdoutLines);
    }

    [Fact]
    public async Task Only_loopback_networking_exists()
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.RunCodeAsync($$"""
            import socket
            def attempt(addr):
                try:
                    socket.create_connection(addr, timeout=2).close()
                    return 'connected'
                except OSError as e:
                    return type(e).__name__
            ifaces = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]
            srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
            {'ifaces': ifaces, 'internet': attempt(('1.1.1.1', 53)), 'host_api': attempt(('127.0.0.1', {{fx.Server.Address.Port}})),
             'own_loopback': attempt(srv.getsockname())}
            """);
        var v = r.Result!.Value;
        Assert.Equal("[\"lo\"]", v.GetProperty("ifaces").GetRawText());
        Assert.NotEqual("connected", v.GetProperty("internet").GetString());
        Assert.Equal("ConnectionRefusedError", v.GetProperty("host_api").GetString());
        Assert.Equal("connected", v.GetProperty("own_loopback").GetString());
    }

    [Fact]
    public async Task Only_minimal_devices_exist()
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.ExecAsync("ls /dev | sort | tr '\\n' ' '");
        Assert.Equal("fd full null ptmx pts random shm stderr stdin stdout tty urandom zero", r.Stdout.Trim());
        var write = await sb.ExecAsync("echo x > /dev/sda 2>&1 || echo refused");
        Assert.Contains("refused", write.Stdout);
    }
}
