using Forkbox.Client;
using Forkbox.Edge;
using Forkbox.Hosting.Auth;

namespace Forkbox.IntegrationTests.Cluster;

/// <summary>
/// A cluster on loopback: a real Redis, three `forkbox serve` processes in two regions (eu-1 in
/// eu on EU; us-1 and us-2 in us on NA) and two edge replicas reading the same Redis, with API
/// keys of several tiers. Hosts beat every 0.5 s (so a dead one leaves within 1.5 s) and edges
/// repair tier counts every second, to keep the tests short.
/// </summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    private readonly Dictionary<string, ServerProcess> _hosts = new();
    private int _hostsStarted;

    public string Root { get; } = Path.Combine(Path.GetTempPath(), $"forkbox-test-cluster-{Environment.ProcessId}");
    public RedisProcess Redis { get; private set; } = null!;
    public EdgeServer EdgeA { get; private set; } = null!;
    public EdgeServer EdgeB { get; private set; } = null!;
    public IReadOnlyDictionary<string, ServerProcess> Hosts => _hosts;
    /// <summary>Key name → plain key. Tiers: open (none), limited (20 sandboxes), tiny (3), one (1), slow (5 creates a minute).</summary>
    public Dictionary<string, string> Keys { get; } = new();
    public string KeysFile => Path.Combine(Root, "keys.json");

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Root);
        var store = new ApiKeyStore(KeysFile);
        foreach (var (name, tier) in new[] { ("open", (string?)null), ("limited", "limited"), ("tiny", "tiny"), ("one", "one"), ("slow", "slow") })
            Keys[name] = store.Create(name, tier);
        var tiers = Path.Combine(Root, "tiers.json");
        await File.WriteAllTextAsync(tiers, """
            {
              "limited": {"max_sandboxes": 20},
              "tiny": {"max_sandboxes": 3},
              "one": {"max_sandboxes": 1},
              "slow": {"creates_per_minute": 5}
            }
            """);
        Redis = await RedisProcess.StartAsync();
        await Task.WhenAll(
            StartHostAsync("eu-1", "eu", "EU", 12),
            StartHostAsync("us-1", "us", "NA", 30),
            StartHostAsync("us-2", "us", "NA", 20));
        var options = new EdgeOptions { Listen = "127.0.0.1:0", Redis = Redis.Endpoint, Keys = KeysFile, Tiers = tiers, PollS = 0.2, ReconcileS = 1 };
        EdgeA = await EdgeServer.StartAsync(options, ServerFixture.LogToConsole);
        EdgeB = await EdgeServer.StartAsync(options, ServerFixture.LogToConsole);
        await WaitForHosts(h => h.Count == 3);
    }

    /// <summary>Starts `forkbox serve --join` as a separate process; it is in rotation once both edges list it.</summary>
    public async Task<ServerProcess> StartHostAsync(string id, string region, string continent, int maxSandboxes, string? dataDir = null)
    {
        var index = Interlocked.Increment(ref _hostsStarted);
        var host = await ServerProcess.StartAsync(dataDir ?? Path.Combine(Root, id),
            args: ["--join", Redis.Endpoint, "--host-id", id, "--region", region, "--continent", continent],
            env: new Dictionary<string, string>
            {
                ["FORKBOX_MAXSANDBOXES"] = maxSandboxes.ToString(),
                ["FORKBOX_HEARTBEATS"] = "0.5",
                // A distinct uid range per host process, clear of the other fixtures' ranges.
                ["FORKBOX_UIDBASE"] = (3_200_000_000L + index * 40 * 65_536L).ToString(),
            },
            label: id);
        lock (_hosts) _hosts[id] = host;
        return host;
    }

    /// <summary>Stops a host cleanly (SIGTERM): it leaves its cluster as it goes.</summary>
    public async Task StopHostAsync(string id)
    {
        ServerProcess host;
        lock (_hosts)
        {
            host = _hosts[id];
            _hosts.Remove(id);
        }
        await host.DisposeAsync();
    }

    /// <summary>Waits (bounded) until both edges' registries satisfy a condition on the host ids they hold.</summary>
    public Task WaitForHosts(Func<IReadOnlySet<string>, bool> condition, double seconds = 20) =>
        ServerFixture.WaitUntil(() => condition(EdgeA.Registry.Hosts.Select(h => h.Id).ToHashSet())
                                      && condition(EdgeB.Registry.Hosts.Select(h => h.Id).ToHashSet()),
            "both edges seeing the expected hosts", seconds);

    public ForkboxClient Client(EdgeServer edge, string key = "open") => new(edge.Address.ToString(), Keys[key]);

    public HttpClient Http(EdgeServer edge, string key = "open")
    {
        var http = new HttpClient { BaseAddress = edge.Address, Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Keys[key]);
        return http;
    }

    public async Task DisposeAsync()
    {
        await EdgeA.DisposeAsync();
        await EdgeB.DisposeAsync();
        foreach (var host in _hosts.Values) await host.DisposeAsync();
        await Redis.DisposeAsync();
        Directory.Delete(Root, recursive: true);
    }
}

[CollectionDefinition(Name)]
public sealed class ClusterCollection : ICollectionFixture<ClusterFixture>
{
    public const string Name = "cluster";
}
