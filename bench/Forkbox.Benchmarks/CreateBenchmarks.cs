using System.Collections.Concurrent;
using BenchmarkDotNet.Attributes;
using Forkbox.Core;
using Forkbox.Core.Options;
using Forkbox.Core.Templates;
using Forkbox.Core.Wire;
using Forkbox.Host;
using Forkbox.Host.Agents;
using Forkbox.Host.Networking;
using Forkbox.Host.Sandboxes;
using Forkbox.Host.Templates;
using Forkbox.Hosting;
using Forkbox.Linux.Storage;
using Forkbox.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace Forkbox.Benchmarks;

/// <summary>
/// POST /v1/sandboxes answered from the warm pool, through the real <see cref="SandboxCreator"/>,
/// pool and record store, against a factory whose sandboxes are objects without a kernel: the
/// create's own work (validation, take, record, registry) and the pool's refill of the one taken.
/// Each operation closes its sandbox again, which hands it back to the factory for the next refill.
/// </summary>
[MemoryDiagnoser]
public class CreateBenchmarks
{
    // After a take the refill pauses 15 ms while the pool is at least half full: half the pool must
    // outlast the creates of such a pause (some 200 here), or the pool runs dry between refills.
    private const int PoolSize = 1024;

    private readonly CreateSandboxRequest _request = new();
    private readonly RecyclingFactory _factory = new();
    private readonly SandboxRegistry _registry = new();
    private string _dir = null!;
    private SandboxStore _store = null!;
    private SandboxPools _pools = null!;
    private SandboxCreator _creator = null!;
    private long _creates, _misses;

    [GlobalSetup]
    public async Task Setup()
    {
        _dir = Directory.CreateTempSubdirectory("forkbox-bench-").FullName;
        var options = new ServerOptions { DataDir = _dir, Pool = new PoolOptions { Size = PoolSize }, Limits = new LimitsOptions { MaxSandboxes = 2 * PoolSize } };
        _store = new SandboxStore(Path.Combine(_dir, "forkbox.db"));
        var records = new SandboxRecords(_store, _registry, new SandboxLayers(_dir, StorageKind.Copy), new BackgroundWork(), _dir,
            NullLogger<SandboxRecords>.Instance);
        var metrics = new HostMetrics();
        var calls = new SandboxCalls(options, records, metrics, false, NullLogger<SandboxCalls>.Instance);
        var egress = new SandboxEgress(SandboxNetworking.Without(options, NullLogger.Instance, "a benchmark"), calls, _registry);
        var templates = new TemplateCatalog(options);
        _pools = new SandboxPools(_factory, options, metrics.RefillSeconds, NullLoggerFactory.Instance);
        _creator = new SandboxCreator(options, templates, _registry, records, calls, egress, _pools, _factory, null, metrics,
            NullLogger<SandboxCreator>.Instance);
        var pool = _pools.Get(templates.Get(null));
        pool.Wake();
        while (pool.Ready < PoolSize) await Task.Delay(10);
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        await _pools.DisposeAsync();
        await _factory.DisposeAsync();
        _store.Dispose();
        Directory.Delete(_dir, recursive: true);
        // A run of misses would have measured the factory's path, not the pool's.
        if (_misses * 100 > _creates)
            throw new InvalidOperationException($"{_misses} of {_creates} creates missed the pool: the refill did not keep up");
    }

    [Benchmark(Description = "create from the warm pool, and the refill of its place")]
    public async Task<string> Create_pool_hit()
    {
        var sb = await _creator.CreateAsync(_request, Owners.Local, CancellationToken.None).ConfigureAwait(false);
        _creates++;
        if (!sb.PoolHit) _misses++;
        _registry.TryRemoveLive(sb.Id, out _);
        await _factory.DestroyAsync(sb).ConfigureAwait(false);
        return sb.Id;
    }

    /// <summary>Hands out the sandboxes it was given back before it makes new ones: the benchmark's sandboxes are made once.</summary>
    private sealed class RecyclingFactory : ISandboxFactory, IAsyncDisposable
    {
        private readonly ConcurrentQueue<Sandbox> _returned = new();
        private readonly AgentConnection _agent = NewAgent();
        private int _made;

        public bool HasRoom => true;

        public Task<Sandbox> SpawnPooledAsync(TemplateDefinition template, bool egress)
        {
            if (_returned.TryDequeue(out var sb)) return Task.FromResult(sb);
            var n = Interlocked.Increment(ref _made);
            return Task.FromResult(KernelFreeSandbox.New($"sbx_bench{n}", _agent, slot: n));
        }

        public Task<Sandbox> SpawnAsync(TemplateDefinition template, SandboxLimits limits, Dictionary<string, string>? env, CancellationToken ct,
            SandboxRecord? resume = null, bool egress = false, bool foreground = true) => SpawnPooledAsync(template, egress);

        public Task DestroyAsync(Sandbox sb)
        {
            _returned.Enqueue(sb);
            return Task.CompletedTask;
        }

        public ValueTask DisposeAsync() => _agent.DisposeAsync();

        /// <summary>One connection for all: a pool-hit create without env sends the agent nothing.</summary>
        private static AgentConnection NewAgent()
        {
            var (host, agent) = UnixSocketPair.Connect();
            agent.Dispose();
            return new AgentConnection(host);
        }
    }
}
