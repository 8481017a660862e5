using Forkbox.Client;
using Forkbox.Core;
using Forkbox.Host;
using Microsoft.Extensions.Logging;

namespace Forkbox.IntegrationTests;

/// <summary>
/// A real hostd on a loopback port with its own data directory, shared by the tests of one
/// collection. Tests talk to it over HTTP with the C# SDK, as any client would.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public HostServer Server { get; private set; } = null!;
    public ForkboxClient Client { get; private set; } = null!;
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(60) };
    public ServerOptions Options { get; private set; } = null!;

    public static ServerOptions TestOptions(string name) => new()
    {
        Listen = "127.0.0.1:0",
        DataDir = Path.Combine(Path.GetTempPath(), $"forkbox-test-{name}-{Environment.ProcessId}"),
        MaxSandboxes = 64,
        PoolSize = 2,
        // A distinct uid range per fixture, so parallel test runs never share host uids.
        UidBase = 2_000_000_000 + (long)(Math.Abs(name.GetHashCode()) % 16) * 65_536 * 64,
        // A distinct sandbox subnet per fixture and run, so parallel servers' links and routes never overlap.
        NetworkSubnet = SubnetFor(name),
    };

    private static string SubnetFor(string name)
    {
        var h = (uint)HashCode.Combine(name, Environment.ProcessId);
        return $"10.{200 + h % 40}.{h / 40 % 256}.0/24";
    }

    public static void LogToConsole(ILoggingBuilder b) => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);

    public async Task InitializeAsync()
    {
        if (!Forkbox.Linux.Privileges.IsRoot)
            throw new InvalidOperationException("the integration tests create namespaces and cgroups: run them as root (sudo scripts/test.sh)");
        Options = TestOptions("shared") with { PoolSize = 4 };
        Server = await HostServer.StartAsync(Options, LogToConsole);
        Client = new ForkboxClient(Server.Address.ToString());
        Http.BaseAddress = Server.Address;
    }

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        Http.Dispose();
        Directory.Delete(Options.DataDir, recursive: true);
    }

    /// <summary>Waits (bounded) until the default template's pool holds at least <paramref name="ready"/> sandboxes.</summary>
    public Task WaitForPool(int ready, string template = "default") =>
        WaitUntil(() => Server.Sandboxes.Pool(template).Ready >= ready, $"pool {template} reaching {ready} ready sandboxes", 60);

    /// <summary>Polls a condition every 20 ms; throws naming it if it does not hold within the time given.</summary>
    public static async Task WaitUntil(Func<bool> condition, string what, double seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{what}: not within {seconds} s");
            await Task.Delay(20);
        }
    }

    public Task<Sandbox> NewSandbox(Forkbox.Core.Wire.CreateSandboxRequest? options = null) => Sandbox.CreateAsync(options, Client);
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "server";
}
