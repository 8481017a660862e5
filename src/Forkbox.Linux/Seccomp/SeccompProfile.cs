using Forkbox.Linux.Interop;

namespace Forkbox.Linux.Seccomp;

/// <summary>
/// The system-call filter every sandbox runs under, compiled with libseccomp once at start-up and
/// handed to the zygotes as a BPF program. It refuses (EPERM) what Docker's default profile refuses
/// to a container without CAP_SYS_ADMIN, plus the whole new mount API, joining namespaces, new
/// user and time namespaces, and io_uring. Everything else is allowed: the namespaces, cgroups and
/// the unprivileged uid do the rest.
///
/// One call Docker refuses is allowed, because fork needs it from inside the sandbox: unshare of
/// mount, net, ipc, uts, pid and cgroup namespaces (never a user namespace). They belong to the
/// sandbox's own user namespace, so root inside gets capabilities over them; with every mount
/// call refused, and CAP_NET_ADMIN and CAP_NET_RAW dropped before the agent starts (isolate.py),
/// what that opens is the network stack of an empty namespace, not its configuration; netfilter
/// (nf_tables) is refused here as well: no NETLINK_NETFILTER sockets.
///
/// AF_VSOCK sockets are refused unless the operator allows them: vsock has no namespaces, so a
/// port bound in one sandbox is taken in every other owner's, and on a VM host the hypervisor
/// (CID 2) listens one hop away.
/// </summary>
public static class SeccompProfile
{
    private const int EPERM = 1;
    private const int ENOSYS = 38;

    /// <summary>Calls refused outright, by name. Names unknown to this architecture are skipped.</summary>
    public static readonly IReadOnlyList<string> Blocked =
    [
        // filesystems and the root
        "mount", "umount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
        "fsmount", "fspick", "mount_setattr", "swapon", "swapoff", "quotactl", "quotactl_fd",
        "name_to_handle_at", "open_by_handle_at", "nfsservctl", "sysfs", "_sysctl", "ustat", "uselib",
        // namespaces (unshare is limited by its flags below)
        "setns",
        // kernel, modules, reboot, clock
        "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms",
        "kexec_load", "kexec_file_load", "reboot", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
        "stime", "acct", "syslog", "vhangup", "iopl", "ioperm", "vm86", "vm86old", "lookup_dcookie",
        // introspection of other processes and the kernel
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "perf_event_open", "bpf", "userfaultfd",
        "pidfd_getfd",
        // keys, NUMA, io_uring
        "keyctl", "add_key", "request_key", "set_mempolicy", "mbind", "move_pages", "get_mempolicy",
        "io_uring_setup", "io_uring_enter", "io_uring_register",
    ];

    private const ulong CloneNewUser = 0x10000000, CloneNewTime = 0x00000080;
    private const ulong AfNetlink = 16, NetlinkNetfilter = 12, AfVsock = 40;

    private const ulong NamespaceFlags =
        0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080;

