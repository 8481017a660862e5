namespace Forkbox.Edge.Limits;

/// <summary>What a tier allows one API key: sandboxes alive at once, and creates per minute (null: no limit).</summary>
public sealed record Tier(string Name, int? MaxSandboxes, int? CreatesPerMinute);
