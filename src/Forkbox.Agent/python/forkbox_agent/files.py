"""Files in the sandbox, one function per op (write, read, list_dir, remove): each takes the
request and its payload and returns the frame to answer, (header, payload). Paths are resolved
here, inside the sandbox, as its own processes would resolve them. An OSError answers a fail
frame whose code the error table maps from its errno (protocol.errno_code).

No op opens what is not a regular file or a directory: opening a named pipe blocks until a
writer comes (and with it the agent's whole call loop), and a device's open is its driver's to
define. Each op decides from the type (an O_PATH descriptor's, or lstat's) before it opens."""

import os
import secrets
import shutil
import stat

from . import cells, protocol

error_code = protocol.errno_code


_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"))


class NotRegularFile(OSError):
    """What a file op answers for a named pipe, a socket or a device: code not_a_regular_file."""

    def __init__(self, mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        super().__init__(f"it is {kind}; only regular files can be read or written")


def failure(req, err):
    """The fail frame's header for an OSError on req's path: not_a_regular_file for NotRegularFile, else by its errno."""
    code = protocol.ERR_NOT_REGULAR if isinstance(err, NotRegularFile) else error_code(err)
    return protocol.fail(req["id"], code, f"{req.get('path')}: {getattr(err, 'strerror', None) or err}")


def held_working_directory(path):
    """The agent's working directory when removing path would remove it (or /), else None: a
    REPL whose directory is gone fails every later cell."""
    real = os.path.realpath(path)
    home = os.path.realpath(cells.working_directory())
    return home if real == "/" or home == real or home.startswith(real.rstrip("/") + "/") else None


def check_type(mode):
    """Raises unless mode is a regular file's: IsADirectoryError for a directory, NotRegularFile for the rest."""
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(21, "Is a directory")
    if not stat.S_ISREG(mode):
        raise NotRegularFile(mode)


def open_regular(path, flags):
    """A descriptor of path opened with flags, once an O_PATH descriptor of it (which opens nothing)
    shows a regular file; the open goes through that descriptor, so it is the file just checked."""
    probe = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        check_type(os.fstat(probe).st_mode)
        return os.open(f"/proc/self/fd/{probe}", flags | os.O_CLOEXEC)
    finally:
        os.close(probe)


def write(req, payload):
    # A symlink is followed, as the sandbox's own programs writing the path would: the upload
    # replaces the file the link points to, and the link stays.
    path = os.path.realpath(req["path"])
    tmp = None
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        try:
            check_type(os.lstat(path).st_mode)
        except FileNotFoundError:
            pass
        # A new name, made with O_EXCL: never an existing file (or pipe) someone put there.
        tmp = f"{path}.forkbox-upload-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return failure(req, e), b""
    return protocol.ok(req["id"], size=len(payload)), b""


def read(req, _payload):
    try:
        with os.fdopen(open_regular(req["path"], os.O_RDONLY), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > req.get("max", 1 << 62):
                return protocol.fail(req["id"], protocol.ERR_TOO_LARGE,
                                     f"{req['path']} is {size} bytes, over the limit of {req['max']}"), b""
            data = f.read()
    except OSError as e:
        return failure(req, e), b""
    return protocol.ok(req["id"], size=len(data)), data


def list_dir(req, _payload):
    entries = []
    try:
        with os.scandir(req["path"]) as it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                kind = ("dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode)
                        else "symlink" if stat.S_ISLNK(st.st_mode) else "other")
                entries.append(protocol.file_entry(e.name, kind, st.st_size, st.st_mtime))
    except OSError as e:
        return failure(req, e), b""
    entries.sort(key=lambda x: x["name"])
    return protocol.ok(req["id"], entries=entries), b""


def remove(req, _payload):
    path = req["path"]
    try:
        if home := held_working_directory(path):
            return protocol.fail(req["id"], protocol.ERR_WORKING_DIRECTORY,
                                 f"{path} is or holds {home}, the directory the REPL and commands run in; "
                                 "delete what is in it instead"), b""
        if os.path.isdir(path) and not os.path.islink(path):
            if req.get("recursive"):
                shutil.rmtree(path)
            else:
                os.rmdir(path)
        else:
            os.unlink(path)
    except OSError as e:
        return failure(req, e), b""
    return protocol.ok(req["id"]), b""
