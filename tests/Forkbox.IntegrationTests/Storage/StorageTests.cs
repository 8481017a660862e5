using System.Diagnostics;
using Forkbox.Agent;
using Forkbox.Core.Templates;
using Forkbox.Linux.Storage;

namespace Forkbox.IntegrationTests.Storage;

/// <summary>
/// Fork's storage: a sandbox's upper directory snapshotted by the agent's storage.snapshot for
/// each strategy (copy on this disk, reflink on an xfs image, btrfs on a btrfs image) must be an
/// exact copy for overlayfs, entry by entry and attribute by attribute.
/// </summary>
public sealed class StorageTests
{
    private static readonly TemplateDefinition OneLayer =
        new("storage-test", [new TemplateLayer("/", "/nonexistent", [])], [], "/usr/bin/python3");

    // Every kind of entry an overlay upper directory can hold, with owners, modes, xattrs and times
    // that differ from the defaults so that a copy that drops any of them is caught.
    private const string MakeTree = """
        import os, socket, stat, sys, time
        r = sys.argv[1]
        def p(*a): return os.path.join(r, *a)
        os.makedirs(p("root/.cache"))
        with open(p("root/notes.txt"), "w") as f: f.write("hello\n" * 100)
        open(p("root/empty"), "w").close()
        with open(p("root/big.bin"), "wb") as f:
            for i in range(32): f.write(bytes([i % 251]) * (1 << 20))
        os.link(p("root/notes.txt"), p("root/notes-link.txt"))
        os.link(p("root/notes.txt"), p("root/.cache/notes-link2.txt"))
        with open(p("setuid"), "w") as f: f.write("#!/bin/sh\n")
        os.chmod(p("setuid"), 0o4755)
        os.symlink("notes.txt", p("root/rel-link"))
        os.symlink("/nowhere/at/all", p("root/dangling"))
        os.mknod(p("root/deleted"), stat.S_IFCHR | 0o600, os.makedev(0, 0))   # whiteout
        os.link(p("root/deleted"), p("root/.cache/deleted-too"))              # shared whiteout
        os.mknod(p("null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(p("loop"), stat.S_IFBLK | 0o660, os.makedev(7, 0))
        os.mkfifo(p("fifo"), 0o640)
        s = socket.socket(socket.AF_UNIX); s.bind(p("sock")); s.close()
        os.makedirs(p("etc/opaque/sub"))
        os.setxattr(p("etc/opaque"), "trusted.overlay.opaque", b"y")
        with open(p("etc/opaque/sub/conf"), "w") as f: f.write("x=1\n")
        os.mkdir(p("shared"), 0o777); os.chmod(p("shared"), 0o1777)
        os.mkdir(p("private")); os.chmod(p("private"), 0o750)
        os.chown(p("private"), 1000, 2000)
        os.chown(p("root/notes.txt"), 100000, 100000)
        os.chown(p("root/rel-link"), 100001, 100002, follow_symlinks=False)
        os.chown(p("fifo"), 100003, 100004)
        os.setxattr(p("root/notes.txt"), "user.origin", b"forkbox test")
        os.setxattr(p("root/notes.txt"), "security.forkbox", b"\x00\x01binary")
        os.setxattr(p("root/rel-link"), "trusted.overlay.origin", b"\x00\xfbsome-handle", follow_symlinks=False)
        os.setxattr(r, "trusted.overlay.impure", b"y")
        os.chown(r, 100000, 100000)
        # Times last, deepest first: a directory's times change when entries are added to it.
        # Access times an hour ahead: later than mtime and ctime and not a day old, so that reading
        # a file, a link or a directory (relatime) leaves them as they are, in the source and the copy.
        t = 1_000_000_000_123_456_789
        ahead = time.time_ns() + 3_600 * 10**9
        for dirpath, dirs, files in sorted(os.walk(r), key=lambda w: -w[0].count("/")):
            for n in files + dirs:
                t += 1_000_000_007
                os.utime(os.path.join(dirpath, n), ns=(ahead + t % 10**9, t), follow_symlinks=False)
        os.utime(r, ns=(ahead, t + 1))
        """;

    private const string Snapshot =
        "import sys; sys.path.insert(0, sys.argv[1]); from forkbox_agent import storage; " +
        "print(storage.snapshot(sys.argv[2], sys.argv[3], sys.argv[4]))";

    [Fact]
    public void Copy_snapshot_on_this_disk_is_exact() => SnapshotIsExact(StorageKind.Copy, null);

