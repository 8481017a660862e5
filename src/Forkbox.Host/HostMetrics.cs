using System.Text;
using Forkbox.Hosting.Metrics;

namespace Forkbox.Host;

/// <summary>hostd's counters and latency histograms for /metrics, in the Prometheus text format. Lock-free on the hot path.</summary>
public sealed class HostMetrics
{
    public Histogram CreatePoolHitSeconds { get; } = new("forkbox_create_seconds", "Time to create a sandbox, server side", "pool=\"hit\"");
    public Histogram CreatePoolMissSeconds { get; } = new("forkbox_create_seconds", "Time to create a sandbox, server side", "pool=\"miss\"");
    public Histogram RefillSeconds { get; } = new("forkbox_pool_refill_seconds", "Time to make one pooled sandbox, server side");
    public Histogram ExecSeconds { get; } = new("forkbox_exec_seconds", "Duration of exec calls, server side");
    public Histogram ForkSeconds { get; } = new("forkbox_fork_seconds", "Time to fork a sandbox n ways, server side");
    public Histogram HibernateSeconds { get; } = new("forkbox_hibernate_seconds", "Time to hibernate a sandbox to disk, server side");
    public Histogram ResumeSeconds { get; } = new("forkbox_resume_seconds", "Time to resume a hibernated sandbox, server side");
    public Counter CreateFailures { get; } = new("forkbox_create_failures_total", "Creates that failed after validation");

    public string Render(IEnumerable<(string Name, string Help, double Value)> gauges)
    {
        var sb = new StringBuilder();
        Gauges.Render(sb, gauges);
        CreateFailures.Render(sb);
        CreatePoolHitSeconds.Render(sb, withHeader: true);
        CreatePoolMissSeconds.Render(sb, withHeader: false);
        RefillSeconds.Render(sb);
        ExecSeconds.Render(sb);
        ForkSeconds.Render(sb);
        HibernateSeconds.Render(sb);
        ResumeSeconds.Render(sb);
        return sb.ToString();
    }
}
