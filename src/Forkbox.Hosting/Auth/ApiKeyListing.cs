namespace Forkbox.Hosting.Auth;

/// <summary>A key as `forkbox keys list` shows it: what tells keys apart, never its hash.</summary>
public sealed record ApiKeyListing(string Name, string Prefix, string? Tier, string Role, string? CreatedAt);