    [Fact]
    public void Reflink_snapshot_on_xfs_is_exact_and_shares_the_bytes()
    {
        using var fs = LoopFilesystem.Create("xfs");
        Assert.Equal(StorageKind.Reflink, StorageProbe.Detect(fs.MountPoint));
        Assert.Equal("xfs", StorageProbe.FilesystemType(fs.MountPoint));
        SnapshotIsExact(StorageKind.Reflink, fs);
    }

    [Fact]
    public void Btrfs_snapshot_is_an_exact_writable_subvolume_and_both_are_removed()
    {
        using var fs = LoopFilesystem.Create("btrfs");
        Assert.Equal(StorageKind.Btrfs, StorageProbe.Detect(fs.MountPoint));
        SnapshotIsExact(StorageKind.Btrfs, fs);
    }

    [Fact]
    public void Detection_on_the_data_disk_matches_its_filesystem()
    {
        var dir = Path.GetTempPath();
        var type = StorageProbe.FilesystemType(dir);
        var expected = type switch { "btrfs" => StorageKind.Btrfs, "xfs" => StorageKind.Reflink, _ => StorageKind.Copy };
        if (type == "xfs" && StorageProbe.Detect(dir) == StorageKind.Copy) expected = StorageKind.Copy; // xfs made without reflink
        Assert.Equal(expected, StorageProbe.Detect(dir));
        Assert.Empty(Directory.GetFiles(dir, ".reflink-probe-*"));
    }

    [Fact]
    public void A_forced_strategy_the_filesystem_cannot_do_is_refused_with_the_way_out()
    {
        var dir = Path.GetTempPath();
        if (StorageProbe.FilesystemType(dir) == "btrfs") return;
        var e = Assert.Throws<InvalidOperationException>(() => StorageProbe.Choose(dir, "btrfs"));
        Assert.Contains("--storage-image", e.Message);
        Assert.Equal(StorageKind.Copy, StorageProbe.Choose(dir, "copy"));
    }

