using System.Globalization;
using System.Text;

namespace Forkbox.Hosting.Metrics;

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
