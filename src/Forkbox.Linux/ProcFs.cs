using System.Globalization;
using System.Text;

namespace Forkbox.Linux;

/// <summary>
/// The parsers of /proc that hostd reads. Each takes the root or the file it reads (the real one by
/// default), so the unit tests feed it fixture files; a process that went away meanwhile is an
/// IOException or an empty answer, as each method says.
/// </summary>
public static class ProcFs
{
    public const string Root = "/proc";

    /// <summary>The process's pid in each PID namespace from the host's down (the NSpid line of its status); IOException when it is gone.</summary>
    public static int[] NsPids(int pid, string root = Root)
    {
        foreach (var line in File.ReadLines($"{root}/{pid}/status"))
            if (line.StartsWith("NSpid:", StringComparison.Ordinal))
                return line[6..].Split('\t', ' ', StringSplitOptions.RemoveEmptyEntries).Select(ParseInt).ToArray();
        return [];
    }

    /// <summary>
    /// The children of every thread of <paramref name="pid"/>: an orphan reparented to a PID 1 goes
    /// to any of its threads, not only to the main one. Empty when the process is gone.
    /// </summary>
    public static List<int> Children(int pid, string root = Root)
    {
        var all = new List<int>();
        try
        {
            foreach (var task in Directory.GetDirectories($"{root}/{pid}/task"))
            {
                try
                {
                    all.AddRange(File.ReadAllText(Path.Combine(task, "children")).Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(ParseInt));
                }
                catch (IOException)
                {
                    // a thread that ended meanwhile
                }
            }
        }
        catch (IOException)
        {
        }
        return all;
    }

    /// <summary>Whether the process is a zombie (state Z in its stat line); a process already gone counts as one.</summary>
    public static bool IsZombie(int pid, string root = Root)
    {
        try
        {
            // "PID (COMM) STATE …": COMM may hold spaces and parentheses, so the state follows the last ')'.
            var stat = File.ReadAllText($"{root}/{pid}/stat");
            var close = stat.LastIndexOf(')');
            return close < 0 || close + 2 >= stat.Length || stat[close + 2] == 'Z';
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>
    /// When the process started, in clock ticks after boot (field 22 of its stat line): with the
    /// pid, it names one process for the whole boot, however often pids are reused. Null when gone.
    /// </summary>
    public static long? StartTicks(int pid, string root = Root)
    {
        try
        {
            var stat = File.ReadAllText($"{root}/{pid}/stat");
            var close = stat.LastIndexOf(')');
            // After "PID (COMM) " come the fields from 3 (state) on: start time is the 20th of them.
            var fields = stat[(close + 2)..].Split(' ');
            return close > 0 && fields.Length > 19 && long.TryParse(fields[19], CultureInfo.InvariantCulture, out var ticks) ? ticks : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>This boot's random id: a record written in an earlier boot names no process of this one.</summary>
    public static string BootId(string path = Root + "/sys/kernel/random/boot_id") => File.ReadAllText(path).Trim();

    /// <summary>MemAvailable as a percentage of MemTotal; null when the file does not say both.</summary>
    public static double? MemoryAvailablePercent(string meminfo = Root + "/meminfo")
    {
        long total = 0, available = -1;
        foreach (var line in File.ReadLines(meminfo))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 2) continue;
            if (parts[0] == "MemTotal:") total = long.Parse(parts[1], CultureInfo.InvariantCulture);
            else if (parts[0] == "MemAvailable:") available = long.Parse(parts[1], CultureInfo.InvariantCulture);
        }
        return total > 0 && available >= 0 ? available * 100.0 / total : null;
    }

    /// <summary>One line of mountinfo: where, which filesystem, and from what.</summary>
    public sealed record Mount(string MountPoint, string FsType, string Source);

    /// <summary>The mounts of mountinfo in its order (the topmost mount on a point comes last); malformed lines are skipped.</summary>
    public static IEnumerable<Mount> Mounts(string mountinfo = Root + "/self/mountinfo")
    {
        foreach (var line in File.ReadLines(mountinfo))
        {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTIONS
            var fields = line.Split(' ');
            var dash = Array.IndexOf(fields, "-", Math.Min(6, fields.Length));
            if (dash < 0 || dash + 2 >= fields.Length) continue;
            yield return new Mount(Unescape(fields[4]), fields[dash + 1], Unescape(fields[dash + 2]));
        }
    }

    /// <summary>mountinfo writes space, tab, newline and backslash as \ooo.</summary>
    private static string Unescape(string field)
    {
        if (!field.Contains('\\')) return field;
        var sb = new StringBuilder(field.Length);
        for (var i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length)
            {
                sb.Append((char)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else sb.Append(field[i]);
        }
        return sb.ToString();
    }

    /// <summary>
    /// Switches IPv4 forwarding on if it is off (NAT needs it) and says whether it changed anything;
    /// it is left on.
    /// </summary>
    public static bool EnableIpv4Forwarding(string path = Root + "/sys/net/ipv4/ip_forward")
    {
        if (File.ReadAllText(path).Trim() == "1") return false;
        File.WriteAllText(path, "1");
        return true;
    }

    private static int ParseInt(string s) => int.Parse(s, CultureInfo.InvariantCulture);
}
