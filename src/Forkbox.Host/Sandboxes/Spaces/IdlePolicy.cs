using Forkbox.Core;

namespace Forkbox.Host.Sandboxes;

/// <summary>What the idle policy needs to know of one persistent sandbox that is live.</summary>
/// <param name="LastActive">When its last call started or ended, as a timestamp of the policy's clock.</param>
/// <param name="PauseAfter">Its idle_timeout_s, or the server's pause_after_s.</param>
/// <param name="HibernateAfter">Its hibernate_after_s, or the server's.</param>
/// <param name="HasLiveForks">A sandbox with forks running is never hibernated (they need its PID 1).</param>
public readonly record struct IdleCandidate(string Id, string State, long LastActive, TimeSpan PauseAfter, TimeSpan HibernateAfter, bool HasLiveForks);

/// <summary>One thing the policy decided: pause or hibernate <paramref name="Id"/>, still due only while it stays idle for <paramref name="IdleAtLeast"/>.</summary>
/// <param name="Pressure">Taken for memory pressure (the caller runs one such at a time).</param>
public sealed record IdleAction(string Id, bool Hibernate, TimeSpan IdleAtLeast, string Why, bool Pressure = false);

/// <summary>
/// The decisions of the idle policy, from the sandboxes, the time and the host's free memory:
/// pause a Space idle for its pause time, hibernate one idle for its hibernate time, and under
/// memory pressure hibernate the longest-idle one (one at a time). Pure: the caller carries the
/// actions out, each under the sandbox's locks and re-checked there, so a call that just arrived
/// wins.
/// </summary>
public static class IdlePolicy
{
    /// <summary>Under pressure, a sandbox in use this very second is never taken: a call that just resumed it would find it gone again.</summary>
    public static readonly TimeSpan PressureMinIdle = TimeSpan.FromSeconds(1);

    /// <param name="freePercent">MemAvailable as a percentage of MemTotal, or null when unknown.</param>
    /// <param name="pressurePercent">Under this, pressure hibernates; 0 turns that off.</param>
    /// <param name="pressureBusy">A pressure hibernation is still running: no second one until it ends.</param>
    public static List<IdleAction> Decide(IEnumerable<IdleCandidate> sandboxes, TimeProvider clock, double? freePercent, double pressurePercent, bool pressureBusy)
    {
        var now = clock.GetTimestamp();
        var actions = new List<IdleAction>();
        IdleCandidate? victim = null;
        var victimIdle = TimeSpan.MinValue;
        foreach (var sb in sandboxes)
        {
            if (sb.State is not (SandboxState.Ready or SandboxState.Running or SandboxState.Paused)) continue;
            var idle = clock.GetElapsedTime(sb.LastActive, now);
            if (idle >= sb.HibernateAfter && !sb.HasLiveForks)
                actions.Add(new IdleAction(sb.Id, true, sb.HibernateAfter, $"idle for {sb.HibernateAfter.TotalSeconds:g} s"));
            else if (sb.State == SandboxState.Ready && idle >= sb.PauseAfter)
                actions.Add(new IdleAction(sb.Id, false, sb.PauseAfter, $"idle for {sb.PauseAfter.TotalSeconds:g} s"));
            if (sb.State is SandboxState.Ready or SandboxState.Paused && !sb.HasLiveForks && idle >= PressureMinIdle && idle > victimIdle)
                (victim, victimIdle) = (sb, idle);
        }
        if (!pressureBusy && pressurePercent > 0 && freePercent is { } free && free < pressurePercent && victim is { } v)
            actions.Add(new IdleAction(v.Id, true, PressureMinIdle,
                $"memory pressure: {free:F1}% of the host's memory available, under {pressurePercent:g}%; it was the longest idle", Pressure: true));
        return actions;
    }
}
