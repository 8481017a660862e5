using System.Diagnostics;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core.Wire;
using Forkbox.Host.Templates;
using Forkbox.IntegrationTests.Templates;
using Forkbox.Linux.Storage;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// Device nodes never work inside a sandbox: template builds drop them, every mount but the
/// bound /dev nodes is nodev, and the sandbox's (and each fork's) device cgroup allows only
/// null, zero, full, random, urandom, tty and its own ptys, so a node that gets in some other
/// way cannot be opened either.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class DeviceTests(ServerFixture fx)
{
    private const int EPERM = 1, EACCES = 13;

    // Devices that give a host's hardware or terminals away: kvm, tun, a virtual console, a loop
    // block device. Present on the host, so an open that is not refused succeeds.
    private static readonly (string Name, char Type, int Major, int Minor)[] HostDevices =
        [("kvm", 'c', 10, 232), ("tun", 'c', 10, 200), ("tty2", 'c', 4, 2), ("loop0", 'b', 7, 0)];

    [Fact]
    public async Task A_template_build_drops_device_nodes_and_setuid_bits()
    {
        var name = "devs-" + Guid.NewGuid().ToString("N")[..8];
        var source = Path.Combine(Path.GetTempPath(), name);
        var tarball = source + ".tar";
        var hostDir = source + "-host";
        try
        {
            await Sh(TemplateTests.MakeMiniRoot, source);
            // As an exported container image would hold them (/dev), and where /dev's tmpfs does not hide them.
            await Sh("""
                set -e
                R="$1"
                mkdir -p "$R/dev/net" "$R/opt/devs"
                mknod -m 666 "$R/dev/kvm" c 10 232; mknod -m 666 "$R/dev/net/tun" c 10 200; mknod -m 666 "$R/dev/tty2" c 4 2
                mknod -m 666 "$R/opt/devs/kvm" c 10 232; mknod -m 666 "$R/opt/devs/tun" c 10 200
                mknod -m 666 "$R/opt/devs/tty2" c 4 2; mknod -m 666 "$R/opt/devs/loop0" b 7 0
                mkfifo "$R/opt/devs/fifo"
                cp "$(readlink -f /usr/bin/python3)" "$R/usr/bin/py-setuid"; chmod 4755 "$R/usr/bin/py-setuid"
                cp "$(readlink -f /usr/bin/python3)" "$R/usr/bin/py-setgid"; chmod 2755 "$R/usr/bin/py-setgid"
                ln -s /dev/kvm "$R/opt/devs/kvm-link"
                # A link to a host directory: the build must not walk into it.
                mkdir -p "$1-host"; mknod -m 600 "$1-host/null" c 1 3; cp /bin/true "$1-host/suid"; chmod 4755 "$1-host/suid"
                ln -s "$1-host" "$R/opt/host-link"
                tar -cpf "$1.tar" --numeric-owner -C "$R" .
                """, source);

            var progress = new List<string>();
            await TemplateBuilder.BuildAsync(fx.Options, name, tarball, [], [], progress.Add, default);

            var rootfs = Path.Combine(fx.Options.TemplatesDir, name, "rootfs");
            foreach (var node in new[] { "dev/kvm", "dev/net/tun", "dev/tty2", "opt/devs/kvm", "opt/devs/tun", "opt/devs/tty2", "opt/devs/loop0" })
                Assert.True(FileStat.TryLstat(Path.Combine(rootfs, node)) is null, $"{node} is still in the built template");
            foreach (var file in new[] { "usr/bin/py-setuid", "usr/bin/py-setgid" })
                Assert.Equal(0b111_101_101, FileStat.Lstat(Path.Combine(rootfs, file)).Permissions);
            // What is not a device stays: a fifo, and a symlink that names one (a link is only a name).
            Assert.Equal(UnixFileType.Fifo, FileStat.Lstat(Path.Combine(rootfs, "opt/devs/fifo")).Type);
            Assert.Equal(UnixFileType.SymbolicLink, FileStat.Lstat(Path.Combine(rootfs, "opt/devs/kvm-link")).Type);
            Assert.Equal(UnixFileType.CharacterDevice, FileStat.Lstat(Path.Combine(hostDir, "null")).Type);
            Assert.Equal(0b100_111_101_101, FileStat.Lstat(Path.Combine(hostDir, "suid")).Permissions);
            Assert.Contains(progress, l => l.Contains("removed 7 device nodes") && l.Contains("dev/kvm"));
            Assert.Contains(progress, l => l.Contains("cleared setuid/setgid on 2 files") && l.Contains("usr/bin/py-setuid"));

            await using var sb = await fx.NewSandbox(new CreateSandboxRequest { Template = name });
            var seen = await sb.RunCodeAsync("import os\nsorted(os.listdir('/opt/devs'))");
            Assert.Equal("[\"fifo\",\"kvm-link\"]", seen.Result!.Value.GetRawText());
        }
        finally
        {
            if (Directory.Exists(Path.Combine(fx.Options.TemplatesDir, name)))
                await fx.Client.DeleteTemplateAsync(name);
            if (Directory.Exists(source)) Directory.Delete(source, true);
            if (Directory.Exists(hostDir)) Directory.Delete(hostDir, true);
            File.Delete(tarball);
        }
    }

    [Fact]
    public async Task A_device_node_planted_in_a_sandboxs_layer_cannot_be_opened()
    {
        await using var sb = await fx.NewSandbox();
        var upper = fx.Server.Sandboxes.Get(sb.Id).Dirs.Layers[0].Upper;
        var planted = Path.Combine(upper, "root", "planted");
        Directory.CreateDirectory(planted);
        // As host root could (a copy into the layer): the host's devices, and /dev/null's own
        // numbers, which the device cgroup allows: only nodev refuses that one.
        (string Name, char Type, int Major, int Minor)[] nodes = [.. HostDevices, ("null", 'c', 1, 3)];
        foreach (var (name, type, major, minor) in nodes)
            await Sh($"mknod -m 666 \"$1/{name}\" {type} {major} {minor}", planted);

        var opened = await OpenAll(sb, nodes.Select(n => "/root/planted/" + n.Name));

        foreach (var (path, errno) in opened)
            Assert.True(errno is EPERM or EACCES, $"{path} inside the sandbox: errno {errno} (0: opened)");
    }

    [Fact]
    public async Task A_process_in_a_sandboxs_or_a_forks_cgroup_opens_only_the_allowed_devices()
    {
        await using var sb = await fx.NewSandbox();
        var fork = (await sb.ForkAsync()).Single();
        await using (fork)
            foreach (var id in new[] { sb.Id, fork.Id })
            {
                // A host-root process moved into the sandbox's device cgroup: neither nodev nor the
                // sandbox's missing capabilities apply to it, only the cgroup's allow-list.
                var dir = SandboxCgroup.DevicesDir(fx.Server.Sandboxes.Get(id).Pid);
                var result = HostPython.Code(JoinAndOpen, [dir, "/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/kvm", "/dev/net/tun", "/dev/tty2", "/dev/loop0"]);
                var opened = JsonSerializer.Deserialize<Dictionary<string, int>>(result)!;
                foreach (var allowed in new[] { "/dev/null", "/dev/zero", "/dev/full", "/dev/urandom" })
                    Assert.True(opened[allowed] == 0, $"{id}: {allowed} errno {opened[allowed]}, expected it to open");
                foreach (var refused in new[] { "/dev/kvm", "/dev/net/tun", "/dev/tty2", "/dev/loop0" })
                    Assert.True(opened[refused] == EPERM, $"{id}: {refused} errno {opened[refused]} in {dir} (0: opened), expected EPERM");
            }
    }

    [SkippableFact]
    public async Task The_cgroup_v2_device_program_allows_only_the_list()
    {
        // On a v1 host with a hybrid unified hierarchy the program is enforced there too: the
        // kernel asks the device programs of a task's unified cgroup before the v1 controller.
        var unified = File.Exists("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup"
            : File.Exists("/sys/fs/cgroup/unified/cgroup.controllers") ? "/sys/fs/cgroup/unified" : null;
        Skip.If(unified is null, "no cgroup v2 hierarchy on this host");
        var dir = Path.Combine(unified, "forkbox-devices-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            Forkbox.Linux.Cgroups.CgroupDeviceProgram.Attach(dir);
            var result = HostPython.Code(JoinAndOpen, [dir, "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
                "/dev/kvm", "/dev/net/tun", "/dev/tty2", "/dev/loop0"]);
            var opened = JsonSerializer.Deserialize<Dictionary<string, int>>(result)!;
            foreach (var allowed in new[] { "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom" })
                Assert.True(opened[allowed] == 0, $"{allowed} errno {opened[allowed]}, expected it to open");
            Assert.NotEqual(EPERM, opened["/dev/tty"]); // ENXIO without a controlling terminal
            foreach (var refused in new[] { "/dev/kvm", "/dev/net/tun", "/dev/tty2", "/dev/loop0" })
                Assert.True(opened[refused] == EPERM, $"{refused} errno {opened[refused]} (0: opened), expected EPERM");
            // mknod is refused too, except the whiteout overlayfs makes when a file is deleted.
            var made = HostPython.Code("""
                import json, os, stat, sys
                with open(sys.argv[1] + "/cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))
                out = {}
                for name, dev in (("whiteout", os.makedev(0, 0)), ("kvm", os.makedev(10, 232))):
                    path = f"{sys.argv[2]}-{name}"
                    try:
                        os.mknod(path, 0o600 | stat.S_IFCHR, dev)
                        os.unlink(path)
                        out[name] = 0
                    except OSError as e:
                        out[name] = e.errno
                print(json.dumps(out))
                """, [dir, Path.Combine(Path.GetTempPath(), "forkbox-mknod-" + Guid.NewGuid().ToString("N")[..8])]);
            Assert.Equal("{\"whiteout\": 0, \"kvm\": 1}", made.Trim());
        }
        finally
        {
            Directory.Delete(dir);
        }
    }

    [Fact]
    public async Task Standard_devices_ptys_and_deleting_template_files_still_work_in_a_sandbox_and_its_fork()
    {
        await using var sb = await fx.NewSandbox();
        var fork = (await sb.ForkAsync()).Single();
        await using (fork)
            foreach (var box in new[] { sb, fork })
            {
                var r = await box.RunCodeAsync(SandboxProbe.Attempt + """
                    def rw(path, n):
                        fd = os.open(path, os.O_RDWR)
                        try:
                            return [len(os.read(fd, n)), os.write(fd, b"x")]
                        finally:
                            os.close(fd)
                    def pty():
                        master, slave = os.openpty()
                        os.write(slave, b"hi")
                        out = os.read(master, 2).decode()
                        os.close(master); os.close(slave)
                        return out
                    # A file of the template's /etc, deleted: overlayfs records that with a 0:0 whiteout.
                    victim = "/etc/" + sorted(n for n in os.listdir("/etc") if os.path.isfile("/etc/" + n) and not os.path.islink("/etc/" + n))[0]
                    os.remove(victim)
                    {"null": attempt(lambda: rw("/dev/null", 4)), "zero": attempt(lambda: rw("/dev/zero", 4)),
                     "full": attempt(lambda: rw("/dev/full", 4)), "random": attempt(lambda: rw("/dev/random", 4)),
                     "urandom": attempt(lambda: rw("/dev/urandom", 4)), "pty": attempt(pty),
                     "tty": attempt(lambda: os.close(os.open("/dev/tty", os.O_RDWR)) or "opened"),
                     "removed": not os.path.lexists(victim)}
                    """);
                var v = r.Result!.Value;
                Assert.Equal("[0,1]", v.GetProperty("null").GetRawText());
                Assert.Equal("[4,1]", v.GetProperty("zero").GetRawText());
                Assert.Equal("\"ENOSPC\"", v.GetProperty("full").GetRawText());
                Assert.Equal("[4,1]", v.GetProperty("random").GetRawText());
                Assert.Equal("[4,1]", v.GetProperty("urandom").GetRawText());
                Assert.Equal("\"hi\"", v.GetProperty("pty").GetRawText());
                // No controlling terminal: ENXIO, not a refusal of the device itself.
                Assert.DoesNotContain(v.GetProperty("tty").GetRawText(), new[] { "\"EPERM\"", "\"EACCES\"" });
                Assert.True(v.GetProperty("removed").GetBoolean(), $"a template file could not be deleted: {r.Stderr}");
            }
    }

    // Run on the host: join the cgroup argv[1], then the errno of opening each further argument read-write (0: opened).
    private const string JoinAndOpen = """
        import json, os, sys
        with open(sys.argv[1] + "/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
        out = {}
        for path in sys.argv[2:]:
            try:
                os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))
                out[path] = 0
            except OSError as e:
                out[path] = e.errno
        print(json.dumps(out))
        """;

    /// <summary>The errno of opening each path read-write inside the sandbox, 0 when it opened.</summary>
    private static async Task<Dictionary<string, int>> OpenAll(Sandbox sb, IEnumerable<string> paths)
    {
        var r = await sb.RunCodeAsync($$"""
            import os
            def errno_of(path):
                try:
                    os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))
                    return 0
                except OSError as e:
                    return e.errno
            {p: errno_of(p) for p in {{JsonSerializer.Serialize(paths)}}}
            """);
        Assert.True(r.Result is not null, $"the probe failed: {r.Stderr}");
        return JsonSerializer.Deserialize<Dictionary<string, int>>(r.Result!.Value.GetRawText())!;
    }

    private static async Task Sh(string script, string arg)
    {
        using var p = Process.Start(new ProcessStartInfo("/bin/bash", ["-c", script, "sh", arg]) { RedirectStandardError = true })!;
        var err = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"setup script failed: {err}");
    }
}
