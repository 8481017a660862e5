using System.Diagnostics;

namespace Forkbox.Host.Sandboxes;

/// <summary>The figures of a reply's timings_ms: milliseconds, rounded to the microsecond.</summary>
internal static class Timings
{
    public static double Ms(Stopwatch sw) => Math.Round(sw.Elapsed.TotalMilliseconds, 3);

    /// <summary>The time since the last lap (or the start), and a new lap begun.</summary>
    public static double Lap(Stopwatch sw)
    {
        var ms = Ms(sw);
        sw.Restart();
        return ms;
    }
}
