using Forkbox.Client;
using Forkbox.Core;
using Forkbox.Host;
using Forkbox.Host.Sandboxes;
using Forkbox.Hosting.Auth;
using Microsoft.Extensions.Logging;

namespace Forkbox.IntegrationTests;

/// <summary>
/// A hostd of a test's own: a real <see cref="HostServer"/> on a loopback port with a fresh data
/// directory, for the tests that change its options, break it, restart it or watch it stop.
/// Disposing it stops the server and removes the data directory, whether the test passed or not.
/// </summary>
public sealed class TestServer : IAsyncDisposable
{
    private readonly Action<ILoggingBuilder> _log;
    private HostServer? _server;
    private HttpClient? _http;

    /// <summary>
    /// A server not started yet, for a test that prepares its data directory first (keys, templates)
    /// or asserts that the start fails. <paramref name="name"/> names the data directory and picks
    /// the uid range and subnet, so servers running side by side never share them.
    /// </summary>
    public TestServer(string name, Func<ServerOptions, ServerOptions>? configure = null, Action<ILoggingBuilder>? log = null)
    {
        var options = DefaultOptions(name);
        Options = configure is null ? options : configure(options);
        _log = log ?? ServerFixture.LogToConsole;
    }

    /// <summary>Starts a server with the defaults of <see cref="DefaultOptions"/> changed by <paramref name="configure"/>.</summary>
    public static async Task<TestServer> StartAsync(string name, Func<ServerOptions, ServerOptions>? configure = null, Action<ILoggingBuilder>? log = null)
    {
        var server = new TestServer(name, configure, log);
        try
        {
            await server.StartAsync();
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
        return server;
    }

    /// <summary>The options every test server starts from: loopback, a small pool, its own uids and subnet.</summary>
    public static ServerOptions DefaultOptions(string name) => new()
    {
        Listen = "127.0.0.1:0",
        DataDir = Path.Combine(Path.GetTempPath(), $"forkbox-test-{name}-{Environment.ProcessId}"),
        Limits = new() { MaxSandboxes = 64 },
        Pool = new() { Size = 2 },
        // A distinct uid range per server, so parallel test runs never share host uids.
        Isolation = new() { UidBase = 2_000_000_000 + (long)(Math.Abs(name.GetHashCode()) % 16) * 65_536 * 64 },
        // A distinct sandbox subnet per server and run, so parallel servers' links and routes never overlap.
        Network = new() { Subnet = SubnetFor(name) },
    };

    private static string SubnetFor(string name)
    {
        var h = (uint)HashCode.Combine(name, Environment.ProcessId);
        return $"10.{200 + h % 40}.{h / 40 % 256}.0/24";
    }

    public ServerOptions Options { get; }

    /// <summary>The running server; a test that is between <see cref="StopAsync"/> and <see cref="StartAsync()"/> has none.</summary>
    public HostServer Server => _server ?? throw new InvalidOperationException("the test server is not running");

    public Uri Address => Server.Address;
    public SandboxManager Sandboxes => Server.Sandboxes;

    /// <summary>An SDK client that sends no key.</summary>
    public ForkboxClient Client { get; private set; } = null!;

    /// <summary>An HttpClient on the server's address that sends no key.</summary>
    public HttpClient Http => _http ??= new HttpClient { BaseAddress = Address, Timeout = TimeSpan.FromSeconds(60) };

    /// <summary>Starts the server (again, after <see cref="StopAsync"/>: on the same data directory).</summary>
    public async Task StartAsync()
    {
        if (_server is not null) throw new InvalidOperationException("the test server is running already");
        _server = await HostServer.StartAsync(Options, _log);
        Client = new ForkboxClient(_server.Address.ToString());
    }

    /// <summary>Stops the server as `forkbox serve` does on SIGTERM and keeps the data directory, for a restart or a look at what was left.</summary>
    public async Task StopAsync()
    {
        _http?.Dispose();
        _http = null;
        var server = _server;
        _server = null;
        if (server is not null) await server.DisposeAsync();
    }

    /// <summary>Adds a key to the keys file (made if need be); before the start, the server begins with it.</summary>
    public string CreateKey(string name, bool admin = false)
    {
        Directory.CreateDirectory(Options.DataDir);
        return new ApiKeyStore(Options.KeysFile).Create(name, admin: admin);
    }

    /// <summary>An SDK client that sends <paramref name="key"/>.</summary>
    public ForkboxClient ClientWithKey(string key) => new(Address.ToString(), key);

    /// <summary>An HttpClient that sends <paramref name="key"/> (or no key); the caller disposes it.</summary>
    public HttpClient HttpWithKey(string? key, TimeSpan? timeout = null)
    {
        var http = new HttpClient { BaseAddress = Address, Timeout = timeout ?? TimeSpan.FromSeconds(60) };
        if (key is not null) http.DefaultRequestHeaders.Authorization = new("Bearer", key);
        return http;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        if (Directory.Exists(Options.DataDir)) Directory.Delete(Options.DataDir, recursive: true);
    }
}
