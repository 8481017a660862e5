"""Snapshots of a sandbox's writable layer (an overlayfs upper directory) for fork.

Runs as host root in the zygote (graft.py), so it is plain system calls:
no subprocess, standard library only. Three ways, chosen by hostd for the filesystem
under DATA/sandboxes (see StorageKind in Forkbox.Linux):

- "btrfs": the upper directory is a subvolume; one ioctl makes a writable snapshot.
- "reflink": the tree is walked and each regular file's extents are shared (FICLONE),
  so the cost grows with the number of entries, not their bytes.
- "copy": the same walk, with the bytes copied (copy_file_range).

The walk reproduces everything overlayfs gives meaning to: whiteouts (character
devices 0:0), opaque directories (trusted.overlay.opaque), every other xattr,
owners, modes with setuid/setgid/sticky, nanosecond times and hard links.
"""

import errno
import fcntl
import os
import shutil
import stat
import struct

FICLONE = 0x40049409
# _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2); the struct is 4096 bytes:
# {s64 fd; u64 transid; u64 flags; u64 unused[4]; char name[4040]}.
BTRFS_IOC_SNAP_CREATE_V2 = 0x50009417
_BTRFS_NAME_OFFSET = 56
_BTRFS_NAME_MAX = 4039
_BTRFS_SUBVOL_ROOT_INODE = 256

_COPY_CHUNK = 1 << 30


def snapshot(kind, src, dst):
    """Make dst (which must not exist) a copy of the upper directory src.

    Returns the number of entries below src that were copied; 0 for "btrfs",
    where nothing is walked. On failure a partial dst is removed.
    """
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, f"snapshot target {dst} already exists")
    if kind == "btrfs":
        _btrfs_snapshot(src, dst)
        return 0
    if kind not in ("reflink", "copy"):
        raise ValueError(f"unknown storage kind {kind!r}: btrfs, reflink or copy")
    walk = _TreeCopy(reflink=kind == "reflink")
    try:
        st = os.lstat(src)
        os.mkdir(dst, 0o700)
        walk.copy_dir(src, dst)
        walk.finish(src, dst, st)
    except BaseException:
        _remove_partial(dst)
        raise
    return walk.count


def shift_owners(root, old_base, new_base, span=65536):
    """Re-own a tree whose files belong to the uid range [old_base, old_base+span) (a hibernated
    sandbox's) to the same offsets in [new_base, …) (the uid range of the sandbox it resumes in).
    Ids outside the range are left alone. chown clears setuid/setgid bits and file capabilities,
    so both are put back. Returns the number of entries changed."""
    if old_base == new_base:
        return 0

    def move(i):
        return i - old_base + new_base if old_base <= i < old_base + span else i

    def entries():
        yield root
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                yield os.path.join(dirpath, name)

    changed = 0
    for path in entries():
        st = os.lstat(path)
        uid, gid = move(st.st_uid), move(st.st_gid)
        if (uid, gid) == (st.st_uid, st.st_gid):
            continue
        cap = None
        if stat.S_ISREG(st.st_mode):
            try:
                cap = os.getxattr(path, "security.capability", follow_symlinks=False)
            except OSError:
                pass
        os.chown(path, uid, gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        if cap is not None:
            os.setxattr(path, "security.capability", cap, follow_symlinks=False)
        changed += 1
    return changed


def _btrfs_snapshot(src, dst):
    if os.stat(src).st_ino != _BTRFS_SUBVOL_ROOT_INODE:
        raise ValueError(f"{src} is not a btrfs subvolume: its sandbox was not made with storage 'btrfs'")
    parent, name = os.path.split(os.path.abspath(dst))
    encoded = os.fsencode(name)
    if not encoded or len(encoded) > _BTRFS_NAME_MAX or b"/" in encoded:
        raise ValueError(f"bad snapshot name {name!r}")
    args = bytearray(4096)
    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            struct.pack_into("=qQQ", args, 0, src_fd, 0, 0)  # flags 0: writable
            args[_BTRFS_NAME_OFFSET:_BTRFS_NAME_OFFSET + len(encoded)] = encoded
            fcntl.ioctl(parent_fd, BTRFS_IOC_SNAP_CREATE_V2, args)
        finally:
            os.close(parent_fd)
    finally:
        os.close(src_fd)


class _TreeCopy:
    """One walk: counts entries and remembers inodes with several links to link them again."""

    def __init__(self, reflink):
        self.reflink = reflink
        self.count = 0
        self.links = {}

    def copy_dir(self, src, dst):
        with os.scandir(src) as it:
            entries = list(it)
        for entry in entries:
            s = entry.path
            d = os.path.join(dst, entry.name)
            st = entry.stat(follow_symlinks=False)
            self.count += 1
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(d, 0o700)
                self.copy_dir(s, d)
                self.finish(s, d, st)  # after its entries, which change its times
                continue
            if st.st_nlink > 1:
                first = self.links.get((st.st_dev, st.st_ino))
                if first is not None:
                    os.link(first, d, follow_symlinks=False)
                    continue
                self.links[(st.st_dev, st.st_ino)] = d
            if stat.S_ISREG(mode):
                self._copy_file(s, d)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(s), d)
            else:  # whiteouts (char 0:0), other devices, fifos, sockets
                os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            self.finish(s, d, st)

    def _copy_file(self, src, dst):
        s = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            d = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                if self.reflink:
                    fcntl.ioctl(d, FICLONE, s)
                else:
                    _copy_bytes(s, d)
            finally:
                os.close(d)
        finally:
            os.close(s)

    @staticmethod
    def finish(src, dst, st):
        """Owner, xattrs, mode, then times: chown clears setuid bits and file capabilities."""
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        for name in os.listxattr(src, follow_symlinks=False):
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):  # a symlink's mode is fixed (0777) on Linux
            os.chmod(dst, stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_bytes(s, d):
    try:
        while os.copy_file_range(s, d, _COPY_CHUNK):
            pass
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    # copy_file_range refused before copying anything it reports; start again from both offsets.
    os.lseek(s, 0, os.SEEK_SET)
    os.lseek(d, 0, os.SEEK_SET)
    os.ftruncate(d, 0)
    while True:
        chunk = os.read(s, 1 << 20)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(d, view):]


def _remove_partial(path):
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
