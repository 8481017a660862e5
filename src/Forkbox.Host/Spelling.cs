namespace Forkbox.Host;

/// <summary>Which known name a mistyped one was meant to be: for unknown config keys and unknown request fields alike.</summary>
internal static class Spelling
{
    /// <summary>The edit distance from <paramref name="typed"/> to <paramref name="known"/>, ignoring case, when it is close enough to be a typo of it (at most 2, or a quarter of the known name); else null.</summary>
    public static int? TypoDistance(string typed, string known)
    {
        var d = Distance(typed, known);
        return d <= Math.Max(2, known.Length / 4) ? d : null;
    }

    /// <summary>The first of <paramref name="known"/> nearest to <paramref name="typed"/>, or null when none is close enough.</summary>
    public static string? Nearest(string typed, IEnumerable<string> known)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var k in known)
            if (TypoDistance(typed, k) is { } d && d < bestDistance) (best, bestDistance) = (k, d);
        return best;
    }

    private static int Distance(string a, string b)
    {
        a = a.ToLowerInvariant();
        b = b.ToLowerInvariant();
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) previous[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1], previous[j]) + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
