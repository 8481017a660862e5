"""The messages between hostd and the agent, and between hostd and a zygote: their op, event and
field names, in one place (the C# side is Forkbox.Host/Agents/AgentProtocol.cs and
Forkbox.Host/Zygotes/ZygoteProtocol.cs: change both together; a contract test checks that each
side decodes what the other encodes).

On the control channel a frame is: u32 header length, u32 payload length (both big-endian), a
UTF-8 JSON header, then the payload bytes (file contents; empty for most frames). Requests carry
"op" and "id"; every answer and event carries "ev" and the call's "id". A zygote talks in JSON
lines instead, on its stdin and stdout.

The builders below make every message the agent and the zygote send; REQUESTS and
ZYGOTE_REQUESTS say what hostd sends them (check tells a request's problems). ERRORS is the
error table (error_codes.json, which hostd embeds too)."""

import errno as _errno
import json
import os
import struct

_PREFIX = struct.Struct(">II")
MAX_HEADER = 16 << 20

# ---- ops hostd asks of an agent ("op") --------------------------------------------------------
OP_EXEC = "exec"
OP_SETENV = "setenv"
OP_WRITE = "write"
OP_READ = "read"
OP_LIST = "list"
OP_REMOVE = "remove"
OP_FORK = "fork"
OP_HIBERNATE = "hibernate"
OP_RESTORE = "restore"

# ---- events an agent sends ("ev") -------------------------------------------------------------
EV_HELLO = "hello"  # first frame on a control socket (or why a fork could not start)
EV_OUT = "out"  # lines an exec wrote to stream s (1 stdout, 2 stderr)
EV_RESULT = "result"  # the value of an exec's last expression (rich calls)
EV_DISPLAY = "display"  # a MIME bundle a cell showed (plt.show(); rich calls)
EV_ERROR = "error"  # what an exec raised (rich calls)
EV_EXIT = "exit"  # an exec's last frame
EV_OK = "ok"  # any other op's answer when it worked
EV_FAIL = "fail"  # any op's answer when it could not be done, with a code of ERRORS

# ---- ops hostd asks of a zygote ---------------------------------------------------------------
ZYGOTE_SPAWN = "spawn"
ZYGOTE_GRAFT = "graft"
ZYGOTE_RESTORE = "restore"

# ---- the fields of each request: name -> type; a name ending in "?" may be left out ----------
_NUM = (int, float)
REQUESTS = {
    OP_EXEC: {"id": int, "lang": str, "code": str, "timeout": _NUM, "rich": bool, "cwd?": str, "env?": dict},
    OP_SETENV: {"id": int, "env": dict},
    OP_WRITE: {"id": int, "path": str},  # the payload is the file's contents
    OP_READ: {"id": int, "path": str, "max": int},
    OP_LIST: {"id": int, "path": str},
    OP_REMOVE: {"id": int, "path": str, "recursive": bool},
    OP_FORK: {"id": int, "n": int},
    OP_HIBERNATE: {"id": int, "path": str},
    OP_RESTORE: {"id": int, "path": str},
}
_SPAWN_LAYER = {"target": str, "lower": str, "upper": str, "work": str, "writable": list}  # writable: [[path, mode], …]
_GRAFT_LAYER = {"target": str, "lower": str, "src_upper": str, "upper": str, "work": str}
_GRAFT_CHILD = {"id": str, "token": str, "pid": int, "userns": str, "agent_socket": str, "tmp_size_mb": int,
                "layers": [_GRAFT_LAYER]}
ZYGOTE_CONFIG = {"agent_dir": str, "seccomp": str, "preload": list, "output_limit": int}
ZYGOTE_REQUESTS = {
    ZYGOTE_SPAWN: {"id": str, "token": str, "agent_socket": str, "userns": str, "uid": int, "cgroup_procs": list,
                   "root": str, "tmp_size_mb": int, "foreground": bool, "layers": [_SPAWN_LAYER], "env?": dict},
    ZYGOTE_GRAFT: {"id": str, "strategy": str, "children": [_GRAFT_CHILD]},
    ZYGOTE_RESTORE: {"id": str, "strategy": str, "uid_from": int, "uid_to": int, "layers": [{"src": str, "dst": str}]},
}


