using Forkbox.Client;
using Forkbox.Core;
using Forkbox.Host;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// A server of its own with small download and output limits (1 MiB each), so that an agent made
/// to send past them shows it in a second, not after 256 MiB. Each test breaks its sandbox.
/// </summary>
public sealed class AgentFrameFixture : IAsyncLifetime
{
    public HostServer Server { get; private set; } = null!;
    public ForkboxClient Client { get; private set; } = null!;
    public ServerOptions Options { get; } = ServerFixture.TestOptions("frames") with
    {
        PoolSize = 1,
        MaxDownloadBytes = 1 << 20,
        OutputLimitBytes = 1 << 20,
    };

    public async Task InitializeAsync()
    {
        Server = await HostServer.StartAsync(Options, ServerFixture.LogToConsole);
        Client = new ForkboxClient(Server.Address.ToString());
    }

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        Directory.Delete(Options.DataDir, recursive: true);
    }

    public Task<Sandbox> NewSandbox() => Sandbox.CreateAsync(null, Client);
}

[CollectionDefinition(Name)]
public sealed class AgentFrameCollection : ICollectionFixture<AgentFrameFixture>
{
    public const string Name = "agent-frames";
}
