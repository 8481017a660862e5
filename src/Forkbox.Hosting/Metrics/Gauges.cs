using System.Globalization;
using System.Text;

namespace Forkbox.Hosting.Metrics;

/// <summary>Gauges in the Prometheus text format: a value read when /metrics is asked for.</summary>
public static class Gauges
{
    public static void Render(StringBuilder sb, IEnumerable<(string Name, string Help, double Value)> gauges)
    {
        foreach (var (name, help, value) in gauges)
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(" gauge\n")
              .Append(name).Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }
}
