using Forkbox.Core.Errors;
using Forkbox.Edge.Registry;

namespace Forkbox.Edge.Routing;

/// <summary>
/// Where a create goes. The region, in order: the one the client named (header or /r/REGION
/// path), the one with the most free room on the client's continent, the one with the most free
/// room anywhere. Within the region, the host with the most free room. Hosts that refused a
/// connection lately, are full, or were tried already for this request are passed over.
/// </summary>
public static class Placement
{
    /// <summary>How the region was chosen, as logs and the X-Forkbox-Placement header say.</summary>
    public enum Reason { Named, Continent, Capacity }

    public static (HostEntry Host, Reason Why) Choose(IReadOnlyCollection<HostEntry> hosts, string? region, string? continent,
        IReadOnlySet<string> tried)
    {
        if (region is not null)
        {
            if (!hosts.Any(h => h.Region == region))
            {
                var known = string.Join(", ", hosts.Select(h => h.Region).Distinct().Order());
                throw new BadRequestException(known.Length == 0
                    ? $"unknown region '{region}': no host is in rotation"
                    : $"unknown region '{region}': the known regions are {known}");
            }
            return (Best(hosts.Where(h => h.Region == region), tried)
                    ?? throw new HostUnavailableException($"no host in region '{region}' can take a sandbox now: all are full, unreachable or already tried"),
                Reason.Named);
        }
        var usable = hosts.Where(h => Usable(h, tried)).ToList();
        if (continent is not null)
        {
            var onContinent = usable.Where(h => string.Equals(h.Announcement.Continent, continent, StringComparison.OrdinalIgnoreCase)).ToList();
            if (onContinent.Count > 0) return (Best(RoomiestRegion(onContinent), tried)!, Reason.Continent);
        }
        if (usable.Count == 0)
            throw new HostUnavailableException(hosts.Count == 0
                ? "no host is in rotation: start one with `forkbox serve --join REDIS --region R`"
                : "no host can take a sandbox now: all are full, unreachable or already tried");
        return (Best(RoomiestRegion(usable), tried)!, Reason.Capacity);
    }

    private static bool Usable(HostEntry h, IReadOnlySet<string> tried) => h.Free > 0 && !h.Down && !tried.Contains(h.Id);

    private static HostEntry? Best(IEnumerable<HostEntry> hosts, IReadOnlySet<string> tried) =>
        hosts.Where(h => Usable(h, tried)).OrderByDescending(h => h.Free).ThenBy(h => h.Id, StringComparer.Ordinal).FirstOrDefault();

    private static IEnumerable<HostEntry> RoomiestRegion(List<HostEntry> usable) =>
        usable.GroupBy(h => h.Region).OrderByDescending(g => g.Sum(h => h.Free)).ThenBy(g => g.Key, StringComparer.Ordinal).First();
}
