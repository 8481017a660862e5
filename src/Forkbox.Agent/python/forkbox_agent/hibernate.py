"""Hibernation: the REPL's state written to disk, so that a fresh agent can take it up again.

save() writes PATH/state; restore() reads it into a namespace and removes PATH. The file:

    magic    b"forkbox-hibernate 1\\n"
    frame H  pickle of {"python", "pickler", "environ", "cwd", "sys_path", "modules", "module_globals"}
    frame R  one per saved global: u32 name length, the name (UTF-8), the pickler's tag (b"p" for
             pickle's C pickler, b"d" for dill), the value pickled on its own
    frame E  pickle of {"saved", "not_saved", "order"}: written last, so a file without it is one
             whose save did not complete, and restore refuses it whole
    frame := kind (1 byte), u64 body length (big-endian), body

Each global is pickled on its own, straight into the file: one that cannot be pickled (a socket, a
generator) costs only itself, and a large one is never copied into memory first. Identity between
globals is kept: a value that is (or holds) a global saved before it is pickled as a reference to it,
so `b = a` or an instance of a class defined in the REPL still refer to the same object after restore.
Modules are always references, imported again on restore.

Each global is tried with pickle's C pickler first: it is fast (a 100 MB DataFrame goes at the
disk's pace) and refuses, rather than mis-saves, what it could only refer to by name in a module
that does not hold it (functions and classes defined in the REPL, whose __module__ is "__main__").
Those, and what pickle cannot do at all (locks), go to dill, which pickles them by value; without
dill they are reported as not saved. dill is imported only when a global needs it.
"""

import importlib
import os
import pickle
import resource
import shutil
import struct
import sys
import threading
import types

MAGIC = b"forkbox-hibernate 1\n"
STATE = "state"
_FRAME = struct.Struct(">cQ")
_NAME = struct.Struct(">I")
_LENGTH = struct.Struct(">Q")
# Values whose identity means nothing: never turned into references to the global holding them.
_ATOMS = (type(None), bool, int, float, complex, str, bytes)
_NAMESPACE = ("ns",)
_REASON_MAX = 300
# Recursion limit for the C pickler when a value is too deep at the usual one. It takes some 230 bytes
# of C stack a level: at 400 a level, the limit stays within half the stack.
_DEEP_LIMIT = 20000

_BASELINE = frozenset(sys.modules)
_own_modules = set()  # what importing dill brought in: not the user's
_codec = None


class StateError(Exception):
    """The state file is not one a save completed; nothing was restored."""


def save(namespace, path, baseline=_BASELINE):
    """Writes every global of namespace but __builtins__ to path/state (path is replaced, mode 0700).
    baseline: the modules there were when the agent started; the others are imported again on restore.
    Returns what was saved, what was not and why, and what cannot survive (threads, processes)."""
    modules = _user_modules(baseline)
    not_saved, module_globals, values, order = {}, {}, [], []
    for name, value in list(namespace.items()):
        if name == "__builtins__":
            continue
        if not isinstance(name, str):
            not_saved[repr(name)] = "the name is not a string"
            continue
        order.append(name)
        if isinstance(value, types.ModuleType):
            if sys.modules.get(value.__name__) is value:
                module_globals[name] = value.__name__
            else:
                not_saved[name] = f"module {value.__name__!r} cannot be imported by name"
        else:
            values.append((name, value))
    # Classes, then functions (callables), then the rest: an instance saved after its class refers to it.
    values.sort(key=lambda item: 0 if isinstance(item[1], type) else 1 if callable(item[1]) else 2)
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    meta = {"python": sys.version, "pickler": "pickle, dill where needed", "environ": dict(os.environ), "cwd": cwd,
            "sys_path": list(sys.path), "modules": modules, "module_globals": module_globals}

    if os.path.lexists(path):
        shutil.rmtree(path)  # refuses a symlink or a file: only a directory is ours to replace
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)
    try:
        saved, size = _write(os.path.join(path, STATE), namespace, meta, values, not_saved, order)
        _fsync_dir(path)
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # half a state is of no use, and may fill the disk
        raise
    return {"saved": [n for n in order if n in saved or n in module_globals], "not_saved": not_saved,
            "modules": sorted({m.partition(".")[0] for m in modules}), "bytes": size,
            "threads": _threads(), "processes": _processes()}


