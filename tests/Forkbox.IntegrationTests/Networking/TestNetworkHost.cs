using System.Diagnostics;
using System.Net.Sockets;

namespace Forkbox.IntegrationTests.Networking;

/// <summary>
/// A host for sandboxes to reach, made by the test and gone after it: a network namespace joined to
/// the host by a veth pair, with two addresses (<see cref="Address"/> and <see cref="OtherAddress"/>,
/// a /24 of 10.250.0.0/16) and a link-local one (<see cref="LinkLocal"/>, standing in for a metadata
/// endpoint), all served by one `python3 -m http.server` on port <see cref="Port"/>. Nothing leaves the machine.
/// </summary>
public sealed class TestNetworkHost : IAsyncDisposable
{
    public const int Port = 8080;
    public const string Body = "hello from the test host";
    private static int _next;
    private readonly string _ns;
    private readonly string _veth;
    private readonly string _dir;
    private Process? _server;

    private TestNetworkHost(int n)
    {
        var tag = $"{Environment.ProcessId % 4096:x3}{n:x2}";
        _ns = "fbt" + tag;
        _veth = "fbt" + tag + "h";
        var third = (Environment.ProcessId * 7 + n) % 250 + 1;
        Gateway = $"10.250.{third}.1";
        Address = $"10.250.{third}.2";
        OtherAddress = $"10.250.{third}.3";
        LinkLocal = $"169.254.77.{third}";
        _dir = Path.Combine(Path.GetTempPath(), "forkbox-testhost-" + tag);
    }

    /// <summary>The host's end of the test link.</summary>
    public string Gateway { get; }
    public string Address { get; }
    public string OtherAddress { get; }
    public string LinkLocal { get; }

    public static async Task<TestNetworkHost> StartAsync()
    {
        var host = new TestNetworkHost(Interlocked.Increment(ref _next));
        try
        {
            await host.SetUpAsync();
            return host;
        }
        catch
        {
            await host.DisposeAsync();
            throw;
        }
    }

    private async Task SetUpAsync()
    {
        Directory.CreateDirectory(_dir);
        await File.WriteAllTextAsync(Path.Combine(_dir, "index.html"), Body);
        Run("ip", $"netns add {_ns}");
        Run("ip", $"link add {_veth} type veth peer name eth0 netns {_ns}");
        Run("ip", $"addr add {Gateway}/24 dev {_veth}");
        Run("ip", $"link set {_veth} up");
        Run("ip", $"route add {LinkLocal}/32 dev {_veth}");
        Run("ip", $"-n {_ns} addr add {Address}/24 dev eth0");
        Run("ip", $"-n {_ns} addr add {OtherAddress}/24 dev eth0");
        Run("ip", $"-n {_ns} addr add {LinkLocal}/32 dev eth0");
        Run("ip", $"-n {_ns} link set eth0 up");
        Run("ip", $"-n {_ns} link set lo up");
        Run("ip", $"-n {_ns} route add default via {Gateway}");
        var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "netns", "exec", _ns, "/usr/bin/python3", "-m", "http.server", Port.ToString(), "--bind", "0.0.0.0", "--directory", _dir })
            psi.ArgumentList.Add(a);
        _server = Process.Start(psi)!;
        _server.OutputDataReceived += (_, _) => { };
        _server.ErrorDataReceived += (_, _) => { };
        _server.BeginOutputReadLine();
        _server.BeginErrorReadLine();
        await ServerFixture.WaitUntil(() => Answers(Address), $"the test host's server on {Address}:{Port}", 15);
    }

    /// <summary>Serves <paramref name="content"/> at http://ADDRESS:8080/<paramref name="relativePath"/> from now on.</summary>
    public void Serve(string relativePath, byte[] content)
    {
        var path = Path.Combine(_dir, relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, content);
    }

    /// <summary>Starts recording the UDP datagrams that reach <paramref name="address"/>:<paramref name="port"/> (one of this host's addresses).</summary>
    public Task<UdpRecorder> RecordUdpAsync(string address, int port) => UdpRecorder.StartAsync(_ns, address, port);

    /// <summary>Starts a DNS server on <paramref name="address"/>:53 (one of this host's addresses) that answers A queries for <paramref name="records"/> (name to IPv4 address).</summary>
    public Task<TestDnsServer> ServeDnsAsync(string address, IReadOnlyDictionary<string, string> records) => TestDnsServer.StartAsync(_ns, address, records);

    /// <summary>Whether this machine (the host) can reach <paramref name="address"/>: the test's control.</summary>
    public static bool Answers(string address)
    {
        try
        {
            using var c = new TcpClient();
            return c.ConnectAsync(address, Port).Wait(500) && c.Connected;
        }
        catch (AggregateException)
        {
            return false;
        }
    }

    private static void Run(string tool, string args)
    {
        using var p = Process.Start(new ProcessStartInfo(tool, args) { RedirectStandardError = true })!;
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{tool} {args}: {err}");
    }

    public ValueTask DisposeAsync()
    {
        if (_server is { HasExited: false }) _server.Kill(entireProcessTree: true);
        _server?.WaitForExit(5000);
        _server?.Dispose();
        try
        {
            Run("ip", $"netns del {_ns}");
        }
        catch (InvalidOperationException)
        {
            // never made
        }
        // The veth pair went with the namespace; the route with the veth.
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
        return ValueTask.CompletedTask;
    }
}
