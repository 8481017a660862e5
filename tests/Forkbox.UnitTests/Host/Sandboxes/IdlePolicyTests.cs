using Forkbox.Core;
using Forkbox.Host.Sandboxes;
using Microsoft.Extensions.Time.Testing;

namespace Forkbox.UnitTests.Host.Sandboxes;

/// <summary>The idle policy's decisions on a fake clock: no root, no sandbox, no waiting.</summary>
[Trait("Root", "not needed")]
public sealed class IdlePolicyTests_without_root
{
    private static readonly TimeSpan Pause = TimeSpan.FromSeconds(300), Hibernate = TimeSpan.FromSeconds(1800);
    private readonly FakeTimeProvider _clock = new();

    private IdleCandidate Space(string id, TimeSpan idle, string state = SandboxState.Ready, bool forks = false, TimeSpan? pause = null) =>
        new(id, state, _clock.GetTimestamp() - (long)(idle.TotalSeconds * _clock.TimestampFrequency), pause ?? Pause, Hibernate, forks);

    private List<IdleAction> Decide(double? free = null, bool busy = false, params IdleCandidate[] spaces) =>
        IdlePolicy.Decide(spaces, _clock, free, pressurePercent: 10, busy);

    [Fact]
    public void Nothing_is_due_before_its_time()
    {
        _clock.Advance(TimeSpan.FromHours(1));
        Assert.Empty(Decide(spaces: [Space("a", TimeSpan.FromSeconds(299)), Space("b", TimeSpan.Zero, SandboxState.Paused)]));
    }

    [Fact]
    public void A_ready_space_is_paused_after_its_own_idle_timeout_and_the_time_comes_from_the_clock()
    {
        _clock.Advance(TimeSpan.FromHours(1));
        var a = Space("a", TimeSpan.Zero, pause: TimeSpan.FromSeconds(5));
        Assert.Empty(Decide(spaces: a));
        _clock.Advance(TimeSpan.FromSeconds(5));
        var action = Assert.Single(Decide(spaces: a));
        Assert.Equal(new IdleAction("a", false, TimeSpan.FromSeconds(5), "idle for 5 s"), action);
    }

    [Fact]
    public void A_running_or_paused_space_is_not_paused_again_but_either_is_hibernated_when_due()
    {
        _clock.Advance(TimeSpan.FromHours(1));
        Assert.Empty(Decide(spaces: [Space("r", TimeSpan.FromSeconds(400), SandboxState.Running), Space("p", TimeSpan.FromSeconds(400), SandboxState.Paused)]));
        var actions = Decide(spaces: [Space("r", Hibernate, SandboxState.Running), Space("p", Hibernate, SandboxState.Paused)]);
        Assert.Equal(["p", "r"], actions.Where(a => a.Hibernate).Select(a => a.Id).Order());
    }

    [Fact]
    public void A_space_with_live_forks_is_paused_but_never_hibernated()
    {
        _clock.Advance(TimeSpan.FromHours(1));
        var action = Assert.Single(Decide(free: 1, spaces: Space("a", Hibernate, forks: true)));
        Assert.False(action.Hibernate);
        Assert.Empty(Decide(free: 1, spaces: Space("a", Hibernate, SandboxState.Paused, forks: true)));
    }

    [Fact]
    public void Dead_hibernated_and_lost_sandboxes_are_left_alone()
    {
        _clock.Advance(TimeSpan.FromHours(1));
        Assert.Empty(Decide(free: 1, spaces: [Space("d", Hibernate, SandboxState.Dead), Space("h", Hibernate, SandboxState.Hibernated), Space("l", Hibernate, SandboxState.Lost)]));
    }

    [Fact]
    public void Under_memory_pressure_the_longest_idle_is_hibernated_one_at_a_time()
    {
        _clock.Advance(TimeSpan.FromHours(1));
        IdleCandidate[] spaces = [Space("recent", TimeSpan.FromMilliseconds(500)), Space("older", TimeSpan.FromSeconds(20)),
            Space("oldest-paused", TimeSpan.FromSeconds(60), SandboxState.Paused), Space("busy", TimeSpan.FromSeconds(90), SandboxState.Running)];
        var action = Assert.Single(Decide(free: 4.5, spaces: spaces));
        Assert.Equal("oldest-paused", action.Id);
        Assert.True(action.Hibernate && action.Pressure);
        Assert.Equal(IdlePolicy.PressureMinIdle, action.IdleAtLeast);
        Assert.Contains("4.5% of the host's memory available, under 10%", action.Why);
        Assert.Empty(Decide(free: 4.5, busy: true, spaces: spaces));
        Assert.Empty(Decide(free: 10, spaces: spaces));
        Assert.Empty(Decide(free: null, spaces: spaces));
        Assert.Empty(IdlePolicy.Decide(spaces, _clock, 4.5, pressurePercent: 0, pressureBusy: false));
    }

    [Fact]
    public void Pressure_never_takes_a_space_used_this_very_second()
    {
        _clock.Advance(TimeSpan.FromHours(1));
        Assert.Empty(Decide(free: 1, spaces: Space("a", TimeSpan.FromMilliseconds(999))));
    }
}
