using System.Collections.Concurrent;
using System.Diagnostics;
using Forkbox.Core.Templates;
using Forkbox.Core.Wire;
using Forkbox.Hosting.Metrics;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// A template's warm pool: sandboxes made ahead of demand with the server's default limits, so a
/// create only has to take one. One background loop per pool refills it, one sandbox at a time
/// (the zygote forks one at a time anyway, and the host has few cores to spare). Pooled
/// sandboxes belong to nobody: they have no expiry and clients cannot see them until taken.
/// </summary>
public sealed partial class SandboxPool : IAsyncDisposable
{
    private const int RecentRefills = 32;
    private readonly ISandboxFactory _factory;
    private readonly Histogram _refillSeconds;
    private readonly TemplateDefinition _template;
    private readonly ILogger _log;
    private readonly ConcurrentQueue<Sandbox> _ready = new();
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly double[] _recent = new double[RecentRefills];
    private readonly Task _loop;
    private int _recentCount;
    private int _readyCount;
    private int _target;
    private long _lastTake;

    // After a take, the refill waits this long (unless the pool runs low) so that the reply to the
    // create, and the caller's first calls, do not share the two cores with a fork and its mounts.
    private const int RefillDelayMs = 15;

    private readonly bool _egress;

    public SandboxPool(ISandboxFactory factory, TemplateDefinition template, int target, Histogram refillSeconds, ILogger log, bool egress = false)
    {
        _egress = egress;
        _factory = factory;
        _refillSeconds = refillSeconds;
        _template = template;
        _target = target;
        _log = log;
        _loop = Task.Run(RefillLoopAsync);
    }

    public string Template => _template.Name;

    /// <summary>Whether its sandboxes have a link ready for "network": "egress".</summary>
    public bool Egress => _egress;

    public int Ready => Volatile.Read(ref _readyCount);

    /// <summary>How many ready sandboxes the pool keeps; setting it refills or drains the difference.</summary>
    public int Target
    {
        get => Volatile.Read(ref _target);
        set
        {
            Volatile.Write(ref _target, value);
            Wake();
        }
    }

    /// <summary>A live ready sandbox, or null when the pool is empty (the caller then creates one itself).</summary>
    public Sandbox? TryTake()
    {
        while (_ready.TryDequeue(out var sb))
        {
            Interlocked.Decrement(ref _readyCount);
            Volatile.Write(ref _lastTake, Environment.TickCount64);
            if (!sb.IsDead) return sb;
            _ = _factory.DestroyAsync(sb);
        }
        return null;
    }

    /// <summary>Asks the refiller to look at the pool again (after a take, a close or a new target).</summary>
    public void Wake()
    {
        try
        {
            _wake.Release();
        }
        catch (SemaphoreFullException)
        {
            // already awake
        }
        catch (ObjectDisposedException)
        {
            // shutting down: a sandbox closed after the pool stopped
        }
    }

    public PoolInfo ToInfo()
    {
        double[] recent;
        lock (_recent) recent = _recent.Take(Math.Min(_recentCount, RecentRefills)).Order().ToArray();
        double? p50 = recent.Length > 0 ? Math.Round(recent[recent.Length / 2], 3) : null;
        return new PoolInfo
        {
            Template = Template,
            Ready = Ready,
            Target = Target,
            Network = _egress ? Forkbox.Core.NetworkModes.Egress : null,
            RefillMsP50 = p50,
            RefillPerS = p50 is > 0 ? Math.Round(1000 / p50.Value, 1) : null,
        };
    }

    private async Task RefillLoopAsync()
    {
        var stop = _stop.Token;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await _wake.WaitAsync(stop).ConfigureAwait(false);
                while (Ready > Target && TryTake() is { } extra)
                    await _factory.DestroyAsync(extra).ConfigureAwait(false);
                while (Ready < Target && _factory.HasRoom && !stop.IsCancellationRequested)
                {
                    while (Ready >= Target / 2 && Environment.TickCount64 - Volatile.Read(ref _lastTake) < RefillDelayMs)
                        await Task.Delay(RefillDelayMs, stop).ConfigureAwait(false);
                    var started = Stopwatch.GetTimestamp();
                    var sb = await _factory.SpawnPooledAsync(_template, _egress).ConfigureAwait(false);
                    _ready.Enqueue(sb);
                    Interlocked.Increment(ref _readyCount);
                    var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
                    _refillSeconds.Observe(seconds);
                    lock (_recent) _recent[_recentCount++ % RecentRefills] = seconds * 1000;
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // Creates still work (they make their sandbox themselves); retry the pool shortly.
                LogRefillFailed(Template, e.Message);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                Wake();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        while (TryTake() is { } sb)
            await _factory.DestroyAsync(sb).ConfigureAwait(false);
        _stop.Dispose();
        _wake.Dispose();
    }

    [LoggerMessage(EventId = 3301, Level = LogLevel.Warning, Message = "pool {Template}: refill failed, retrying in 1 s: {Error}")]
    private partial void LogRefillFailed(string template, string error);
}
