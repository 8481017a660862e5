"""Gives a fork its own root: runs as host root in the zygote, which returns to its
own namespaces afterwards.

The fork itself cannot do this: it runs under the sandbox's seccomp filter,
which refuses every mount call. So this helper, which can, does it from
outside:

1. snapshot each of the parent's upper layers into the fork's own upper
   (btrfs snapshot, reflinks or a copy; see storage.py);
2. make the overlays and /proc as detached mounts, here, where the layer paths
   are visible and the mount namespace is the host's;
3. join the fork's network namespace (bring lo up, reach the fork's handoff
   socket), its uts namespace (hostname) and its mount namespace, attach the
   mounts there, add /dev, and pivot_root: that moves the root of every
   process in the namespace, the fork included;
4. hand the fork its control socket to hostd and its id and token.
"""

import json
import os
import socket

from . import confined, isolate, linux, storage

_HANDOFF_ADDRESS = b"\0forkbox-fork"
# Where the new root is attached in the fork's current (its parent's) tree before pivot_root.
_STAGING = "/tmp"


def graft(spec, strategy):
    steps = isolate.Steps()
    lap = steps.lap

    for layer in spec["layers"]:
        storage.snapshot(strategy, layer["src_upper"], layer["upper"])
    lap("snapshot")
    fds = []  # closed whatever happens: this runs in the long-lived zygote
    try:
        proc = _open_fork(spec["pid"], spec["userns"])
        fds.append(proc)
        ns = {}
        for name in ("net", "uts", "mnt", "pid"):
            ns[name] = os.open(f"ns/{name}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
            fds.append(ns[name])
        overlays = []
        for layer in spec["layers"]:
            fd = linux.fsmount("overlay", {"lowerdir": layer["lower"], "upperdir": layer["upper"],
                                           "workdir": layer["work"]}, linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV)
            fds.append(fd)
            overlays.append((layer["target"], fd))
        proc_fs = linux.fsmount("proc", {}, linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV | linux.MOUNT_ATTR_NOEXEC,
                             fds={"pidns": ns["pid"]})
        fds.append(proc_fs)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
            control.connect(spec["agent_socket"])
            lap("prepare")

            linux.setns(ns["net"], linux.CLONE_NEWNET)
            linux.loopback_up()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as handoff:
                handoff.settimeout(10)
                handoff.connect(_HANDOFF_ADDRESS)
                linux.setns(ns["uts"], linux.CLONE_NEWUTS)
                linux.sethostname(spec.get("hostname", "sandbox"))
                linux.setns(ns["mnt"], linux.CLONE_NEWNS)
                _attach(overlays, proc_fs)
                isolate.mask_proc("proc")
                isolate.mount_dev(".", spec["tmp_size_mb"])
                linux.pivot_root(".", ".")
                linux.umount2(".", linux.MNT_DETACH)
                os.chdir("/")
                lap("mounts")

                message = json.dumps({"id": spec["id"], "token": spec["token"]}).encode()
                socket.send_fds(handoff, [message], [control.fileno()])
        lap("handoff")
    finally:
        for fd in fds:
            os.close(fd)
    return steps


def _open_fork(pid, userns):
    """/proc/PID of the fork, held open (once the process is gone its entries answer ESRCH, even if
    the pid is reused), after checking that it is what hostd says: a process in the sandbox's user
    namespace, PID 1 of a PID namespace of its own. Its namespaces are then opened from this fd."""
    proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with open(os.open("status", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc), "rb") as f:
            nspid = next((line.split()[1:] for line in f if line.startswith(b"NSpid:")), [])
        if len(nspid) < 2 or nspid[-1] != b"1" or os.stat("ns/user", dir_fd=proc).st_ino != os.stat(userns).st_ino:
            raise PermissionError(f"process {pid} is not a fork in this sandbox's namespaces")
        return proc
    except BaseException:
        os.close(proc)
        raise


def _attach(overlays, proc):
    """Attaches the fork's overlays and /proc in its mount namespace (still a copy of its parent's
    tree) and makes the new root the working directory. The staging directory there is the
    parent's, which the parent's processes can swap for a symlink at any moment: it is resolved
    once by the kernel with openat2 (no symlinks, no mount crossed), and everything after it from
    the new root's own descriptor, inside the fork's fresh snapshot, which nothing else can reach."""
    (root_target, root_fd), nested = overlays[0], overlays[1:]
    if root_target != "/":
        raise ValueError(f"the first layer must be the root, not {root_target!r}")
    top = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        staging = confined.openat2_dir(top, _STAGING.strip("/"))
    finally:
        os.close(top)
    try:
        linux.move_mount(root_fd, staging, "the fork's root")
    finally:
        os.close(staging)
    os.fchdir(root_fd)
    for target, fd in nested + [("/proc", proc)]:
        where = confined.openat2_dir(root_fd, target.strip("/"))
        try:
            linux.move_mount(fd, where, target)
        finally:
            os.close(where)
