"""Every Linux system call the zygote and the agent make that Python's
standard library lacks (Python 3.11 has no os.unshare, os.setns, mount or
pivot_root). Each wrapper raises OSError with the errno and the call's name,
so a failed set-up step says which step failed and why."""

import ctypes
import ctypes.util
import fcntl
import os
import platform
import socket
import struct

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2

PR_SET_NAME = 15
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# glibc has no pivot_root wrapper, nor (2.36) wrappers for the new mount API, whose numbers are
# the same on every architecture.
_NR_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}[platform.machine()]
_NR_OPEN_TREE, _NR_MOVE_MOUNT, _NR_FSOPEN, _NR_FSCONFIG, _NR_FSMOUNT = 428, 429, 430, 431, 432
_NR_OPENAT2 = 437

RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x01, 0x02, 0x04, 0x08

FSOPEN_CLOEXEC = 1
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x2, 0x4, 0x8
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH, AT_RECURSIVE = 0x1000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40


def current_cpu():
    """The CPU this thread runs on (glibc's sched_getcpu, which Python's os module lacks)."""
    return _check(_libc.sched_getcpu(), "sched_getcpu")


def _check(result, name):
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return result


def unshare(flags):
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


_NS_NAMES = {CLONE_NEWNS: "mnt", CLONE_NEWCGROUP: "cgroup", CLONE_NEWUTS: "uts", CLONE_NEWIPC: "ipc",
             CLONE_NEWUSER: "user", CLONE_NEWPID: "pid", CLONE_NEWNET: "net"}


def setns(fd, nstype):
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns {_NS_NAMES.get(nstype, nstype)}")


def mount(source, target, fstype, flags=0, data=None):
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {fstype or 'bind'} on {target}",
    )


def umount2(target, flags):
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root, put_old):
    _check(_libc.syscall(_NR_PIVOT_ROOT, new_root.encode(), put_old.encode()), "pivot_root")


def fsmount(fstype, options, attrs=0, fds=None):
    """A detached mount of a new `fstype` filesystem, as an fd: made where the caller's paths and
    privileges apply, attached later with move_mount, possibly in another mount namespace.
    `fds` are options that take a file descriptor (proc's "pidns")."""
    fs = _check(_libc.syscall(_NR_FSOPEN, fstype.encode(), FSOPEN_CLOEXEC), f"fsopen {fstype}")
    try:
        for key, value in options.items():
            _check(_libc.syscall(_NR_FSCONFIG, fs, FSCONFIG_SET_STRING, key.encode(), value.encode(), 0),
                   f"fsconfig {fstype} {key}")
        for key, fd in (fds or {}).items():
            _check(_libc.syscall(_NR_FSCONFIG, fs, FSCONFIG_SET_FD, key.encode(), None, fd), f"fsconfig {fstype} {key}")
        _check(_libc.syscall(_NR_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0), f"fsconfig {fstype} create")
        return _check(_libc.syscall(_NR_FSMOUNT, fs, FSMOUNT_CLOEXEC, attrs), f"fsmount {fstype}")
    finally:
        os.close(fs)


def open_tree(dir_fd, path, flags):
    """A detached clone of the mount tree at `path` beneath `dir_fd` (with AT_EMPTY_PATH and "",
    of the directory `dir_fd` holds), as an fd for move_mount."""
    return _check(_libc.syscall(_NR_OPEN_TREE, ctypes.c_int(dir_fd), path.encode(),
                                ctypes.c_uint(flags | OPEN_TREE_CLONE | os.O_CLOEXEC)), f"open_tree {path or dir_fd}")


def move_mount(fd, target_fd, what):
    """Attaches the detached mount `fd` on the directory held by `target_fd` (an fd, never a path
    resolved here: see confined.openat2_dir). `what` names the target in errors."""
    _check(_libc.syscall(_NR_MOVE_MOUNT, fd, b"", target_fd, b"", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
           f"move_mount on {what}")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dir_fd, path, flags, resolve):
    """openat2(2): `path` beneath `dir_fd`, resolved under the RESOLVE_* rules in `resolve`."""
    how = _OpenHow(flags, 0, resolve)
    return _check(_libc.syscall(_NR_OPENAT2, ctypes.c_int(dir_fd), path.encode(), ctypes.byref(how),
                                ctypes.c_size_t(ctypes.sizeof(how))), f"openat2 {path}")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), "prctl")


def set_no_new_privs():
    prctl(PR_SET_NO_NEW_PRIVS, 1)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp(bpf):
    """Install a filter that hostd compiled with libseccomp (8 bytes an instruction)."""
    if not bpf or len(bpf) % 8:
        raise ValueError("seccomp program is empty or not a whole number of instructions")
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    _check(_libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                       ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0)), "seccomp")


def sethostname(name):
    b = name.encode()
    _check(_libc.sethostname(b, ctypes.c_size_t(len(b))), "sethostname")


def set_process_name(name):
    _libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def loopback_up():
    """ip link set lo up, by ioctl: a new network namespace starts with lo down."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


CAP_NET_ADMIN, CAP_NET_RAW = 12, 13
_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities(caps):
    """Takes `caps` out of this process's bounding set (so no execve can bring them back) and its
    effective, permitted and inheritable sets (capget(2), capset(2); the ambient set follows)."""
    for cap in caps:
        prctl(_PR_CAPBSET_DROP, cap)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    for cap in caps:
        mask = ~(1 << (cap % 32)) & 0xffffffff
        d = data[cap // 32]
        d.effective &= mask
        d.permitted &= mask
        d.inheritable &= mask
    _check(_libc.capset(ctypes.byref(header), data), "capset")
