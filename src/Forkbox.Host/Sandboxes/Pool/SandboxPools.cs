using System.Collections.Concurrent;
using Forkbox.Core;
using Forkbox.Core.Templates;
using Forkbox.Hosting.Metrics;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Every template's warm pools: one of sandboxes without network, and one of sandboxes with a link
/// ready (made on the first egress create, kept at egress_pool_size: servers that never use egress
/// hold no links).
/// </summary>
public sealed class SandboxPools(ISandboxFactory factory, ServerOptions options, Histogram refillSeconds, ILoggerFactory loggers) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, SandboxPool> _pools = new(StringComparer.Ordinal);
    private bool _disposed;

    private static string Key(string template, bool egress) => egress ? template + "+egress" : template;

    /// <summary>The warm pool of each template that has one.</summary>
    public IReadOnlyCollection<SandboxPool> All => (IReadOnlyCollection<SandboxPool>)_pools.Values;

    public SandboxPool Get(TemplateDefinition template, bool egress = false)
    {
        var key = Key(template.Name, egress);
        if (_pools.TryGetValue(key, out var pool)) return pool;
        lock (_pools)
        {
            // A pool made after shutdown began would refill forever from a disposed zygote.
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _pools.GetOrAdd(key, _ => new SandboxPool(factory, template, egress ? options.Pool.EgressSize : options.Pool.Size,
                refillSeconds, loggers.CreateLogger<SandboxPool>(), egress));
        }
    }

    /// <summary>Wakes the pools of a template (a sandbox went: there may be room for a refill).</summary>
    public void Wake(string template)
    {
        if (_pools.TryGetValue(Key(template, false), out var pool)) pool.Wake();
        if (_pools.TryGetValue(Key(template, true), out var egressPool)) egressPool.Wake();
    }

    /// <summary>Stops and empties a template's pools (the template is being deleted).</summary>
    public async Task RemoveAsync(string template)
    {
        if (_pools.TryRemove(Key(template, false), out var pool)) await pool.DisposeAsync().ConfigureAwait(false);
        if (_pools.TryRemove(Key(template, true), out var egressPool)) await egressPool.DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        SandboxPool[] pools;
        lock (_pools)
        {
            _disposed = true; // from here on no pool is made
            pools = _pools.Values.ToArray();
        }
        foreach (var pool in pools)
            await pool.DisposeAsync().ConfigureAwait(false);
    }
}
