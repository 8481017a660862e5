using Forkbox.Client;
using Xunit.Abstractions;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// vsock is not namespaced: a port bound in one sandbox is taken in every other, and on a VM host
/// the hypervisor is one hop away. The seccomp filter refuses AF_VSOCK sockets (EPERM, its own
/// errno: a kernel without vsock answers EAFNOSUPPORT instead) unless the operator enables them.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class VsockTests(ServerFixture fx, ITestOutputHelper output)
{
    [Fact]
    public async Task A_sandbox_and_its_fork_cannot_open_a_vsock_socket()
    {
        await using var sb = await fx.NewSandbox();
        var fork = (await sb.ForkAsync()).Single();
        await using (fork)
            foreach (var box in new[] { sb, fork })
            {
                // The attack: bind a port that is then taken in every other owner's sandbox.
                var r = await box.RunCodeAsync("""
                    import errno, socket
                    try:
                        s = socket.socket(40, socket.SOCK_STREAM)
                        s.bind((0xFFFFFFFF, 40000))
                        result = "bound"
                    except OSError as e:
                        result = errno.errorcode.get(e.errno, str(e.errno))
                    result
                    """);
                var got = r.Result!.Value.GetString();
                if (got == "EAFNOSUPPORT") output.WriteLine("this kernel has no vsock: only the filter's EPERM tells the refusal apart");
                Assert.True(got == "EPERM", $"{box.Id}: socket(AF_VSOCK) gave {got}, expected the filter's EPERM");
            }
    }

    [Fact]
    public async Task Every_way_to_make_a_vsock_socket_is_refused()
    {
        await using var sb = await fx.NewSandbox();
        var r = await sb.RunCodeAsync("""
            import errno, socket
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            def raw_socket(family, type, proto):
                fd = libc.syscall(ctypes.c_long(41), ctypes.c_long(family), ctypes.c_long(type), ctypes.c_long(proto))  # socket, x86_64
                if fd < 0:
                    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
                return fd
            def attempt(fn):
                try:
                    made = fn()
                    for s in made if isinstance(made, tuple) else (made,):
                        s.close()
                    return "ok"
                except OSError as e:
                    return errno.errorcode.get(e.errno, str(e.errno))
            {"dgram": attempt(lambda: socket.socket(40, socket.SOCK_DGRAM)),
             "seqpacket": attempt(lambda: socket.socket(40, socket.SOCK_SEQPACKET)),
             "stream_cloexec": attempt(lambda: socket.socket(40, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)),
             "socketpair": attempt(lambda: socket.socketpair(40, socket.SOCK_STREAM)),
             # The kernel reads the family as an int: high bits a 64-bit comparison would see are dropped.
             "high_bits": attempt(lambda: socket.socket(fileno=raw_socket((1 << 32) | 40, socket.SOCK_STREAM, 0)))}
            """);
        foreach (var p in r.Result!.Value.EnumerateObject())
            Assert.True(p.Value.GetString() == "EPERM", $"{p.Name}: {p.Value.GetString()}, expected the filter's EPERM");
    }

    [Fact]
    public async Task An_operator_can_allow_vsock()
    {
        await using var server = await TestServer.StartAsync("vsock", o => o with { Pool = o.Pool with { Size = 0 }, Isolation = o.Isolation with { AllowVsock = true } });
        await using var sb = await Sandbox.CreateAsync(client: server.Client);
        var r = await sb.RunCodeAsync("""
            import errno, socket
            try:
                socket.socket(40, socket.SOCK_STREAM).close()
                result = "ok"
            except OSError as e:
                result = errno.errorcode.get(e.errno, str(e.errno))
            result
            """);
        var got = r.Result!.Value.GetString();
        if (got == "EAFNOSUPPORT") output.WriteLine("this kernel has no vsock: the filter let the call through to it");
        Assert.True(got is "ok" or "EAFNOSUPPORT", $"socket(AF_VSOCK) with AllowVsock gave {got}");
    }
}
