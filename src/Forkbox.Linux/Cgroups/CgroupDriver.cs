namespace Forkbox.Linux.Cgroups;

/// <summary>Picks the cgroup driver the host supports.</summary>
public static class CgroupDriver
{
    /// <summary>
    /// v2 when /sys/fs/cgroup is a unified hierarchy (it has cgroup.controllers); v1 when the
    /// memory, cpu and pids controllers are mounted separately, as on this project's build machines.
    /// </summary>
    public static ICgroupDriver Detect(string root = "/sys/fs/cgroup")
    {
        if (File.Exists(Path.Combine(root, "cgroup.controllers")))
            return new CgroupV2Driver(root);
        foreach (var c in new[] { "memory", "cpu", "pids", "freezer" })
            if (!Directory.Exists(Path.Combine(root, c)))
                throw new InvalidOperationException(
                    $"no usable cgroups: {root} is not cgroup v2 and has no v1 '{c}' controller mounted");
        return new CgroupV1Driver(root);
    }
}
