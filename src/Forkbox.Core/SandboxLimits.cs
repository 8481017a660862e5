namespace Forkbox.Core;

/// <summary>What one sandbox may use: memory, CPU (in cores, fractions allowed) and processes.</summary>
public sealed record SandboxLimits(int MemoryMb, double Cpus, int Pids);
