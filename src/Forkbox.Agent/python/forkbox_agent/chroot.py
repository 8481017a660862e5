"""Starts a built template's zygote inside the template's own root.

Run as host root by the host's Python (hostd's ZygoteProcess), before the template's Python runs:
it makes a mount namespace of its own, a slave of the host's so that user-namespace slots made
later appear in it, in which the template's root is a mount point (so sandboxes can pivot_root out
of the chroot) and the data directory, the agent package, cgroups, /dev and /proc appear at the
same paths as on the host. Then it chroots and executes the template's Python with the zygote's
bootstrap; stdin, stdout and stderr pass through unchanged.

The root is the template's to shape (a tarball may hold any symlink, `sys -> /` included), so
nothing in it is resolved by name: each directory is walked to, or made, one component at a time
beneath a descriptor of the root without following a symlink, and every mount lands on the
descriptor that walk returned."""

import os
import sys

from . import confined, linux

AGENT_MOUNT = "/.forkbox-agent"
_AT_FDCWD = -100


def _attach(tree, target_fd, what):
    try:
        linux.move_mount(tree, target_fd, what)
    finally:
        os.close(tree)


def mounts(data_dir, agent_dir):
    """(source or None for proc, target beneath the root, recursive) for each mount made."""
    return [
        (data_dir, data_dir, True),
        (agent_dir, AGENT_MOUNT, False),
        ("/sys/fs/cgroup", "/sys/fs/cgroup", True),
        ("/dev", "/dev", True),
        (None, "/proc", False),
    ]


def main(argv):
    agent_dir, root, data_dir, python, bootstrap = argv
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    fd = confined.open_root(root)
    try:
        _attach(linux.open_tree(fd, "", linux.AT_EMPTY_PATH), fd, "the template root")
    finally:
        os.close(fd)
    # Opened after the bind, so the targets are in the new mount and the chroot below sees them.
    root_fd = confined.open_root(root)
    targets = []
    for source, target, recursive in mounts(data_dir, agent_dir):
        try:
            targets.append((source, target, recursive, confined.walk_to(root_fd, target, create_mode=0o755)))
        except OSError as e:
            sys.exit(f"template root {root}: {target} is not a directory that can be made ({e.strerror}); "
                     "a template's root must not replace it with a symlink or a file")
    for source, target, recursive, fd in targets:
        try:
            _attach(linux.fsmount("proc", {}) if source is None
                    else linux.open_tree(_AT_FDCWD, source, linux.AT_RECURSIVE if recursive else 0), fd, target)
        finally:
            os.close(fd)
    os.fchdir(root_fd)
    os.chroot(".")
    os.chdir("/")
    os.close(root_fd)
    os.execv(python, [python, "-I", "-c", bootstrap])
