namespace Forkbox.Core.Options;

/// <summary>Ports a sandbox serves, reached through hostd. Config section <c>Ports</c>.</summary>
public sealed record PortsOptions
{
    /// <summary>The longest a signed port URL may live.</summary>
    public double UrlMaxTtlS { get; init; } = 7 * 86_400;

    internal void Validate() => ServerOptions.Require(UrlMaxTtlS > 0, "port_url_max_ttl_s must be positive");
}
