using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// Once a second: destroys the sandboxes that have outlived their timeout_s, releases retired ones
/// whose forks are gone, and applies the idle policy to persistent ones (pause, then hibernate).
/// A step that fails is logged and tried again on the next tick: one bad sandbox must not stop
/// expiry, release and the idle policy for all the others.
/// </summary>
public sealed partial class SandboxReaper(SandboxManager manager, TimeProvider time, ILogger<SandboxReaper> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                Step("expiry", () => manager.ReapExpired(time.GetUtcNow()));
                Step("retired release", () => manager.SweepRetired());
                Step("idle policy", manager.ApplyIdlePolicy);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private void Step(string what, Action step)
    {
        try
        {
            step();
        }
        catch (Exception e)
        {
            LogStepFailed(what, e);
        }
    }

    [LoggerMessage(EventId = 3401, Level = LogLevel.Error, Message = "reaper: {What} failed; trying again in a second")]
    private partial void LogStepFailed(string what, Exception e);
}
