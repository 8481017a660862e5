namespace Forkbox.Core.Options;

/// <summary>
/// What one host runs at once and what each sandbox and call gets when its request names nothing,
/// with the most a request may ask for. Config section <c>Limits</c>.
/// </summary>
public sealed record LimitsOptions
{
    /// <summary>Sandboxes this host runs at once; also the number of user-namespace uid ranges.</summary>
    public int MaxSandboxes { get; init; } = 500;
    public double DefaultTimeoutS { get; init; } = 300;
    public double MaxTimeoutS { get; init; } = 86_400;
    public int DefaultMemoryMb { get; init; } = 1024;
    public int MaxMemoryMb { get; init; } = 8192;
    public double DefaultCpus { get; init; } = 1;
    public double MaxCpus { get; init; } = 2;
    public int PidsLimit { get; init; } = 256;
    public int TmpSizeMb { get; init; } = 512;
    /// <summary>Quota of a sandbox's writable layer when its create names none, and the most it may ask for.</summary>
    public int DefaultDiskMb { get; init; } = 10_240;
    public int MaxDiskMb { get; init; } = 102_400;
    public long MaxUploadBytes { get; init; } = 64L << 20;
    public long MaxDownloadBytes { get; init; } = 256L << 20;
    /// <summary>Output one call may produce before it is truncated with a marker line.</summary>
    public long OutputLimitBytes { get; init; } = 16L << 20;
    /// <summary>Default per-call timeout when the request names none.</summary>
    public double DefaultExecTimeoutS { get; init; } = 300;
    /// <summary>
    /// At shutdown, how long sandboxes get to stop on their own (a running call to end, a Space to
    /// hibernate) before whatever has not answered is killed; the server exits a few seconds after.
    /// </summary>
    public double ShutdownGraceS { get; init; } = 5;
    public TimeSpan ShutdownGrace => TimeSpan.FromSeconds(ShutdownGraceS);

    internal void Validate()
    {
        ServerOptions.Require(MaxSandboxes is > 0 and <= 60_000, "max_sandboxes must be between 1 and 60000");
        ServerOptions.Require(DefaultTimeoutS > 0 && DefaultTimeoutS <= MaxTimeoutS, "default_timeout_s must be > 0 and <= max_timeout_s");
        ServerOptions.Require(DefaultMemoryMb >= 32 && DefaultMemoryMb <= MaxMemoryMb, "default_memory_mb must be >= 32 and <= max_memory_mb");
        ServerOptions.Require(DefaultCpus > 0 && DefaultCpus <= MaxCpus, "default_cpus must be > 0 and <= max_cpus");
        ServerOptions.Require(PidsLimit >= 8, "pids_limit must be at least 8");
        ServerOptions.Require(TmpSizeMb >= 1, "tmp_size_mb must be at least 1");
        ServerOptions.Require(DefaultDiskMb >= 1 && DefaultDiskMb <= MaxDiskMb, "default_disk_mb must be >= 1 and <= max_disk_mb");
        ServerOptions.Require(MaxUploadBytes > 0 && MaxDownloadBytes > 0, "max_upload_bytes and max_download_bytes must be positive");
        ServerOptions.Require(OutputLimitBytes >= 4096, "output_limit_bytes must be at least 4096");
        ServerOptions.Require(ShutdownGraceS is >= 0 and <= 600, "shutdown_grace_s must be between 0 and 600");
    }
}
