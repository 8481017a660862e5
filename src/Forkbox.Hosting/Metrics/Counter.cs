using System.Text;

namespace Forkbox.Hosting.Metrics;

/// <summary>A Prometheus counter; lock-free.</summary>
public sealed class Counter(string name, string help)
{
    private long _value;

    public void Inc() => Interlocked.Increment(ref _value);

    public long Value => Interlocked.Read(ref _value);

    public void Render(StringBuilder sb) =>
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(" counter\n")
          .Append(name).Append(' ').Append(Value).Append('\n');
}
