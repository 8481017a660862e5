using Forkbox.Core;
using Forkbox.Core.Errors;
using Forkbox.Linux.Storage;

namespace Forkbox.UnitTests.Linux.Storage;

[Trait("Root", "not needed")]
public sealed class StorageOptionsTests
{
    [Theory]
    [InlineData("4G", 4L << 30)]
    [InlineData("512M", 512L << 20)]
    [InlineData("512m", 512L << 20)]
    [InlineData("1.5T", 3L << 39)]
    [InlineData("64KiB", 64L << 10)]
    [InlineData("2GB", 2L << 30)]
    [InlineData("1073741824", 1L << 30)]
    public void Sizes_parse_as_binary_multiples(string text, long bytes)
    {
        Assert.True(ByteSize.TryParse(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("")]
    [InlineData("G")]
    [InlineData("4X")]
    [InlineData("-1G")]
    [InlineData("0")]
    [InlineData("1.5")]
    [InlineData("99999999999T")]
    public void Bad_sizes_do_not_parse(string text) => Assert.False(ByteSize.TryParse(text, out _));

    [Theory]
    [InlineData("btrfs", StorageKind.Btrfs)]
    [InlineData("Reflink", StorageKind.Reflink)]
    [InlineData("copy", StorageKind.Copy)]
    public void Storage_kinds_round_trip_through_their_wire_names(string name, StorageKind kind)
    {
        Assert.Equal(kind, StorageStrategy.Parse(name));
        Assert.Equal(name.ToLowerInvariant(), kind.Name());
    }

    [Fact]
    public void Storage_settings_are_validated_with_the_setting_named()
    {
        new ServerOptions { Storage = new() { Strategy = "reflink", ImageBytes = 4L << 30, ImageFs = "xfs" } }.Validate();
        Assert.Contains("storage 'zfs'", Assert.Throws<BadRequestException>(() => new ServerOptions { Storage = new() { Strategy = "zfs" } }.Validate()).Message);
        Assert.Contains("storage_image_bytes", Assert.Throws<BadRequestException>(() => new ServerOptions { Storage = new() { ImageBytes = 1L << 20 } }.Validate()).Message);
        Assert.Contains("storage_image_fs", Assert.Throws<BadRequestException>(() => new ServerOptions { Storage = new() { ImageFs = "ext4" } }.Validate()).Message);
        Assert.Throws<ArgumentException>(() => StorageStrategy.Parse("overlay"));
    }
}
