using Forkbox.Core;
using Forkbox.Linux.Cgroups;

namespace Forkbox.Testing;

/// <summary>A cgroup with no processes and no files behind it, for sandbox objects made without a kernel.</summary>
internal sealed class NoCgroup : ICgroup
{
    public IReadOnlyList<string> ProcsFiles => [];
    public void SetLimits(SandboxLimits limits, SandboxLimits? previous) { }
    public long MemoryBytes() => 0;
    public long OomKills() => 0;
    public IReadOnlyList<int> Pids() => [];
    public void KillAll(TimeSpan wait, int spare = 0) { }
    public void Freeze(bool frozen) { }
    public void Delete() { }
}
