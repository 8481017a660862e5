"""Turns a freshly forked zygote child into an isolated sandbox.

Runs as host root in the child, which the zygote has already made PID 1 of a
new PID namespace. The order matters:

1. Join the sandbox's cgroups while still host root, then unshare the cgroup
   namespace so the sandbox sees its own cgroup as "/".
2. Unshare mount, net, ipc and uts namespaces *as host root*: they are owned by
   the initial user namespace, so root inside the sandbox (which is only root
   of its own user namespace) can never mount, change the hostname or
   reconfigure the network in them.
3. Build the root: each template layer is the template's read-only tree under
   an overlay with the sandbox's private upper directory (/tmp included, so a
   fork's snapshot of the upper carries it); then /proc and a minimal /dev;
   pivot_root into it. Template files keep their
   host owner, which is unmapped inside (it shows as nobody): the sandbox reads
   and runs them but cannot change them. The directories a template names as
   writable (/root, /etc, /usr/local, …) are created in the upper layer owned
   by the sandbox's root, so new files can go there. (Idmapped lower layers
   would make every template file the sandbox's own; the kernel here refuses
   them with EINVAL, see the README's isolation section.)
4. Enter the sandbox's user namespace (pre-created by hostd with a host uid
   range of its own) and become uid 0 there, less the network-admin
   capabilities, for good (drop_network_admin: its forks' namespaces are its own).
5. no_new_privs and the seccomp filter last: from then on the process can no
   longer make the calls above.
"""

import os
import resource
import time

from . import confined, linux

# Paths under /proc that leak host state or offer host-wide knobs (Docker masks the same set):
# files get /dev/null bound over them, directories an empty read-only tmpfs.
_PROC_MASKED = ("kcore", "keys", "timer_list", "timer_stats", "sysrq-trigger", "sched_debug", "latency_stats",
                "interrupts", "acpi", "asound", "scsi")
_PROC_READONLY = ("sys", "bus", "irq", "fs")
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# Open files per process, set here rather than inherited from however hostd was started (a shell's
# ulimit, a service manager's): the usual 1024, which a program may raise itself up to 65536 (or
# hostd's own hard limit, if lower: raising it needs CAP_SYS_RESOURCE, which not every host root has).
# The kernel memory behind them is charged to the sandbox's memory cgroup in any case.
NOFILE = (1024, 65536)


def limit_open_files():
    hard = min(NOFILE[1], resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(NOFILE[0], hard), hard))


def enter_cgroups(procs_files):
    pid = str(os.getpid())
    for path in procs_files:
        with open(path, "w") as f:
            f.write(pid)


def _prepare_upper(layer, uid):
    """Give the sandbox's root its layer's root and writable directories (host uid `uid`).

    The upper may be a resumed Space's, holding whatever the sandbox left in it (a /tmp that is a
    symlink to a host directory, say): every step goes through confined, from the upper's own
    descriptor, and a writable directory the sandbox replaced with anything else is made again."""
    writable = list(layer.get("writable", ()))
    if layer["target"] == "/":
        writable.append(("/tmp", 0o1777))
    upper = confined.open_root(layer["upper"])
    try:
        os.fchown(upper, uid, uid)
        for rel, mode in writable:
            fd = confined.walk_to(upper, rel, create_mode=0o755, replace=True)
            try:
                os.fchmod(fd, mode)
                os.fchown(fd, uid, uid)
            finally:
                os.close(fd)
    finally:
        os.close(upper)


def _mount_overlay(target, layer):
    opts = f"lowerdir={layer['lower']},upperdir={layer['upper']},workdir={layer['work']}"
    linux.mount("overlay", target, "overlay", linux.MS_NOSUID | linux.MS_NODEV, opts)


def mount_dev(root, tmp_size_mb):
    dev = root + "/dev"
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "mode=755,size=64k,nr_inodes=64")
    for name in _DEVICES:
        path = f"{dev}/{name}"
        open(path, "w").close()
        linux.mount(f"/dev/{name}", path, None, linux.MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("ptmx", "pts/ptmx")):
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/pts")
    linux.mount("devpts", f"{dev}/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620")
    os.mkdir(f"{dev}/shm")
    linux.mount("tmpfs", f"{dev}/shm", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV,
                f"mode=1777,size={tmp_size_mb}m")
    linux.mount(None, dev, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY
                | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


def _mount_proc(root):
    proc = root + "/proc"
    linux.mount("proc", proc, "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    mask_proc(proc)


def mask_proc(proc):
    for name in _PROC_MASKED:
        path = f"{proc}/{name}"
        if os.path.isdir(path):
            linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "mode=555")
        elif os.path.exists(path):
            linux.mount("/dev/null", path, None, linux.MS_BIND)
    for name in _PROC_READONLY:
        path = f"{proc}/{name}"
        if os.path.isdir(path):
            linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
            # A remount sets every flag: keep /proc's nosuid, nodev and noexec.
            linux.mount(None, path, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY
                        | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


def build_root(spec):
    root = spec["root"]
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    for layer in spec["layers"]:
        _prepare_upper(layer, spec["uid"])
        _mount_overlay(root + layer["target"].rstrip("/"), layer)
    _mount_proc(root)
    mount_dev(root, spec["tmp_size_mb"])
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def become_sandbox_root(userns_fd):
    linux.setns(userns_fd, linux.CLONE_NEWUSER)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def drop_network_admin():
    """No process of this sandbox, nor of any fork of it, holds CAP_NET_ADMIN or CAP_NET_RAW.

    A fork's network namespace is unshared by the agent in the fork, so it belongs to the sandbox's
    user namespace, where root would otherwise hold both: enough to put another sandbox's address
    on eth0, open raw and packet sockets, or change routes and the link. The namespace cannot be
    made by host root instead: entering one owned by the initial user namespace needs
    CAP_SYS_ADMIN there. Nor can the agent drop them when it forks, since user code runs in the
    agent's process and can change what it does. So they go here, before the agent's first
    instruction, from the bounding set as well: every fork inherits that, execve cannot bring them
    back, and no new user namespace can be made (seccomp). The sandbox loses nothing it could
    use: its own namespace is owned by host root. Loopback and eth0 are set up by host root
    (graft.py, hostd), and the ports proxy connects from there too."""
    linux.drop_capabilities((linux.CAP_NET_ADMIN, linux.CAP_NET_RAW))


class Steps(dict):
    """Milliseconds per step, each counted from the end of the one before; hostd reports them
    in the sandbox's timings_ms."""

    def __init__(self):
        super().__init__()
        self._t = time.perf_counter()

    def lap(self, name):
        now = time.perf_counter()
        self[name] = round((now - self._t) * 1000, 3)
        self._t = now


def isolate(spec, seccomp_bpf):
    """Everything between fork and the agent's first instruction. Returns each step's
    milliseconds."""
    steps = Steps()
    lap = steps.lap

    enter_cgroups(spec["cgroup_procs"])
    lap("cgroup_join")
    linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWNET | linux.CLONE_NEWIPC
                  | linux.CLONE_NEWUTS | linux.CLONE_NEWCGROUP)
    lap("unshare")
    userns_fd = os.open(spec["userns"], os.O_RDONLY | os.O_CLOEXEC)
    build_root(spec)
    lap("mounts")
    linux.sethostname(spec.get("hostname", "sandbox"))
    linux.loopback_up()
    limit_open_files()
    become_sandbox_root(userns_fd)
    os.close(userns_fd)
    drop_network_admin()
    linux.set_no_new_privs()
    linux.install_seccomp(seccomp_bpf)
    lap("drop_privileges")
    return steps
