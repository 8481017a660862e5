namespace Forkbox.Core.Options;

/// <summary>Spaces: when persistent sandboxes are paused and hibernated. Config section <c>Spaces</c>.</summary>
public sealed record SpacesOptions
{
    /// <summary>Idle seconds before a persistent sandbox is paused, unless its create named idle_timeout_s.</summary>
    public double PauseAfterS { get; init; } = 300;
    /// <summary>Idle seconds before a persistent sandbox is hibernated, unless its create named hibernate_after_s.</summary>
    public double HibernateAfterS { get; init; } = 1800;
    /// <summary>When the host's available memory falls below this percentage, the longest-idle persistent sandboxes are hibernated.</summary>
    public double MemoryPressurePercent { get; init; } = 10;
    /// <summary>Whether a clean shutdown hibernates the persistent sandboxes that run (else they are lost).</summary>
    public bool HibernateOnShutdown { get; init; } = true;

    internal void Validate()
    {
        ServerOptions.Require(PauseAfterS > 0 && HibernateAfterS > 0, "pause_after_s and hibernate_after_s must be positive");
        ServerOptions.Require(MemoryPressurePercent is >= 0 and <= 100, "memory_pressure_percent must be between 0 and 100");
    }
}
