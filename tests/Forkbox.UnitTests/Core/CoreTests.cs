using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Host.Agents;
using Forkbox.Linux.Cgroups;
using Forkbox.Linux.Seccomp;

namespace Forkbox.UnitTests.Core;

[Trait("Root", "not needed")]
public sealed class CoreTests
{
    [Fact]
    public void Sandbox_ids_are_sbx_and_32_hex_digits_and_unique()
    {
        var ids = Enumerable.Range(0, 1000).Select(_ => SandboxId.New()).ToHashSet();
        Assert.Equal(1000, ids.Count);
        Assert.All(ids, id => Assert.Matches("^sbx_[0-9a-f]{32}$", id));
        Assert.All(ids, id => Assert.True(SandboxId.IsValid(id)));
        Assert.False(SandboxId.IsValid("sbx_" + new string('G', 32)));
        Assert.False(SandboxId.IsValid("sbx_123"));
        Assert.All(ids, id => Assert.Null(SandboxId.HostOf(id)));
    }

    [Fact]
    public void A_cluster_hosts_ids_carry_its_host_id()
    {
        var id = SandboxId.New("eu-1");
        Assert.Matches("^sbx_eu-1_[0-9a-f]{32}$", id);
        Assert.True(SandboxId.IsValid(id));
        Assert.Equal("eu-1", SandboxId.HostOf(id));
        Assert.Null(SandboxId.HostOf("sbx_EU_" + new string('0', 32))); // host ids are lowercase
        Assert.False(SandboxId.IsValid("sbx_-x_" + new string('0', 32)));
        Assert.False(SandboxId.IsValid("sbx_a/b_" + new string('0', 32)));
        Assert.False(SandboxId.IsValid("sbx_eu-1" + new string('0', 32))); // no separator
        Assert.False(SandboxId.IsValid("sbx_" + new string('a', 33) + "_" + new string('0', 32)));
    }

    [Fact]
    public void Joining_a_cluster_needs_a_host_id_and_an_address_edges_can_reach()
    {
        var ok = new ServerOptions { Cluster = new() { Join = "redis:6379", HostId = "eu-1" } };
        ok.Validate();
        Assert.Contains("host_id", Assert.Throws<BadRequestException>(() => (ok with { Cluster = ok.Cluster with { HostId = null } }).Validate()).Message);
        Assert.Contains("advertise", Assert.Throws<BadRequestException>(() => (ok with { Listen = "0.0.0.0:7070" }).Validate()).Message);
        (ok with { Listen = "0.0.0.0:7070", Cluster = ok.Cluster with { Advertise = "http://10.0.0.5:7070" } }).Validate();
        Assert.Contains("join", Assert.Throws<BadRequestException>(() => (ok with { Cluster = ok.Cluster with { Join = "redis" } }).Validate()).Message);
        Assert.Contains("region", Assert.Throws<BadRequestException>(() => (ok with { Cluster = ok.Cluster with { Region = "EU West" } }).Validate()).Message);
        Assert.Contains("continent", Assert.Throws<BadRequestException>(() => (ok with { Cluster = ok.Cluster with { Continent = "Europe" } }).Validate()).Message);
    }

    [Theory]
    [InlineData("127.0.0.1:7070", true)]
    [InlineData("localhost:80", true)]
    [InlineData("[::1]:7070", true)]
    [InlineData("0.0.0.0:7070", false)]
    [InlineData("10.1.2.3:7070", false)]
    public void Loopback_addresses_are_recognised(string listen, bool loopback) =>
        Assert.Equal(loopback, ListenAddress.IsLoopback(listen));

    [Theory]
    [InlineData("7070")]
    [InlineData("host:port")]
    [InlineData("127.0.0.1:70000")]
    public void Bad_listen_addresses_fail_validation_with_the_setting_named(string listen)
    {
        var e = Assert.Throws<BadRequestException>(() => new ServerOptions { Listen = listen }.Validate());
        Assert.Contains("listen", e.Message);
    }

    [Fact]
    public void Options_reject_a_uid_range_past_2_to_the_32()
    {
        var e = Assert.Throws<BadRequestException>(() => new ServerOptions { Isolation = new() { UidBase = 4_200_000_000 }, Limits = new() { MaxSandboxes = 2000 } }.Validate());
        Assert.Contains("uid_base", e.Message);
        new ServerOptions().Validate();
    }

