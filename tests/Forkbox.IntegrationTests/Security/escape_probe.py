"""Escape attempts, run inside a sandbox by EscapeTests (in the agent's own REPL, so with
whatever the agent holds: its descriptors, its namespaces, its credentials).

Each case is a function returning (held, detail): held is True when the attempt failed as it
must. `probe(case, args)` runs one; args carries host facts the test knows (host paths that must
stay out of reach, ports listening on the host). x86_64 system call numbers: the test skips with
a reason on other architectures.
"""

import ctypes
import errno
import json
import os
import platform
import socket
import stat
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

NR = {
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "ptrace": 101,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
    "kexec_file_load": 320, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "keyctl": 250, "add_key": 248, "request_key": 249, "io_uring_setup": 425, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsmount": 432, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "process_vm_readv": 310, "kcmp": 312, "clone": 56, "unshare": 272,
    "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "sethostname": 170,
    "setdomainname": 171, "setns": 308, "swapon": 167, "reboot": 169, "acct": 163,
    "syslog": 103, "iopl": 172, "pidfd_open": 434, "pidfd_getfd": 438,
}
EPERM = errno.EPERM


def _sys(name, *args):
    """The raw system call: (return value, errno)."""
    ctypes.set_errno(0)
    rc = _libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return rc, ctypes.get_errno()


def _refused(name, *args, allowed=(EPERM,)):
    rc, err = _sys(name, *args)
    if rc >= 0:
        if name in ("userfaultfd", "bpf", "perf_event_open", "io_uring_setup", "open_tree", "fsopen",
                    "pidfd_open"):
            os.close(rc)
        return False, f"{name} succeeded ({rc})"
    return err in allowed, f"{name}: {errno.errorcode.get(err, err)}"


def _in_child(fn):
    """Runs fn in a forked child whose stdout is a pipe; returns what it wrote."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 1)
            fn()
        finally:
            os._exit(3)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return out


def _all(results):
    held = all(h for h, _ in results)
    return held, "; ".join(d for _, d in results)


def _host_paths(args):
    return [p for p in args.get("host_paths", []) if p and p != "/"]


def _reach(path):
    """Whether a path exists from inside (lstat, so a dangling link is not 'reached')."""
    try:
        os.stat(path)
        return True
    except OSError:
        return False


# ---- host paths ---------------------------------------------------------------------------------

def dotdot_host_paths(args):
    seen = [p for hp in _host_paths(args) for p in ("/../../../.." + hp, "/root/../../../.." + hp,
                                                      "../../../../../../.." + hp) if _reach(p)]
    return not seen, f"reached {seen}" if seen else f"{len(_host_paths(args))} host paths out of reach via .."


def symlink_host_paths(args):
    seen = []
    for i, hp in enumerate(_host_paths(args)):
        for j, target in enumerate(("/../../.." + hp, "../../../../../../.." + hp, hp)):
            link = f"/root/link-{i}-{j}"
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(target, link)
            if _reach(link):
                seen.append(target)
    root = os.readlink("/proc/self/root")
    return not seen and root == "/", f"reached {seen}, /proc/self/root -> {root}"


def proc_root_host_paths(args):
    seen = []
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids + ["self", "thread-self"]:
        for via in ("root", "cwd"):
            for hp in _host_paths(args):
                if _reach(f"/proc/{pid}/{via}{hp}") or _reach(f"/proc/{pid}/{via}/../../..{hp}"):
                    seen.append(f"/proc/{pid}/{via}{hp}")
    return not seen, f"reached {seen}" if seen else f"{len(pids)} processes' root and cwd lead nowhere outside"


def mountinfo_handles(args):
    """The 'shocker' escape: a file handle (from name_to_handle_at, or guessed with the mount ids
    mountinfo shows) opened with open_by_handle_at resolves outside any chroot."""
    results = []
    handle = ctypes.create_string_buffer(8 + 128)
    struct.pack_into("Ii", handle, 0, 128, 0)
    mount_id = ctypes.c_int()
    results.append(_refused("name_to_handle_at", -100, b"/", handle, ctypes.byref(mount_id), 0))
    # A hand-made handle for the root inode (ext4/btrfs type 1, inode 2) of every mount listed.
    struct.pack_into("IiII", handle, 0, 8, 1, 2, 0)
    for line in open("/proc/self/mountinfo"):
        point = line.split()[4]
        try:
            fd = os.open(point, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            results.append(_refused("open_by_handle_at", fd, handle, os.O_RDONLY))
        finally:
            os.close(fd)
    # Host paths named in the mount table (overlay upper and work directories) lead nowhere.
    named = set()
    for line in open("/proc/self/mountinfo"):
        for opt in line.split(" - ", 1)[-1].split()[-1].split(","):
            key, _, value = opt.partition("=")
            if key in ("upperdir", "workdir"):
                named.update(value.split(":"))
    seen = [p for p in named if _reach(p)]
    results.append((not seen, f"{len(named)} host directories named in mountinfo, reached {seen}"))
    return _all(results)


def inherited_descriptors(args):
    """No descriptor of any process in the sandbox is a directory or file of the host: a host
    directory descriptor is a way out (openat(fd, '..') climbs the host's tree)."""
    bad = []
    checked = 0
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                st = os.stat(path)
                target = os.readlink(path)
            except OSError:
                continue
            checked += 1
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                continue
            if target.endswith(" (deleted)"):
                continue
            try:
                inside = os.stat(target)
            except OSError:
                bad.append(f"{pid}:{fd} -> {target} (not a path of the sandbox)")
                continue
            if (inside.st_dev, inside.st_ino) != (st.st_dev, st.st_ino):
                bad.append(f"{pid}:{fd} -> {target} (another file than the sandbox's)")
            elif stat.S_ISDIR(st.st_mode):
                dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
                for _ in range(64):
                    up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=dfd)
                    os.close(dfd)
                    dfd = up
                top = sorted(os.listdir(dfd))
                os.close(dfd)
                if top != sorted(os.listdir("/")):
                    bad.append(f"{pid}:{fd} -> {target} climbs to another root: {top}")
    return not bad, f"{checked} descriptors, outside: {bad}"


