using Forkbox.Client;
using Forkbox.Core;
using Forkbox.Core.Wire;
using Forkbox.Host;

namespace Forkbox.IntegrationTests.Networking;

/// <summary>
/// A server with API keys and egress for the networking tests, and a <see cref="TestNetworkHost"/>
/// whose address the server's pinned names (network_hosts) call "testhost.forkbox.test" and
/// "otherhost.forkbox.test": policies by name resolve through a resolver the test controls.
/// </summary>
public sealed class NetworkFixture : IAsyncLifetime
{
    public const string HostName = "testhost.forkbox.test";
    public const string OtherHostName = "otherhost.forkbox.test";

    private TestServer _server = null!;

    public HostServer Server => _server.Server;
    public TestNetworkHost TestHost { get; private set; } = null!;
    public ForkboxClient Client { get; private set; } = null!;
    public ServerOptions Options => _server.Options;
    public string ApiKey { get; private set; } = null!;

    /// <summary>An HttpClient that sends no key.</summary>
    public HttpClient Anonymous { get; private set; } = null!;

    /// <summary>An HttpClient that sends the key.</summary>
    public HttpClient Http { get; private set; } = null!;

    /// <summary>An HttpClient that sends an admin key, for the server-wide routes such as /metrics.</summary>
    public HttpClient Admin { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        TestHost = await TestNetworkHost.StartAsync();
        _server = new TestServer("network", o => o with
        {
            Pool = o.Pool with { Size = 1, EgressSize = 1 },
            Network = o.Network with { Hosts = $"{HostName}={TestHost.Address},{OtherHostName}={TestHost.OtherAddress}" },
        });
        ApiKey = _server.CreateKey("network-tests");
        var adminKey = _server.CreateKey("network-tests-admin", admin: true);
        await _server.StartAsync();
        Client = _server.ClientWithKey(ApiKey);
        var timeout = TimeSpan.FromSeconds(30);
        Anonymous = _server.HttpWithKey(null, timeout);
        Http = _server.HttpWithKey(ApiKey, timeout);
        Admin = _server.HttpWithKey(adminKey, timeout);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await TestHost.DisposeAsync();
        Http.Dispose();
        Admin.Dispose();
        Anonymous.Dispose();
    }

    public Task<Sandbox> NewSandbox(string network = NetworkModes.None, NetworkPolicy? policy = null, bool persistent = false) =>
        Sandbox.CreateAsync(new CreateSandboxRequest { Network = network, NetworkPolicy = policy, Persistent = persistent ? true : null }, Client);

    /// <summary>
    /// What a TCP connect from inside the sandbox to address:port gets: "open", "refused", or
    /// "blocked" (dropped: no answer within a second, or no route at all).
    /// </summary>
    public static async Task<string> ProbeAsync(Sandbox sb, string address, int port = TestNetworkHost.Port)
    {
        var run = await sb.RunCodeAsync($$"""
            import socket
            s = socket.socket()
            s.settimeout(1.0)
            try:
                s.connect(("{{address}}", {{port}}))
                print("open")
            except ConnectionRefusedError:
                print("refused")
            except OSError:
                print("blocked")
            finally:
                s.close()
            """);
        return run.Stdout.Trim();
    }

    /// <summary>The body of GET http://{host}:8080/ from inside the sandbox, or the error's name.</summary>
    public static async Task<string> FetchAsync(Sandbox sb, string host)
    {
        var run = await sb.RunCodeAsync($$"""
            import urllib.request
            try:
                print(urllib.request.urlopen("http://{{host}}:{{TestNetworkHost.Port}}/", timeout=2).read().decode())
            except Exception as e:
                print(type(e).__name__)
            """);
        return run.Stdout.Trim();
    }
}

[CollectionDefinition(Name)]
public sealed class NetworkCollection : ICollectionFixture<NetworkFixture>
{
    public const string Name = "network";
}
