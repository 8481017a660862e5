using Forkbox.Linux;
using Forkbox.Linux.Leftovers;

namespace Forkbox.UnitTests.Linux;

/// <summary>
/// The host-wide record a server leaves for the start-up sweep: it names one process for one boot,
/// and a record that names anything but a server's own cgroup parent and its data directory's
/// mounts is not one (the sweep leaves it alone).
/// </summary>
[Trait("Root", "not needed")]
public sealed class ServerMarkerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("forkbox-marker-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ServerMarker Self() => ServerMarker.ForThisProcess("/var/lib/fb", "forkbox-0123abcd", "/var/lib/fb/run/userns", null, null);

    [Fact]
    public void A_marker_reads_back_as_written()
    {
        var file = Path.Combine(_dir, "forkbox-0123abcd.json");
        var marker = Self() with { StorageImage = "/var/lib/fb/storage.img", StorageMount = "/var/lib/fb/sandboxes" };
        marker.WriteTo(file);
        Assert.Equal(marker, ServerMarker.Read(file));
        Assert.False(File.Exists(file + ".tmp"));
    }

    [Fact]
    public void A_data_directory_is_in_use_while_a_server_holds_its_lock_as_hostd_does()
    {
        var marker = ServerMarker.ForThisProcess(_dir, "forkbox-0123abcd", Path.Combine(_dir, "run/userns"), null, null);
        Assert.False(marker.DataDirInUse()); // no lock file
        using (new FileStream(Path.Combine(_dir, "hostd.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
            Assert.True(marker.DataDirInUse());
        Assert.False(marker.DataDirInUse());
    }

    [Fact]
    public void This_process_is_alive_but_not_with_another_start_time_or_boot()
    {
        var marker = Self();
        var boot = ProcFs.BootId();
        Assert.True(marker.IsAlive(boot));
        Assert.False((marker with { StartTicks = marker.StartTicks + 1 }).IsAlive(boot), "a later process with the same pid");
        Assert.False(marker.IsAlive("another-boot"));
        Assert.False((marker with { Pid = int.MaxValue }).IsAlive(boot), "a pid that runs nothing");
    }

    [Theory]
    [InlineData("""{"pid": 5, "start_ticks": 1, "boot_id": "b", "data_dir": "/d", "cgroup_parent": "system.slice", "userns_dir": "/d/run/userns"}""")]
    [InlineData("""{"pid": 5, "start_ticks": 1, "boot_id": "b", "data_dir": "/d", "cgroup_parent": "forkbox-../../x", "userns_dir": "/d/run/userns"}""")]
    [InlineData("""{"pid": 5, "start_ticks": 1, "boot_id": "b", "data_dir": "/d", "cgroup_parent": "forkbox-ab", "userns_dir": "/"}""")]
    [InlineData("""{"pid": 5, "start_ticks": 1, "boot_id": "b", "data_dir": "/", "cgroup_parent": "forkbox-ab", "userns_dir": "/run/userns"}""")]
    [InlineData("""{"pid": 5, "start_ticks": 1, "boot_id": "b", "data_dir": "/d", "cgroup_parent": "forkbox-ab", "userns_dir": "/d/../etc"}""")]
    [InlineData("""{"pid": 5, "start_ticks": 1, "boot_id": "b", "data_dir": "/d", "cgroup_parent": "forkbox-ab", "userns_dir": "/d/.."}""")]
    [InlineData("""{"pid": 5, "start_ticks": 1, "boot_id": "b", "data_dir": "/d/..", "cgroup_parent": "forkbox-ab", "userns_dir": "/d/run"}""")]
    [InlineData("""{"pid": 5, "start_ticks": 1, "boot_id": "b", "data_dir": "/d", "cgroup_parent": "forkbox-ab", "userns_dir": "/d/run/userns", "storage_mount": "/mnt"}""")]
    [InlineData("""{"pid": 0, "start_ticks": 1, "boot_id": "b", "data_dir": "/d", "cgroup_parent": "forkbox-ab", "userns_dir": "/d/run/userns"}""")]
    [InlineData("""{"pid": "5"}""")]
    [InlineData("""{"pid": 5, "start_ti""")]
    public void A_record_that_names_anything_else_is_not_a_marker(string json)
    {
        var file = Path.Combine(_dir, "forkbox-x.json");
        File.WriteAllText(file, json);
        Assert.Null(ServerMarker.Read(file));
    }
}
