using System.Collections.Concurrent;
using Forkbox.Core;
using Forkbox.Core.Templates;
using Forkbox.Host.Agents;
using Forkbox.Host.Sandboxes;
using Forkbox.Hosting.Metrics;
using Forkbox.Linux.Namespaces;
using Forkbox.Linux.Storage;
using Forkbox.Testing;

namespace Forkbox.UnitTests.Host.Sandboxes;

/// <summary>The warm pool against a factory that makes sandbox objects without processes: no root, no kernel.</summary>
[Trait("Root", "not needed")]
public sealed class SandboxPoolTests_without_root
{
    [Fact]
    public async Task A_pool_fills_to_its_target_hands_each_sandbox_out_once_and_refills()
    {
        var factory = new FakeFactory();
        await using var pool = NewPool(factory, target: 3);
        await Until(() => pool.Ready == 3);
        var taken = new[] { pool.TryTake(), pool.TryTake() };
        Assert.All(taken, Assert.NotNull);
        Assert.NotEqual(taken[0]!.Id, taken[1]!.Id);
        pool.Wake();
        await Until(() => pool.Ready == 3);
        Assert.Equal(5, factory.Spawned.Count);
        Assert.Empty(factory.Destroyed);
    }

    [Fact]
    public async Task Lowering_the_target_destroys_the_extras_and_a_dead_sandbox_is_never_handed_out()
    {
        var factory = new FakeFactory();
        await using var pool = NewPool(factory, target: 3);
        await Until(() => pool.Ready == 3);
        pool.Target = 1;
        await Until(() => pool.Ready == 1);
        Assert.Equal(2, factory.Destroyed.Count);

        pool.Target = 0;
        await Until(() => pool.Ready == 0);
        pool.Target = 1;
        await Until(() => pool.Ready == 1);
        var last = factory.Spawned.Last();
        last.TryMarkDead("killed while pooled");
        pool.Target = 0; // no refill to race the take below
        Assert.Null(pool.TryTake());
        await Until(() => factory.Destroyed.Contains(last));
    }

    [Fact]
    public async Task Without_room_on_the_host_the_pool_makes_nothing_until_there_is()
    {
        var factory = new FakeFactory { Room = false };
        await using var pool = NewPool(factory, target: 2);
        await Task.Delay(200);
        Assert.Equal(0, pool.Ready);
        Assert.Empty(factory.Spawned);
        factory.Room = true;
        pool.Wake();
        await Until(() => pool.Ready == 2);
    }

    [Fact]
    public async Task Disposing_the_pool_destroys_what_it_holds()
    {
        var factory = new FakeFactory();
        var pool = NewPool(factory, target: 2);
        await Until(() => pool.Ready == 2);
        await pool.DisposeAsync();
        Assert.Equal(factory.Spawned.OrderBy(s => s.Id), factory.Destroyed.OrderBy(s => s.Id));
    }

    private static SandboxPool NewPool(FakeFactory factory, int target)
    {
        var pool = new SandboxPool(factory, KernelFreeSandbox.Template, target, new Histogram("test_refill_seconds", "test"), new ThrowingLogger());
        pool.Wake();
        return pool;
    }

    private static async Task Until(Func<bool> condition)
    {
        for (var waited = 0; !condition(); waited += 10)
        {
            Assert.True(waited < 5000, "the pool did not get there within 5 s");
            await Task.Delay(10);
        }
    }

    private sealed class FakeFactory : ISandboxFactory
    {
        private int _next;
        public volatile bool Room = true;
        public ConcurrentQueue<Sandbox> Spawned { get; } = new();
        public ConcurrentQueue<Sandbox> Destroyed { get; } = new();
        public bool HasRoom => Room;

        public Task<Sandbox> SpawnPooledAsync(TemplateDefinition template, bool egress)
        {
            var n = Interlocked.Increment(ref _next);
            var (host, agent) = UnixSocketPair.Connect();
            agent.Dispose(); // nothing is sent: a connection only needs a connected socket
            var sb = KernelFreeSandbox.New($"sbx_fake{n}", new AgentConnection(host), slot: n);
            Spawned.Enqueue(sb);
            return Task.FromResult(sb);
        }

        public Task<Sandbox> SpawnAsync(TemplateDefinition template, SandboxLimits limits, Dictionary<string, string>? env, CancellationToken ct,
            SandboxRecord? resume = null, bool egress = false, bool foreground = true) => SpawnPooledAsync(template, egress);

        public Task DestroyAsync(Sandbox sb)
        {
            Destroyed.Enqueue(sb);
            return Task.CompletedTask;
        }
    }

    /// <summary>The fake factory never fails: a refill failure logged throws out of the refill loop, and the pool's dispose rethrows it.</summary>
    private sealed class ThrowingLogger : Microsoft.Extensions.Logging.ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;
        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state,
            Exception? exception, Func<TState, Exception?, string> formatter) => throw new InvalidOperationException("the pool logged: " + formatter(state, exception));
    }
}
