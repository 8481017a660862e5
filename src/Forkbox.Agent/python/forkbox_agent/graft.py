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

from . import isolate, linux, storage

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
        pid = spec["pid"]
        ns = {}
        for name in ("net", "uts", "mnt", "pid"):
            ns[name] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            fds.append(ns[name])
        overlays = []
        for layer in spec["layers"]:
            fd = linux.fsmount("overlay", {"lowerdir": layer["lower"], "upperdir": layer["upper"],
                                           "workdir": layer["work"]}, linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV)
            fds.append(fd)
            overlays.append((layer["target"], fd))
        proc = linux.fsmount("proc", {}, linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV | linux.MOUNT_ATTR_NOEXEC,
                             fds={"pidns": ns["pid"]})
        fds.append(proc)
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
                for target, fd in overlays:
                    linux.move_mount(fd, _STAGING + target.rstrip("/"))
                linux.move_mount(proc, _STAGING + "/proc")
                isolate.mask_proc(_STAGING + "/proc")
                isolate.mount_dev(_STAGING, spec["tmp_size_mb"])
                os.chdir(_STAGING)
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
