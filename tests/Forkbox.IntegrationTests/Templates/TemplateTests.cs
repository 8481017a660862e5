using System.Diagnostics;
using Forkbox.Client;
using Forkbox.Core.Wire;
using Forkbox.Host.Templates;

namespace Forkbox.IntegrationTests.Templates;

/// <summary>Templates built into a directory: a root filesystem with a Python of its own.</summary>
[Collection(ServerCollection.Name)]
public sealed class TemplateTests(ServerFixture fx)
{
    // A root filesystem made of the host's python3 and only the libraries it and its C modules need.
    // (Also used by Security/DeviceTests.)
    internal const string MakeMiniRoot = """
        set -e
        R="$1"
        py=$(readlink -f /usr/bin/python3)
        stdlib=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
        mkdir -p "$R/usr/bin" "$R/usr/lib" "$R/usr/lib64" "$R/etc"
        cp -a /usr/bin/python3 "$py" "$R/usr/bin/"
        cp -a "$stdlib" "$R/usr/lib/"
        for lib in $(ldd "$py" "$stdlib"/lib-dynload/*.so 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}' | sort -u); do
          cp -L --parents "$lib" "$R"
          cp -L --parents "$(realpath "$lib")" "$R"
        done
        for d in bin lib lib64; do [ -e "$R/$d" ] || ln -s "usr/$d" "$R/$d"; done
        echo "made for forkbox tests" > "$R/etc/forkbox-template-marker"
        """;

