using System.Text;
using Forkbox.Client;
using Forkbox.Host;
using Forkbox.Linux.Storage;

namespace Forkbox.IntegrationTests;

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
        var options = ServerFixture.TestOptions("image-" + fs) with { StorageImageBytes = 1L << 30, StorageImageFs = fs, PoolSize = 0 };
        var server = await HostServer.StartAsync(options, ServerFixture.LogToConsole);
        try
        {
            Assert.Equal(fs, StorageProbe.FilesystemType(options.SandboxesDir));
            Assert.Equal(1L << 30, new FileInfo(options.StorageImageFile).Length);
            var client = new ForkboxClient(server.Address.ToString());
            var capacity = await client.CapacityAsync();
            Assert.Equal(strategy, capacity.StorageStrategy);
            Assert.Equal(fs, server.StorageFilesystem);

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
        }
        finally
        {
            await server.DisposeAsync();
        }
        try
        {
            Assert.NotEqual(fs, StorageProbe.FilesystemType(options.SandboxesDir));
            await ServerFixture.WaitUntil(() => !LoopDevicesBackedBy(options.StorageImageFile).Any(),
                $"the loop device of {options.StorageImageFile} being released");
        }
        finally
        {
            Directory.Delete(options.DataDir, recursive: true);
        }
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
            Assert.Equal("copy", capacity.StorageStrategy);
    }

    [Fact]
    public async Task A_forced_strategy_the_disk_cannot_do_stops_the_start_with_the_way_out()
    {
        if (StorageProbe.FilesystemType(Path.GetTempPath()) == "btrfs") return;
        var options = ServerFixture.TestOptions("forced-btrfs") with { Storage = "btrfs" };
        try
        {
            var e = await Assert.ThrowsAsync<InvalidOperationException>(() => HostServer.StartAsync(options, ServerFixture.LogToConsole));
            Assert.Contains("--storage-image", e.Message);
        }
        finally
        {
            Directory.Delete(options.DataDir, recursive: true);
        }
    }

    private static IEnumerable<string> LoopDevicesBackedBy(string image) =>
        Directory.GetDirectories("/sys/block", "loop*")
            .Select(d => Path.Combine(d, "loop", "backing_file"))
            .Where(f => File.Exists(f) && File.ReadAllText(f).TrimEnd('\n') == image);
}
