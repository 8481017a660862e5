using System.Globalization;

namespace Forkbox.Linux.Cgroups;

/// <summary>
/// A CPU limit as a CFS bandwidth quota per period, the same on cgroup v1 and v2. The period is
/// 10 ms rather than the kernel's default 100 ms: a sandbox spinning at its limit then runs and is
/// throttled in 10 ms slices, so a neighbour that wakes waits at most one short slice behind it.
/// With the default, a one-CPU spinner ran on both cores for 50 ms at a time, and fifty agents'
/// hot run_code p95 beside it went over 5x its unloaded value (MixedLoadTests). The kernel's
/// smallest quota is 1 ms, so limits under 0.1 CPU keep the 100 ms period.
/// </summary>
public static class CpuQuota
{
    public static long PeriodUs(double cpus) => cpus >= 0.1 ? 10_000 : 100_000;

    public static long QuotaUs(double cpus) => (long)(cpus * PeriodUs(cpus));

    public static string Format(long us) => us.ToString(CultureInfo.InvariantCulture);
}
