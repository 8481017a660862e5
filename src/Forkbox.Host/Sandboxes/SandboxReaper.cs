using Microsoft.Extensions.Hosting;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Once a second: destroys the sandboxes that have outlived their timeout_s, releases retired ones
/// whose forks are gone, and applies the idle policy to persistent ones (pause, then hibernate).
/// </summary>
public sealed class SandboxReaper(SandboxManager manager, TimeProvider time) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                manager.ReapExpired(time.GetUtcNow());
                manager.SweepRetired();
                manager.ApplyIdlePolicy();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
