using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text.Json;
using Forkbox.Client;
using Xunit.Abstractions;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// Escape attempts from inside real sandboxes, each of which must fail: host paths, descriptors,
/// privileged system calls, the host's and other sandboxes' network and processes, devices,
/// setuid binaries, cgroup limits. The attempts themselves are in escape_probe.py, run in the
/// agent's own REPL; each case here is one attack and names what it tried when it is not held.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class EscapeTests(ServerFixture fx, ITestOutputHelper output)
{
    public static TheoryData<string> Cases() =>
    [
        "dotdot_host_paths", "symlink_host_paths", "proc_root_host_paths", "mountinfo_handles", "inherited_descriptors",
        "mount_filesystems", "pivot_root_and_chroot_out", "ptrace_anything", "unshare_for_host_privileges",
        "kernel_modules", "kexec", "bpf", "perf_event_open", "userfaultfd", "keyctl", "io_uring", "raw_sockets",
        "hostname_and_clock", "proc_and_sys_knobs", "cgroup_files", "device_nodes", "setuid_binaries",
        "host_loopback_services",
    ];

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public async Task An_escape_attempt_from_inside_fails(string attack)
    {
        using var hostListener = new TcpListener(IPAddress.IPv6Any, 0) { Server = { DualMode = true } };
        hostListener.Start();
        using var hostAbstract = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var abstractName = "forkbox-escape-" + Guid.NewGuid().ToString("N");
        hostAbstract.Bind(new UnixDomainSocketEndPoint("\0" + abstractName));
        hostAbstract.Listen();
        var hostname = Environment.MachineName;
        var clockBefore = DateTime.UtcNow;

        await using var sb = await fx.NewSandbox();
        var verdict = await Probe(sb, attack, new Dictionary<string, object>
        {
            ["host_paths"] = HostPaths(),
            ["host_ports"] = new[] { fx.Server.Address.Port, ((IPEndPoint)hostListener.LocalEndpoint).Port },
            ["host_addresses"] = HostAddresses(),
            ["host_abstract_sockets"] = new[] { abstractName },
        });

        Assert.True(verdict.Held, $"{attack} was not held: {verdict.Detail}");
        Assert.Equal(hostname, Environment.MachineName);
        Assert.InRange(DateTime.UtcNow, clockBefore, clockBefore.AddMinutes(5));
        Assert.False(hostListener.Pending(), "a connection reached the host's listener");
    }

    [Fact]
    public async Task Another_sandboxs_network_is_unreachable()
    {
        await using var a = await fx.NewSandbox();
        await using var b = await fx.NewSandbox();
        var listening = await a.RunCodeAsync("""
            import socket
            tcp = socket.socket(); tcp.bind(('0.0.0.0', 0)); tcp.listen()
            unix = socket.socket(socket.AF_UNIX); unix.bind('\0forkbox-neighbour'); unix.listen()
            tcp.getsockname()[1]
            """);
        var port = listening.Result!.Value.GetInt32();
        var r = await b.RunCodeAsync($$"""
            import socket
            def attempt(family, addr):
                s = socket.socket(family)
                s.settimeout(2)
                try:
                    s.connect(addr)
                    return 'connected'
                except OSError as e:
                    return type(e).__name__
                finally:
                    s.close()
            [attempt(socket.AF_INET, ('127.0.0.1', {{port}})), attempt(socket.AF_UNIX, '\0forkbox-neighbour')]
            """);
        Assert.DoesNotContain("connected", r.Result!.Value.EnumerateArray().Select(e => e.GetString()));
        // ...while A reaches its own, so the attempts above were meaningful.
        var own = await a.RunCodeAsync($"import socket\nsocket.create_connection(('127.0.0.1', {port})).close()\n'ok'");
        Assert.Equal("ok", own.Result!.Value.GetString());
    }

    [Fact]
    public async Task Another_sandboxs_processes_cannot_be_seen_or_signalled()
    {
        await using var a = await fx.NewSandbox();
        await using var b = await fx.NewSandbox();
        var marker = "forkbox-victim-" + Guid.NewGuid().ToString("N");
        await b.ExecAsync($"(exec -a {marker} sleep 600) > /dev/null 2>&1 &");
        var bAgent = fx.Server.Sandboxes.Get(b.Id).Pid;
        string? bSleep = null;
        await ServerFixture.WaitUntil(() => (bSleep = FindHostPid(marker)) is not null, "B's marked process starting", 10);

        var r = await a.RunCodeAsync($$"""
            import os, signal
            seen = [p for p in os.listdir('/proc') if p.isdigit() and '{{marker}}' in open(f'/proc/{p}/cmdline').read()]
            def signal_errno(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                    return 0
                except OSError as e:
                    return e.errno
            {'seen': seen, 'kill_agent': signal_errno({{bAgent}}), 'kill_sleep': signal_errno({{bSleep}}),
             'kill_group': signal_errno(-{{bSleep}})}
            """);
        var v = r.Result!.Value;
        Assert.Equal("[]", v.GetProperty("seen").GetRawText());
        foreach (var name in new[] { "kill_agent", "kill_sleep", "kill_group" })
            Assert.True(v.GetProperty(name).GetInt32() == 3, $"{name}: errno {v.GetProperty(name).GetInt32()}, expected ESRCH (3)");
        Assert.True(File.Exists($"/proc/{bSleep}/cmdline"), "B's process was killed from A");
        Assert.Equal("alive", (await b.RunCodeAsync("print('alive')")).Stdout);
    }

    [Fact]
    public async Task The_files_api_does_not_follow_links_out_of_the_sandbox()
    {
        await using var sb = await fx.NewSandbox();
        var hostFile = Path.Combine(fx.Options.DataDir, "escape-target-" + Guid.NewGuid().ToString("N"));
        await File.WriteAllTextAsync(hostFile, "host secret");
        var planted = Path.Combine(fx.Options.DataDir, "planted-" + Guid.NewGuid().ToString("N"));
        await sb.ExecAsync($"ln -s {hostFile} /root/read-link; ln -s /../../..{planted} /root/write-link; " +
                           $"ln -s /proc/1/root/../../.. /root/up; ln -s {fx.Options.DataDir} /root/dir-link");

        var read = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync("/root/read-link"));
        Assert.Equal(404, read.Status);
        var viaProc = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.DownloadAsync($"/proc/1/root{hostFile}"));
        Assert.Equal(404, viaProc.Status);
        var listed = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.ListAsync("/root/dir-link"));
        Assert.Equal(404, listed.Status);
        var up = await sb.ListAsync("/root/up");
        Assert.Equal((await sb.ListAsync("/")).Select(e => e.Name), up.Select(e => e.Name));

        await sb.UploadAsync("/root/write-link", "from the sandbox"u8.ToArray());
        await sb.UploadAsync($"/proc/1/root{planted}-2", "from the sandbox"u8.ToArray());
        Assert.False(File.Exists(planted), "an upload through a link wrote a host file");
        Assert.False(File.Exists(planted + "-2"), "an upload through /proc/1/root wrote a host file");
        Assert.Equal("host secret", await File.ReadAllTextAsync(hostFile));
        // The upload followed the link inside the sandbox: the link stays, and its target in the sandbox's own root holds the bytes.
        Assert.Equal("from the sandbox", (await sb.ExecAsync($"test -L /root/write-link && cat {planted}")).Stdout);
        File.Delete(hostFile);
    }

    private static string? FindHostPid(string argv0)
    {
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            var pid = Path.GetFileName(dir);
            if (!pid.All(char.IsDigit)) continue;
            try
            {
                if (File.ReadAllText($"{dir}/cmdline").StartsWith(argv0, StringComparison.Ordinal)) return pid;
            }
            catch (IOException)
            {
            }
        }
        return null;
    }

    private async Task<(bool Held, string Detail)> Probe(Sandbox sb, string attack, Dictionary<string, object> args)
    {
        var probe = await File.ReadAllBytesAsync(Path.Combine(AppContext.BaseDirectory, "Security", "escape_probe.py"));
        await sb.UploadAsync("/root/escape_probe.py", probe);
        var call = $"import json, sys; sys.path.insert(0, '/root'); import escape_probe\n" +
                   $"escape_probe.probe({JsonSerializer.Serialize(attack)}, json.loads({JsonSerializer.Serialize(JsonSerializer.Serialize(args))}))";
        var r = await sb.RunCodeAsync(call, timeoutS: 120);
        Assert.True(r.ExitCode == 0, $"the probe failed to run: {r.Stderr}");
        var v = r.Result!.Value;
        var detail = v.GetProperty("detail").GetString()!;
        output.WriteLine($"{attack}: {detail}");
        Skip.If(v.GetProperty("held").ValueKind == JsonValueKind.Null, detail);
        return (v.GetProperty("held").GetBoolean(), detail);
    }

    /// <summary>Host paths that must stay out of reach: the data directory (every sandbox's layer),
    /// the server's own binaries, and the test's working directory.</summary>
    private List<string> HostPaths() =>
        [fx.Options.DataDir, fx.Options.SandboxesDir, AppContext.BaseDirectory.TrimEnd('/'), Environment.CurrentDirectory];

    private static List<string> HostAddresses() =>
        NetworkInterface.GetAllNetworkInterfaces()
            .SelectMany(i => i.GetIPProperties().UnicastAddresses)
            .Select(a => a.Address)
            .Where(a => !IPAddress.IsLoopback(a) && !a.IsIPv6LinkLocal)
            .Select(a => a.ToString())
            .Take(4)
            .ToList();
}
