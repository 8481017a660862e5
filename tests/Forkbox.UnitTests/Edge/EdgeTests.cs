using Forkbox.Core.Cluster;
using Forkbox.Core.Errors;
using Forkbox.Edge.Limits;
using Forkbox.Edge.Registry;
using Forkbox.Edge.Routing;

namespace Forkbox.UnitTests.Edge;

/// <summary>The edge's pure decisions: where a create goes, and what a tiers file means.</summary>
[Trait("Root", "not needed")]
public sealed class EdgeTests
{
    private static HostEntry Host(string id, string region, string? continent, int running, int maximum) =>
        new(new HostAnnouncement { HostId = id, Region = region, Continent = continent, Url = $"http://{id}:7070", Running = running, Maximum = maximum });

    private static readonly HostEntry[] Hosts =
    [
        Host("eu-1", "eu", "EU", 2, 10), // 8 free
        Host("us-1", "us", "NA", 5, 10), // 5 free
        Host("us-2", "us", "NA", 3, 10), // 7 free: us has 12
        Host("ap-1", "ap", "AS", 10, 10), // full
    ];

    private static readonly HashSet<string> None = [];

    [Fact]
    public void A_named_region_wins_and_its_roomiest_host_is_taken()
    {
        Assert.Equal(("us-2", Placement.Reason.Named), Pick(Placement.Choose(Hosts, "us", "EU", None)));
        Assert.Equal(("us-1", Placement.Reason.Named), Pick(Placement.Choose(Hosts, "us", null, new HashSet<string> { "us-2" })));
    }

    [Fact]
    public void A_named_region_that_is_full_or_unknown_says_so()
    {
        Assert.Contains("region 'ap'", Assert.Throws<HostUnavailableException>(() => Placement.Choose(Hosts, "ap", null, None)).Message);
        var unknown = Assert.Throws<BadRequestException>(() => Placement.Choose(Hosts, "mars", null, None));
        Assert.Contains("the known regions are ap, eu, us", unknown.Message);
    }

    [Fact]
    public void The_continent_picks_among_its_regions_and_a_full_one_falls_back_to_room()
    {
        Assert.Equal(("eu-1", Placement.Reason.Continent), Pick(Placement.Choose(Hosts, null, "eu", None)));
        Assert.Equal(("us-2", Placement.Reason.Continent), Pick(Placement.Choose(Hosts, null, "NA", None)));
        Assert.Equal(("us-2", Placement.Reason.Capacity), Pick(Placement.Choose(Hosts, null, "AS", None))); // ap is full
    }

    [Fact]
    public void Without_a_hint_the_roomiest_region_then_its_roomiest_host()
    {
        // us has 12 free against eu's 8, although eu-1 alone has the most.
        Assert.Equal(("us-2", Placement.Reason.Capacity), Pick(Placement.Choose(Hosts, null, null, None)));
    }

    [Fact]
    public void Creates_sent_since_the_last_announcement_and_hosts_marked_down_count()
    {
        var hosts = new[] { Host("a", "r", null, 0, 3), Host("b", "r", null, 0, 2) };
        hosts[0].Sent();
        hosts[0].Sent(); // a has 1 left, b has 2
        Assert.Equal("b", Placement.Choose(hosts, null, null, None).Host.Id);
        hosts[1].MarkDown(TimeSpan.FromMinutes(1));
        Assert.Equal("a", Placement.Choose(hosts, null, null, None).Host.Id);
        hosts[0].Sent();
        Assert.Contains("no host can take", Assert.Throws<HostUnavailableException>(() => Placement.Choose(hosts, null, null, None)).Message);
        Assert.Contains("no host is in rotation", Assert.Throws<HostUnavailableException>(() => Placement.Choose([], null, null, None)).Message);
    }

    [Fact]
    public void A_tiers_file_names_limits_and_a_default_tier()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, """{"default": {"max_sandboxes": 2}, "pro": {"max_sandboxes": 100, "creates_per_minute": 600}}""");
            var tiers = TierTable.Load(path);
            Assert.Equal(new Tier("pro", 100, 600), tiers.For("pro"));
            Assert.Equal(new Tier("default", 2, null), tiers.For(null));
            Assert.Equal(new Tier("default", 2, null), tiers.For("unknown"));
            Assert.Null(TierTable.Empty.For("pro").MaxSandboxes);

            File.WriteAllText(path, """{"pro": {"max_sandboxes": -1}}""");
            Assert.Contains("whole number >= 0", Assert.Throws<BadRequestException>(() => TierTable.Load(path)).Message);
            File.WriteAllText(path, """{"pro": {"max_sandbox": 1}}""");
            Assert.Contains("unknown field 'max_sandbox'", Assert.Throws<BadRequestException>(() => TierTable.Load(path)).Message);
            File.WriteAllText(path, "{");
            Assert.Contains("not valid JSON", Assert.Throws<BadRequestException>(() => TierTable.Load(path)).Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static (string, Placement.Reason) Pick((HostEntry Host, Placement.Reason Why) choice) => (choice.Host.Id, choice.Why);
}