# ---- privileged calls ---------------------------------------------------------------------------

def mount_filesystems(args):
    os.makedirs("/root/mnt", exist_ok=True)
    return _all([
        _refused("mount", b"none", b"/root/mnt", b"tmpfs", 0, None),
        _refused("mount", b"proc", b"/root/mnt", b"proc", 0, None),
        _refused("mount", b"/", b"/root/mnt", None, 4096 | 16384, None),  # MS_BIND | MS_REC
        _refused("mount", None, b"/", None, 32 | 4096, None),  # remount / (bind)
        _refused("umount2", b"/proc", 2),
        _refused("fsopen", b"tmpfs", 0),
        _refused("open_tree", -100, b"/", 1 | 0x80000),  # OPEN_TREE_CLONE | CLOEXEC
        _refused("move_mount", -100, b"/proc", -100, b"/root/mnt", 0),
        _refused("swapon", b"/root/swap", 0),
    ])


def pivot_root_and_chroot_out(args):
    os.makedirs("/root/newroot/old", exist_ok=True)
    return _all([
        _refused("pivot_root", b"/root/newroot", b"/root/newroot/old"),
        _refused("chroot", b"/root/newroot"),
        _refused("chroot", b"/proc/1/root"),
    ])


def ptrace_anything(args):
    results = [_refused("ptrace", 0, 0, 0, 0)]  # PTRACE_TRACEME
    buf = ctypes.create_string_buffer(8)
    iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
    results.append(_refused("process_vm_readv", 1, iov, 1, iov, 1, 0))
    results.append(_refused("kcmp", 1, os.getpid(), 0, 0, 0))
    # From a child: attach to the agent (pid 1) and to every other process it can see.
    def attach_all():
        out = [_refused("ptrace", 16, int(p), 0, 0) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
        os.write(1, json.dumps(out).encode())
        os._exit(0)
    results += [tuple(x) for x in json.loads(_in_child(attach_all))]
    return _all(results)


def unshare_for_host_privileges(args):
    results = [
        _refused("unshare", 0x10000000),  # CLONE_NEWUSER
        _refused("unshare", 0x00000080),  # CLONE_NEWTIME
        _refused("unshare", 0x10000000 | 0x00020000),
    ]
    # clone(CLONE_NEWUSER | SIGCHLD): a child, if it were made, leaves at once.
    rc, err = _sys("clone", 0x10000000 | 17, 0, 0, 0, 0)
    if rc == 0:
        os._exit(0)
    if rc > 0:
        os.waitpid(rc, 0)
    results.append((rc < 0 and err == EPERM, f"clone(NEWUSER): {errno.errorcode.get(err, err) if rc < 0 else 'made a child'}"))
    fd = os.open("/proc/self/ns/user", os.O_RDONLY)
    try:
        results.append(_refused("setns", fd, 0))
    finally:
        os.close(fd)
    return _all(results)


def kernel_modules(args):
    return _all([
        _refused("init_module", None, 0, b""),
        _refused("finit_module", 0, b"", 0),
        _refused("delete_module", b"loop", 0),
    ])


def kexec(args):
    return _all([_refused("kexec_load", 0, 0, None, 0), _refused("kexec_file_load", -1, -1, 0, b"", 0)])


def bpf(args):
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("IIII", attr, 0, 2, 4, 4, 1)  # BPF_MAP_TYPE_ARRAY, key 4, value 4, 1 entry
    return _refused("bpf", 0, attr, 128)  # BPF_MAP_CREATE


def perf_event_open(args):
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("II", attr, 0, 1, 128)  # PERF_TYPE_SOFTWARE, size
    return _refused("perf_event_open", attr, 0, -1, -1, 0)


def userfaultfd(args):
    return _all([_refused("userfaultfd", 0o2000000), _refused("userfaultfd", 0o2000000 | 1)])  # UFFD_USER_MODE_ONLY


def keyctl(args):
    return _all([
        _refused("keyctl", 0, -3, 0, 0, 0),  # KEYCTL_GET_KEYRING_ID of the user keyring
        _refused("add_key", b"user", b"forkbox", b"secret", 6, -2),
        _refused("request_key", b"user", b"forkbox", None, 0),
    ])


def io_uring(args):
    params = ctypes.create_string_buffer(120)
    return _refused("io_uring_setup", 1, params)


def raw_sockets(args):
    results = []
    for family, kind, proto, name in ((socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, "raw icmp"),
                                      (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW, "raw ip"),
                                      (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6, "raw icmp6"),
                                      (socket.AF_PACKET, socket.SOCK_RAW, 0x0300, "packet"),
                                      (socket.AF_NETLINK, socket.SOCK_RAW, 12, "netfilter")):
        try:
            socket.socket(family, kind, proto).close()
            results.append((False, f"{name} socket opened"))
        except OSError as e:
            results.append((e.errno in (errno.EPERM, errno.EACCES), f"{name}: {errno.errorcode.get(e.errno)}"))
    return _all(results)


def hostname_and_clock(args):
    return _all([
        _refused("sethostname", b"pwned", 5),
        _refused("setdomainname", b"pwned", 5),
        _refused("clock_settime", 0, (ctypes.c_long * 2)(1, 0)),
        _refused("settimeofday", (ctypes.c_long * 2)(1, 0), None),
        _refused("adjtimex", (ctypes.c_long * 32)(1)),  # ADJ_OFFSET: a real change
        _refused("reboot", 0xfee1dead, 672274793, 0x4321fedc, None),  # LINUX_REBOOT_CMD_POWER_OFF
        _refused("acct", b"/root/acct"),
        _refused("syslog", 5, None, 0),  # SYSLOG_ACTION_CLEAR
        _refused("iopl", 3),
    ])


def proc_and_sys_knobs(args):
    results = []
    for path, data in (("/proc/sys/kernel/hostname", "pwned"), ("/proc/sysrq-trigger", "h"),
                       ("/proc/sys/vm/drop_caches", "3"), ("/proc/sys/kernel/core_pattern", "|/root/x")):
        try:
            with open(path, "w") as f:
                f.write(data)
            results.append((False, f"wrote {path}"))
        except OSError as e:
            results.append((True, f"{path}: {errno.errorcode.get(e.errno)}"))
    if os.path.exists("/proc/kcore"):
        with open("/proc/kcore", "rb") as f:
            results.append((f.read(16) == b"", "/proc/kcore is masked"))
    return _all(results)


def cgroup_files(args):
    """No cgroup filesystem is mounted in the sandbox, none can be, and no limit file is reachable."""
    mounted = [l.split()[1] for l in open("/proc/self/mounts") if l.split()[2] in ("cgroup", "cgroup2")]
    found = []
    for top in ("/sys", "/proc"):
        for dirpath, dirnames, filenames in os.walk(top):
            if dirpath.startswith("/proc/") and dirpath.split("/")[2].isdigit():
                dirnames[:] = []
                continue
            found += [f"{dirpath}/{n}" for n in filenames
                      if n in ("memory.max", "memory.limit_in_bytes", "pids.max", "cpu.max", "cpu.cfs_quota_us")]
    os.makedirs("/root/cg", exist_ok=True)
    return _all([
        (not mounted, f"cgroup mounts: {mounted}"),
        (not found, f"limit files: {found}"),
        _refused("mount", b"cgroup", b"/root/cg", b"cgroup2", 0, None),
        _refused("mount", b"cgroup", b"/root/cg", b"cgroup", 0, b"memory"),
    ])


def device_nodes(args):
    results = []
    for name, major, minor in (("mem", 1, 1), ("kmsg", 1, 11), ("sda", 8, 0), ("fuse", 10, 229)):
        path = f"/root/dev-{name}"
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        except OSError as e:
            results.append((e.errno in (errno.EPERM, errno.EACCES), f"mknod {name}: {errno.errorcode.get(e.errno)}"))
            continue
        try:
            os.close(os.open(path, os.O_RDONLY))
            results.append((False, f"opened a {name} device made with mknod"))
        except OSError as e:
            results.append((True, f"mknod {name} made but cannot be opened: {errno.errorcode.get(e.errno)}"))
    devices = sorted(os.listdir("/dev"))
    extra = [d for d in devices if d not in ("fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr",
                                             "stdin", "stdout", "tty", "urandom", "zero")]
    results.append((not extra, f"/dev extras: {extra}"))
    # TIOCSTI on a terminal of its own: pushing input is refused.
    master, slave = os.openpty()
    try:
        import fcntl
        fcntl.ioctl(slave, 0x5412, b"x")
        results.append((False, "TIOCSTI worked"))
    except OSError as e:
        results.append((e.errno == EPERM, f"TIOCSTI: {errno.errorcode.get(e.errno)}"))
    finally:
        os.close(master)
        os.close(slave)
    return _all(results)


def setuid_binaries(args):
    """A setuid-root copy of python, run by an unprivileged user inside, does not gain root:
    no_new_privs is set and the writable layer is mounted nosuid."""
    status = dict(l.split(":", 1) for l in open("/proc/self/status"))
    results = [(status["NoNewPrivs"].strip() == "1", f"NoNewPrivs {status['NoNewPrivs'].strip()}"),
               (status["Seccomp"].strip() == "2", f"Seccomp {status['Seccomp'].strip()}")]
    import shutil
    exe = os.path.realpath("/usr/bin/python3")
    # In /tmp, which uid 1000 can reach (/root is 0700).
    shutil.copy(exe, "/tmp/suid-python")
    os.chown("/tmp/suid-python", 0, 0)
    os.chmod("/tmp/suid-python", 0o4755)
    def run_as_user():
        os.setgroups([])
        os.setresgid(1000, 1000, 1000)
        os.setresuid(1000, 1000, 1000)
        os.execv("/tmp/suid-python", ["suid-python", "-c", "import os; print(os.geteuid())"])
    out = _in_child(run_as_user)
    results.append((out.strip() == b"1000", f"setuid copy ran with euid {out.strip().decode() or '?'}"))
    # The host's setuid binaries (under the read-only /usr) belong to an unmapped uid: su fails.
    su = [p for p in ("/usr/bin/su", "/usr/bin/mount", "/usr/bin/newgrp") if os.path.exists(p)]
    for p in su:
        st = os.stat(p)
        results.append((st.st_uid == 65534 or not st.st_mode & stat.S_ISUID, f"{p} owner {st.st_uid}"))
    return _all(results)


def host_loopback_services(args):
    results = []
    for port in args.get("host_ports", []):
        for host in ("127.0.0.1", "::1", "localhost", *args.get("host_addresses", [])):
            try:
                socket.create_connection((host, port), timeout=2).close()
                results.append((False, f"connected to {host}:{port}"))
            except OSError as e:
                results.append((True, f"{host}:{port}: {type(e).__name__}"))
    # The host's abstract Unix sockets (the agents' control sockets among them) are per network namespace.
    for name in args.get("host_abstract_sockets", []):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect("\0" + name)
            results.append((False, f"connected to @{name}"))
        except OSError as e:
            results.append((True, f"@{name}: {type(e).__name__}"))
        finally:
            s.close()
    return _all(results)


CASES = {f.__name__: f for f in (
    dotdot_host_paths, symlink_host_paths, proc_root_host_paths, mountinfo_handles, inherited_descriptors,
    mount_filesystems, pivot_root_and_chroot_out, ptrace_anything, unshare_for_host_privileges,
    kernel_modules, kexec, bpf, perf_event_open, userfaultfd, keyctl, io_uring, raw_sockets,
    hostname_and_clock, proc_and_sys_knobs, cgroup_files, device_nodes, setuid_binaries,
    host_loopback_services)}


def probe(case, args):
    if platform.machine() != "x86_64":
        return {"held": None, "detail": f"system call numbers are x86_64's; this is {platform.machine()}"}
    held, detail = CASES[case](args)
    return {"held": held, "detail": detail}
