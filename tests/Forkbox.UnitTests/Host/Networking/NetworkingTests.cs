using System.Net;
using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Host.Ports;
using Forkbox.Linux.Network;
using Forkbox.Hosting;

namespace Forkbox.UnitTests.Host.Networking;

/// <summary>The parts of networking that need no kernel: addresses, port paths, signed URLs, options.</summary>
[Trait("Root", "not needed")]
public sealed class NetworkingTests
{
    [Fact]
    public void A_cidr_is_normalised_and_knows_what_it_contains()
    {
        var c = Ipv4Cidr.Parse("10.201.3.7/16");
        Assert.Equal("10.201.0.0/16", c.ToString());
        Assert.True(c.Contains(IPAddress.Parse("10.201.255.1")));
        Assert.False(c.Contains(IPAddress.Parse("10.202.0.1")));
        Assert.Equal("1.2.3.4/32", Ipv4Cidr.Parse("1.2.3.4").ToString());
        Assert.False(Ipv4Cidr.TryParse("example.com", out _));
        Assert.False(Ipv4Cidr.TryParse("10.0.0.0/33", out _));
    }

    [Fact]
    public void The_address_pool_skips_network_gateway_and_broadcast_and_reuses_freed_addresses_last()
    {
        var pool = new AddressPool(Ipv4Cidr.Parse("10.9.9.0/29"));
        Assert.Equal(IPAddress.Parse("10.9.9.1"), pool.Gateway);
        var taken = Enumerable.Range(0, 5).Select(_ => pool.Take()!.ToString()).ToList();
        Assert.Equal(["10.9.9.2", "10.9.9.3", "10.9.9.4", "10.9.9.5", "10.9.9.6"], taken);
        Assert.Null(pool.Take());
        pool.Release(IPAddress.Parse("10.9.9.4"));
        Assert.Equal(IPAddress.Parse("10.9.9.4"), pool.Take());
    }

    [Fact]
    public void A_port_path_splits_into_sandbox_port_token_and_rest()
    {
        Assert.True(PortPath.TryParse("/v1/sandboxes/sbx_1/ports/8000/a/b.txt", out var p));
        Assert.Equal(("sbx_1", 8000, (long?)null, "/a/b.txt"), (p.Id, p.Port, p.Expiry, p.Rest));
        Assert.True(PortPath.TryParse("/v1/sandboxes/sbx_1/ports/8000", out p));
        Assert.Equal("/", p.Rest);
        Assert.True(PortPath.TryParse("/v1/sandboxes/sbx_1/ports/8000/_fbx/123-ab-c_d/x", out p));
        Assert.Equal((123L, "ab-c_d", "/x"), (p.Expiry!.Value, p.Signature, p.Rest));
        Assert.False(PortPath.TryParse("/v1/sandboxes/sbx_1/files", out _));
    }

    [Fact]
    public void A_signed_url_is_valid_for_its_own_sandbox_and_port_until_it_expires()
    {
        var key = Path.Combine(Path.GetTempPath(), $"forkbox-unit-{Guid.NewGuid():N}.key");
        try
        {
            var time = new ManualTime(DateTimeOffset.FromUnixTimeSeconds(1_000_000));
            var signer = new PortUrlSigner(key, time);
            var path = signer.SignedPath("sbx_a", 8000, time.GetUtcNow().AddSeconds(60));
            Assert.True(PortPath.TryParse(path + "index.html", out var p) && signer.IsValid(p));
            Assert.True(PortPath.TryParse(path.Replace("sbx_a", "sbx_b"), out var other) && !signer.IsValid(other));
            Assert.True(PortPath.TryParse(path.Replace("/8000/", "/8001/"), out var port) && !signer.IsValid(port));
            Assert.True(new PortUrlSigner(key, time).IsValid(p), "the key survives a restart");
            time.Now = time.Now.AddSeconds(61);
            Assert.False(signer.IsValid(p));
        }
        finally
        {
            File.Delete(key);
        }
    }

    [Theory]
    [InlineData("NetworkSubnet", "10.0.0.0/30")]
    [InlineData("NetworkSubnet", "fd00::/64")]
    [InlineData("NetworkDns", "dns.example")]
    [InlineData("NetworkHosts", "name-without-address")]
    [InlineData("NetworkOperatorAllow", "not-a-cidr")]
    public void Network_options_are_validated_at_startup(string option, string value)
    {
        var options = option switch
        {
            "NetworkSubnet" => new ServerOptions { Network = new() { Subnet = value } },
            "NetworkDns" => new ServerOptions { Network = new() { Dns = value } },
            "NetworkHosts" => new ServerOptions { Network = new() { Hosts = value } },
            _ => new ServerOptions { Network = new() { OperatorAllow = value } },
        };
        var e = Assert.Throws<BadRequestException>(options.Validate);
        Assert.Contains(value, e.Message);
    }

    private sealed class ManualTime(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;

        public override DateTimeOffset GetUtcNow() => Now;
    }
}
