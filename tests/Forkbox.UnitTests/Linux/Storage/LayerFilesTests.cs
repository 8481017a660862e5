using Forkbox.Linux.Storage;

namespace Forkbox.UnitTests.Linux.Storage;

/// <summary>
/// LayerFiles, the one way hostd reads and deletes what a sandbox wrote: nothing it does passes
/// through a symlink, wherever in the path the symlink is, and a swap between two calls is seen
/// as the entry it has become.
/// </summary>
[Trait("Root", "not needed")]
public sealed class LayerFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("forkbox-layerfiles-").FullName;
    private string Layer => Path.Combine(_dir, "layer");
    private string Host => Path.Combine(_dir, "host");

    public LayerFilesTests()
    {
        Directory.CreateDirectory(Path.Combine(Layer, "root/real"));
        File.WriteAllText(Path.Combine(Layer, "root/real/mine"), "mine");
        Directory.CreateDirectory(Path.Combine(Host, "secret-dir"));
        File.WriteAllText(Path.Combine(Host, "secret-dir/secret"), "host");
        File.CreateSymbolicLink(Path.Combine(Layer, "root/link"), Host);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void No_lookup_passes_through_a_symlink_in_the_middle_of_a_path()
    {
        using var layer = new LayerFiles(Layer);
        Assert.Equal(UnixFileType.SymbolicLink, layer.TryLstat("root/link")!.Value.Type);
        Assert.Null(layer.TryLstat("root/link/secret-dir"));
        Assert.Empty(layer.Names("root/link"));
        Assert.Empty(layer.Names("root/link/secret-dir"));
        Assert.Null(layer.TryOpenRegularFile("root/link/secret-dir/secret"));
        Assert.Null(layer.DirectoryAttribute("root/link", "trusted.overlay.opaque"));
        Assert.Equal(Host, layer.ReadLink("root/link"));
    }

    [Fact]
    public void A_directory_swapped_for_a_symlink_after_it_was_listed_is_seen_as_the_symlink()
    {
        using var layer = new LayerFiles(Layer);
        Assert.Contains("mine", layer.Names("root/real"));
        Directory.Move(Path.Combine(Layer, "root/real"), Path.Combine(Layer, "root/moved"));
        File.CreateSymbolicLink(Path.Combine(Layer, "root/real"), Path.Combine(Host, "secret-dir"));
        Assert.Null(layer.TryLstat("root/real/secret"));
        Assert.Empty(layer.Names("root/real"));
        Assert.Null(layer.TryOpenRegularFile("root/real/secret"));
    }

    [Fact]
    public void Entries_never_enter_a_symlinked_directory()
    {
        using var layer = new LayerFiles(Layer);
        var entries = layer.Entries().Select(e => e.Rel).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(["root", "root/link", "root/real", "root/real/mine"], entries);
    }

    [Fact]
    public void DeleteTree_removes_the_links_not_what_they_point_at()
    {
        File.CreateSymbolicLink(Path.Combine(Layer, "root/real/file-link"), Path.Combine(Host, "secret-dir/secret"));
        LayerFiles.DeleteTree(Layer);
        Assert.False(Directory.Exists(Layer));
        Assert.Equal("host", File.ReadAllText(Path.Combine(Host, "secret-dir/secret")));
        LayerFiles.DeleteTree(Layer); // gone already: nothing to do
    }

    [Fact]
    public void The_layer_directory_itself_may_not_be_a_symlink()
    {
        var linked = Path.Combine(_dir, "linked-layer");
        File.CreateSymbolicLink(linked, Host);
        Assert.Throws<IOException>(() => new LayerFiles(linked));
    }
}
