using System.Diagnostics;
using Forkbox.Client;

namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// A well-behaved neighbour: runs a hot run_code("1") on its sandbox in a loop while an attack
/// runs beside it, and reports how many calls it made, how many failed and their p50/p95.
/// </summary>
public sealed class NeighbourLatency : IAsyncDisposable
{
    private readonly Sandbox _sandbox;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<double> _ms = [];
    private readonly List<string> _failures = [];
    private readonly Task _loop;

    private NeighbourLatency(Sandbox sandbox)
    {
        _sandbox = sandbox;
        _loop = Task.Run(LoopAsync);
    }

    public static NeighbourLatency Start(Sandbox sandbox) => new(sandbox);

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var sw = Stopwatch.StartNew();
            try
            {
                var r = await _sandbox.RunCodeAsync("1", timeoutS: 60);
                if (r.ExitCode != 0) _failures.Add($"exit {r.ExitCode}: {r.Stderr}");
            }
            catch (Exception e)
            {
                _failures.Add(e.GetType().Name + ": " + e.Message);
            }
            lock (_ms) _ms.Add(sw.Elapsed.TotalMilliseconds);
            await Task.Delay(20);
        }
    }

    /// <summary>Stops the loop; the figures of the calls made.</summary>
    public async Task<Figures> StopAsync()
    {
        _stop.Cancel();
        await _loop;
        return new Figures(_ms.Count, _failures.ToList(), Percentile(_ms, 0.5), Percentile(_ms, 0.95));
    }

    public static double Percentile(IReadOnlyCollection<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        return sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested) await StopAsync();
        _stop.Dispose();
    }

    public sealed record Figures(int Calls, IReadOnlyList<string> Failures, double P50, double P95)
    {
        public override string ToString() => $"neighbour: {Calls} calls, {Failures.Count} failed, p50 {P50:F2} ms, p95 {P95:F2} ms";

        /// <summary>The neighbour was served throughout: calls made, none failed, p95 under a second.</summary>
        public void AssertServed(string during)
        {
            Console.WriteLine($"{during}: {this}");
            Assert.True(Calls >= 3, $"{during}: the neighbour made only {Calls} calls");
            Assert.True(Failures.Count == 0, $"{during}: neighbour calls failed: {string.Join("; ", Failures.Take(3))}");
            Assert.True(P95 < 1000, $"{during}: the neighbour's p95 was {P95:F0} ms");
        }
    }
}
