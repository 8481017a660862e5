namespace Forkbox.Hosting.Auth;

/// <summary>
/// A known API key: its name (the owner of what it creates), its tier (limits an edge enforces), if
/// any, whether it is an admin key (server-wide settings: pools, templates, metrics), and whether it
/// adopts the sandboxes made before there were keys (owner "local", which no key could reach).
/// </summary>
public sealed record ApiKey(string Name, string? Tier, bool Admin = false, bool AdoptLocal = false)
{
    /// <summary>The "role" of an admin key in keys.json; a key without a role, or with "user", is an ordinary one.</summary>
    public const string AdminRole = "admin";

    public const string UserRole = "user";
}
