using System.Net;
using Forkbox.Linux.Network;

namespace Forkbox.UnitTests.Linux;

/// <summary>The host's resolvers as a sandbox can use them, from resolv.conf files the test writes.</summary>
[Trait("Root", "not needed")]
public sealed class HostResolversTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("forkbox-resolv-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_root, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void Loopback_any_and_IPv6_nameservers_are_passed_over_and_the_rest_kept_in_order()
    {
        var file = Write("resolv.conf", "# comment\nnameserver 127.0.0.53\nnameserver\t10.0.0.2\nnameserver ::1\nnameserver 0.0.0.0\n" +
                                        "nameserver 2001:db8::1\n  nameserver 10.0.0.3 # trailing\nnameserver 10.0.0.2\nsearch lan\n");

        var host = HostResolvers.Read([file]);

        Assert.Equal([IPAddress.Parse("10.0.0.2"), IPAddress.Parse("10.0.0.3")], host.Servers);
        Assert.Equal(file, host.Source);
        Assert.Equal(["127.0.0.53", "::1", "0.0.0.0", "2001:db8::1"], host.Skipped);
    }

    [Fact]
    public void A_file_with_only_the_stub_falls_back_to_the_next_and_a_missing_one_is_passed_over()
    {
        var stub = Write("stub.conf", "nameserver 127.0.0.53\noptions edns0 trust-ad\n");
        var upstream = Write("upstream.conf", "nameserver 192.0.2.1\n");

        var host = HostResolvers.Read([Path.Combine(_root, "absent"), stub, upstream]);

        Assert.Equal([IPAddress.Parse("192.0.2.1")], host.Servers);
        Assert.Equal(upstream, host.Source);
        Assert.Equal(["127.0.0.53"], host.Skipped);
    }

    [Fact]
    public void No_usable_nameserver_anywhere_gives_none()
    {
        var host = HostResolvers.Read([Write("stub.conf", "nameserver 127.0.0.1\n"), Path.Combine(_root, "absent")]);

        Assert.Empty(host.Servers);
        Assert.Null(host.Source);
        Assert.Equal(["127.0.0.1"], host.Skipped);
    }
}
