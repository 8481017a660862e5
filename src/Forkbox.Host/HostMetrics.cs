using System.Globalization;
using System.Text;

namespace Forkbox.Host;

/// <summary>Counters and latency histograms for /metrics, in the Prometheus text format. Lock-free on the hot path.</summary>
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
        foreach (var (name, help, value) in gauges)
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(" gauge\n")
              .Append(name).Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
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

    public sealed class Counter(string name, string help)
    {
        private long _value;

        public void Inc() => Interlocked.Increment(ref _value);

        public long Value => Interlocked.Read(ref _value);

        public void Render(StringBuilder sb) =>
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(" counter\n")
              .Append(name).Append(' ').Append(Value).Append('\n');
    }

    /// <summary>A histogram; <paramref name="labels"/> (e.g. pool="hit") tells apart series of one name.</summary>
    public sealed class Histogram(string name, string help, string? labels = null)
    {
        private static readonly double[] Bounds = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
        private readonly long[] _counts = new long[Bounds.Length + 1];
        private long _sumMicros;

        public void Observe(double seconds)
        {
            var i = 0;
            while (i < Bounds.Length && seconds > Bounds[i]) i++;
            Interlocked.Increment(ref _counts[i]);
            Interlocked.Add(ref _sumMicros, (long)(seconds * 1e6));
        }

        public void Render(StringBuilder sb, bool withHeader = true)
        {
            if (withHeader)
                sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(" histogram\n");
            var prefix = labels is null ? "" : labels + ",";
            var only = labels is null ? "" : "{" + labels + "}";
            long cumulative = 0;
            for (var i = 0; i < Bounds.Length; i++)
            {
                cumulative += Interlocked.Read(ref _counts[i]);
                sb.Append(name).Append("_bucket{").Append(prefix).Append("le=\"").Append(Bounds[i].ToString(CultureInfo.InvariantCulture)).Append("\"} ").Append(cumulative).Append('\n');
            }
            cumulative += Interlocked.Read(ref _counts[^1]);
            sb.Append(name).Append("_bucket{").Append(prefix).Append("le=\"+Inf\"} ").Append(cumulative).Append('\n');
            sb.Append(name).Append("_sum").Append(only).Append(' ').Append((Interlocked.Read(ref _sumMicros) / 1e6).ToString(CultureInfo.InvariantCulture)).Append('\n');
            sb.Append(name).Append("_count").Append(only).Append(' ').Append(cumulative).Append('\n');
        }
    }
}
