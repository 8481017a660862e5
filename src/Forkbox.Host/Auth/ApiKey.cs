namespace Forkbox.Host.Auth;

/// <summary>A known API key: its name (the owner of what it creates) and its tier (limits an edge enforces), if any.</summary>
public sealed record ApiKey(string Name, string? Tier);
