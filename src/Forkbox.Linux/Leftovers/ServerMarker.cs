using System.Globalization;
using System.Text.Json;

using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Leftovers;

/// <summary>
/// A running server's claim on what it makes outside its data directory's files: which process it
/// is (pid and start time, within this boot) and where its sandboxes' cgroups and mounts are. One
/// file per data directory in a host-wide runtime directory (<see cref="LeftoverSweep"/>), written
/// before the server makes any of them and removed after a clean stop: a marker whose process is
/// gone is the record of a server that was killed, and of what it left.
/// </summary>
public sealed record ServerMarker
{
    public required int Pid { get; init; }
    /// <summary>The process's start time in clock ticks after boot (/proc/PID/stat), which tells it from a later one with its pid.</summary>
    public required long StartTicks { get; init; }
    public required string BootId { get; init; }
    public required string DataDir { get; init; }
    /// <summary>The parent cgroup of its sandboxes (one name under each v1 controller, or one v2 directory).</summary>
    public required string CgroupParent { get; init; }
    /// <summary>The directory its user-namespace slots are pinned in (bind mounts).</summary>
    public required string UserNamespaceDir { get; init; }
    /// <summary>The storage image file and where it is loop-mounted, when the server uses one.</summary>
    public string? StorageImage { get; init; }
    public string? StorageMount { get; init; }

    /// <summary>This process, about to serve <paramref name="dataDir"/>.</summary>
    public static ServerMarker ForThisProcess(string dataDir, string cgroupParent, string userNamespaceDir, string? storageImage, string? storageMount)
    {
        var pid = Environment.ProcessId;
        return new ServerMarker
        {
            Pid = pid,
            StartTicks = ProcFs.StartTicks(pid) ?? throw new IOException("cannot read this process's start time from /proc/self/stat"),
            BootId = ProcFs.BootId(),
            DataDir = Path.GetFullPath(dataDir),
            CgroupParent = cgroupParent,
            UserNamespaceDir = Path.GetFullPath(userNamespaceDir),
            StorageImage = storageImage,
            StorageMount = storageMount,
        };
    }

    /// <summary>
    /// Whether the server it names still runs: same boot, and its pid is a process that started
    /// at the recorded tick. A pid reused by another process since does not count.
    /// </summary>
    public bool IsAlive(string bootId) => bootId == BootId && ProcFs.StartTicks(Pid) == StartTicks;

    /// <summary>
    /// Whether a server runs on its data directory now (it holds DATA/hostd.lock, which .NET's
    /// FileShare.None takes with flock). That server's own start has removed what this one left,
    /// and what the marker names (the cgroup parent, the pins, the image's mount) may be its now.
    /// </summary>
    public bool DataDirInUse()
    {
        var fd = Libc.Openat(Libc.AT_FDCWD, Path.Combine(DataDir, "hostd.lock"), Libc.O_RDONLY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (fd < 0) return false;
        try
        {
            return Libc.Flock(fd, Libc.LOCK_SH | Libc.LOCK_NB) != 0;
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    public void WriteTo(string file)
    {
        var tmp = file + ".tmp";
        using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteNumber("pid", Pid);
            json.WriteNumber("start_ticks", StartTicks);
            json.WriteString("boot_id", BootId);
            json.WriteString("data_dir", DataDir);
            json.WriteString("cgroup_parent", CgroupParent);
            json.WriteString("userns_dir", UserNamespaceDir);
            if (StorageImage is not null) json.WriteString("storage_image", StorageImage);
            if (StorageMount is not null) json.WriteString("storage_mount", StorageMount);
            json.WriteEndObject();
        }
        File.Move(tmp, file, overwrite: true);
    }

    /// <summary>The marker in <paramref name="file"/>; null when it is not one (cut short, or not ours), which the sweep leaves alone.</summary>
    public static ServerMarker? Read(string file)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            var root = doc.RootElement;
            string? Text(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            var marker = new ServerMarker
            {
                Pid = root.GetProperty("pid").GetInt32(),
                StartTicks = root.GetProperty("start_ticks").GetInt64(),
                BootId = Text("boot_id") ?? "",
                DataDir = Text("data_dir") ?? "",
                CgroupParent = Text("cgroup_parent") ?? "",
                UserNamespaceDir = Text("userns_dir") ?? "",
                StorageImage = Text("storage_image"),
                StorageMount = Text("storage_mount"),
            };
            // Only names of the form hostd makes, and absolute paths: nothing else is removed on a marker's word.
            var validParent = marker.CgroupParent.StartsWith("forkbox-", StringComparison.Ordinal)
                              && marker.CgroupParent.Length > 8 && !marker.CgroupParent.Contains('/') && !marker.CgroupParent.Contains("..");
            return validParent && marker.Pid > 0 && Path.IsPathRooted(marker.DataDir) && Path.GetFullPath(marker.DataDir) != "/"
                   && IsUnder(marker.UserNamespaceDir, marker.DataDir) && (marker.StorageMount is null || IsUnder(marker.StorageMount, marker.DataDir))
                ? marker
                : null;
        }
        catch (Exception e) when (e is IOException or JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    /// <summary>Strictly under <paramref name="dir"/> once both are normalized ("/d/.." is not under "/d").</summary>
    private static bool IsUnder(string path, string dir) =>
        Path.IsPathRooted(path)
        && Path.GetFullPath(path).StartsWith(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)) + "/", StringComparison.Ordinal);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"pid {Pid}, data dir {DataDir}");
}
