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
    private TestServer _server = null!;

    public HostServer Server => _server.Server;
    public ForkboxClient Client => _server.Client;
    public HttpClient Http => _server.Http;
    public ServerOptions Options => _server.Options;

    public static void LogToConsole(ILoggingBuilder b) => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);

    public async Task InitializeAsync()
    {
        if (!Forkbox.Linux.Privileges.IsRoot)
            throw new InvalidOperationException("the integration tests create namespaces and cgroups: run them as root (sudo scripts/test.sh)");
        _server = await TestServer.StartAsync("shared", o => o with { Pool = o.Pool with { Size = 4 } });
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

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
