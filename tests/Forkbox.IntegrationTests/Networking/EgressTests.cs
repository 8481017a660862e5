using System.Net.Sockets;
using Forkbox.Core;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Networking;

/// <summary>Network modes and policies, against a test host in a namespace the test made.</summary>
[Collection(NetworkCollection.Name)]
public sealed class EgressTests(NetworkFixture fx)
{
    [Fact]
    public async Task A_sandbox_without_network_cannot_reach_the_test_host()
    {
        Assert.True(TestNetworkHost.Answers(fx.TestHost.Address), "the host itself reaches the test host");
        await using var sb = await fx.NewSandbox();
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(sb, fx.TestHost.Address));
        Assert.Equal("none", sb.Info.Network);
        Assert.Null(sb.Info.Address);
    }

    [Fact]
    public async Task An_egress_sandbox_reaches_the_test_host_through_NAT()
    {
        await using var sb = await fx.NewSandbox(NetworkModes.Egress);
        Assert.Equal(TestNetworkHost.Body, await NetworkFixture.FetchAsync(sb, fx.TestHost.Address));
        Assert.Equal("egress", sb.Info.Network);
        Assert.StartsWith(fx.Options.Network.Subnet.Split(".0/")[0], sb.Info.Address);
    }

    [Fact]
    public async Task An_allow_list_of_CIDRs_lets_out_only_what_it_names()
    {
        await using var sb = await fx.NewSandbox(NetworkModes.Egress, new NetworkPolicy { Allow = [fx.TestHost.Address + "/32"] });
        Assert.Equal("open", await NetworkFixture.ProbeAsync(sb, fx.TestHost.Address));
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(sb, fx.TestHost.OtherAddress));
    }

    [Fact]
    public async Task A_deny_list_of_CIDRs_blocks_what_it_names_and_nothing_else()
    {
        await using var sb = await fx.NewSandbox(NetworkModes.Egress, new NetworkPolicy { Deny = [fx.TestHost.OtherAddress] });
        Assert.Equal("open", await NetworkFixture.ProbeAsync(sb, fx.TestHost.Address));
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(sb, fx.TestHost.OtherAddress));
    }

    [Fact]
    public async Task Policies_by_host_name_hold_and_the_names_resolve_inside_the_sandbox()
    {
        await using (var allowed = await fx.NewSandbox(NetworkModes.Egress, new NetworkPolicy { Allow = [NetworkFixture.HostName] }))
        {
            Assert.Equal(TestNetworkHost.Body, await NetworkFixture.FetchAsync(allowed, NetworkFixture.HostName));
            Assert.Equal("blocked", await NetworkFixture.ProbeAsync(allowed, fx.TestHost.OtherAddress));
        }
        await using var denied = await fx.NewSandbox(NetworkModes.Egress, new NetworkPolicy { Deny = [NetworkFixture.OtherHostName] });
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(denied, fx.TestHost.OtherAddress));
        Assert.Equal(TestNetworkHost.Body, await NetworkFixture.FetchAsync(denied, fx.TestHost.Address));
    }

    [Theory]
    [InlineData(NetworkModes.None)]
    [InlineData(NetworkModes.Egress)]
    public async Task The_host_link_local_addresses_and_other_sandboxes_are_unreachable(string mode)
    {
        // Controls: from the host, each target answers.
        using var hostListener = new TcpListener(System.Net.IPAddress.Any, 0);
        hostListener.Start();
        var hostPort = ((System.Net.IPEndPoint)hostListener.LocalEndpoint).Port;
        Assert.True(TestNetworkHost.Answers(fx.TestHost.LinkLocal), "the host reaches the link-local stand-in for a metadata endpoint");
        await using var other = await fx.NewSandbox(NetworkModes.Egress);
        await other.ExecAsync("(setsid nohup /usr/bin/python3 -m http.server 9000 >/dev/null 2>&1 &)");
        await ServerFixture.WaitUntil(() => NetworkFixture.ProbeAsync(other, "127.0.0.1", 9000).Result == "open", "the other sandbox's server");

        await using var sb = await fx.NewSandbox(mode);
        var gateway = fx.Options.Network.Subnet.Split(".0/")[0] + ".1";
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(sb, gateway, hostPort));
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(sb, fx.TestHost.Gateway, hostPort));
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(sb, fx.TestHost.LinkLocal));
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(sb, other.Info.Address!, 9000));
        // The API listens on the host's loopback, which inside a sandbox is the sandbox's own.
        Assert.NotEqual("open", await NetworkFixture.ProbeAsync(sb, fx.Server.Address.Host, fx.Server.Address.Port));
    }

    [Fact]
    public async Task Byte_counters_move_in_the_sandbox_info_and_in_metrics()
    {
        await using var sb = await fx.NewSandbox(NetworkModes.Egress);
        var before = await sb.RefreshAsync();
        Assert.Equal(TestNetworkHost.Body, await NetworkFixture.FetchAsync(sb, fx.TestHost.Address));
        var after = await sb.RefreshAsync();
        Assert.True(after.NetSentBytes > (before.NetSentBytes ?? 0), $"sent {before.NetSentBytes} -> {after.NetSentBytes}");
        Assert.True(after.NetReceivedBytes > (before.NetReceivedBytes ?? 0) + TestNetworkHost.Body.Length,
            $"received {before.NetReceivedBytes} -> {after.NetReceivedBytes}");
        var metrics = await fx.Admin.GetStringAsync("/metrics");
        Assert.Contains($"forkbox_sandbox_network_bytes_total{{sandbox=\"{sb.Id}\",direction=\"received\"}}", metrics);
    }

    [Fact]
    public async Task Forks_keep_egress_and_policy_with_an_address_each()
    {
        await using var parent = await fx.NewSandbox(NetworkModes.Egress, new NetworkPolicy { Deny = [fx.TestHost.OtherAddress] });
        var forks = await parent.ForkAsync(2);
        try
        {
            var addresses = new HashSet<string> { parent.Info.Address! };
            foreach (var child in forks)
            {
                var info = await child.RefreshAsync();
                Assert.Equal("egress", info.Network);
                Assert.True(addresses.Add(info.Address!), $"fork {child.Id} has an address of its own, not {info.Address}");
                Assert.Equal(TestNetworkHost.Body, await NetworkFixture.FetchAsync(child, fx.TestHost.Address));
                Assert.Equal("blocked", await NetworkFixture.ProbeAsync(child, fx.TestHost.OtherAddress));
            }
        }
        finally
        {
            foreach (var child in forks) await child.CloseAsync();
        }
    }

    [Fact]
    public async Task A_resumed_sandbox_keeps_egress_and_its_policy()
    {
        await using var sb = await fx.NewSandbox(NetworkModes.Egress, new NetworkPolicy { Allow = [NetworkFixture.HostName] }, persistent: true);
        await sb.HibernateAsync();
        await sb.ResumeAsync();
        var info = await sb.RefreshAsync();
        Assert.Equal("egress", info.Network);
        Assert.NotNull(info.Address);
        Assert.Equal([NetworkFixture.HostName], info.NetworkPolicy?.Allow);
        Assert.Equal(TestNetworkHost.Body, await NetworkFixture.FetchAsync(sb, NetworkFixture.HostName));
        Assert.Equal("blocked", await NetworkFixture.ProbeAsync(sb, fx.TestHost.OtherAddress));
    }

    [Fact]
    public async Task A_policy_without_egress_or_an_unknown_mode_is_a_bad_request()
    {
        var e = await Assert.ThrowsAnyAsync<Forkbox.Client.ForkboxApiException>(() => fx.NewSandbox(NetworkModes.None, new NetworkPolicy { Allow = ["10.0.0.0/8"] }));
        Assert.Equal(400, e.Status);
        e = await Assert.ThrowsAnyAsync<Forkbox.Client.ForkboxApiException>(() => fx.NewSandbox("bridge"));
        Assert.Equal(400, e.Status);
    }
}
