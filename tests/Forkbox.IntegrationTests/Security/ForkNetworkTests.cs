using System.Diagnostics;
using System.Text.Json;
using Forkbox.Client;
using Forkbox.Core;
using Forkbox.Core.Wire;
using Forkbox.IntegrationTests.Networking;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// "Forks get no more than their parent", on the network: nothing in a sandbox or its forks holds
/// network-admin rights, and the host side of every link lets out only its sandbox's own address,
/// so no sandbox can send as another one and so escape its own policy. The attempts are in
/// net_admin_probe.py; a UDP recorder on the test host tells which datagrams got through.
/// </summary>
[Collection(NetworkCollection.Name)]
public sealed class ForkNetworkTests(NetworkFixture fx)
{
    private const int UdpPort = TestNetworkHost.Port + 1;
    private static readonly TimeSpan Arrival = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task An_egress_fork_cannot_take_another_sandboxs_address_to_escape_its_deny_list()
    {
        await using var victim = await SandboxWithProbe(null);
        await using var parent = await SandboxWithProbe(new NetworkPolicy { Deny = [fx.TestHost.OtherAddress] });
        var fork = (await parent.ForkAsync(1))[0];
        try
        {
            using var recorder = await fx.TestHost.RecordUdpAsync("0.0.0.0", UdpPort);
            var spoofed = "spoofed-" + Guid.NewGuid().ToString("N");
            var victimAddress = victim.Info.Address!;
            var run = await fork.RunCodeAsync(
                Probe($"print(p.add_address('{victimAddress}'))\n" +
                      $"print(p.send_udp('{victimAddress}', '{fx.TestHost.OtherAddress}', {UdpPort}, '{spoofed}'))"));
            Assert.Null(run.Error);
            // Control, and the barrier for the attempt: the victim's own datagram to the same place arrives.
            var control = "victim-" + Guid.NewGuid().ToString("N");
            Assert.Equal("sent", (await victim.RunCodeAsync(Probe($"print(p.send_udp('{victimAddress}', '{fx.TestHost.OtherAddress}', {UdpPort}, '{control}'))"))).Stdout);
            await recorder.WaitForAsync(control, Arrival);

            Assert.False(recorder.Received(spoofed),
                $"a datagram sent as {victimAddress} from the fork reached the test host (address add: {run.StdoutLines[0]}, send: {run.StdoutLines[1]})");
            Assert.Equal("EPERM", run.StdoutLines[0]);
            Assert.Equal("blocked", await NetworkFixture.ProbeAsync(fork, fx.TestHost.OtherAddress));
            Assert.Equal("open", await NetworkFixture.ProbeAsync(fork, fx.TestHost.Address));
        }
        finally
        {
            await fork.CloseAsync();
        }
    }

    [Fact]
    public async Task The_host_drops_what_a_sandbox_link_sends_from_an_address_not_its_own()
    {
        // Host root in the sandbox's network namespace stands in for anything that gets a packet
        // with a forged source out of eth0: what is tested is the host side of the link alone.
        await using var victim = await fx.NewSandbox(NetworkModes.Egress);
        await using var sb = await fx.NewSandbox(NetworkModes.Egress, new NetworkPolicy { Deny = [fx.TestHost.OtherAddress] });
        var pid = fx.Server.Sandboxes.LivePid(sb.Id) ?? throw new InvalidOperationException("the sandbox has no live pid");
        using var recorder = await fx.TestHost.RecordUdpAsync("0.0.0.0", UdpPort);
        var subnet = fx.Options.Network.Subnet.Split(".0/")[0];
        var attempts = new Dictionary<string, (string Source, string Destination)>
        {
            ["another sandbox's address, past its own deny list"] = (victim.Info.Address!, fx.TestHost.OtherAddress),
            ["another sandbox's address"] = (victim.Info.Address!, fx.TestHost.Address),
            ["a free address of the sandbox subnet"] = (subnet + ".250", fx.TestHost.Address),
            ["an address outside the subnet"] = (fx.TestHost.Gateway, fx.TestHost.Address),
        };
        var tokens = attempts.ToDictionary(a => a.Key, _ => "spoofed-" + Guid.NewGuid().ToString("N"));
        foreach (var (what, (source, destination)) in attempts)
            Assert.Equal("sent", await SendFromNamespace(pid, source, destination, tokens[what]));
        // Control, and the barrier: the same path with the sandbox's own address gets through.
        var control = "own-" + Guid.NewGuid().ToString("N");
        Assert.Equal("sent", await SendFromNamespace(pid, sb.Info.Address!, fx.TestHost.Address, control));
        await recorder.WaitForAsync(control, Arrival);

        var through = attempts.Keys.Where(what => recorder.Received(tokens[what])).ToList();
        Assert.True(through.Count == 0, "got through from a sandbox's link: " + string.Join("; ", through));
    }

