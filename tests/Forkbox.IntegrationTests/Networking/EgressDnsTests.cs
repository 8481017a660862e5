using Forkbox.Client;
using Forkbox.Core;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Networking;

/// <summary>
/// Names resolve in a sandbox with egress on a server started without network_dns: it hands its
/// sandboxes the host's resolvers (loopback ones left out), lets them through the firewall, and
/// warns at start-up when the host has none. The "host's resolv.conf" is a file the test writes, and
/// the resolver it names is a DNS server on a test host in its own network namespace.
/// </summary>
public sealed class EgressDnsTests : IAsyncLifetime
{
    private const string IndexName = "index.forkbox.test";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"forkbox-dns-test-{Environment.ProcessId}");
    private TestNetworkHost _host = null!;
    private TestDnsServer _dns = null!;
    private TestDnsServer _linkLocalDns = null!;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        _host = await TestNetworkHost.StartAsync();
        _dns = await _host.ServeDnsAsync(_host.Address, new Dictionary<string, string> { [IndexName] = _host.OtherAddress });
        _linkLocalDns = await _host.ServeDnsAsync(_host.LinkLocal, new Dictionary<string, string> { [IndexName] = _host.OtherAddress });
    }

    public async Task DisposeAsync()
    {
        _dns.Dispose();
        _linkLocalDns.Dispose();
        await _host.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Without_network_dns_an_egress_sandbox_gets_the_host_resolvers_and_names_resolve()
    {
        // As on a host with systemd-resolved's stub first: the stub is the sandbox's own loopback there.
        var resolvConf = Path.Combine(_dir, "resolv.conf");
        await File.WriteAllTextAsync(resolvConf, $"# the host's\nnameserver 127.0.0.53\nnameserver {_host.Address}\noptions edns0 trust-ad\nsearch example.test\n");
        var log = new CapturedLog();
        await using var server = await TestServer.StartAsync("egress-dns", o => o with
        {
            Pool = o.Pool with { Size = 0, EgressSize = 0 },
            Network = o.Network with { Dns = "", HostResolvConf = resolvConf + "," + Path.Combine(_dir, "absent.conf") },
        }, log.Configure);
        Assert.DoesNotContain(log.Lines, l => l.Contains("no resolver for sandboxes", StringComparison.Ordinal));

        await using var sb = await Sandbox.CreateAsync(new CreateSandboxRequest { Network = NetworkModes.Egress }, server.Client);
        var conf = (await sb.ExecAsync("cat /etc/resolv.conf")).Stdout;
        Assert.Contains($"nameserver {_host.Address}", conf.Split('\n'));
        Assert.DoesNotContain("127.0.0.53", conf);
        Assert.Equal(_host.OtherAddress, await ResolveAsync(sb, IndexName));
        Assert.Equal(TestNetworkHost.Body, await NetworkFixture.FetchAsync(sb, IndexName));
        Assert.Contains(IndexName, _dns.Queries);

        // An allow list that does not name the resolver still lets DNS to it through, and nothing else.
        await using var allowed = await Sandbox.CreateAsync(new CreateSandboxRequest
        {
            Network = NetworkModes.Egress, NetworkPolicy = new NetworkPolicy { Allow = [_host.OtherAddress + "/32"] },
        }, server.Client);
        Assert.Equal(_host.OtherAddress, await ResolveAsync(allowed, IndexName));
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(allowed, _host.Address));
    }

    [Fact]
    public async Task A_link_local_resolver_answers_and_its_other_ports_stay_denied()
    {
        // As on a cloud whose metadata address is also the resolver (169.254.169.254).
        var resolvConf = Path.Combine(_dir, "link-local.conf");
        await File.WriteAllTextAsync(resolvConf, $"nameserver {_host.LinkLocal}\n");
        Assert.True(TestNetworkHost.Answers(_host.LinkLocal), "the host reaches the link-local address's web server");
        await using var server = await TestServer.StartAsync("egress-link-local-dns", o => o with
        {
            Pool = o.Pool with { Size = 0, EgressSize = 0 },
            Network = o.Network with { Dns = "", HostResolvConf = resolvConf },
        });

        await using var sb = await Sandbox.CreateAsync(new CreateSandboxRequest { Network = NetworkModes.Egress }, server.Client);
        Assert.Equal($"nameserver {_host.LinkLocal}", (await sb.ExecAsync("cat /etc/resolv.conf")).Stdout.Trim());
        Assert.Equal(_host.OtherAddress, await ResolveAsync(sb, IndexName));
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(sb, _host.LinkLocal));
        Assert.Contains(IndexName, _linkLocalDns.Queries);
    }

    [Fact]
    public async Task A_host_with_only_loopback_resolvers_is_warned_of_at_start_and_the_sandbox_file_says_why()
    {
        var resolvConf = Path.Combine(_dir, "loopback.conf");
        await File.WriteAllTextAsync(resolvConf, "nameserver 127.0.0.53\nnameserver ::1\n");
        var log = new CapturedLog();
        await using var server = await TestServer.StartAsync("egress-no-dns", o => o with
        {
            Pool = o.Pool with { Size = 0, EgressSize = 0 },
            Network = o.Network with { Dns = "", HostResolvConf = resolvConf + "," + Path.Combine(_dir, "absent.conf") },
        }, log.Configure);

        var warning = Assert.Single(log.Lines, l => l.Contains("no resolver for sandboxes", StringComparison.Ordinal));
        Assert.StartsWith("Warning", warning);
        Assert.Contains(resolvConf, warning);
        Assert.Contains("127.0.0.53", warning);
        Assert.Contains("--network-dns", warning);

        await using var sb = await Sandbox.CreateAsync(new CreateSandboxRequest { Network = NetworkModes.Egress }, server.Client);
        var conf = (await sb.ExecAsync("cat /etc/resolv.conf")).Stdout;
        Assert.DoesNotContain(conf.Split('\n'), l => l.StartsWith("nameserver", StringComparison.Ordinal));
        Assert.Contains("found no resolver", conf);
    }

    [Fact]
    public async Task Network_dns_when_given_wins_over_the_host_resolvers()
    {
        var resolvConf = Path.Combine(_dir, "unused.conf");
        await File.WriteAllTextAsync(resolvConf, "nameserver 192.0.2.53\n");
        await using var server = await TestServer.StartAsync("egress-named-dns", o => o with
        {
            Pool = o.Pool with { Size = 0, EgressSize = 0 },
            Network = o.Network with { Dns = _host.Address, HostResolvConf = resolvConf },
        });
        await using var sb = await Sandbox.CreateAsync(new CreateSandboxRequest { Network = NetworkModes.Egress }, server.Client);
        Assert.Equal($"nameserver {_host.Address}", (await sb.ExecAsync("cat /etc/resolv.conf")).Stdout.Trim());
        Assert.Equal(_host.OtherAddress, await ResolveAsync(sb, IndexName));
    }

    /// <summary>The IPv4 address <paramref name="name"/> resolves to inside the sandbox, or the error's name.</summary>
    private static async Task<string> ResolveAsync(Sandbox sb, string name)
    {
        var run = await sb.RunCodeAsync($$"""
            import socket
            try:
                print(socket.gethostbyname("{{name}}"))
            except OSError as e:
                print(type(e).__name__, e)
            """);
        return run.Stdout.Trim();
    }
}
