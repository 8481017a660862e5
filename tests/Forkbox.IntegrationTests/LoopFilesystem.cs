using System.Diagnostics;

namespace Forkbox.IntegrationTests;

/// <summary>
/// A btrfs or xfs (reflink=1) filesystem in a sparse image, loop-mounted on a temporary directory
/// for one test; disposing it unmounts it and deletes the image.
/// </summary>
public sealed class LoopFilesystem : IDisposable
{
    private readonly string _dir;
    public string Image { get; }
    public string MountPoint { get; }

    private LoopFilesystem(string dir)
    {
        _dir = dir;
        Image = Path.Combine(dir, "fs.img");
        MountPoint = Path.Combine(dir, "mnt");
    }

    public static LoopFilesystem Create(string fs)
    {
        var mkfs = fs == "btrfs" ? "mkfs.btrfs" : "mkfs.xfs";
        if (!new[] { "/usr/sbin", "/sbin", "/usr/bin" }.Any(d => File.Exists(Path.Combine(d, mkfs))))
            throw new InvalidOperationException(
                $"{mkfs} is missing: install btrfs-progs and xfsprogs (scripts/setup.sh installs them) to test the {fs} storage");
        var lfs = new LoopFilesystem(Directory.CreateTempSubdirectory($"forkbox-{fs}-").FullName);
        try
        {
            Directory.CreateDirectory(lfs.MountPoint);
            using (var f = File.Create(lfs.Image)) f.SetLength(1L << 30);
            Run(mkfs, fs == "btrfs" ? ["-q", lfs.Image] : ["-q", "-m", "reflink=1", lfs.Image]);
            Run("mount", ["-o", "loop", lfs.Image, lfs.MountPoint]);
        }
        catch
        {
            lfs.Dispose();
            throw;
        }
        return lfs;
    }

    /// <summary>Bytes free on the filesystem after a sync (btrfs accounts space at commit).</summary>
    public long FreeBytes()
    {
        Run("sync", ["-f", MountPoint]);
        return new DriveInfo(MountPoint).AvailableFreeSpace;
    }

    public void Dispose()
    {
        // Lazy: the loop device is released once nothing uses the mount any more.
        using (var p = Process.Start("umount", ["-l", MountPoint])) p.WaitForExit();
        Directory.Delete(_dir, recursive: true);
    }

    public static string Run(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)}: exit {p.ExitCode}: {stderr}");
        return stdout.Result;
    }
}
