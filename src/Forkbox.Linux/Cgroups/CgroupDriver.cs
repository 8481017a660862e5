namespace Forkbox.Linux.Cgroups;

/// <summary>Picks the cgroup driver the host supports.</summary>
public static class CgroupDriver
{
    /// <summary>
    /// The parent cgroup of one server's sandboxes: one per data directory, so that servers on
    /// one host (tests, several instances) never clean up each other's sandboxes.
    /// </summary>
    public static string ParentName(string dataDir) =>
        "forkbox-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(dataDir))))[..8];

    /// <summary>
    /// v2 when /sys/fs/cgroup is a unified hierarchy (it has cgroup.controllers); v1 when the
    /// memory, cpu, pids, freezer and devices controllers are mounted separately, as on this
    /// project's build machines. Without the devices controller a v1 host does not start: it is
    /// what keeps a device node that reaches a sandbox unopenable.
    /// </summary>
    public static ICgroupDriver Detect(string parent, string root = "/sys/fs/cgroup")
    {
        if (File.Exists(Path.Combine(root, "cgroup.controllers")))
            return new CgroupV2Driver(root, parent);
        foreach (var c in CgroupV1Driver.Controllers)
            if (!Directory.Exists(Path.Combine(root, c)))
                throw new InvalidOperationException(
                    $"no usable cgroups: {root} is not cgroup v2 and has no v1 '{c}' controller mounted");
        return new CgroupV1Driver(root, parent);
    }
}
