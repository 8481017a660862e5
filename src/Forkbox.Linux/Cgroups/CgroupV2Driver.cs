using System.Globalization;
using Forkbox.Core;

namespace Forkbox.Linux.Cgroups;

/// <summary>
/// cgroup v2: one directory per sandbox under /sys/fs/cgroup/PARENT, controllers enabled on the
/// parent, and a device program (<see cref="CgroupDeviceProgram"/>) attached to each.
/// </summary>
public sealed class CgroupV2Driver : ICgroupDriver
{
    private readonly string _parent;

    public CgroupV2Driver(string root, string parent)
    {
        _parent = Path.Combine(root, parent);
        Directory.CreateDirectory(_parent);
        // A controller can be enabled for children only if the parent's parent delegates it too.
        CgroupFiles.Write(root, "cgroup.subtree_control", "+memory +cpu +pids");
        CgroupFiles.Write(_parent, "cgroup.subtree_control", "+memory +cpu +pids");
    }

    public int Version => 2;

    public ICgroup Create(string name, SandboxLimits limits)
    {
        var dir = Path.Combine(_parent, name);
        Directory.CreateDirectory(dir);
        try
        {
            CgroupFiles.Write(dir, "memory.swap.max", "0");
            CgroupFiles.Write(dir, "pids.max", limits.Pids.ToString(CultureInfo.InvariantCulture));
            // Before any process joins: the device allow-list (v2 has no devices controller).
            CgroupDeviceProgram.Attach(dir);
            var cgroup = new Cgroup(dir);
            cgroup.SetLimits(limits, null);
            return cgroup;
        }
        catch
        {
            CgroupFiles.RemoveDir(dir);
            throw;
        }
    }

    /// <summary>cpu.max is "QUOTA PERIOD" in microseconds.</summary>
    public static string FormatCpuMax(double cpus) =>
        CpuQuota.Format(CpuQuota.QuotaUs(cpus)) + " " + CpuQuota.Format(CpuQuota.PeriodUs(cpus));

    public int RemoveStale()
    {
        var n = 0;
        foreach (var dir in Directory.GetDirectories(_parent))
        {
            new Cgroup(dir).KillAll(TimeSpan.FromSeconds(2));
            CgroupFiles.RemoveDir(dir);
            n++;
        }
        return n;
    }

    public int RemoveAll()
    {
        var n = RemoveStale();
        CgroupFiles.RemoveDir(_parent);
        return n;
    }

    public IReadOnlyList<int> Pids() => CgroupFiles.PidsUnder(_parent);

    private sealed class Cgroup(string dir) : ICgroup
    {
        public IReadOnlyList<string> ProcsFiles { get; } = [Path.Combine(dir, "cgroup.procs")];

        public void SetLimits(SandboxLimits limits, SandboxLimits? previous)
        {
            CgroupFiles.Write(dir, "memory.max", ((long)limits.MemoryMb << 20).ToString(CultureInfo.InvariantCulture));
            CgroupFiles.Write(dir, "cpu.max", FormatCpuMax(limits.Cpus));
        }

        public long MemoryBytes() => CgroupFiles.ReadLong(Path.Combine(dir, "memory.current"));

        public long OomKills() => CgroupFiles.ReadKey(Path.Combine(dir, "memory.events"), "oom_kill");

        public IReadOnlyList<int> Pids() => CgroupFiles.ReadPids(ProcsFiles[0]);

        public void KillAll(TimeSpan wait, int spare = 0)
        {
            if (spare == 0 && File.Exists(Path.Combine(dir, "cgroup.kill")))
            {
                CgroupFiles.Write(dir, "cgroup.kill", "1");
            }
            else
            {
                // cgroup.kill cannot spare one process: freeze, kill the others one by one, thaw.
                CgroupFiles.TryWrite(dir, "cgroup.freeze", "1");
                foreach (var pid in Pids())
                    if (pid != spare)
                        Interop.Libc.Kill(pid, Interop.Libc.SIGKILL);
                CgroupFiles.TryWrite(dir, "cgroup.freeze", "0");
            }
            CgroupFiles.KillUntilEmpty(ProcsFiles[0], wait, spare);
        }

        public void Freeze(bool frozen)
        {
            CgroupFiles.Write(dir, "cgroup.freeze", frozen ? "1" : "0");
            var want = frozen ? 1 : 0;
            CgroupFiles.WaitFor(() => CgroupFiles.ReadKey(Path.Combine(dir, "cgroup.events"), "frozen") == want, frozen ? "freezing" : "thawing");
        }

        public void Delete() => CgroupFiles.RemoveDir(dir);
    }
}
