using System.Globalization;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// Per-user kernel limits (inotify instances and watches, namespaces, fanotify groups) are counted
/// per sandbox family, not against host root's one allowance shared with every other sandbox and
/// with the host's own daemons.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class KernelAccountingTests(ServerFixture fx)
{
    private const string InotifyInstances = """
        import ctypes, os
        _libc = ctypes.CDLL(None, use_errno=True)
        def inotify_instances(limit):
            fds = []
            while len(fds) < limit:
                fd = _libc.inotify_init1(os.O_CLOEXEC)
                if fd < 0:
                    return fds, os.strerror(ctypes.get_errno())
                fds.append(fd)
            return fds, 'limit reached'
        """;

    [Fact]
    public async Task A_sandbox_that_takes_every_inotify_instance_it_can_leaves_its_neighbours_and_the_host_theirs()
    {
        await using var hog = await fx.NewSandbox();
        var took = await hog.RunCodeAsync(InotifyInstances + "\nheld, why = inotify_instances(100_000)\n[len(held), why]");
        Assert.True(took.ExitCode == 0, took.Stderr);
        var count = took.Result!.Value[0].GetInt32();
        Assert.True(count > 0, $"the hog got no inotify instance: {took.Result}");

        await using var neighbour = await fx.NewSandbox();
        var other = await neighbour.RunCodeAsync(InotifyInstances + "\nmine, why = inotify_instances(4)\n[len(mine), why]");
        Assert.True(other.ExitCode == 0, other.Stderr);
        Assert.True(other.Result!.Value[0].GetInt32() == 4, $"after a sandbox took {count} inotify instances, its neighbour got {other.Result}");
        var host = HostPython.Code("import ctypes, os; print(ctypes.CDLL(None, use_errno=True).inotify_init1(0) >= 0)").Trim();
        Assert.True(host == "True", $"after a sandbox took {count} inotify instances, host root could not make one");
    }

    [Fact]
    public async Task Every_sandbox_and_fork_user_namespace_is_owned_by_its_own_host_uid_not_root()
    {
        await using var a = await fx.NewSandbox();
        await using var b = await fx.NewSandbox();
        var fork = (await a.ForkAsync(1)).Single();
        await using var _ = fork;

        long Owner(Forkbox.Client.Sandbox sb) => long.Parse(HostPython.Code($"""
            import fcntl, os, struct
            fd = os.open('/proc/{fx.Server.Sandboxes.Get(sb.Id).Pid}/ns/user', os.O_RDONLY)
            buf = bytearray(4)
            fcntl.ioctl(fd, 0xb704, buf)  # NS_GET_OWNER_UID
            print(struct.unpack('I', buf)[0])
            """), CultureInfo.InvariantCulture);

        var (ownerA, ownerB, ownerFork) = (Owner(a), Owner(b), Owner(fork));
        Assert.Equal(fx.Server.Sandboxes.Get(a.Id).Slot.UidBase, ownerA);
        Assert.Equal(fx.Server.Sandboxes.Get(b.Id).Slot.UidBase, ownerB);
        Assert.NotEqual(ownerA, ownerB);
        Assert.Equal(ownerA, ownerFork); // a fork family shares its parent's allowance
    }
}
