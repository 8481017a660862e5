namespace Forkbox.Core.Options;

/// <summary>Forks of a running sandbox. Config section <c>Forks</c>.</summary>
public sealed record ForksOptions
{
    /// <summary>How long a fork (or a pause or hibernate) waits for the sandbox's running call to end before it answers 409.</summary>
    public double WaitS { get; init; } = 10;
    public TimeSpan Wait => TimeSpan.FromSeconds(WaitS);

    internal void Validate() =>
        ServerOptions.Require(WaitS >= 0 && WaitS <= 3600, "fork_wait_s must be between 0 and 3600");
}
