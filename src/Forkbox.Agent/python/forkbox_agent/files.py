"""Files in the sandbox, one function per op (write, read, list_dir, remove): each takes the
request and its payload and returns the frame to answer, (header, payload). Paths are resolved
here, inside the sandbox, as its own processes would resolve them. An OSError answers a fail
frame whose code the error table maps from its errno (protocol.errno_code)."""

import os
import shutil
import stat

from . import protocol

error_code = protocol.errno_code


def failure(req, err):
    """The fail frame's header for an OSError on req's path."""
    return protocol.fail(req["id"], error_code(err), f"{req.get('path')}: {getattr(err, 'strerror', None) or err}")


def write(req, payload):
    path = req["path"]
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp = f"{path}.forkbox-upload"
        with open(tmp, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(f"{path}.forkbox-upload")
        except OSError:
            pass
        return failure(req, e), b""
    return protocol.ok(req["id"], size=len(payload)), b""


def read(req, _payload):
    try:
        with open(req["path"], "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise IsADirectoryError(21, "not a regular file")
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