    [Theory]
    [InlineData("/root/a.txt", "/root/a.txt")]
    [InlineData("a.txt", "/root/a.txt")]
    [InlineData("/tmp/x..y", "/tmp/x..y")]
    public void Sandbox_paths_are_absolute_or_from_root(string path, string expected) =>
        Assert.Equal(expected, Validate.SandboxPath(path, "path"));

    [Theory]
    [InlineData("/root/../etc")]
    [InlineData("..")]
    [InlineData("a/\0b")]
    [InlineData("")]
    public void Sandbox_paths_with_dotdot_or_nul_are_refused(string path) =>
        Assert.Throws<BadRequestException>(() => Validate.SandboxPath(path, "path"));

    [Fact]
    public void Ranges_reject_nan_and_out_of_bounds_with_the_field_named()
    {
        Assert.Equal(2.0, Validate.Range(2.0, 1, 3, "cpus"));
        Assert.Contains("cpus", Assert.Throws<BadRequestException>(() => Validate.Range(double.NaN, 1, 3, "cpus")).Message);
        Assert.Throws<BadRequestException>(() => Validate.Range(-1, 0, 3, "memory_mb"));
    }

    [Fact]
    public void Cgroup_v2_cpu_max_is_quota_and_period()
    {
        Assert.Equal("10000 10000", CgroupV2Driver.FormatCpuMax(1));
        Assert.Equal("5000 10000", CgroupV2Driver.FormatCpuMax(0.5));
        Assert.Equal("5000 100000", CgroupV2Driver.FormatCpuMax(0.05)); // a 10 ms period would need a quota under the kernel's 1 ms
    }

    /// <summary>A frame as the agent sends a file: an "ok" header and the file's bytes after it.</summary>
    private static byte[] FileFrame(byte[] payload)
    {
        var head = AgentFrame.EncodeHead(new System.Buffers.ArrayBufferWriter<byte>(), new System.Text.Json.Utf8JsonWriter(Stream.Null),
            new AgentReadOk(1, payload.Length), AgentJson.Default.AgentReadOk, payload.Length);
        return [.. head.Span, .. payload];
    }

    [Fact]
    public async Task Agent_frames_round_trip_header_and_payload()
    {
        var payload = new byte[] { 0, 1, 2, 255 };
        var frame = await new AgentFrameReader(new MemoryStream(FileFrame(payload))).ReadMessageAsync(payload.Length, default);
        Assert.Equal("ok", frame.Event);
        Assert.Equal(new AgentReadOk(1, 4), frame.Decode(AgentJson.Default.AgentReadOk));
        Assert.Equal(payload, frame.Payload);
    }

    [Fact]
    public async Task An_agent_frame_over_the_callers_limit_is_refused_before_its_header_is_read()
    {
        var stream = new MemoryStream(FileFrame(new byte[10]));
        var e = await Assert.ThrowsAsync<AgentFrameTooLargeException>(async () => await new AgentFrameReader(stream).ReadMessageAsync(9, default));
        Assert.Contains("10 bytes, over the 9", e.Message);
        Assert.Equal(8, stream.Position); // the lengths only
        var huge = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(huge, AgentFrame.MaxHeaderBytes + 1);
        await Assert.ThrowsAsync<AgentFrameTooLargeException>(async () => await new AgentFrameReader(new MemoryStream(huge)).ReadMessageAsync(0, default));
    }

    [Fact]
    public async Task A_large_payload_arrives_whole_through_the_growing_buffer()
    {
        var payload = new byte[(3 << 20) + 12345];
        new Random(7).NextBytes(payload);
        var frame = await new AgentFrameReader(new MemoryStream(FileFrame(payload))).ReadMessageAsync(payload.Length, default);
        Assert.Equal(payload, frame.Payload);
    }

    [Fact]
    public void The_seccomp_profile_compiles_to_whole_bpf_instructions()
    {
        var path = Path.GetTempFileName();
        try
        {
            var size = SeccompProfile.Compile(path);
            Assert.True(size > 8 * SeccompProfile.Blocked.Count, $"only {size} bytes for {SeccompProfile.Blocked.Count} rules");
            Assert.Equal(0, size % 8);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
