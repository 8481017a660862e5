using System.Text;
using Forkbox.Client;
using Forkbox.Linux.Storage;

namespace Forkbox.IntegrationTests.Storage;

/// <summary>
/// --storage-image: servers whose sandbox layers live on a btrfs or xfs image they make and
/// loop-mount themselves, and the default server on the data disk.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class StorageImageTests(ServerFixture fx)
{
    [Theory]
    [InlineData("btrfs", "btrfs")]
    [InlineData("xfs", "reflink")]
    public async Task A_server_with_a_storage_image_runs_sandboxes_on_it_and_unmounts_it(string fs, string strategy)
    {
        await using var server = await TestServer.StartAsync("image-" + fs, o => o with { Storage = o.Storage with { ImageBytes = 1L << 30, ImageFs = fs }, Pool = o.Pool with { Size = 0 } });
        var options = server.Options;
        Assert.Equal(fs, StorageProbe.FilesystemType(options.SandboxesDir));
        Assert.Equal(1L << 30, new FileInfo(options.StorageImageFile).Length);
        var client = server.Client;
        var capacity = await client.CapacityAsync();
        Assert.Equal(strategy, capacity.StorageStrategy);
        Assert.Equal(fs, server.Server.StorageFilesystem);

        await using (var sb = await Sandbox.CreateAsync(client: client))
        {
            var upper = server.Sandboxes.Get(sb.Id).Dirs.Layers[0].Upper;
            Assert.Equal(fs == "btrfs", BtrfsSubvolume.IsSubvolume(upper));
            await sb.UploadAsync("/root/hello.txt", Encoding.UTF8.GetBytes($"written on {fs}\n"));
            var r = await sb.ExecAsync("cat /root/hello.txt && echo more >> /root/hello.txt", timeoutS: 30);
            Assert.Equal(0, r.ExitCode);
            Assert.Equal(["written on " + fs], r.StdoutLines);
            Assert.Equal("written on " + fs + "\nmore\n", Encoding.UTF8.GetString(await sb.DownloadAsync("/root/hello.txt")));
            Assert.True(File.Exists(Path.Combine(upper, "root/hello.txt")), "the sandbox's writes land in its upper layer on the image");

            // A fork on this strategy: the parent's files, then its own, and a diff between them.
            var child = (await sb.ForkAsync()).Single();
            await using var _ = child;
            Assert.Equal(fs == "btrfs", BtrfsSubvolume.IsSubvolume(server.Sandboxes.Get(child.Id).Dirs.Layers[0].Upper));
            var c = await child.ExecAsync("cat /root/hello.txt; echo fork > /root/hello.txt; echo new > /tmp/new", timeoutS: 30);
            Assert.Equal(["written on " + fs, "more"], c.StdoutLines);
            Assert.Equal("written on " + fs + "\nmore\n", Encoding.UTF8.GetString(await sb.DownloadAsync("/root/hello.txt")));
            var diff = await sb.DiffAsync(child);
            Assert.Equal(["/tmp/new"], diff.Added);
            Assert.Equal(["/root/hello.txt"], diff.Changed);
        }

        // Hibernate and resume on this strategy: the saved layers are copied back with it, re-owned to the new uid range.
        await using (var space = await Sandbox.CreateAsync(new() { Persistent = true }, client))
        {
            await space.ExecAsync("echo kept > /root/kept.txt && mkdir -p /root/d && echo deep > /root/d/f", timeoutS: 30);
            await space.RunCodeAsync("v = 'on " + fs + "'");
            await space.HibernateAsync();
            Assert.Equal("hibernated", (await space.RefreshAsync()).State);
            await space.ResumeAsync();
            var r = await space.ExecAsync("cat /root/kept.txt /root/d/f && echo more >> /root/d/f && stat -c %u /root/kept.txt", timeoutS: 30);
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Equal(["kept", "deep", "0"], r.StdoutLines);
            Assert.Equal("on " + fs, (await space.RunCodeAsync("v")).Result!.Value.GetString());
        }

        await server.StopAsync();
        Assert.NotEqual(fs, StorageProbe.FilesystemType(options.SandboxesDir));
        await ServerFixture.WaitUntil(() => !LoopDevicesBackedBy(options.StorageImageFile).Any(),
            $"the loop device of {options.StorageImageFile} being released");
    }

    [Fact]
    public async Task On_btrfs_each_sandbox_has_an_enforced_disk_quota_that_forks_and_resumes_keep()
    {
        await using var server = await TestServer.StartAsync("quota", o => o with { Storage = o.Storage with { ImageBytes = 1L << 30, ImageFs = "btrfs" }, Pool = o.Pool with { Size = 1 } });
        var client = server.Client;
        Assert.Equal("btrfs qgroups", (await client.CapacityAsync()).DiskQuota);
        await using var sb = await Sandbox.CreateAsync(new() { DiskMb = 8, Persistent = true }, client);
        Assert.Equal(8, sb.Info.Limits!.DiskMb);

        var ok = await sb.RunCodeAsync("import os\nopen('/root/a.bin', 'wb').write(b'x' * (5 << 20))\nos.sync()"); // usage is counted at commit
        Assert.True(ok.ExitCode == 0, ok.Stderr);
        Assert.True((await sb.RefreshAsync()).DiskBytes >= 5 << 20);
        var over = await sb.RunCodeAsync("open('/tmp/b.bin', 'wb').write(b'y' * (5 << 20))");
        Assert.Equal("OSError", over.Error?.Name);
        Assert.Contains("Disk quota exceeded", over.Error!.Value);

        var upload = await Assert.ThrowsAnyAsync<ForkboxApiException>(() => sb.UploadAsync("/root/c.bin", new byte[6 << 20]));
        Assert.Equal(507, upload.Status);
        Assert.Contains("disk quota of 8 MB", upload.Message);

        // Deleting files frees room; a fork has a quota of its own, with the parent's files counted in it.
        await sb.ExecAsync("rm -f /tmp/b.bin /root/c.bin*", timeoutS: 10);
        var child = (await sb.ForkAsync()).Single();
        await using (child)
        {
            Assert.Equal(8, child.Info.Limits?.DiskMb ?? (await child.RefreshAsync()).Limits!.DiskMb);
            Assert.Equal(0, (await child.RunCodeAsync("open('/root/small.bin', 'wb').write(b'z' * (1 << 20))")).ExitCode);
            Assert.Equal("OSError", (await child.RunCodeAsync("open('/root/big.bin', 'wb').write(b'z' * (4 << 20))")).Error?.Name);
        }

        // Hibernated and resumed, the sandbox's files still count against its quota.
        await sb.HibernateAsync();
        await sb.ResumeAsync();
        await sb.RunCodeAsync("os.sync()");
        Assert.True((await sb.RefreshAsync()).DiskBytes >= 5 << 20);
        Assert.Equal("OSError", (await sb.RunCodeAsync("open('/root/b.bin', 'wb').write(b'y' * (5 << 20))")).Error?.Name);
    }

    [Fact]
    public void An_image_left_mounted_by_a_crashed_run_is_reused_and_one_of_another_filesystem_is_made_again()
    {
        var dir = Directory.CreateTempSubdirectory("forkbox-image-").FullName;
        var image = Path.Combine(dir, "storage.img");
        var mnt = Path.Combine(dir, "sandboxes");
        try
        {
            var first = StorageImage.Attach(image, mnt, 1L << 30, "btrfs");
            Assert.True(first.Formatted);
            File.WriteAllText(Path.Combine(mnt, "left-behind"), "x");

            var again = StorageImage.Attach(image, mnt, 1L << 30, "btrfs"); // the first was never disposed: a crash
            Assert.True(again.Reused);
            Assert.True(File.Exists(Path.Combine(mnt, "left-behind")));
            Assert.Single(File.ReadLines("/proc/self/mountinfo"), l => l.Split(' ')[4] == mnt);

            var xfs = StorageImage.Attach(image, mnt, 1L << 30, "xfs");
            Assert.True(xfs.Formatted);
            Assert.Equal("xfs", StorageProbe.FilesystemType(mnt));
            Assert.False(File.Exists(Path.Combine(mnt, "left-behind")));
            xfs.Dispose();
            Assert.DoesNotContain(File.ReadLines("/proc/self/mountinfo"), l => l.Split(' ')[4] == mnt);
        }
        finally
        {
            while (File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ')[4] == mnt))
                LoopFilesystem.Run("umount", ["-l", mnt]);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Something_else_mounted_on_the_sandboxes_directory_is_not_taken_over()
    {
        using var fs = LoopFilesystem.Create("btrfs");
        var e = Assert.Throws<InvalidOperationException>(() =>
            StorageImage.Attach(Path.Combine(Path.GetDirectoryName(fs.MountPoint)!, "other.img"), fs.MountPoint, 1L << 30, "btrfs"));
        Assert.Contains("unmount it", e.Message);
    }

    [Fact]
    public async Task The_default_server_reports_the_strategy_and_filesystem_of_its_data_disk()
    {
        var disk = StorageProbe.FilesystemType(fx.Options.SandboxesDir);
        Assert.Equal(StorageProbe.FilesystemType(Path.GetTempPath()), disk);
        var capacity = await fx.Client.CapacityAsync();
        Assert.Equal(StorageProbe.Detect(Path.GetTempPath()).Name(), capacity.StorageStrategy);
        Assert.Equal(disk, fx.Server.StorageFilesystem);
        Assert.Equal(disk, capacity.StorageFilesystem);
        if (disk == "ext4")
        {
            Assert.Equal("copy", capacity.StorageStrategy);
            Assert.Equal("none", capacity.DiskQuota); // quotas need btrfs
        }
    }

    [Fact]
    public async Task A_forced_strategy_the_disk_cannot_do_stops_the_start_with_the_way_out()
    {
        if (StorageProbe.FilesystemType(Path.GetTempPath()) == "btrfs") return;
        await using var server = new TestServer("forced-btrfs", o => o with { Storage = o.Storage with { Strategy = "btrfs" } });
        var e = await Assert.ThrowsAsync<InvalidOperationException>(server.StartAsync);
        Assert.Contains("--storage-image", e.Message);
    }

    private static IEnumerable<string> LoopDevicesBackedBy(string image) =>
        Directory.GetDirectories("/sys/block", "loop*")
            .Select(d => Path.Combine(d, "loop", "backing_file"))
            .Where(f => File.Exists(f) && File.ReadAllText(f).TrimEnd('\n') == image);
}