    private static void SnapshotIsExact(StorageKind kind, LoopFilesystem? fs)
    {
        var temp = fs is null ? Directory.CreateTempSubdirectory("forkbox-storage-").FullName : null;
        var sandboxes = Path.Combine(fs?.MountPoint ?? temp!, "sandboxes");
        Directory.CreateDirectory(sandboxes);
        try
        {
            var layers = new SandboxLayers(sandboxes, kind);
            var parent = layers.Create("sbx_parent", OneLayer);
            var src = parent.Layers[0].Upper;
            Assert.Equal(kind == StorageKind.Btrfs, BtrfsSubvolume.IsSubvolume(src));
            HostPython.Code(MakeTree, src);
            var expected = Describe(src);
            // A walked copy runs as host root on what a sandbox wrote: it makes no device node but
            // a whiteout (0:0). A btrfs snapshot copies nothing, so it keeps them as they are.
            if (kind != StorageKind.Btrfs)
                foreach (var device in new[] { "/null", "/loop" }) Assert.True(expected.Remove(device));
            var child = layers.CreateFork("sbx_child", OneLayer);
            var dst = child.Layers[0].Upper;
            Assert.False(Directory.Exists(dst), "CreateFork must leave the upper directory to the snapshot");
            Assert.True(Directory.Exists(child.Layers[0].Work) && Directory.Exists(child.Root));
            var freeBefore = fs?.FreeBytes() ?? 0;

            var copied = int.Parse(HostPython.Run(["-I", "-c", Snapshot, AgentFiles.PythonPath, kind.Name(), src, dst]).Trim());

            if (fs is not null)
            {
                var used = freeBefore - fs.FreeBytes();
                Assert.True(used < 16L << 20, $"{kind} snapshot used {used >> 20} MiB for a 32 MiB file: its bytes were copied, not shared");
            }
            Assert.Equal(kind == StorageKind.Btrfs ? 0 : expected.Count - 1, copied);
            Assert.Equal(kind == StorageKind.Btrfs, BtrfsSubvolume.IsSubvolume(dst));
            var actual = Describe(dst);
            Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
            foreach (var (rel, e) in expected)
            {
                var a = actual[rel];
                Assert.True(e.Stat.Type == a.Stat.Type, $"{rel}: type {a.Stat.Type}, expected {e.Stat.Type}");
                Assert.True(e.Stat.Mode == a.Stat.Mode, $"{rel}: mode {Convert.ToString(a.Stat.Mode, 8)}, expected {Convert.ToString(e.Stat.Mode, 8)}");
                Assert.True(e.Stat.Uid == a.Stat.Uid && e.Stat.Gid == a.Stat.Gid, $"{rel}: owner {a.Stat.Uid}:{a.Stat.Gid}, expected {e.Stat.Uid}:{e.Stat.Gid}");
                Assert.True(e.Stat.Links == a.Stat.Links, $"{rel}: {a.Stat.Links} links, expected {e.Stat.Links}");
                Assert.True((e.Stat.RdevMajor, e.Stat.RdevMinor) == (a.Stat.RdevMajor, a.Stat.RdevMinor), $"{rel}: device numbers differ");
                Assert.True(e.Stat.MtimeNs == a.Stat.MtimeNs, $"{rel}: mtime {a.Stat.MtimeNs}, expected {e.Stat.MtimeNs}");
                Assert.True(e.Stat.AtimeNs == a.Stat.AtimeNs, $"{rel}: atime {a.Stat.AtimeNs}, expected {e.Stat.AtimeNs}");
                if (e.Stat.Type != UnixFileType.Directory)
                    Assert.True(e.Stat.Size == a.Stat.Size, $"{rel}: size {a.Stat.Size}, expected {e.Stat.Size}");
                Assert.Equal(e.LinkTarget, a.LinkTarget);
                Assert.Equal(e.Xattrs, a.Xattrs);
            }
            // Hard links: names that share an inode in the source share one in the copy, and no others do.
            var srcGroups = expected.GroupBy(kv => kv.Value.Stat.Inode).Select(g => string.Join(",", g.Select(kv => kv.Key).Order()));
            var dstGroups = actual.GroupBy(kv => kv.Value.Stat.Inode).Select(g => string.Join(",", g.Select(kv => kv.Key).Order()));
            Assert.Equal(srcGroups.Order(), dstGroups.Order());
            Assert.Contains("/root/.cache/notes-link2.txt,/root/notes-link.txt,/root/notes.txt", dstGroups);
            // Contents last: reading them moves access times.
            foreach (var (rel, e) in expected.Where(kv => kv.Value.Stat.Type == UnixFileType.RegularFile))
                Assert.True(File.ReadAllBytes(src + rel).AsSpan().SequenceEqual(File.ReadAllBytes(dst + rel)), $"{rel}: contents differ");
            Assert.Equal("y", System.Text.Encoding.ASCII.GetString(ExtendedAttributes.Get(dst + "/etc/opaque", "trusted.overlay.opaque")!));
            Assert.True(FileStat.Lstat(dst + "/root/deleted").IsWhiteout);

            // The copy is writable and independent of its source.
            File.WriteAllText(dst + "/root/notes.txt", "changed");
            Assert.StartsWith("hello", File.ReadAllText(src + "/root/notes.txt"));
            // A second snapshot to the same place is refused, not merged.
            var again = Assert.Throws<InvalidOperationException>(() => HostPython.Run(["-I", "-c", Snapshot, AgentFiles.PythonPath, kind.Name(), src, dst]));
            Assert.Contains("already exists", again.Message);

            layers.RemoveAsync(parent).GetAwaiter().GetResult();
            layers.RemoveAsync(child).GetAwaiter().GetResult();
            Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(sandboxes, ".trash")));
            Assert.Equal(["sandboxes/.trash"], Directory.GetFileSystemEntries(sandboxes, "*", SearchOption.AllDirectories)
                .Select(p => Path.GetRelativePath(Path.GetDirectoryName(sandboxes)!, p)));
            if (kind == StorageKind.Btrfs)
                Assert.Equal("", LoopFilesystem.Run("btrfs", ["subvolume", "list", fs!.MountPoint]).Trim());
        }
        finally
        {
            if (temp is not null) Directory.Delete(temp, recursive: true);
        }
    }

    private sealed record Entry(FileStat Stat, string? LinkTarget, string Xattrs);

    /// <summary>Every entry under <paramref name="root"/> (and root itself as "/") by its path relative to it.</summary>
    private static Dictionary<string, Entry> Describe(string root)
    {
        var entries = new Dictionary<string, Entry>();
        using var layer = new LayerFiles(root);
        void Add(string path)
        {
            var st = FileStat.Lstat(path);
            var xattrs = string.Join("; ", ExtendedAttributes.List(path).Order()
                .Select(n => $"{n}={Convert.ToHexString(ExtendedAttributes.Get(path, n)!)}"));
            var rel = path == root ? "/" : path[root.Length..];
            entries[rel] = new Entry(st, st.Type == UnixFileType.SymbolicLink ? new FileInfo(path).LinkTarget : null, xattrs);
            if (st.Type == UnixFileType.Directory)
                foreach (var name in layer.Names(path == root ? "" : path[(root.Length + 1)..])) Add(Path.Combine(path, name));
        }
        Add(root);
        return entries;
    }
}
