using Forkbox.Linux.Cgroups;
using Forkbox.Linux.Interop;
using Forkbox.Linux.Namespaces;
using Forkbox.Linux.Storage;

namespace Forkbox.Linux.Leftovers;

/// <summary>
/// The host-wide side of one server's life. A server that is killed (kill -9, a crash, the OOM
/// killer) leaves its sandboxes' processes running, their cgroups and its user-namespace mounts
/// behind, and a start on its own data directory cleans them; a start on another never would. So
/// each server records a <see cref="ServerMarker"/> in a host-wide runtime directory before it
/// makes any of them, and each start, under one host-wide lock, sweeps what the markers of dead
/// servers name: processes killed, cgroups removed, mounts detached. A marker whose server still
/// runs (same pid, same start time, same boot) is never touched, nor is anything without a marker.
/// </summary>
public sealed class LeftoverSweep
{
    /// <summary>Under /run: a tmpfs the boot empties, as it empties cgroups and mounts.</summary>
    public const string DefaultDir = "/run/forkbox/servers";

    private readonly string _file;
    private int _released;

    private LeftoverSweep(string file, IReadOnlyList<SweptServer> swept, IReadOnlyList<string> failures)
    {
        _file = file;
        Swept = swept;
        Failures = failures;
    }

    /// <summary>Dead servers whose leftovers this start removed.</summary>
    public IReadOnlyList<SweptServer> Swept { get; }

    /// <summary>Dead servers whose leftovers could not all be removed, and why (their markers stay: the next start tries again).</summary>
    public IReadOnlyList<string> Failures { get; }

    /// <summary>
    /// Records <paramref name="self"/> (replacing the marker of an earlier run on the same data
    /// directory, whose leftovers that directory's own start-up removes), then sweeps the
    /// leftovers of every other server that is gone. Call it holding the data directory's lock,
    /// before making any cgroup or mount.
    /// </summary>
    public static LeftoverSweep Claim(ServerMarker self, string dir = DefaultDir)
    {
        try
        {
            return ClaimLocked(self, dir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException(
                $"cannot record this server in {dir}, where servers find what a killed one left: {e.Message} (it must be a directory root can write)", e);
        }
    }

    private static LeftoverSweep ClaimLocked(ServerMarker self, string dir)
    {
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var fd = Libc.Openat(Libc.AT_FDCWD, Path.Combine(dir, ".lock"), Libc.O_RDWR | Libc.O_CREAT | Libc.O_CLOEXEC, 0b110_000_000);
        if (fd < 0) throw new IOException($"cannot open {Path.Combine(dir, ".lock")}: {Libc.LastError()}");
        try
        {
            // Held while this server records itself and sweeps: a server that starts meanwhile on a
            // dead server's data directory has not yet made anything there when its marker replaces the dead one.
            if (Libc.Flock(fd, Libc.LOCK_EX) != 0) throw new IOException($"cannot lock {Path.Combine(dir, ".lock")}: {Libc.LastError()}");
            var file = Path.Combine(dir, self.CgroupParent + ".json");
            self.WriteTo(file);
            var boot = ProcFs.BootId();
            var swept = new List<SweptServer>();
            var failures = new List<string>();
            foreach (var other in Directory.GetFiles(dir, "forkbox-*.json"))
            {
                if (other == file || ServerMarker.Read(other) is not { } marker || marker.IsAlive(boot)) continue;
                // A marker from an earlier boot names nothing that still exists; one whose data
                // directory a live server holds now (started on it under another spelling of the
                // path) names that server's resources.
                if (marker.BootId != boot || marker.DataDirInUse())
                {
                    File.Delete(other);
                    continue;
                }
                try
                {
                    swept.Add(Sweep(marker));
                    File.Delete(other);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
                {
                    failures.Add($"{marker}: {e.Message}");
                }
            }
            return new LeftoverSweep(file, swept, failures);
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    /// <summary>Kills what still runs in a dead server's sandbox cgroups, removes them, then its mounts.</summary>
    private static SweptServer Sweep(ServerMarker marker)
    {
        var cgroups = CgroupDriver.Detect(marker.CgroupParent);
        var pids = cgroups.Pids();
        var removed = cgroups.RemoveAll();
        var mounts = UserNamespaceSlots.RemoveLeftovers(marker.UserNamespaceDir);
        if (marker.StorageImage is { } image && marker.StorageMount is { } mountPoint && StorageImage.DetachLeftover(image, mountPoint)) mounts++;
        return new SweptServer(marker, pids, removed, mounts);
    }

    /// <summary>
    /// At the end of a stop. After a clean one the marker goes; after one that left something
    /// behind it stays, so that the next start on any data directory sweeps what is left.
    /// </summary>
    public void Release(bool clean)
    {
        if (Interlocked.Exchange(ref _released, 1) == 1 || !clean) return;
        try
        {
            File.Delete(_file);
        }
        catch (IOException)
        {
            // the next start finds this process gone and sweeps an empty record
        }
    }
}