def _write(state, namespace, meta, values, not_saved, order):
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        out = _Sink(fd)
        out.write(MAGIC)
        _frame(out, b"H", pickle.dumps(meta, pickle.HIGHEST_PROTOCOL))
        refs, saved = {}, set()
        for name, value in values:
            start = out.tell()
            encoded = name.encode("utf-8", "surrogatepass")
            out.write(_FRAME.pack(b"R", 0) + _NAME.pack(len(encoded)) + encoded)
            error = _dump_record(out, out.tell(), namespace, refs, value)
            if error is not None:
                _cut(fd, start)
                not_saved[name] = error if isinstance(error, str) else _reason(error)
                continue
            os.pwrite(fd, _LENGTH.pack(out.tell() - start - _FRAME.size), start + 1)
            saved.add(name)
            if not isinstance(value, _ATOMS):
                refs.setdefault(id(value), name)
        _frame(out, b"E", pickle.dumps({"saved": [n for n in order if n in saved],
                                        "not_saved": not_saved, "order": order}, pickle.HIGHEST_PROTOCOL))
        os.fsync(fd)
        return saved, os.fstat(fd).st_size
    finally:
        os.close(fd)


def _dump_record(out, at, namespace, refs, value):
    """The pickler's tag and the value at `at`: pickle's C pickler, else dill. Returns None, or why
    neither could save it."""
    out.write(b"p")
    error = _dump(out, at + 1, _Pickler, namespace, refs, value)
    if isinstance(error, RecursionError):
        # Deep structures (a linked list of thousands of objects): the C pickler with more room.
        with _recursion_limit(_deep_limit()):
            error = _dump(out, at + 1, _Pickler, namespace, refs, value)
    if error is None:
        return None
    _, pickler_class, _ = _load_codec()
    if pickler_class is _Pickler:
        return error  # no dill here
    _cut(out.fd, at)
    out.write(b"d")
    return _dump(out, at + 1, pickler_class, namespace, refs, value)


def _dump(out, at, pickler_class, namespace, refs, value):
    """Pickles value at `at`, the end of the file; returns None, or the exception that stopped it,
    with the file cut back to `at`."""
    try:
        pickler_class(out, namespace, refs).dump(value)
        return None
    except (Exception, SystemExit) as e:
        if out.error is not None:
            raise out.error from None  # the disk, not the object: the save as a whole fails
        _cut(out.fd, at)
        return e


def _cut(fd, at):
    os.ftruncate(fd, at)
    os.lseek(fd, at, os.SEEK_SET)


def _deep_limit():
    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    return _DEEP_LIMIT if stack == resource.RLIM_INFINITY else min(_DEEP_LIMIT, stack // 400)


class _recursion_limit:
    """Raises the recursion limit (never lowers it) for a with block."""

    def __init__(self, limit):
        self.limit = limit

    def __enter__(self):
        self.old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(self.old, self.limit))

    def __exit__(self, *_):
        sys.setrecursionlimit(self.old)