    [Fact]
    public async Task A_template_built_from_a_directory_runs_its_own_root_and_can_be_deleted()
    {
        var name = "mini-" + Guid.NewGuid().ToString("N")[..8];
        var source = Path.Combine(Path.GetTempPath(), name);
        try
        {
            using (var p = Process.Start("/bin/sh", ["-c", MakeMiniRoot, "sh", source]))
            {
                await p.WaitForExitAsync();
                Assert.Equal(0, p.ExitCode);
            }
            var progress = new List<string>();
            var manifest = await TemplateBuilder.BuildAsync(fx.Options, name, source, [], ["json"], progress.Add, default);
            Assert.Contains(progress, l => l.Contains("ready"));
            Assert.True(manifest.SizeBytes > 1_000_000);

            await using (var sb = await fx.NewSandbox(new CreateSandboxRequest { Template = name }))
            {
                Assert.Equal(name, sb.Info.Template);
                var r = await sb.RunCodeAsync("""
                    import os, sys
                    (open('/etc/forkbox-template-marker').read().strip(), os.path.exists('/usr/bin/bash'), 'json' in sys.modules, os.getuid())
                    """);
                Assert.Equal("[\"made for forkbox tests\",false,true,0]", r.Result!.Value.GetRawText());
                await sb.RunCodeAsync("open('/root/x', 'w').write('x')");
                // A fork of it: the zygote, chrooted into the template, grafts the fork and comes back.
                var fork = (await sb.ForkAsync()).Single();
                await using (fork)
                    Assert.Equal("[\"x\",\"made for forkbox tests\"]", (await fork.RunCodeAsync(
                        "[open('/root/x').read(), open('/etc/forkbox-template-marker').read().strip()]")).Result!.Value.GetRawText());
                var listed = (await fx.Client.ListTemplatesAsync()).Templates.Single(t => t.Name == name);
                Assert.False(listed.Builtin);
                Assert.Equal(manifest.SizeBytes, listed.SizeBytes);
                var inUse = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => fx.Client.DeleteTemplateAsync(name));
                Assert.Equal(409, inUse.Status);
            }
            // Its pool refills too: sandboxes made after its zygote started (with uid slots made since) work.
            await fx.WaitForPool(fx.Options.Pool.Size, name);
            await using (var hit = await fx.NewSandbox(new CreateSandboxRequest { Template = name }))
            {
                Assert.True(hit.Info.PoolHit);
                Assert.Equal("2", (await hit.RunCodeAsync("print(1 + 1)")).Stdout);
            }
            await fx.Client.DeleteTemplateAsync(name);
            var gone = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => fx.NewSandbox(new CreateSandboxRequest { Template = name }));
            Assert.Equal(400, gone.Status);
            Assert.False(Directory.Exists(Path.Combine(fx.Options.TemplatesDir, name)));
            var builtin = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => fx.Client.DeleteTemplateAsync("default"));
            Assert.Equal(400, builtin.Status);
        }
        finally
        {
            if (Directory.Exists(source)) Directory.Delete(source, true);
        }
    }

    [Fact]
    public async Task A_template_root_that_points_a_mount_target_at_the_host_touches_nothing_there()
    {
        // The zygote's set-up runs as host root and makes /sys/fs/cgroup, /dev, /proc and the data
        // directory inside the template's root. A root whose "sys" is a symlink to a host directory
        // must not make that set-up create (or mount) anything there.
        var name = "escape-" + Guid.NewGuid().ToString("N")[..8];
        var source = Path.Combine(Path.GetTempPath(), name);
        var hostDir = Directory.CreateTempSubdirectory("forkbox-host-side-").FullName;
        try
        {
            using (var p = Process.Start("/bin/sh", ["-c", MakeMiniRoot + $"\nln -s '{hostDir}' \"$R/sys\"", "sh", source]))
            {
                await p.WaitForExitAsync();
                Assert.Equal(0, p.ExitCode);
            }
            // The build's trial run is the first to start it: the build fails, saying why.
            var e = await Assert.ThrowsAnyAsync<Forkbox.Core.Errors.ForkboxException>(() =>
                TemplateBuilder.BuildAsync(fx.Options, name, source, [], [], _ => { }, default));
            Assert.Contains("/sys/fs/cgroup", e.Message);
            Assert.Empty(Directory.GetFileSystemEntries(hostDir));
            Assert.False(Directory.Exists(Path.Combine(fx.Options.TemplatesDir, name)));
        }
        finally
        {
            if (Directory.Exists(source)) Directory.Delete(source, true);
            Directory.Delete(hostDir, true);
        }
    }

    /// <summary>A root made with <see cref="MakeMiniRoot"/> (and <paramref name="extra"/>, a script on $R) at /tmp/NAME.</summary>
    internal static async Task<string> MiniRoot(string name, string extra = "")
    {
        var source = Path.Combine(Path.GetTempPath(), name);
        using var p = Process.Start("/bin/sh", ["-c", MakeMiniRoot + "\n" + extra, "sh", source])!;
        await p.WaitForExitAsync();
        Assert.Equal(0, p.ExitCode);
        return source;
    }

    // The agent needs ctypes, and ctypes needs libffi: without it the zygote cannot start.
    private const string RemoveLibffi = "find \"$R\" -name 'libffi.so*' -delete";

    [Fact]
    public async Task A_build_runs_the_template_once_and_refuses_one_that_cannot_start_with_the_zygotes_own_error()
    {
        var name = "noffi-" + Guid.NewGuid().ToString("N")[..8];
        var source = await MiniRoot(name, RemoveLibffi);
        try
        {
            var progress = new List<string>();
            var e = await Assert.ThrowsAnyAsync<Forkbox.Core.Errors.ForkboxException>(() =>
                TemplateBuilder.BuildAsync(fx.Options, name, source, [], [], progress.Add, default));
            Assert.Contains("libffi", e.Message);
            Assert.Contains("cannot start", e.Message);
            Assert.DoesNotContain(progress, l => l.Contains("ready"));
            // The zygote's own traceback is in the build's progress; the trial server's notes on its storage are not.
            Assert.Contains(progress, l => l.Contains("trial: zygote") && l.Contains("libffi"));
            Assert.DoesNotContain(progress, l => l.Contains("storage copy") || l.Contains("disk quotas"));
            Assert.False(Directory.Exists(Path.Combine(fx.Options.TemplatesDir, name)));
            Assert.DoesNotContain(Directory.GetDirectories(fx.Options.TemplatesDir), d => d.Contains(name));
            Assert.DoesNotContain((await fx.Client.ListTemplatesAsync()).Templates, t => t.Name == name);
        }
        finally
        {
            Directory.Delete(source, true);
        }
    }

    [Fact]
    public async Task A_create_from_a_template_that_no_longer_starts_says_why()
    {
        var name = "broken-" + Guid.NewGuid().ToString("N")[..8];
        var source = await MiniRoot(name);
        try
        {
            var progress = new List<string>();
            await TemplateBuilder.BuildAsync(fx.Options, name, source, [], [], progress.Add, default);
            Assert.Contains(progress, l => l.Contains("print(1)"));
            // Broken after the build (a package removed from the root by hand).
            using (var p = Process.Start("/bin/sh", ["-c", RemoveLibffi.Replace("\"$R\"", "\"$1\""), "sh", Path.Combine(fx.Options.TemplatesDir, name, "rootfs")])!)
                await p.WaitForExitAsync();
            var e = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => fx.NewSandbox(new CreateSandboxRequest { Template = name }));
            Assert.Equal(500, e.Status);
            Assert.Contains("libffi", e.Message);
            Assert.Contains($"template '{name}'", e.Message);
            await fx.Client.DeleteTemplateAsync(name);
        }
        finally
        {
            Directory.Delete(source, true);
        }
    }

    [Fact]
    public async Task Size_bytes_counts_what_is_on_disk_once_and_built_ins_report_theirs()
    {
        var name = "links-" + Guid.NewGuid().ToString("N")[..8];
        // A link to a directory and a second name for the biggest file: neither is more on disk.
        var source = await MiniRoot(name, """
            ln -s usr/lib "$R/lib-again"
            big=$(find "$R/usr" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
            ln "$big" "$R/big-again"
            """);
        try
        {
            var manifest = await TemplateBuilder.BuildAsync(fx.Options, name, source, [], [], _ => { }, default);
            var du = Process.Start(new ProcessStartInfo("du", ["-s", "-b", Path.Combine(fx.Options.TemplatesDir, name, "rootfs")]) { RedirectStandardOutput = true })!;
            var onDisk = long.Parse((await du.StandardOutput.ReadToEndAsync()).Split('\t')[0]);
            // du -b counts each inode once, directories included; files are nearly all of it.
            Assert.InRange(manifest.SizeBytes, onDisk * 0.9, onDisk * 1.01);
            var listed = (await fx.Client.ListTemplatesAsync()).Templates;
            Assert.Equal(manifest.SizeBytes, listed.Single(t => t.Name == name).SizeBytes);
            var builtin = listed.Single(t => t.Name == "default");
            Assert.True(builtin.SizeBytes > 10_000_000, $"default reports {builtin.SizeBytes} bytes");
            await fx.Client.DeleteTemplateAsync(name);
        }
        finally
        {
            Directory.Delete(source, true);
        }
    }

    [Fact]
    public async Task Building_from_something_that_is_not_a_root_filesystem_fails_clearly()
    {
        var empty = Directory.CreateTempSubdirectory("forkbox-empty-").FullName;
        try
        {
            var e = await Assert.ThrowsAsync<Forkbox.Core.Errors.BadRequestException>(() =>
                TemplateBuilder.BuildAsync(fx.Options, "no-python", empty, [], [], _ => { }, default));
            Assert.Contains("/usr/bin/python3", e.Message);
            Assert.False(Directory.Exists(Path.Combine(fx.Options.TemplatesDir, "no-python")));
            var badName = await Assert.ThrowsAsync<Forkbox.Core.Errors.BadRequestException>(() =>
                TemplateBuilder.BuildAsync(fx.Options, "Bad Name", empty, [], [], _ => { }, default));
            Assert.Contains("a-z", badName.Message);
        }
        finally
        {
            Directory.Delete(empty, true);
        }
    }
}
