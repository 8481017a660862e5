namespace Forkbox.IntegrationTests.Security;

/// <summary>
/// What the kernel accounts to a sandbox's cgroup, read from the host through its agent's pid, so
/// that a test measures the limit itself and not what the sandbox says about it.
/// </summary>
public static class SandboxCgroup
{
    /// <summary>The directory holding a server's sandbox cgroups: under the pids controller on v1, in the unified tree on v2.</summary>
    public static string PidsParentDir(string parent) =>
        File.Exists("/sys/fs/cgroup/cgroup.controllers") ? $"/sys/fs/cgroup/{parent}" : $"/sys/fs/cgroup/pids/{parent}";

    /// <summary>The cpu controller's cpu.stat of the sandbox (nr_throttled on v1 and v2; usage_usec on v2).</summary>
    public static Dictionary<string, long> CpuStat(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/cgroup"))
        {
            var parts = line.Split(':', 3);
            var dir = parts[0] == "0" && parts[1] == "" && File.Exists("/sys/fs/cgroup/cgroup.controllers")
                ? $"/sys/fs/cgroup{parts[2]}"
                : parts[1].Split(',').Contains("cpu") ? $"/sys/fs/cgroup/{parts[1]}{parts[2]}" : null;
            if (dir is null) continue;
            return File.ReadLines(Path.Combine(dir, "cpu.stat"))
                .Select(l => l.Split(' '))
                .ToDictionary(f => f[0], f => long.Parse(f[1]));
        }
        throw new InvalidOperationException($"no cpu controller found for pid {pid}");
    }

    /// <summary>
    /// The cgroup that decides which devices the process may open: its v1 devices cgroup, or on
    /// v2 its unified cgroup (where a device program is attached).
    /// </summary>
    public static string DevicesDir(int pid)
    {
        var v2 = File.Exists("/sys/fs/cgroup/cgroup.controllers");
        foreach (var line in File.ReadLines($"/proc/{pid}/cgroup"))
        {
            var parts = line.Split(':', 3);
            if (v2 && parts[0] == "0" && parts[1] == "") return $"/sys/fs/cgroup{parts[2]}";
            if (!v2 && parts[1].Split(',').Contains("devices")) return $"/sys/fs/cgroup/{parts[1]}{parts[2]}";
        }
        throw new InvalidOperationException($"no devices cgroup found for pid {pid}");
    }

    /// <summary>Samples a value every 10 ms until disposed; Max is the highest seen.</summary>
    public sealed class PeakSampler : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;
        public long Max { get; private set; }

        public PeakSampler(Func<long> read)
        {
            _loop = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    try
                    {
                        Max = Math.Max(Max, read());
                    }
                    catch (IOException)
                    {
                    }
                    await Task.Delay(10);
                }
            });
        }

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            await _loop;
        }
    }
}
