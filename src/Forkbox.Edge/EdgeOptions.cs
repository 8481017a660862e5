using Forkbox.Core;
using Forkbox.Core.Errors;

namespace Forkbox.Edge;

/// <summary>`forkbox edge`'s configuration, from its flags. Validated once at start-up.</summary>
public sealed record EdgeOptions
{
    /// <summary>host:port to listen on. Non-loopback addresses require API keys.</summary>
    public string Listen { get; init; } = "127.0.0.1:8080";
    /// <summary>The cluster's Redis (host:port): the host registry, the tier counters.</summary>
    public required string Redis { get; init; }
    /// <summary>The API keys file; each key may name its tier. Null: no keys (loopback only), no tiers.</summary>
    public string? Keys { get; init; }
    /// <summary>The tiers file: {"tier": {"max_sandboxes": N, "creates_per_minute": M}, …}. Null: no limits.</summary>
    public string? Tiers { get; init; }
    /// <summary>The request header, set by whatever fronts the edge, that names the client's continent (AF, AN, AS, EU, NA, OC, SA).</summary>
    public string ContinentHeader { get; init; } = "X-Client-Continent";
    /// <summary>Seconds between two reads of the host registry.</summary>
    public double PollS { get; init; } = 1;
    /// <summary>Seconds between two repairs of the tier counts from what the hosts report.</summary>
    public double ReconcileS { get; init; } = 5;
    /// <summary>How long to wait for a host to accept a connection before trying another (creates) or answering 503.</summary>
    public double ConnectTimeoutS { get; init; } = 2;

    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok) throw new BadRequestException("invalid configuration: " + message);
        }
        Require(ListenAddress.TryParse(Listen, out _), $"listen '{Listen}' is not host:port (e.g. 0.0.0.0:8080)");
        Require(ListenAddress.IsHostPort(Redis.Replace("redis://", "", StringComparison.Ordinal)), $"redis '{Redis}' is not host:port (e.g. 10.0.0.2:6379)");
        Require(Keys is null || File.Exists(Keys), $"keys file '{Keys}' does not exist (make one with `forkbox keys create --keys FILE --tier T`)");
        Require(Tiers is null || File.Exists(Tiers), $"tiers file '{Tiers}' does not exist");
        Require(ContinentHeader.Length > 0, "continent_header must not be empty");
        Require(PollS is > 0 and <= 10, "poll_s must be > 0 and <= 10: edges must see hosts come and go within seconds");
        Require(ReconcileS is > 0 and <= 3600, "reconcile_s must be > 0 and <= 3600");
        Require(ConnectTimeoutS is > 0 and <= 60, "connect_timeout_s must be > 0 and <= 60");
    }
}