    public static TheoryData<string> Kinds() => ["sandbox", "fork", "fork of a fork"];

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task Nothing_in_an_egress_sandbox_or_its_forks_has_network_admin_rights(string kind)
    {
        await using var other = await fx.NewSandbox(NetworkModes.Egress);
        await using var root = await SandboxWithProbe(null);
        var made = new List<Sandbox>();
        try
        {
            var sb = root;
            for (var depth = kind switch { "fork" => 1, "fork of a fork" => 2, _ => 0 }; depth > 0; depth--)
            {
                sb = (await sb.ForkAsync(1))[0];
                made.Add(sb);
            }
            var run = await sb.RunCodeAsync(Probe($"import json\nprint(json.dumps(p.operations('{other.Info.Address}')))\nprint(json.dumps(p.capabilities()))"));
            Assert.Null(run.Error);
            var operations = JsonSerializer.Deserialize<Dictionary<string, string>>(run.StdoutLines[0])!;
            var capabilities = JsonSerializer.Deserialize<Dictionary<string, string[]>>(run.StdoutLines[1])!;

            var allowed = operations.Where(o => o.Value != "EPERM").Select(o => $"{o.Key}: {o.Value}").ToList();
            Assert.True(allowed.Count == 0, $"{kind}: not refused with EPERM: " + string.Join("; ", allowed));
            var held = capabilities.Where(c => c.Value.Length > 0).Select(c => $"{c.Key} {string.Join(',', c.Value)}").ToList();
            Assert.True(held.Count == 0, $"{kind} holds " + string.Join("; ", held));
            // What it may do is untouched: its own loopback and its egress.
            Assert.Equal(TestNetworkHost.Body, await NetworkFixture.FetchAsync(sb, fx.TestHost.Address));
        }
        finally
        {
            made.Reverse();
            foreach (var fork in made) await fork.CloseAsync();
        }
    }

    /// <summary>An egress sandbox with net_admin_probe.py in /root (which its forks inherit).</summary>
    private async Task<Sandbox> SandboxWithProbe(NetworkPolicy? policy)
    {
        var sb = await fx.NewSandbox(NetworkModes.Egress, policy);
        await sb.UploadAsync("/root/net_admin_probe.py", await File.ReadAllBytesAsync(ProbePath));
        return sb;
    }

    private static string ProbePath => Path.Combine(AppContext.BaseDirectory, "Security", "net_admin_probe.py");

    private static string Probe(string code) => "import sys\nsys.path.insert(0, '/root')\nimport net_admin_probe as p\n" + code;

    /// <summary>Host root, in the network namespace of <paramref name="pid"/>, sends one datagram from <paramref name="source"/>.</summary>
    private static async Task<string> SendFromNamespace(int pid, string source, string destination, string token)
    {
        var psi = new ProcessStartInfo("nsenter") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-t", pid.ToString(), "-n", "/usr/bin/python3", ProbePath, source, destination, UdpPort.ToString(), token })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = await p.StandardOutput.ReadToEndAsync();
        var error = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return p.ExitCode == 0 ? output.Trim() : $"exit {p.ExitCode}: {error.Trim()}";
    }
}
