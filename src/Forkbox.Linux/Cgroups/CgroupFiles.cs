using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Cgroups;

/// <summary>Reading and writing cgroup control files, shared by the v1 and v2 drivers.</summary>
internal static class CgroupFiles
{
    public static void Write(string dir, string file, string value)
    {
        try
        {
            File.WriteAllText(Path.Combine(dir, file), value);
        }
        catch (IOException e)
        {
            throw new IOException($"cannot write '{value}' to {Path.Combine(dir, file)}: {e.Message}", e);
        }
    }

    /// <summary>Polls a condition for up to 5 s (freezing a cgroup is asynchronous); throws naming what did not finish.</summary>
    public static void WaitFor(Func<bool> done, string what)
    {
        var deadline = Environment.TickCount64 + 5000;
        for (var spin = 0; !done(); spin++)
        {
            if (Environment.TickCount64 > deadline)
                throw new IOException($"the cgroup did not finish {what} within 5 s");
            if (spin < 50) Thread.Yield();
            else Thread.Sleep(1);
        }
    }

    public static long ReadLong(string path)
    {
        try
        {
            return long.TryParse(File.ReadAllText(path).AsSpan().Trim(), out var v) ? v : 0;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>The value after "key " in a flat keyed file such as memory.events or memory.oom_control.</summary>
    public static long ReadKey(string path, string key)
    {
        try
        {
            foreach (var line in File.ReadLines(path))
                if (line.StartsWith(key + " ", StringComparison.Ordinal) && long.TryParse(line.AsSpan(key.Length + 1), out var v))
                    return v;
        }
        catch (IOException)
        {
        }
        return 0;
    }

    /// <summary><see cref="Write"/>, where a file that refuses the value is no error (a best effort, as before a kill).</summary>
    public static void TryWrite(string dir, string file, string value)
    {
        try { Write(dir, file, value); } catch (IOException) { }
    }

    /// <summary>Every process in the cgroups directly under <paramref name="parentDir"/>; none when it does not exist.</summary>
    public static IReadOnlyList<int> PidsUnder(string parentDir) =>
        Directory.Exists(parentDir)
            ? Directory.GetDirectories(parentDir).SelectMany(d => ReadPids(Path.Combine(d, "cgroup.procs"))).ToArray()
            : [];

    public static List<int> ReadPids(string procsFile)
    {
        var pids = new List<int>();
        try
        {
            foreach (var line in File.ReadLines(procsFile))
                if (int.TryParse(line, out var pid))
                    pids.Add(pid);
        }
        catch (IOException)
        {
        }
        return pids;
    }

    /// <summary>SIGKILL the pids listed in procsFile but spare (none when 0) until no other is left or the wait is over.</summary>
    public static void KillUntilEmpty(string procsFile, TimeSpan wait, int spare = 0)
    {
        var deadline = Environment.TickCount64 + (long)wait.TotalMilliseconds;
        while (true)
        {
            var pids = ReadPids(procsFile);
            if (pids.All(p => p == spare)) return;
            foreach (var pid in pids)
                if (pid != spare)
                    Libc.Kill(pid, Libc.SIGKILL);
            if (Environment.TickCount64 > deadline) return;
            Thread.Sleep(2);
        }
    }

    /// <summary>rmdir, retried briefly: the kernel may still be tearing the last process down.</summary>
    public static void RemoveDir(string dir)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                if (Directory.Exists(dir)) Directory.Delete(dir);
                return;
            }
            catch (IOException) when (attempt < 50)
            {
                Thread.Sleep(2);
            }
        }
    }
}
