using Forkbox.Core;
using Forkbox.Host.Sandboxes;

namespace Forkbox.UnitTests.Host.Sandboxes;

/// <summary>The table of a live sandbox's state moves, and the atomic move over it: no root, no sandbox.</summary>
[Trait("Root", "not needed")]
public sealed class SandboxLifecycleTests_without_root
{
    private static readonly string[] Live = [SandboxState.Ready, SandboxState.Running, SandboxState.Paused, SandboxState.Hibernated, SandboxState.Dead];

    [Fact]
    public void The_table_allows_exactly_these_moves()
    {
        var allowed = Live.SelectMany(from => Live.Where(to => SandboxLifecycle.CanMove(from, to)).Select(to => $"{from}->{to}")).Order();
        Assert.Equal(new[]
        {
            "hibernated->dead",
            "paused->dead", "paused->hibernated", "paused->ready",
            "ready->dead", "ready->hibernated", "ready->paused", "ready->running",
            "running->dead", "running->ready",
        }, allowed);
    }

    [Fact]
    public void A_live_sandbox_is_never_lost_and_nothing_leaves_dead()
    {
        Assert.All(Live, s => Assert.False(SandboxLifecycle.CanMove(s, SandboxState.Lost)));
        Assert.All(Live, s => Assert.False(SandboxLifecycle.CanMove(SandboxState.Dead, s)));
        Assert.False(SandboxLifecycle.CanMove(SandboxState.Lost, SandboxState.Ready));
    }

    [Fact]
    public void A_refused_move_leaves_the_state_and_says_what_it_found()
    {
        var state = SandboxState.Dead;
        Assert.False(SandboxLifecycle.TryMoveTo(ref state, SandboxState.Running, out var found));
        Assert.Equal(SandboxState.Dead, found);
        Assert.Equal(SandboxState.Dead, state);
        state = SandboxState.Running;
        Assert.False(SandboxLifecycle.TryMoveTo(ref state, SandboxState.Paused, out found));
        Assert.Equal(SandboxState.Running, state);
        Assert.True(SandboxLifecycle.TryMoveTo(ref state, SandboxState.Ready, out found));
        Assert.Equal((SandboxState.Running, SandboxState.Ready), (found, state));
    }

    [Fact]
    public async Task A_death_racing_a_call_always_ends_dead()
    {
        // A call sets Running then Ready while the agent's exit sets Dead: whatever the order, Dead stays.
        for (var i = 0; i < 500; i++)
        {
            var state = SandboxState.Ready;
            using var go = new Barrier(2);
            var call = Task.Run(() =>
            {
                go.SignalAndWait();
                if (SandboxLifecycle.TryMoveTo(ref state, SandboxState.Running, out _))
                    SandboxLifecycle.TryMoveTo(ref state, SandboxState.Ready, out _);
            });
            var death = Task.Run(() =>
            {
                go.SignalAndWait();
                Assert.True(SandboxLifecycle.TryMoveTo(ref state, SandboxState.Dead, out _));
            });
            await Task.WhenAll(call, death);
            Assert.Equal(SandboxState.Dead, state);
        }
    }
}
