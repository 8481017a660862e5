namespace Forkbox.Linux.Cgroups;

/// <summary>
/// The devices a sandbox may open, whatever nodes it finds: the ones bound into its /dev (null,
/// zero, full, random, urandom, tty), its devpts instance (ptmx 5:2 and the ptys 136:*), and
/// the overlayfs whiteout (char 0:0, made, never opened, when a template file is deleted).
/// Everything else (kvm, tun, consoles, block devices, /dev/mem) is refused, as runc does. The
/// v1 devices controller and the v2 device program both enforce this one list.
/// </summary>
public static class DeviceAllowList
{
    /// <summary>One allowed device: 'c' or 'b', its numbers (-1 for any minor) and the access ("rw", or "m" for mknod).</summary>
    public readonly record struct Rule(char Type, int Major, int Minor, string Access)
    {
        /// <summary>As devices.allow takes it: "c 1:3 rw".</summary>
        public string V1Line => $"{Type} {Major}:{(Minor < 0 ? "*" : Minor.ToString(System.Globalization.CultureInfo.InvariantCulture))} {Access}";
    }

    public static readonly IReadOnlyList<Rule> Rules =
    [
        new('c', 1, 3, "rw"), // null
        new('c', 1, 5, "rw"), // zero
        new('c', 1, 7, "rw"), // full
        new('c', 1, 8, "rw"), // random
        new('c', 1, 9, "rw"), // urandom
        new('c', 5, 0, "rw"), // tty
        new('c', 5, 2, "rw"), // ptmx of the sandbox's devpts
        new('c', 136, -1, "rw"), // its ptys
        new('c', 0, 0, "m"), // overlayfs whiteouts
    ];
}
