using Forkbox.Linux;

namespace Forkbox.UnitTests.Linux;

/// <summary>The /proc parsers against fixture trees in a temporary directory: no root, no real /proc.</summary>
[Trait("Root", "not needed")]
public sealed class ProcFsTests_without_root : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("forkbox-procfs-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Write(string relative, string text)
    {
        var path = Path.Combine(_root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void NsPids_reads_the_NSpid_line_from_the_host_namespace_down()
    {
        Write("41/status", "Name:\tpython3\nTgid:\t41\nNSpid:\t41\t7\t1\nPPid:\t2\n");
        Write("42/status", "Name:\told-kernel\nPid:\t42\n");
        Assert.Equal([41, 7, 1], ProcFs.NsPids(41, _root));
        Assert.Empty(ProcFs.NsPids(42, _root));
        Assert.ThrowsAny<IOException>(() => ProcFs.NsPids(43, _root));
    }

    [Fact]
    public void Children_are_gathered_from_every_thread()
    {
        Write("10/task/10/children", "11 12 ");
        Write("10/task/13/children", "14");
        Write("10/task/15/children", "");
        Assert.Equal([11, 12, 14], ProcFs.Children(10, _root).Order());
        Assert.Empty(ProcFs.Children(99, _root));
    }

    [Theory]
    [InlineData("5 (python3) S 1 5 5 0", false)]
    [InlineData("5 (a) Z (b)) R 1 5", false)]
    [InlineData("5 (evil) Z) S 1 5", false)]
    [InlineData("5 (name with spaces) Z 1 5 5", true)]
    [InlineData("5 (x)", true)]
    public void A_zombie_is_read_after_the_last_parenthesis(string stat, bool zombie)
    {
        Write("5/stat", stat);
        Assert.Equal(zombie, ProcFs.IsZombie(5, _root));
    }

    [Theory]
    [InlineData("7 (python3) S 1 7 7 0 -1 4194560 120 0 0 0 10 5 0 0 20 0 3 0 103054 1000 20", 103054L)]
    [InlineData("7 (a) b) 1 2 3 4) S 1 7 7 0 -1 4194560 120 0 0 0 10 5 0 0 20 0 3 0 99 1000 20", 99L)]
    [InlineData("7 (cut) S 1 7", null)]
    public void Start_ticks_are_the_22nd_field_counted_after_the_last_parenthesis(string stat, long? ticks)
    {
        Write("7/stat", stat);
        Assert.Equal(ticks, ProcFs.StartTicks(7, _root));
        Assert.Null(ProcFs.StartTicks(8, _root));
    }

    [Fact]
    public void A_process_already_gone_counts_as_a_zombie() => Assert.True(ProcFs.IsZombie(6, _root));

    [Fact]
    public void Memory_available_is_a_percentage_of_total()
    {
        var meminfo = Write("meminfo", "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:    6000000 kB\n");
        Assert.Equal(25.0, ProcFs.MemoryAvailablePercent(meminfo));
        var old = Write("meminfo-old", "MemTotal:       24000000 kB\nMemFree:         1000000 kB\n");
        Assert.Null(ProcFs.MemoryAvailablePercent(old));
    }

    [Fact]
    public void Mounts_unescape_their_points_and_sources_and_skip_malformed_lines()
    {
        var mountinfo = Write("mountinfo", string.Join('\n',
            "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
            "30 22 7:0 / /var/lib/fork\\040box rw shared:2 master:1 - btrfs /dev/loop0 rw",
            "garbage line",
            "31 22 0:5 / /var/lib/fork\\040box rw - tmpfs tmp\\134fs rw",
            ""));
        var mounts = ProcFs.Mounts(mountinfo).ToList();
        Assert.Equal(3, mounts.Count);
        Assert.Equal(new ProcFs.Mount("/", "ext4", "/dev/sda1"), mounts[0]);
        Assert.Equal(new ProcFs.Mount("/var/lib/fork box", "btrfs", "/dev/loop0"), mounts[1]);
        Assert.Equal(new ProcFs.Mount("/var/lib/fork box", "tmpfs", "tmp\\fs"), mounts[2]);
    }

    [Fact]
    public void Forwarding_is_switched_on_once()
    {
        var path = Write("ip_forward", "0\n");
        Assert.True(ProcFs.EnableIpv4Forwarding(path));
        Assert.Equal("1", File.ReadAllText(path).Trim());
        Assert.False(ProcFs.EnableIpv4Forwarding(path));
    }
}
