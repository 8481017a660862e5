using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Host.Sandboxes;

namespace Forkbox.UnitTests.Host.Sandboxes;

/// <summary>The registry's names and frozen records: no root, no sandbox process.</summary>
[Trait("Root", "not needed")]
public sealed class SandboxRegistryTests_without_root
{
    private static SandboxRecord Record(string id, string owner, string? name = null) => new()
    {
        Id = id, Owner = owner, Name = name, Template = "default", State = SandboxState.Hibernated,
        MemoryMb = 512, Cpus = 1, Pids = 256, DiskMb = 1024, CreatedAt = DateTimeOffset.UnixEpoch, ExpiresAt = DateTimeOffset.MaxValue,
    };

    [Fact]
    public void A_name_is_one_owners_and_held_until_its_holder_releases_it()
    {
        var r = new SandboxRegistry();
        var placeholder = SandboxRegistry.CreatingPrefix + "x";
        r.ReserveName("alice", "work", placeholder);
        var creating = Assert.Throws<ConflictException>(() => r.ReserveName("alice", "work", "sbx_2"));
        Assert.Equal("name_taken", creating.Code);
        Assert.Contains("is being created by another request", creating.Message);
        r.ReserveName("bob", "work", "sbx_3"); // another owner's namespace

        r.SetName("alice", "work", "sbx_1");
        Assert.Contains("already exists (sbx_1)", Assert.Throws<ConflictException>(() => r.ReserveName("alice", "work", "sbx_2")).Message);
        r.ReleaseName("alice", "work", placeholder); // a stale holder releases nothing
        Assert.True(r.TryGetNamed("alice", "work", out var id));
        Assert.Equal("sbx_1", id);
        r.ReleaseName("alice", "work", "sbx_1");
        Assert.False(r.TryGetNamed("alice", "work", out _));
        r.ReserveName("alice", "work", "sbx_2");
        r.ReserveName("alice", null, "sbx_4"); // no name: nothing to hold
    }

    [Fact]
    public void Frozen_records_count_for_owners_and_lookups_until_removed()
    {
        var r = new SandboxRegistry();
        r.AddFrozen(Record("sbx_a", "alice", "space"));
        r.AddFrozen(Record("sbx_b", "bob"));
        Assert.Equal("alice", r.OwnerOf("sbx_a"));
        Assert.Null(r.OwnerOf("sbx_none"));
        Assert.True(r.IsFrozen("sbx_b") && !r.IsLive("sbx_b"));
        Assert.Equal(["sbx_a"], r.IdsByOwner()["alice"]);
        Assert.Equal(["bob", "alice"], r.IdsByOwner().Keys.Order().Reverse());
        Assert.True(r.TryRemoveFrozen("sbx_a", out var removed));
        Assert.Equal("space", removed.Name);
        Assert.Null(r.FrozenOrNull("sbx_a"));
        Assert.False(r.IdsByOwner().ContainsKey("alice"));
    }
}
