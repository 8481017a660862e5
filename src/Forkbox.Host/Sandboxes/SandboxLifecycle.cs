using System.Collections.Frozen;
using Forkbox.Core;
using Forkbox.Core.Errors;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// The one table of the moves a live sandbox's state may make. Every change of
/// <see cref="Sandbox.State"/> goes through <see cref="Sandbox.MoveTo"/> or
/// <see cref="Sandbox.TryMove"/>, which check it here atomically, so a sandbox that died while a
/// call was on its way cannot be set running, paused or ready again.
/// </summary>
public static class SandboxLifecycle
{
    /// <summary>From each state, the states it may go to. Lost is a record's state only: a live sandbox is never lost.</summary>
    public static readonly FrozenDictionary<string, FrozenSet<string>> Moves = new Dictionary<string, FrozenSet<string>>
    {
        // A call runs it; pause freezes it; hibernate (holding its call lock) saves it; it dies.
        [SandboxState.Ready] = FrozenSet.Create(SandboxState.Running, SandboxState.Paused, SandboxState.Hibernated, SandboxState.Dead),
        // Only the call that set it running sets it ready again; nothing pauses or hibernates a running call.
        [SandboxState.Running] = FrozenSet.Create(SandboxState.Ready, SandboxState.Dead),
        // A call or resume thaws it; hibernate and the memory-pressure policy save it frozen.
        [SandboxState.Paused] = FrozenSet.Create(SandboxState.Ready, SandboxState.Hibernated, SandboxState.Dead),
        // Stopped and saved: its object is dropped once its record is committed; only its death can follow.
        [SandboxState.Hibernated] = FrozenSet.Create(SandboxState.Dead),
        [SandboxState.Dead] = FrozenSet<string>.Empty,
    }.ToFrozenDictionary(StringComparer.Ordinal);

    public static bool CanMove(string from, string to) => Moves.TryGetValue(from, out var next) && next.Contains(to);

    /// <summary>
    /// Atomically moves <paramref name="state"/> to <paramref name="to"/> from whatever it holds,
    /// if the table allows that move; else leaves it and returns false, with the state it found.
    /// </summary>
    public static bool TryMoveTo(ref string state, string to, out string from)
    {
        while (true)
        {
            from = Volatile.Read(ref state);
            if (!CanMove(from, to)) return false;
            if (ReferenceEquals(Interlocked.CompareExchange(ref state, to, from), from)) return true;
        }
    }

    /// <summary>
    /// The 409 of a call that needs a dead sandbox's processes: why it died, and what still works
    /// (its files, read from its layer) and what brings it back (a restart, on the same files).
    /// </summary>
    public static ConflictException Dead(Sandbox sb) => new(
        $"sandbox '{sb.Id}' is dead ({sb.DeadReason}); its files can still be read (GET files, files/list, diff) until it is deleted, " +
        $"and POST /v1/sandboxes/{sb.Id}/restart starts a fresh interpreter on them (variables are lost), or create a new sandbox",
        "sandbox_dead");

    /// <summary>
    /// Why <paramref name="from"/> cannot become <paramref name="to"/>: a dead or hibernated
    /// sandbox is the client's conflict (it changed under a call on its way); anything else is a
    /// bug in hostd.
    /// </summary>
    internal static Exception Refusal(Sandbox sb, string from, string to) => from switch
    {
        SandboxState.Dead => Dead(sb),
        SandboxState.Hibernated => new ConflictException(
            $"sandbox '{sb.Id}' was hibernated by another request meanwhile; retry, which resumes it", "wrong_state"),
        _ => new InvalidOperationException($"sandbox '{sb.Id}' cannot go from {from} to {to}"),
    };
}