def restore(namespace, path):
    """Reads path/state into namespace, then removes path. A global that cannot be restored is
    reported with why, the others are restored all the same; not_restored also carries what was
    not saved, so everything that did not come back is in one place. A state file a save did not
    complete raises StateError before anything is changed."""
    state = os.path.join(path, STATE)
    not_restored, restored, loaded = {}, [], {}
    with open(state, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        meta, records, trailer = _scan(f, size, state)
        # First: a file is opened again by the name it was opened with, which may be relative, and
        # modules are imported from where the user had them (sys.path.append("/root/lib")).
        sys.path[:] = meta["sys_path"] + [p for p in sys.path if p not in meta["sys_path"]]
        os.environ.clear()
        os.environ.update(meta["environ"])
        if meta["cwd"] is not None:
            try:
                os.chdir(meta["cwd"])
            except OSError as e:
                not_restored["os.chdir"] = _reason(e)
        modules = _import_modules(meta["modules"], not_restored)
        for name, module in meta["module_globals"].items():
            try:
                namespace[name] = importlib.import_module(module)
            except (Exception, SystemExit) as e:
                not_restored[name] = _reason(e)
            else:
                restored.append(name)
        for name, start in records:
            f.seek(start)
            try:
                value = _unpickler(f.read(1))(f, namespace, loaded).load()
            except (Exception, SystemExit) as e:
                not_restored[name] = _reason(e)
                continue
            namespace[name] = loaded[name] = value
            restored.append(name)
    for name, reason in trailer["not_saved"].items():
        not_restored.setdefault(name, reason)
    # The namespace in the order it had: globals() and dir() look as they did.
    position = {name: i for i, name in enumerate(trailer["order"])}
    restored.sort(key=lambda n: position.get(n, len(position)))
    for name in trailer["order"]:
        if name in namespace:
            namespace[name] = namespace.pop(name)
    try:
        shutil.rmtree(path)
    except OSError as e:  # restored all the same: say so rather than fail the call
        not_restored[f"rm {path}"] = _reason(e)
    return {"restored": restored, "not_restored": not_restored, "modules": modules, "bytes": size}


def _scan(f, size, where):
    """Walks every frame header to the end first: a file whose save did not complete (a crash, a
    full disk) is refused whole rather than half restored, and no read can wait on missing bytes."""
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        if MAGIC.startswith(magic):
            raise StateError(f"{where} is truncated at byte {size}: the save did not complete")
        raise StateError(f"{where} is not a hibernation state file")
    meta = trailer = None
    records = []
    pos = len(MAGIC)
    while pos < size:
        head = f.read(_FRAME.size)
        kind, length = _FRAME.unpack(head) if len(head) == _FRAME.size else (None, 0)
        body = pos + _FRAME.size
        if kind is None or body + length > size:
            raise StateError(f"{where} is truncated at byte {size} (a frame at byte {pos} goes past it): "
                             f"the save did not complete")
        try:
            if kind == b"H" and meta is None:
                meta = pickle.loads(f.read(length))
            elif kind == b"R" and meta is not None and trailer is None:
                (n,) = _NAME.unpack(f.read(_NAME.size))
                if _NAME.size + n > length:
                    raise ValueError("a name longer than its frame")
                records.append((f.read(n).decode("utf-8", "surrogatepass"), body + _NAME.size + n))
            elif kind == b"E" and meta is not None and trailer is None:
                trailer = pickle.loads(f.read(length))
            else:
                raise ValueError(f"unexpected frame {kind!r}")
        except (ValueError, EOFError, pickle.UnpicklingError, struct.error) as e:
            raise StateError(f"{where} is corrupt at byte {pos}: {e}") from None
        pos = body + length
        f.seek(pos)
    if trailer is None:
        raise StateError(f"{where} is truncated at byte {size} (no end frame): the save did not complete")
    return meta, records, trailer


def _user_modules(baseline):
    """Modules imported since the agent started that user code can reach by name: top-level ones, and
    submodules that are attributes of their package (`import xml.etree.ElementTree`); not private ones."""
    names = []
    for name, module in list(sys.modules.items()):
        if name in baseline or name in _own_modules or module is None:
            continue
        parts = name.split(".")
        if any(p.startswith("_") for p in parts):
            continue
        if len(parts) > 1 and getattr(sys.modules.get(name.rpartition(".")[0]), parts[-1], None) is not module:
            continue
        names.append(name)
    return sorted(names)


def _import_modules(names, not_restored):
    """Imports names (sorted, so packages come before their submodules); returns the top-level
    ones that imported. A failure is reported once, for the highest module that failed."""
    done, failed = set(), set()
    for name in names:
        parts = name.split(".")
        if any(".".join(parts[:i]) in failed for i in range(1, len(parts))):
            continue
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as e:
            failed.add(name)
            not_restored[f"import {name}"] = _reason(e)
        else:
            done.add(parts[0])
    return sorted(done - {n.partition(".")[0] for n in failed})


def _threads():
    """Threads other than the main one, which do not survive. Threads started without `threading`
    (the agent's own helpers among them) are not listed."""
    main = threading.main_thread()
    dummy = getattr(threading, "_DummyThread", ())
    return [f"{t.name} (daemon)" if t.daemon else t.name
            for t in threading.enumerate() if t is not main and not isinstance(t, dummy)]


def _processes():
    """The sandbox's other processes, as "pid N: command line": the agent is PID 1 of the sandbox's
    PID namespace, so /proc lists exactly the sandbox's. Zombies are left out: they are gone already."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (1, os.getpid()):
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        end = stat.rfind(b")")
        if stat[end + 2:end + 3] == b"Z":
            continue
        text = cmdline.rstrip(b"\0").replace(b"\0", b" ") or b"[" + stat[stat.find(b"(") + 1:end] + b"]"
        found.append((int(entry), f"pid {entry}: {text.decode('utf-8', 'replace')}"))
    return [text for _, text in sorted(found)]


def _reason(e):
    try:
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    except Exception:
        text = type(e).__name__
    return text if len(text) <= _REASON_MAX else text[:_REASON_MAX] + "…"


def _frame(out, kind, body):
    out.write(_FRAME.pack(kind, len(body)))
    out.write(body)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Sink:
    """The state file as the pickler's file: each write goes whole to the descriptor (a single
    write(2) stops at 2 GiB) with no buffer to copy a large object into, and a failed write is
    noted, to tell a full disk from an object that cannot be pickled."""

    def __init__(self, fd):
        self.fd = fd
        self.error = None

    def write(self, data):
        view = memoryview(data).cast("B")  # bytes, or a PickleBuffer the C pickler hands over whole
        size = view.nbytes
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            self.error = e
            raise
        return size

    def tell(self):
        return os.lseek(self.fd, 0, os.SEEK_CUR)


class _Main:
    """Stands for the REPL's module in dill's eyes (its __dict__ is the namespace)."""


class _Refs:
    """What a record pickles by reference: the namespace (the globals of the REPL's functions),
    modules, and values of globals saved before it."""

    def persistent_id(self, obj):
        name = self.refs.get(id(obj))
        if name is not None:
            return ("g", name)
        if obj is self.namespace:
            return _NAMESPACE
        if isinstance(obj, types.ModuleType) and sys.modules.get(getattr(obj, "__name__", None)) is obj:
            return ("m", obj.__name__)
        return None


class _Loads:
    def persistent_load(self, pid):
        if pid[0] == "g":
            if pid[1] in self.loaded:
                return self.loaded[pid[1]]
            raise pickle.UnpicklingError(f"it refers to {pid[1]!r}, which was not restored")
        if pid[0] == "m":
            return importlib.import_module(pid[1])
        if pid == _NAMESPACE:
            return self.namespace
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


def _unpickler(tag):
    if tag == b"p":
        return _Unpickler
    if tag == b"d":
        name, _, unpickler = _load_codec()
        if unpickler is _Unpickler:
            raise pickle.UnpicklingError(f"it was saved with dill, and here there is only {name}")
        return unpickler
    raise pickle.UnpicklingError(f"unknown pickler tag {tag!r}")


def _load_codec():
    """(name, pickler class, unpickler class): dill's if it can be imported, else pickle's.
    dill is imported on first use, so the zygote does not carry it."""
    global _codec
    if _codec is None:
        before = set(sys.modules)
        try:
            import dill
        except ImportError:
            dill = None
        _own_modules.update(set(sys.modules) - before)
        _codec = _dill_codec(dill) if dill is not None else ("pickle", _Pickler, _Unpickler)
    return _codec


class _Pickler(_Refs, pickle.Pickler):
    def __init__(self, file, namespace, refs):
        self.namespace, self.refs = namespace, refs
        super().__init__(file, pickle.HIGHEST_PROTOCOL)


class _Unpickler(_Loads, pickle.Unpickler):
    def __init__(self, file, namespace, loaded):
        self.namespace, self.loaded = namespace, loaded
        super().__init__(file)


def _dill_codec(dill):
    class Pickler(_Refs, dill.Pickler):
        def __init__(self, file, namespace, refs):
            self.namespace, self.refs = namespace, refs
            # Whatever dill.settings say: by value (byref off), and the function's own globals, not
            # copies of the globals it uses (recurse off), which with the lines below is the namespace.
            # An open file is opened again by name at its position, without truncating it (dill's
            # default, HANDLE_FMODE, opens a file that was open for writing with "w": it empties it).
            super().__init__(file, pickle.HIGHEST_PROTOCOL, byref=False, recurse=False, fmode=dill.CONTENTS_FMODE)
            # What dill.dump_session does for a module it saves: a function whose globals are that
            # module's __dict__ pickles them as a whole, which persistent_id turns into a reference.
            # Without it each function would carry a copy of the whole namespace.
            main = _Main()
            main.__dict__ = namespace
            self._main_modified, self._original_main, self._main = True, main, main

        def save(self, obj, save_persistent_id=True):
            # A large PickleBuffer (a numpy array) in-band: pickle's pure-Python pickler, which dill
            # is, copies it first (m.tobytes()); this writes it straight from the buffer.
            if type(obj) is pickle.PickleBuffer:
                with obj.raw() as m:
                    if m.nbytes >= 1 << 16:
                        opcode = pickle.BINBYTES8 if m.readonly else pickle.BYTEARRAY8
                        self._write_large_bytes(opcode + struct.pack("<Q", m.nbytes), m)
                        return
            super().save(obj, save_persistent_id)

    class Unpickler(_Loads, dill.Unpickler):
        def __init__(self, file, namespace, loaded):
            self.namespace, self.loaded = namespace, loaded
            # ignore: dill would otherwise rebind a restored instance of a REPL class to whatever
            # the name of its class means in its __main__.
            super().__init__(file, ignore=True)

    return f"dill {dill.__version__}", Pickler, Unpickler
