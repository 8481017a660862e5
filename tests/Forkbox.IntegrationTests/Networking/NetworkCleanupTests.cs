using System.Diagnostics;
using Forkbox.Client;
using Forkbox.Core;
using Forkbox.Core.Wire;

namespace Forkbox.IntegrationTests.Networking;

/// <summary>Every link and firewall entry made for a sandbox goes with it; the table goes with the server.</summary>
public sealed class NetworkCleanupTests
{
    [Fact]
    public async Task Links_and_firewall_entries_go_with_their_sandboxes_and_the_table_with_the_server()
    {
        await using var server = await TestServer.StartAsync("netclean", o => o with { Pool = o.Pool with { Size = 1, EgressSize = 1 } });
        var net = server.Sandboxes.Networking;
        var prefix = net.LinkPrefix;
        var client = server.Client;
        Assert.Equal(0, net.FirewallEntries);
        var open = await Sandbox.CreateAsync(new CreateSandboxRequest { Network = NetworkModes.Egress }, client);
        var withPolicy = await Sandbox.CreateAsync(new CreateSandboxRequest
        {
            Network = NetworkModes.Egress, NetworkPolicy = new NetworkPolicy { Deny = ["192.0.2.0/24"], Allow = ["198.51.100.0/24"] },
        }, client);
        var forks = await withPolicy.ForkAsync(2);
        await ServerFixture.WaitUntil(() => server.Sandboxes.Pool("default", egress: true).Ready >= 1, "the egress pool refilling");
        // The open sandbox and the pooled one: an element each; with a policy: an element and a chain each (parent and two forks);
        // and each of the five links its own element (the address it may send from).
        Assert.Equal(2 + 3 * 2 + 5, net.FirewallEntries);
        Assert.Equal(4 + 1, net.Links);

        foreach (var sb in forks.Append(withPolicy).Append(open)) await sb.CloseAsync();
        await ServerFixture.WaitUntil(() => net.FirewallEntries == 2 && net.Links == 1 && server.Sandboxes.Pool("default", egress: true).Ready == 1,
            "links and firewall entries of closed sandboxes removed");

        await server.StopAsync();
        Assert.Empty(Links(prefix));
        Assert.DoesNotContain(Nft("list tables").Split('\n'), t => t.Contains("forkbox_" + prefix[2..6], StringComparison.Ordinal));
    }

    private static IEnumerable<string> Links(string prefix) =>
        Directory.GetFileSystemEntries("/sys/class/net").Select(p => Path.GetFileName(p)).Where(n => n.StartsWith(prefix, StringComparison.Ordinal));

    private static string Nft(string args)
    {
        using var p = Process.Start(new ProcessStartInfo("nft", args) { RedirectStandardOutput = true })!;
        var text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return text;
    }
}
