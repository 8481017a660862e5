"""The only way host-root code here touches a sandbox's files: from directory descriptors, one
name at a time, never following a symbolic link.

A sandbox's writable layer is a directory on the host that the sandbox's processes change while
the zygote works on it (a fork's snapshot runs while the parent's background processes run; a
resumed Space's layer holds whatever the sandbox left there). Resolving a path in it by name as
host root lets the sandbox swap a directory for a symlink between two steps and point the next
step at the host. So every walk, copy, chown and chmod on a layer goes through these helpers:
each step opens exactly one name relative to a descriptor it already holds, with O_NOFOLLOW
(and O_PATH first, so the type acted on is the type of the object held, not of whatever the name
points to a moment later). The C# side has the same rule in Forkbox.Linux/Storage/LayerFiles.cs.
"""

import errno
import os
import stat

from . import linux

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def check_name(name):
    """A single directory entry's name: no separator, not "." or "..", not empty."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{name!r} is not a single file name")
    return name


def open_dir(dir_fd, name):
    """The directory `name` in `dir_fd`; ELOOP or ENOTDIR when it is anything else."""
    return os.open(check_name(name), DIR_FLAGS, dir_fd=dir_fd)


def open_root(path):
    """A layer's top directory, named by hostd (its path is hostd's, not the sandbox's)."""
    return os.open(path, DIR_FLAGS)


def open_entry(dir_fd, name):
    """(fd, stat) of the entry `name` itself, whatever it is, as an O_PATH descriptor: the stat is
    of the object held, so a swap after this call changes nothing that is done through the fd."""
    fd = os.open(check_name(name), _PATH_FLAGS, dir_fd=dir_fd)
    try:
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def reopen(path_fd, st, flags):
    """A readable descriptor of the object an O_PATH fd holds: a directory through the fd itself,
    a regular file through its /proc/self/fd link (which names the inode, not a path)."""
    if stat.S_ISDIR(st.st_mode):
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=path_fd)
    if stat.S_ISREG(st.st_mode):
        return os.open(f"/proc/self/fd/{path_fd}", flags | os.O_CLOEXEC | os.O_NONBLOCK)
    raise OSError(errno.EINVAL, f"refusing to open a {stat.filemode(st.st_mode)[0]} entry")


def names(dir_fd):
    """The names in a directory held open (nothing is stat-ed or followed)."""
    with os.scandir(dir_fd) as it:
        return [e.name for e in it]


def entry_path(dir_fd, name):
    """A path to `name` in the directory held by `dir_fd`, for the calls that take no dir_fd
    (xattrs of a symlink): /proc/self/fd/N jumps to that directory whatever its name is now, and
    only the last component is looked up, without following it."""
    return f"/proc/self/fd/{dir_fd}/{check_name(name)}"


def walk_to(root_fd, rel, create_mode=None, replace=False):
    """The directory at `rel` (e.g. "usr/local") beneath `root_fd`, opened one component at a
    time. With `create_mode`, a missing component is made with that mode; with `replace`, a
    component that is not a directory (a symlink the sandbox left) is removed and made again.
    Returns an fd the caller closes."""
    fd = os.dup(root_fd)
    try:
        for part in [p for p in rel.split("/") if p]:
            try:
                child = open_dir(fd, part)
            except FileNotFoundError:
                if create_mode is None:
                    raise
                os.mkdir(part, create_mode, dir_fd=fd)
                child = open_dir(fd, part)
            except OSError as e:
                if not replace or e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                os.unlink(part, dir_fd=fd)  # unlinkat: removes the link itself, never its target
                os.mkdir(part, create_mode if create_mode is not None else 0o755, dir_fd=fd)
                child = open_dir(fd, part)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def openat2_dir(dir_fd, rel):
    """An O_PATH fd of the directory `rel` beneath `dir_fd`, resolved by the kernel with no
    symlink, no magic link, no '..' above `dir_fd` and no mount crossed (openat2 RESOLVE_*):
    for a path that must be resolved in a tree a sandbox can change at the same moment."""
    return linux.openat2(dir_fd, rel, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                         linux.RESOLVE_BENEATH | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS
                         | linux.RESOLVE_NO_XDEV)