def check(schema, message, where="request"):
    """The problems of message against schema (a dict of REQUESTS or ZYGOTE_REQUESTS): missing
    fields, fields of the wrong type, fields the schema does not name. Empty when it fits."""
    if not isinstance(message, dict):
        return [f"{where} is not an object"]
    problems = []
    names = set()
    for key, kind in schema.items():
        optional = key.endswith("?")
        name = key.rstrip("?")
        names.add(name)
        if name not in message:
            if not optional:
                problems.append(f"{where} has no '{name}'")
            continue
        value = message[name]
        if isinstance(kind, list):
            if not isinstance(value, list):
                problems.append(f"{where}.{name} is not a list")
            else:
                for i, item in enumerate(value):
                    problems += check(kind[0], item, f"{where}.{name}[{i}]")
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(f"{where}.{name} is {type(value).__name__}, not {getattr(kind, '__name__', kind)}")
    for name in message:
        if name not in names and name != "op":
            problems.append(f"{where} has '{name}', which the protocol does not name")
    return problems


# ---- what an agent sends ----------------------------------------------------------------------

def hello(sandbox_id, token, error=None):
    header = {"ev": EV_HELLO, "id": sandbox_id, "token": token}
    if error is not None:
        header["error"] = error
    return header


def out(call_id, stream, lines):
    return {"ev": EV_OUT, "id": call_id, "s": stream, "lines": lines}


def result(call_id, repr_text, kind, data, data_kind, mime):
    """data is the value when it is JSON (data_kind "json"), else its repr (data_kind "repr");
    mime is its MIME bundle (rich.bundle)."""
    return {"ev": EV_RESULT, "id": call_id, "repr": repr_text, "kind": kind, "data": data, "data_kind": data_kind,
            "mime": mime}


def display(call_id, mime):
    return {"ev": EV_DISPLAY, "id": call_id, "mime": mime}


def error(call_id, name, value, traceback):
    return {"ev": EV_ERROR, "id": call_id, "name": name, "value": value, "traceback": traceback}


def exit_(call_id, code, timed_out):
    return {"ev": EV_EXIT, "id": call_id, "code": code, "timeout": timed_out}


def ok(call_id, **fields):
    """An op's answer when it worked: write and read size=, list entries=, fork pids=, hibernate
    and restore the fields of hibernate.save and hibernate.restore."""
    return {"ev": EV_OK, "id": call_id, **fields}


def fail(call_id, code, message):
    """An op's answer when it could not be done; code is one of ERRORS["codes"]."""
    return {"ev": EV_FAIL, "id": call_id, "code": code, "message": message}


def file_entry(name, kind, size, mtime):
    return {"name": name, "type": kind, "size": size, "mtime": mtime}


# ---- what a zygote sends ----------------------------------------------------------------------

def zygote_ready(pid):
    return {"ready": True, "pid": pid}


def zygote_exited(pid, status):
    return {"exited": pid, "status": status}


def spawn_ok(sandbox_id, pid, steps, setup_ms):
    return {"id": sandbox_id, "ok": True, "pid": pid, "steps": steps, "setup_ms": setup_ms}


def graft_ok(request_id, steps):
    return {"id": request_id, "ok": True, "steps": steps}


def restore_ok(request_id, entries, steps):
    return {"id": request_id, "ok": True, "entries": entries, "steps": steps}


def zygote_failure(request_id, message):
    return {"id": request_id, "ok": False, "error": message}


# ---- the error table --------------------------------------------------------------------------

def _load_errors():
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "error_codes.json"), "rb") as f:
        table = json.load(f)
    by_errno = {getattr(_errno, name): code for name, code in table["errno"].items() if hasattr(_errno, name)}
    return table, by_errno


ERRORS, _ERRNO_CODES = _load_errors()
ERR_NOT_FOUND = "not_found"
ERR_TOO_LARGE = "too_large"
ERR_NO_SPACE = "no_space"
ERR_AGENT = "agent_error"
ERR_INTERRUPTED = "interrupted"
ERR_NOT_REGULAR = "not_a_regular_file"
ERR_WORKING_DIRECTORY = "working_directory"


def errno_code(err):
    """The code an OSError answers, by its errno (ERRORS["errno"]); ERRORS["errno_default"] for any other."""
    return _ERRNO_CODES.get(getattr(err, "errno", None), ERRORS["errno_default"])


# ---- frames -----------------------------------------------------------------------------------

def encode(header, payload=b""):
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return _PREFIX.pack(len(h), len(payload)) + h + payload


def encode_line(message):
    """One line to or from a zygote."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class FrameReader:
    """Reads whole frames from a blocking socket."""

    def __init__(self, sock):
        self._sock = sock

    def _exact(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self._sock.recv_into(view[got:])
            if k == 0:
                raise EOFError("control channel closed")
            got += k
        return bytes(buf)

    def read(self):
        hlen, plen = _PREFIX.unpack(self._exact(8))
        if hlen > MAX_HEADER:
            raise ValueError(f"frame header of {hlen} bytes is over the limit")
        header = json.loads(self._exact(hlen))
        payload = self._exact(plen) if plen else b""
        return header, payload