    /// <summary>Writes the compiled BPF program to <paramref name="path"/> and returns its size in bytes.</summary>
    /// <param name="allowVsock">ServerOptions.Isolation.AllowVsock: whether sandboxes may make AF_VSOCK sockets.</param>
    public static long Compile(string path, bool allowVsock = false)
    {
        var ctx = LibSeccomp.Init(LibSeccomp.SCMP_ACT_ALLOW);
        if (ctx == 0) throw new InvalidOperationException("seccomp_init failed: is libseccomp2 installed?");
        try
        {
            // no_new_privs is set by the sandbox itself just before it installs the filter.
            LibSeccomp.AttrSet(ctx, LibSeccomp.SCMP_FLTATR_CTL_NNP, 0);
            foreach (var name in Blocked)
                Block(ctx, name, LibSeccomp.ActErrno(EPERM));
            // clone with any namespace flag: EPERM. clone3 passes flags in memory a filter cannot read,
            // so it answers ENOSYS and the C library falls back to clone.
            Block(ctx, "clone3", LibSeccomp.ActErrno(ENOSYS));
            var clone = LibSeccomp.ResolveName("clone");
            for (var bit = 1UL; bit != 0; bit <<= 1)
            {
                if ((NamespaceFlags & bit) == 0) continue;
                var cmp = new[] { new LibSeccomp.ArgCmp { Arg = 0, Op = LibSeccomp.SCMP_CMP_MASKED_EQ, DatumA = bit, DatumB = bit } };
                Check(LibSeccomp.RuleAddArray(ctx, LibSeccomp.ActErrno(EPERM), clone, 1, cmp), "clone");
            }
            // unshare: no new user or time namespace (those would give a full set of capabilities).
            var unshare = LibSeccomp.ResolveName("unshare");
            foreach (var bit in new ulong[] { CloneNewUser, CloneNewTime })
            {
                var cmp = new[] { new LibSeccomp.ArgCmp { Arg = 0, Op = LibSeccomp.SCMP_CMP_MASKED_EQ, DatumA = bit, DatumB = bit } };
                Check(LibSeccomp.RuleAddArray(ctx, LibSeccomp.ActErrno(EPERM), unshare, 1, cmp), "unshare");
            }
            // socket(AF_NETLINK, *, NETLINK_NETFILTER): nf_tables, in namespaces the sandbox owns.
            var socket = LibSeccomp.ResolveName("socket");
            var netfilter = new[] { IntArg(0, AfNetlink), IntArg(2, NetlinkNetfilter) };
            Check(LibSeccomp.RuleAddArray(ctx, LibSeccomp.ActErrno(EPERM), socket, 2, netfilter), "socket");
            // socket and socketpair of AF_VSOCK, whatever the type and protocol.
            if (!allowVsock)
                foreach (var call in new[] { "socket", "socketpair" })
                    Check(LibSeccomp.RuleAddArray(ctx, LibSeccomp.ActErrno(EPERM), LibSeccomp.ResolveName(call), 1, [IntArg(0, AfVsock)]), call);
            // TIOCSTI (push input into another terminal) and TIOCLINUX, as Docker does.
            var ioctl = LibSeccomp.ResolveName("ioctl");
            foreach (var request in new ulong[] { 0x5412, 0x541C })
            {
                var cmp = new[] { new LibSeccomp.ArgCmp { Arg = 1, Op = LibSeccomp.SCMP_CMP_MASKED_EQ, DatumA = 0xffffffff, DatumB = request } };
                Check(LibSeccomp.RuleAddArray(ctx, LibSeccomp.ActErrno(EPERM), ioctl, 1, cmp), "ioctl");
            }
            using var file = File.Open(path, FileMode.Create, FileAccess.Write);
            Check(LibSeccomp.ExportBpf(ctx, (int)file.SafeFileHandle.DangerousGetHandle()), "export");
            file.Flush();
            return file.Length;
        }
        finally
        {
            LibSeccomp.Release(ctx);
        }
    }

    /// <summary>
    /// An int argument equal to <paramref name="value"/>, compared on its low 32 bits: the kernel
    /// drops the upper half of an int, so a plain 64-bit comparison let socket((1 &lt;&lt; 32) | AF_VSOCK, …)
    /// through the filter and make a vsock socket.
    /// </summary>
    private static LibSeccomp.ArgCmp IntArg(uint arg, ulong value) =>
        new() { Arg = arg, Op = LibSeccomp.SCMP_CMP_MASKED_EQ, DatumA = 0xffffffff, DatumB = value };

    private static void Block(nint ctx, string name, uint action)
    {
        var nr = LibSeccomp.ResolveName(name);
        if (nr < 0) return; // not a call on this architecture (e.g. vm86 on x86_64 is negative/pseudo)
        Check(LibSeccomp.RuleAddArray(ctx, action, nr, 0, null), name);
    }

    private static void Check(int rc, string what)
    {
        if (rc < 0) throw new InvalidOperationException($"libseccomp rule for {what} failed: {-rc}");
    }
}
