using Forkbox.Client;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// Host-root code never resolves a path a sandbox controls by name. Each test makes a sandbox
/// change its own writable layer under hostd's feet (a directory swapped for a symlink to a host
/// path, atomically and without pause, or left in place for a resume) while hostd or the zygote
/// walk, copy, diff or chown that layer as host root, and checks that nothing of the host came
/// through and nothing of the host was changed.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class HostPathTests(ServerFixture fx)
{
    private const int Subdirs = 40;

    /// <summary>
    /// Makes /root/x (a directory of <see cref="Subdirs"/> empty subdirectories s0…) and /root/y (a
    /// symlink to <paramref name="hostDir"/>), then starts a background process that exchanges the
    /// two with renameat2(RENAME_EXCHANGE) as fast as it can, so at any instant /root/x is either.
    /// </summary>
    private static async Task StartSwapping(Sandbox sb, string hostDir)
    {
        var r = await sb.RunCodeAsync($$"""
            import os, subprocess, sys, time
            os.makedirs('/root/x')
            for i in range({{Subdirs}}): os.makedirs(f'/root/x/s{i}')
            os.symlink({{Py(hostDir)}}, '/root/y')
            swapper = subprocess.Popen([sys.executable, '-c', '''
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            while True:
                if libc.renameat2(-100, b"/root/x", -100, b"/root/y", 2) != 0:
                    raise SystemExit(f"renameat2: {os.strerror(ctypes.get_errno())}")
            '''])
            time.sleep(0.2)
            swapper.poll() is None
            """);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.True(r.Result!.Value.GetBoolean(), $"the swapper exited at once: {r.Stderr}");
    }

    private static string Py(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    /// <summary>A victim sandbox whose /root holds s0…/secret-NAME files; returns its /root on the host.</summary>
    private async Task<(Sandbox Victim, string HostRoot, string SecretName)> NewVictim()
    {
        var victim = await fx.NewSandbox();
        var secret = "victim-secret-" + Guid.NewGuid().ToString("N")[..8];
        var r = await victim.RunCodeAsync($$"""
            import os
            for i in range({{Subdirs}}):
                os.makedirs(f'/root/s{i}')
                with open(f'/root/s{i}/{{secret}}', 'w') as f: f.write('the victim\'s data')
            """);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return (victim, Path.Combine(fx.Server.Sandboxes.Get(victim.Id).Dirs.Layers[0].Upper, "root"), secret);
    }

    [Fact]
    public async Task A_fork_snapshot_never_follows_a_directory_swapped_for_a_symlink_while_it_copies()
    {
        var (victim, hostRoot, secret) = await NewVictim();
        await using var _ = victim;
        await using var attacker = await fx.NewSandbox();
        await StartSwapping(attacker, hostRoot);

        for (var i = 0; i < 6; i++)
        {
            var forks = await attacker.ForkAsync();
            await using var fork = forks.Single();
            var seen = await fork.RunCodeAsync($"import glob; glob.glob('/root/**/{secret}', recursive=True)");
            Assert.True(seen.ExitCode == 0, seen.Stderr);
            Assert.True(seen.Result!.Value.GetArrayLength() == 0, $"fork {i} received the victim's files from the host: {seen.Result}");
            // Symlinks are skipped, not followed: the fork's copy of /root/y points at the victim's files.
            var onHost = Directory.EnumerateFiles(fx.Server.Sandboxes.Get(fork.Id).Dirs.Layers[0].Upper, secret,
                new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint }).ToList();
            Assert.True(onHost.Count == 0, $"fork {i}'s layer holds copies of the victim's files: {string.Join(", ", onHost)}");
        }
    }

    [Fact]
    public async Task A_diff_never_lists_a_host_directory_through_a_swapped_symlink()
    {
        var (victim, hostRoot, secret) = await NewVictim();
        await using var _ = victim;
        await using var attacker = await fx.NewSandbox();
        await using var other = await fx.NewSandbox();
        await StartSwapping(attacker, hostRoot);

        for (var i = 0; i < 30; i++)
        {
            var d = await attacker.DiffAsync(other, ["/root"]);
            var leaked = d.Added.Concat(d.Removed).Concat(d.Changed).Where(p => p.Contains(secret, StringComparison.Ordinal)).ToList();
            Assert.True(leaked.Count == 0, $"diff {i} listed the victim's files: {string.Join(", ", leaked)}");
        }
    }

    /// <summary>
    /// A Space that replaced some of its writable directories with symlinks to host directories,
    /// then hibernated: the resume prepares the restored layer as host root before the sandbox's
    /// root is mounted, and must neither chmod nor chown the host directories.
    /// </summary>
    private async Task ResumeLeavesHostDirectoriesAlone(params string[] writableDirs)
    {
        var targets = writableDirs.ToDictionary(d => d, d => Directory.CreateTempSubdirectory("forkbox-host-dir-").FullName);
        try
        {
            foreach (var t in targets.Values) File.SetUnixFileMode(t, (UnixFileMode)0b111_101_101);
            await using var sb = await fx.NewSandbox(new CreateSandboxRequest { Persistent = true });
            var swap = string.Join("\n", targets.Select(kv => $"shutil.rmtree({Py(kv.Key)}); os.symlink({Py(kv.Value)}, {Py(kv.Key)})"));
            var r = await sb.RunCodeAsync($"import os, shutil\n{swap}\n[os.path.islink(p) for p in {System.Text.Json.JsonSerializer.Serialize(writableDirs)}]");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.All(r.Result!.Value.EnumerateArray(), v => Assert.True(v.GetBoolean()));

            await sb.HibernateAsync();
            var resumed = await sb.ResumeAsync();
            Assert.Equal("ready", resumed.State);

            foreach (var (dir, target) in targets)
            {
                var st = Forkbox.Linux.Storage.FileStat.Lstat(target);
                Assert.True(st.Permissions == 0b111_101_101 && st.Uid == 0 && st.Gid == 0,
                    $"the resume changed host directory {target} (the sandbox's {dir}): mode {Convert.ToString(st.Permissions, 8)}, owner {st.Uid}:{st.Gid}");
            }
            // The sandbox has its writable directories back, as directories it can write to.
            var check = await sb.RunCodeAsync($"import os\n[(os.path.isdir(p) and not os.path.islink(p), os.access(p, os.W_OK)) for p in {System.Text.Json.JsonSerializer.Serialize(writableDirs)}]");
            Assert.True(check.ExitCode == 0, check.Stderr);
            Assert.All(check.Result!.Value.EnumerateArray(), v => Assert.True(v[0].GetBoolean() && v[1].GetBoolean(), $"not a writable directory after resume: {check.Result}"));
        }
        finally
        {
            foreach (var t in targets.Values) Directory.Delete(t, recursive: true);
        }
    }

    [Fact]
    public Task A_resume_never_chmods_or_chowns_a_host_directory_the_sandbox_symlinked_as_its_tmp() =>
        ResumeLeavesHostDirectoriesAlone("/tmp");

    [Fact]
    public Task A_resume_never_follows_symlinks_in_any_writable_directory_of_any_layer() =>
        ResumeLeavesHostDirectoriesAlone("/root", "/home", "/usr/local/bin");
}
