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

from . import confined

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
    where nothing is walked. On failure a partial dst is removed. The walk goes through
    confined (descriptors, one name at a time, no symlink followed): the sandbox that owns src
    may be changing it while this runs, as host root.
    """
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, f"snapshot target {dst} already exists")
    if kind == "btrfs":
        _btrfs_snapshot(src, dst)
        return 0
    if kind not in ("reflink", "copy"):
        raise ValueError(f"unknown storage kind {kind!r}: btrfs, reflink or copy")
    walk = _TreeCopy(reflink=kind == "reflink")
    src_fd = confined.open_root(src)
    try:
        os.mkdir(dst, 0o700)
        dst_fd = confined.open_root(dst)
        try:
            walk.copy_dir(src_fd, dst_fd)
            walk.finish(src_fd, dst_fd, os.fstat(src_fd))
        finally:
            os.close(dst_fd)
    except BaseException:
        _remove_partial(dst)
        raise
    finally:
        os.close(src_fd)
    return walk.count


def shift_owners(root, old_base, new_base, span=65536):
    """Re-own a tree whose files belong to the uid range [old_base, old_base+span) (a hibernated
    sandbox's) to the same offsets in [new_base, …) (the uid range of the sandbox it resumes in).
    Ids outside the range are left alone. chown clears setuid/setgid bits and file capabilities,
    so both are put back. Returns the number of entries changed. Walks through confined, like
    snapshot."""
    if old_base == new_base:
        return 0

    def move(i):
        return i - old_base + new_base if old_base <= i < old_base + span else i

    def shift(fd, st, dir_fd, name):
        uid, gid = move(st.st_uid), move(st.st_gid)
        if (uid, gid) == (st.st_uid, st.st_gid):
            return 0
        if stat.S_ISLNK(st.st_mode):
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            return 1
        # Through the descriptor held (a /proc/self/fd link names the inode, not a path).
        path = f"/proc/self/fd/{fd}"
        cap = None
        if stat.S_ISREG(st.st_mode):
            try:
                cap = os.getxattr(path, "security.capability")
            except OSError:
                pass
        os.chown(path, uid, gid)
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        if cap is not None:
            os.setxattr(path, "security.capability", cap)
        return 1

    def walk(dir_fd):
        changed = 0
        for name in confined.names(dir_fd):
            try:
                fd, st = confined.open_entry(dir_fd, name)
            except FileNotFoundError:
                continue
            try:
                changed += shift(fd, st, dir_fd, name)
                if stat.S_ISDIR(st.st_mode):
                    sub = confined.reopen(fd, st, os.O_RDONLY)
                    try:
                        changed += walk(sub)
                    finally:
                        os.close(sub)
            finally:
                os.close(fd)
        return changed

    top = confined.open_root(root)
    try:
        return shift(top, os.fstat(top), None, None) + walk(top)
    finally:
        os.close(top)


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
    """One walk: counts entries and remembers inodes with several links to link them again.

    Every source entry is opened once, as O_PATH without following it, and handled by the type of
    the object held: a directory the sandbox swaps for a symlink after it was listed is then
    copied as the symlink it has become (or skipped if it has gone), never followed."""

    def __init__(self, reflink):
        self.reflink = reflink
        self.count = 0
        self.links = {}  # (dev, ino) → its first name, relative to dst
        self.dst_root = None

    def copy_dir(self, src_fd, dst_fd, rel=""):
        if self.dst_root is None:
            self.dst_root = dst_fd
        for name in confined.names(src_fd):
            try:
                fd, st = confined.open_entry(src_fd, name)
            except FileNotFoundError:
                continue  # removed since it was listed: not in this snapshot
            try:
                self._copy_entry(dst_fd, name, f"{rel}/{name}" if rel else name, fd, st)
            finally:
                os.close(fd)

    def _copy_entry(self, dst_dir, name, rel, fd, st):
        self.count += 1
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst_dir)
            s = confined.reopen(fd, st, os.O_RDONLY)
            try:
                d = confined.open_dir(dst_dir, name)
                try:
                    self.copy_dir(s, d, rel)
                    self.finish(s, d, st)  # after its entries, which change its times
                finally:
                    os.close(d)
            finally:
                os.close(s)
            return
        if st.st_nlink > 1:
            first = self.links.get((st.st_dev, st.st_ino))
            if first is not None:
                # By name, but in dst: the new layer, which nothing else can reach while it is made.
                os.link(first, name, src_dir_fd=self.dst_root, dst_dir_fd=dst_dir, follow_symlinks=False)
                return
            self.links[(st.st_dev, st.st_ino)] = rel
        if stat.S_ISREG(mode):
            s = confined.reopen(fd, st, os.O_RDONLY)
            try:
                d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                            dir_fd=dst_dir)
                try:
                    if self.reflink:
                        fcntl.ioctl(d, FICLONE, s)
                    else:
                        _copy_bytes(s, d)
                    self.finish(s, d, st)
                finally:
                    os.close(d)
            finally:
                os.close(s)
            return
        if stat.S_ISLNK(mode):
            # readlinkat on the O_PATH fd itself (an empty path): the link held, not the name.
            os.symlink(os.readlink("", dir_fd=fd), name, dir_fd=dst_dir)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            if not (stat.S_ISCHR(mode) and st.st_rdev == 0):
                self.count -= 1
                return  # a device node other than a whiteout (0:0) is not recreated by host root
            os.mknod(name, stat.S_IFCHR | 0o600, 0, dir_fd=dst_dir)
        else:  # fifos, sockets
            os.mknod(name, stat.S_IFMT(mode) | 0o600, dir_fd=dst_dir)
        self._finish_by_name(fd, dst_dir, name, st)

    @staticmethod
    def finish(src_fd, dst_fd, st):
        """Owner, xattrs, mode, then times, through descriptors: chown clears setuid bits and file
        capabilities."""
        os.chown(dst_fd, st.st_uid, st.st_gid)
        _copy_xattrs(src_fd, dst_fd)
        os.chmod(dst_fd, stat.S_IMODE(st.st_mode))
        os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    @staticmethod
    def _finish_by_name(path_fd, dst_dir, name, st):
        """The same for an entry that cannot be opened for reading (a symlink, whiteout, fifo or
        socket): the source's xattrs through its O_PATH descriptor's /proc link (which reaches the
        object held, a symlink itself, not what it points to), the copy's by *at calls that do not
        follow it."""
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
        _copy_xattrs(f"/proc/self/fd/{path_fd}", confined.entry_path(dst_dir, name), follow_dst=False)
        if not stat.S_ISLNK(st.st_mode):  # a symlink's mode is fixed (0777) on Linux
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dst_dir)  # ours: a node made just now
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_dir, follow_symlinks=False)


def _copy_xattrs(src, dst, follow_dst=True):
    """Every xattr of src onto dst; one the sandbox removes between the list and the read is
    skipped (it is changing its own layer: the snapshot takes what is there)."""
    for attr in os.listxattr(src):
        try:
            value = os.getxattr(src, attr)
        except OSError as e:
            if e.errno == errno.ENODATA:
                continue
            raise
        os.setxattr(dst, attr, value, follow_symlinks=follow_dst)


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
