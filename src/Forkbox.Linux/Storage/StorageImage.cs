using System.Diagnostics;
using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Storage;

/// <summary>
/// A sparse image file formatted btrfs or xfs (reflink=1) and loop-mounted on the sandboxes
/// directory, for hosts whose data directory sits on a filesystem that can neither snapshot nor
/// clone (ext4): forks then cost a snapshot or a clone per file instead of a copy of every byte.
/// The image only ever holds sandbox layers, which start-up deletes anyway, so an image of the
/// wrong size or filesystem is simply made again. Disposing it unmounts it (lazily: layers still
/// being deleted in the background keep it alive until they are done).
/// </summary>
public sealed class StorageImage : IDisposable
{
    private int _disposed;

    private StorageImage(string imagePath, string mountPoint, string filesystem, bool reused, bool formatted)
    {
        ImagePath = imagePath;
        MountPoint = mountPoint;
        Filesystem = filesystem;
        Reused = reused;
        Formatted = formatted;
    }

    public string ImagePath { get; }
    public string MountPoint { get; }
    public string Filesystem { get; }

    /// <summary>The image was already mounted there (a run that crashed left it): nothing was done.</summary>
    public bool Reused { get; }

    /// <summary>The image was made (or made again) and formatted by this call.</summary>
    public bool Formatted { get; }

    /// <summary>
    /// Makes sure <paramref name="imagePath"/> is a <paramref name="sizeBytes"/> image formatted
    /// <paramref name="filesystem"/> ("btrfs" or "xfs") and mounted on <paramref name="mountPoint"/>.
    /// Throws <see cref="InvalidOperationException"/> with a message saying what to do when it cannot.
    /// </summary>
    public static StorageImage Attach(string imagePath, string mountPoint, long sizeBytes, string filesystem)
    {
        filesystem = filesystem.ToLowerInvariant();
        if (filesystem is not ("btrfs" or "xfs"))
            throw new InvalidOperationException($"storage image filesystem '{filesystem}' must be btrfs or xfs");
        imagePath = Path.GetFullPath(imagePath);
        mountPoint = Path.TrimEndingDirectorySeparator(Path.GetFullPath(mountPoint));
        Directory.CreateDirectory(mountPoint);

        if (FindMount(mountPoint) is { } mounted)
        {
            var ours = mounted.Source.StartsWith("/dev/loop", StringComparison.Ordinal) && BackingFile(mounted.Source) == imagePath;
            if (!ours)
                throw new InvalidOperationException(
                    $"{mountPoint} already has {mounted.FsType} from {mounted.Source} mounted on it: unmount it, or drop --storage-image to use that filesystem as it is");
            if (mounted.FsType == filesystem && new FileInfo(imagePath).Length == sizeBytes)
                return new StorageImage(imagePath, mountPoint, filesystem, reused: true, formatted: false);
            Libc.Umount2(mountPoint, Libc.MNT_DETACH); // ours, but another size or filesystem: made again below
        }

        var formatted = false;
        if (!File.Exists(imagePath) || new FileInfo(imagePath).Length != sizeBytes || FormatOf(imagePath) != filesystem)
        {
            File.Delete(imagePath);
            using (var f = new FileStream(imagePath, FileMode.CreateNew, FileAccess.Write))
                f.SetLength(sizeBytes); // sparse: blocks are allocated as sandboxes write
            File.SetUnixFileMode(imagePath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            try
            {
                if (filesystem == "btrfs") Run(Tool("mkfs.btrfs", "btrfs-progs"), ["-q", imagePath]);
                else Run(Tool("mkfs.xfs", "xfsprogs"), ["-q", "-m", "reflink=1", imagePath]);
            }
            catch
            {
                File.Delete(imagePath);
                throw;
            }
            formatted = true;
        }
        Run(Tool("mount", "util-linux"), ["-t", filesystem, "-o", "loop", imagePath, mountPoint]);
        if (FindMount(mountPoint)?.FsType != filesystem)
            throw new InvalidOperationException($"mounting {imagePath} on {mountPoint} reported success but {mountPoint} is not {filesystem}");
        return new StorageImage(imagePath, mountPoint, filesystem, reused: false, formatted);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        // mount -o loop sets autoclear: the loop device goes when the filesystem is finally unmounted.
        if (Libc.Umount2(MountPoint, Libc.MNT_DETACH) != 0)
            throw new IOException($"cannot unmount the storage image from {MountPoint}: {Libc.LastError()}");
    }

    /// <summary>
    /// Unmounts the image a server that is gone left mounted on <paramref name="mountPoint"/>, if it
    /// is <paramref name="imagePath"/> on a loop device (nothing else mounted there is touched); the
    /// image file and what it holds stay, for the next start on that data directory. Returns whether it did.
    /// </summary>
    public static bool DetachLeftover(string imagePath, string mountPoint)
    {
        mountPoint = Path.TrimEndingDirectorySeparator(Path.GetFullPath(mountPoint));
        if (FindMount(mountPoint) is not { } mounted || !mounted.Source.StartsWith("/dev/loop", StringComparison.Ordinal)
            || BackingFile(mounted.Source) != Path.GetFullPath(imagePath))
            return false;
        return Libc.Umount2(mountPoint, Libc.MNT_DETACH) == 0;
    }

    /// <summary>The topmost mount on <paramref name="mountPoint"/>.</summary>
    private static ProcFs.Mount? FindMount(string mountPoint) => ProcFs.Mounts().LastOrDefault(m => m.MountPoint == mountPoint);

    private static string? BackingFile(string loopDevice)
    {
        var file = $"/sys/block/{Path.GetFileName(loopDevice)}/loop/backing_file";
        return File.Exists(file) ? File.ReadAllText(file).TrimEnd('\n') : null;
    }

    /// <summary>"btrfs" or "xfs" from the superblock magic, else null (never formatted, or cut short).</summary>
    private static string? FormatOf(string imagePath)
    {
        using var f = File.OpenRead(imagePath);
        Span<byte> magic = stackalloc byte[8];
        if (f.Length >= 4 && f.Read(magic[..4]) == 4 && magic[..4].SequenceEqual("XFSB"u8)) return "xfs";
        f.Position = 0x10040; // btrfs's primary superblock is at 64 KiB, its magic 0x40 into it
        if (f.Length >= 0x10048 && f.Read(magic) == 8 && magic.SequenceEqual("_BHRfS_M"u8)) return "btrfs";
        return null;
    }

    private static string Tool(string name, string package)
    {
        foreach (var dir in new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" })
            if (File.Exists(Path.Combine(dir, name))) return Path.Combine(dir, name);
        throw new InvalidOperationException($"{name} is not installed: install {package} (scripts/setup.sh does) to use --storage-image");
    }

    private static void Run(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        stdout.Wait();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', args)} failed (exit {p.ExitCode}): {stderr.Trim()}");
    }
}
