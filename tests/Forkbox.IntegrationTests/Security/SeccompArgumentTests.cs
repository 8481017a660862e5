namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// The filter's rules on int arguments hold whatever the upper 32 bits of the register say: the
/// kernel reads an int and drops them, so a filter comparing all 64 bits would be stepped around.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class SeccompArgumentTests(ServerFixture fx)
{
    [Fact]
    public async Task Netfilter_sockets_stay_refused_with_high_bits_in_the_arguments_in_a_sandbox_and_its_fork()
    {
        await using var sb = await fx.NewSandbox();
        var fork = (await sb.ForkAsync()).Single();
        await using (fork)
            foreach (var box in new[] { sb, fork })
            {
                var r = await box.RunCodeAsync("""
                    import ctypes, errno, os
                    libc = ctypes.CDLL(None, use_errno=True)
                    # socket(AF_NETLINK | 1 << 32, SOCK_RAW, NETLINK_NETFILTER | 1 << 32), x86_64's number 41
                    fd = libc.syscall(ctypes.c_long(41), ctypes.c_long((1 << 32) | 16), ctypes.c_long(3), ctypes.c_long((1 << 32) | 12))
                    if fd >= 0:
                        os.close(fd)
                    "opened" if fd >= 0 else errno.errorcode.get(ctypes.get_errno())
                    """);
                Assert.True(r.Result!.Value.GetString() == "EPERM", $"{box.Id}: a NETLINK_NETFILTER socket gave {r.Result!.Value.GetString()}, expected EPERM");
            }
    }
}
