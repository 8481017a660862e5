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
    private TestServer _server = null!;

    public HostServer Server => _server.Server;
    public ForkboxClient Client => _server.Client;
    public ServerOptions Options => _server.Options;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync("frames", o => o with
    {
        Pool = o.Pool with { Size = 1 },
        Limits = o.Limits with { MaxDownloadBytes = 1 << 20, OutputLimitBytes = 1 << 20 },
    });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    public Task<Sandbox> NewSandbox() => Sandbox.CreateAsync(null, Client);
}

[CollectionDefinition(Name)]
public sealed class AgentFrameCollection : ICollectionFixture<AgentFrameFixture>
{
    public const string Name = "agent-frames";
}
