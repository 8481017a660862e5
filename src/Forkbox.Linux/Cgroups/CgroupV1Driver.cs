using System.Globalization;
using Forkbox.Core;

namespace Forkbox.Linux.Cgroups;

/// <summary>
/// cgroup v1: one directory per controller (memory, cpu, pids, freezer, devices) under
/// /sys/fs/cgroup/CONTROLLER/PARENT/NAME.
/// </summary>
public sealed class CgroupV1Driver(string root, string parent) : ICgroupDriver
{
    /// <summary>The v1 controllers every sandbox has a cgroup in; all must be mounted.</summary>
    public static readonly IReadOnlyList<string> Controllers = ["memory", "cpu", "pids", "freezer", "devices"];
    private readonly string _freezerPin = Path.Combine(root, "freezer", parent + "-pin");
    private readonly Lock _pinLock = new();
    private bool _pinned;

    public int Version => 1;

    public ICgroup Create(string name, SandboxLimits limits)
    {
        PinFreezer();
        var dirs = new Dictionary<string, string>();
        try
        {
            foreach (var c in Controllers)
            {
                var dir = Path.Combine(root, c, parent, name);
                Directory.CreateDirectory(dir);
                dirs[c] = dir;
            }
            CgroupFiles.Write(dirs["pids"], "pids.max", limits.Pids.ToString(CultureInfo.InvariantCulture));
            // Before any process joins: deny every device, then allow the list (one rule a write).
            CgroupFiles.Write(dirs["devices"], "devices.deny", "a");
            foreach (var rule in DeviceAllowList.Rules)
                CgroupFiles.Write(dirs["devices"], "devices.allow", rule.V1Line);
            var cgroup = new Cgroup(dirs);
            cgroup.SetLimits(limits, null);
            return cgroup;
        }
        catch
        {
            foreach (var dir in dirs.Values) CgroupFiles.RemoveDir(dir);
            throw;
        }
    }

    public int RemoveStale()
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var c in Controllers)
        {
            var parentDir = Path.Combine(root, c, parent);
            if (Directory.Exists(parentDir))
                foreach (var dir in Directory.GetDirectories(parentDir)) names.Add(Path.GetFileName(dir));
        }
        foreach (var name in names)
        {
            var dirs = Controllers.Select(c => Path.Combine(root, c, parent, name)).Where(Directory.Exists).ToList();
            // Thawed first: a task the v1 freezer holds (a paused sandbox's) dies of SIGKILL only once thawed.
            var freezer = Path.Combine(root, "freezer", parent, name);
            if (Directory.Exists(freezer)) CgroupFiles.TryWrite(freezer, "freezer.state", "THAWED");
            foreach (var dir in dirs) CgroupFiles.KillUntilEmpty(Path.Combine(dir, "cgroup.procs"), TimeSpan.FromSeconds(2));
            foreach (var dir in dirs) CgroupFiles.RemoveDir(dir);
        }
        return names.Count;
    }

    public int RemoveAll()
    {
        var n = RemoveStale();
        foreach (var c in Controllers)
            CgroupFiles.RemoveDir(Path.Combine(root, c, parent));
        CgroupFiles.RemoveDir(_freezerPin);
        return n;
    }

    public IReadOnlyList<int> Pids() => CgroupFiles.PidsUnder(Path.Combine(root, "pids", parent));

    /// <summary>
    /// Keeps one empty cgroup frozen for the server's life. The v1 freezer turns a kernel static
    /// key on when the first cgroup on the host freezes and off when the last thaws, and each turn
    /// rewrites kernel text on every CPU at once. Every close (freeze, kill, thaw), pause and fork
    /// paid two of them: 4% of a core and a stall of both CPUs each time under the mixed load of
    /// MixedLoadTests, far more in a VM. With the key held on, freezing a sandbox patches nothing.
    /// </summary>
    private void PinFreezer()
    {
        if (Volatile.Read(ref _pinned)) return;
        lock (_pinLock)
        {
            if (_pinned) return;
            Directory.CreateDirectory(_freezerPin);
            CgroupFiles.Write(_freezerPin, "freezer.state", "FROZEN");
            Volatile.Write(ref _pinned, true);
        }
    }

    private sealed class Cgroup(Dictionary<string, string> dirs) : ICgroup
    {
        public IReadOnlyList<string> ProcsFiles { get; } = dirs.Values.Select(d => Path.Combine(d, "cgroup.procs")).ToArray();

        public void SetLimits(SandboxLimits limits, SandboxLimits? previous)
        {
            var memory = ((long)limits.MemoryMb << 20).ToString(CultureInfo.InvariantCulture);
            // memsw (memory + swap) must stay >= the memory limit at every step, so its order
            // depends on the direction. Without swap accounting the file is absent.
            var memsw = File.Exists(Path.Combine(dirs["memory"], "memory.memsw.limit_in_bytes"));
            var growing = previous is not null && limits.MemoryMb > previous.MemoryMb; // a new cgroup starts unlimited
            if (memsw && growing) CgroupFiles.Write(dirs["memory"], "memory.memsw.limit_in_bytes", memory);
            CgroupFiles.Write(dirs["memory"], "memory.limit_in_bytes", memory);
            if (memsw && !growing) CgroupFiles.Write(dirs["memory"], "memory.memsw.limit_in_bytes", memory);
            // Quota -1 (none) first: the kernel refuses a period change that would leave the
            // quota over it, or under its 1 ms minimum, at any step.
            CgroupFiles.Write(dirs["cpu"], "cpu.cfs_quota_us", "-1");
            CgroupFiles.Write(dirs["cpu"], "cpu.cfs_period_us", CpuQuota.Format(CpuQuota.PeriodUs(limits.Cpus)));
            CgroupFiles.Write(dirs["cpu"], "cpu.cfs_quota_us", CpuQuota.Format(CpuQuota.QuotaUs(limits.Cpus)));
        }

        public long MemoryBytes() => CgroupFiles.ReadLong(Path.Combine(dirs["memory"], "memory.usage_in_bytes"));

        public long OomKills() => CgroupFiles.ReadKey(Path.Combine(dirs["memory"], "memory.oom_control"), "oom_kill");

        public IReadOnlyList<int> Pids() => CgroupFiles.ReadPids(Path.Combine(dirs["pids"], "cgroup.procs"));

        public void KillAll(TimeSpan wait, int spare = 0)
        {
            // Freeze first so nothing forks while we kill, then thaw so the kills are delivered.
            var freezer = dirs["freezer"];
            CgroupFiles.TryWrite(freezer, "freezer.state", "FROZEN");
            foreach (var pid in Pids())
                if (pid != spare)
                    Interop.Libc.Kill(pid, Interop.Libc.SIGKILL);
            CgroupFiles.TryWrite(freezer, "freezer.state", "THAWED");
            CgroupFiles.KillUntilEmpty(Path.Combine(dirs["pids"], "cgroup.procs"), wait, spare);
        }

        public void Freeze(bool frozen)
        {
            CgroupFiles.Write(dirs["freezer"], "freezer.state", frozen ? "FROZEN" : "THAWED");
            // Writing FROZEN returns at once; the state reads FREEZING until every task has stopped.
            if (frozen) CgroupFiles.WaitFor(() => File.ReadAllText(Path.Combine(dirs["freezer"], "freezer.state")).Trim() == "FROZEN", "freezing");
        }

        public void Delete()
        {
            foreach (var dir in dirs.Values) CgroupFiles.RemoveDir(dir);
        }
    }
}
