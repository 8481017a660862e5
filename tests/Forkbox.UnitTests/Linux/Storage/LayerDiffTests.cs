using System.Diagnostics;
using Forkbox.Linux.Storage;

namespace Forkbox.UnitTests.Linux.Storage;

/// <summary>
/// LayerDiff on real layer directories: a template lower and two sandboxes' uppers, with the
/// whiteouts and opaque directories overlayfs would have written (made here as root).
/// </summary>
[Trait("Root", "needed")]
public sealed class LayerDiffTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("forkbox-diff-").FullName;
    private string Lower => Path.Combine(_dir, "lower");
    private string UpperA => Path.Combine(_dir, "a");
    private string UpperB => Path.Combine(_dir, "b");
    private string[] StackA => [UpperA, Lower];
    private string[] StackB => [UpperB, Lower];
    private static readonly DateTime Then = new(2024, 5, 1, 12, 0, 0, DateTimeKind.Utc);

    public LayerDiffTests()
    {
        Write(Lower, "root/.bashrc", "bash");
        Write(Lower, "root/keep.txt", "keep");
        Write(Lower, "etc/conf/a", "a");
        Write(Lower, "etc/conf/b", "b");
        Write(Lower, "etc/conf/sub/x", "x");
        Write(Lower, "etc/hostname", "host");
        Directory.CreateDirectory(UpperA);
        Directory.CreateDirectory(UpperB);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Files_only_in_one_upper_are_added_or_removed_and_differing_ones_changed()
    {
        Write(UpperA, "root/only-a.txt", "a");
        Write(UpperB, "root/only-b.txt", "b");
        Write(UpperB, "root/new/sub/f", "f");
        Write(UpperA, "root/content.txt", "one");
        Write(UpperB, "root/content.txt", "two");
        // Written within one clock tick they could share an mtime, which by the rule means "equal".
        File.SetLastWriteTimeUtc(Path.Combine(UpperB, "root/content.txt"), Then);
        Write(UpperA, "root/size.txt", "short");
        Write(UpperB, "root/size.txt", "longer");
        Write(UpperA, "root/mode.sh", "#!/bin/sh");
        Write(UpperB, "root/mode.sh", "#!/bin/sh");
        File.SetUnixFileMode(Path.Combine(UpperB, "root/mode.sh"), (UnixFileMode)0b111_101_101);
        File.CreateSymbolicLink(Path.Combine(UpperA, "root/link"), "a");
        File.CreateSymbolicLink(Path.Combine(UpperB, "root/link"), "b");
        File.CreateSymbolicLink(Path.Combine(UpperA, "root/same-link"), "t");
        File.CreateSymbolicLink(Path.Combine(UpperB, "root/same-link"), "t");
        // Same bytes, different times (a copy-up, a rewrite): not a change.
        Write(UpperA, "root/touched.txt", "same");
        Write(UpperB, "root/touched.txt", "same");
        File.SetLastWriteTimeUtc(Path.Combine(UpperB, "root/touched.txt"), Then);

        var diff = LayerDiff.Compare(StackA, StackB, ["/root"]);

        Assert.Equal(["/root/new", "/root/new/sub", "/root/new/sub/f", "/root/only-b.txt"], diff.Added);
        Assert.Equal(["/root/only-a.txt"], diff.Removed);
        Assert.Equal(["/root/content.txt", "/root/link", "/root/mode.sh", "/root/size.txt"], diff.Changed);
    }

    [Fact]
    public void A_file_with_the_same_size_and_mtime_is_taken_as_unchanged_without_reading_it()
    {
        Write(UpperA, "root/f", "one");
        Write(UpperB, "root/f", "two");
        File.SetLastWriteTimeUtc(Path.Combine(UpperA, "root/f"), Then);
        File.SetLastWriteTimeUtc(Path.Combine(UpperB, "root/f"), Then);
        Assert.Empty(LayerDiff.Compare(StackA, StackB, ["/root"]).Changed);
    }

    [Fact]
    public void Whiteouts_remove_lower_files_and_a_file_both_deleted_is_no_difference()
    {
        Whiteout(UpperB, "root/keep.txt");
        Whiteout(UpperA, "root/.bashrc");
        Whiteout(UpperB, "etc/hostname");
        Whiteout(UpperA, "etc/hostname");

        var diff = LayerDiff.Compare(StackA, StackB, ["/root", "/etc"]);

        Assert.Equal(["/root/.bashrc"], diff.Added);
        Assert.Equal(["/root/keep.txt"], diff.Removed);
        Assert.Empty(diff.Changed);
    }

    [Fact]
    public void An_opaque_directory_hides_the_lower_entries_below_it_and_in_its_subdirectories()
    {
        // B ran: rm -rf /etc/conf; mkdir -p /etc/conf/sub; echo > /etc/conf/c
        Write(UpperB, "etc/conf/c", "c");
        Directory.CreateDirectory(Path.Combine(UpperB, "etc/conf/sub"));
        MakeOpaque(UpperB, "etc/conf");

        var diff = LayerDiff.Compare(StackA, StackB, ["/etc"]);

        Assert.Equal(["/etc/conf/c"], diff.Added);
        Assert.Equal(["/etc/conf/a", "/etc/conf/b", "/etc/conf/sub/x"], diff.Removed);
        Assert.Empty(diff.Changed);
    }

    [Fact]
    public void A_removed_directory_is_removed_with_everything_it_held()
    {
        Write(UpperA, "root/work/notes", "n");
        Whiteout(UpperB, "root");

        var diff = LayerDiff.Compare(StackA, StackB, ["/root"]);

        Assert.Empty(diff.Added);
        Assert.Equal(["/root", "/root/.bashrc", "/root/keep.txt", "/root/work", "/root/work/notes"], diff.Removed);
    }

    [Fact]
    public void A_file_replaced_by_a_directory_is_changed_and_the_directory_entries_added()
    {
        Write(UpperA, "root/thing", "file");
        Write(UpperB, "root/thing/inside", "dir");
        Directory.CreateDirectory(Path.Combine(UpperA, "root/dir-to-link"));
        File.CreateSymbolicLink(Path.Combine(UpperB, "root/dir-to-link"), "/etc");

        var diff = LayerDiff.Compare(StackA, StackB, ["/root"]);

        Assert.Equal(["/root/dir-to-link", "/root/thing"], diff.Changed);
        Assert.Equal(["/root/thing/inside"], diff.Added);
        Assert.Empty(diff.Removed);
    }

    [Fact]
    public void Only_the_paths_asked_for_are_compared_and_a_mount_point_prefixes_them()
    {
        Write(UpperB, "root/x", "x");
        Write(UpperB, "etc/y", "y");
        Assert.Equal(["/root/x"], LayerDiff.Compare(StackA, StackB, ["/root"]).Added);

        // The same layers as the overlay at /usr: sandbox paths outside it are ignored.
        Assert.Equal(["/usr/etc/y"], LayerDiff.Compare(StackA, StackB, ["/usr/etc", "/root"], "/usr").Added);
        Assert.Equal(["/usr/etc/y", "/usr/root/x"], LayerDiff.Compare(StackA, StackB, ["/usr"], "/usr").Added);
    }

    [Fact]
    public void A_higher_lower_layer_wins_over_a_lower_one_and_identical_stacks_have_no_differences()
    {
        var lower1 = Path.Combine(_dir, "lower1");
        Write(lower1, "root/keep.txt", "from lower1");
        Write(UpperA, "root/keep.txt", "from lower1");
        File.SetLastWriteTimeUtc(Path.Combine(UpperA, "root/keep.txt"), Then);

        // Upper A's copy equals what lower1 shows through B, not what the bottom layer holds.
        Assert.Empty(LayerDiff.Compare([UpperA, lower1, Lower], [UpperB, lower1, Lower], ["/root"]).Changed);
        Assert.Equal(["/root/keep.txt"], LayerDiff.Compare(StackA, StackB, ["/root"]).Changed);
        var none = LayerDiff.Compare(StackB, StackB, ["/", "/root", "/etc"]);
        Assert.Empty(none.Added.Concat(none.Removed).Concat(none.Changed));
    }

    private static void Write(string layer, string rel, string text)
    {
        var path = Path.Combine(layer, rel);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    private static void Whiteout(string layer, string rel)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(layer, rel))!);
        Python("import os, sys; os.mknod(sys.argv[1], 0o20000 | 0o600, os.makedev(0, 0))", Path.Combine(layer, rel));
        Assert.True(FileStat.Lstat(Path.Combine(layer, rel)).IsWhiteout);
    }

    private static void MakeOpaque(string layer, string rel) =>
        Python("import os, sys; os.setxattr(sys.argv[1], 'trusted.overlay.opaque', b'y')", Path.Combine(layer, rel));

    private static void Python(string code, string arg)
    {
        var psi = new ProcessStartInfo("/usr/bin/python3", ["-I", "-c", code, arg]) { RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"python3 failed (whiteouts and trusted xattrs need root): {stderr}");
    }
}
