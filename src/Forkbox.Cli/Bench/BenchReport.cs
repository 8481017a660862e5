using System.Globalization;
using System.Text.Json;
using static Forkbox.Cli.Bench.Sampling;

namespace Forkbox.Cli.Bench;

/// <summary>Collects figures, prints each as it is measured, and writes them all as JSON.</summary>
internal sealed class BenchReport
{
    private readonly Dictionary<string, object> _all = new();

    public List<double> Add(string name, List<double> samples, params (List<double>? Floor, string Name)[] ratios)
    {
        samples.Sort();
        _all[name] = samples;
        var p50 = Percentile(samples, 0.5);
        var text = string.Concat(ratios.Where(r => r.Floor is { Count: > 0 })
            .Select(r => string.Create(CultureInfo.InvariantCulture, $"  {p50 / Percentile(r.Floor!, 0.5):F2}x {r.Name}")));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name,-42} {samples[0],8:F3} {p50,8:F3} {Percentile(samples, 0.95),8:F3} {samples.Average(),8:F3}{text}"));
        return samples;
    }

    public void Note(string key, double value, string line)
    {
        _all[key] = value;
        Console.WriteLine(line);
    }

    public string ToJson() => JsonSerializer.Serialize(_all, new JsonSerializerOptions { WriteIndented = true });
}
