"""The agent: PID 1 of a sandbox, serving hostd over one control socket.

It runs Python cells in one persistent namespace (the value of a last
expression comes back, like a notebook), runs shell commands in fresh
subprocesses, and reads and writes files. Output streams line by line as it is
produced. Requests arrive one at a time: hostd serialises calls per sandbox.

Standard library only; it was imported in the zygote before the fork, so
nothing here touches the sandbox's disk to start.
"""

import _thread
import ast
import builtins
import fcntl
import io
import json
import linecache
import math
import os
import selectors
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import traceback

from . import hibernate, linux
from .protocol import FrameReader, encode

LINE_CHUNK = 64 * 1024
ZOMBIE_GRACE = 5.0
# Where a fork waits for hostd's helper to hand it its control socket: an abstract socket in the
# fork's own, brand-new network namespace, so nothing else can reach it.
HANDOFF_ADDRESS = b"\0forkbox-fork"
HANDOFF_TIMEOUT = 30.0
FORK_NAMESPACES = linux.CLONE_NEWNS | linux.CLONE_NEWNET | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS | linux.CLONE_NEWPID


class CellTimeout(BaseException):
    """Raised inside a cell by the timer; BaseException so `except Exception` in user code does not eat it."""


class Channel:
    """The control socket; sends are serialised because the output pump thread sends too."""

    def __init__(self, sock):
        self.sock = sock
        self.reader = FrameReader(sock)
        self.lock = threading.Lock()

    def send(self, header, payload=b""):
        data = encode(header, payload)
        main = threading.get_ident() == _MAIN
        with self.lock:
            if main:
                _timer.critical += 1
            try:
                self.sock.sendall(data)
            finally:
                if main:
                    _timer.critical -= 1
        if main and _timer.pending and not _timer.critical:
            _timer.pending = False
            raise CellTimeout()


class OutputSink:
    """Turns bytes or text written to one stream into line events for the call in progress.

    Limits total output per call: past the limit one marker line is sent and the rest dropped,
    so a cell printing a gigabyte cannot flood hostd or the client.
    """

    def __init__(self, agent, stream):
        self.agent = agent
        self.stream = stream  # 1 stdout, 2 stderr
        self.pending = b""
        self.lock = threading.Lock()

    def feed(self, data, final=False):
        with self.lock:
            data = self.pending + data
            lines = data.split(b"\n")
            self.pending = lines.pop()
            while len(self.pending) >= LINE_CHUNK:
                lines.append(self.pending[:LINE_CHUNK])
                self.pending = self.pending[LINE_CHUNK:]
            if final and self.pending:
                lines.append(self.pending)
                self.pending = b""
            if lines:
                self.agent.emit_lines(self.stream, [l.decode("utf-8", "replace") for l in lines])

    def flush(self):
        self.feed(b"", final=True)


class StreamWriter(io.TextIOBase):
    """sys.stdout / sys.stderr for cells: text goes straight to the control socket, a line at a time."""

    def __init__(self, sink, name):
        self.sink = sink
        self._name = name

    @property
    def name(self):
        return self._name

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self.sink.stream

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.sink.feed(s.encode("utf-8", "surrogateescape"))
        return len(s)

    def flush(self):
        self.sink.flush()


class _Discard(io.TextIOBase):
    """sys.stdout / sys.stderr while no call is in progress: what is written is dropped."""

    def writable(self):
        return True

    def write(self, s):
        return len(s)


class Agent:
    def __init__(self, sock, output_limit):
        self.chan = Channel(sock)
        self.output_limit = output_limit
        self.call_id = None
        self.call_bytes = 0
        self.truncated = False
        self.globals = {"__name__": "__main__", "__builtins__": builtins}
        self.cells = 0
        self.sinks = {1: OutputSink(self, 1), 2: OutputSink(self, 2)}
        self.emit_lock = threading.Lock()
        self.tracked = set()
        # Modules there are before any call (the template's, preloaded in the zygote): a fresh agent
        # has them too, so hibernate records only the others to import again.
        self.baseline_modules = set(sys.modules)

    # ---- output -------------------------------------------------------------

    def emit_lines(self, stream, lines):
        with self.emit_lock:
            if self.call_id is None or self.truncated:
                return
            size = sum(len(l) + 1 for l in lines)
            if self.call_bytes + size > self.output_limit:
                self.truncated = True
                lines = [f"[forkbox: output truncated after {self.call_bytes} bytes]"]
                stream = 2
            self.call_bytes += size
            self.chan.send({"ev": "out", "id": self.call_id, "s": stream, "lines": lines})

    def _install_fd_pump(self):
        """fd 1 and 2 are pipes drained by a thread, so output of subprocesses a cell starts
        (os.system, subprocess with inherited stdout) reaches the caller too."""
        self.pump_fds = {}
        for stream in (1, 2):
            r, w = os.pipe()
            os.dup2(w, stream)
            os.close(w)
            os.set_blocking(r, False)
            self.pump_fds[r] = self.sinks[stream]
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        self.pump_lock = threading.Lock()
        _start_thread(self._pump)

    def _pump(self):
        sel = selectors.DefaultSelector()
        for fd in self.pump_fds:
            sel.register(fd, selectors.EVENT_READ)
        while True:
            sel.select()
            self._drain()

    def _drain(self):
        with self.pump_lock:
            for fd, sink in self.pump_fds.items():
                while True:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    if not data:
                        break
                    sink.feed(data)

    def _finish_output(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self._drain()
        for sink in self.sinks.values():
            sink.flush()

    # ---- orphans ------------------------------------------------------------

    def _reap_orphans(self):
        """As PID 1 the agent inherits every orphan and must reap it, without stealing the exit
        status of a child that user code will wait for (subprocess.run, os.system). A zombie is
        reaped at once if it is from another session (what bash calls leave behind: each runs in
        a session of its own), else only after it has stayed a zombie for ZOMBIE_GRACE seconds."""
        own_sid = os.getsid(0)
        first_seen = {}
        while True:
            try:
                os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)  # sleeps until a child is a zombie
            except ChildProcessError:
                self.have_children.wait()  # only a call makes children (see _serve_calls)
                self.have_children.clear()
                continue
            now = time.monotonic()
            zombies = set()
            for pid, sid in _zombie_children():
                zombies.add(pid)
                if pid in self.tracked:
                    continue
                if sid != own_sid or now - first_seen.setdefault(pid, now) >= ZOMBIE_GRACE:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
            first_seen = {p: t for p, t in first_seen.items() if p in zombies}
            time.sleep(0.2)

    # ---- calls --------------------------------------------------------------

    def serve(self):
        self._install_fd_pump()
        sys.stdout = StreamWriter(self.sinks[1], "<stdout>")
        sys.stderr = StreamWriter(self.sinks[2], "<stderr>")
        sys.stdin = open(os.devnull)
        self._start_reaper()
        signal.signal(signal.SIGUSR2, lambda *_: _retire())
        self._serve_calls()

    def _serve_calls(self):
        handlers = {"exec": self.exec, "write": self.write_file, "read": self.read_file,
                    "list": self.list_dir, "remove": self.remove, "setenv": self.setenv, "fork": self.fork,
                    "hibernate": self.save_state, "restore": self.restore_state}
        while True:
            try:
                header, payload = self.chan.reader.read()
            except EOFError:
                _retire()
            except KeyboardInterrupt:
                continue
            op = header.get("op")
            try:
                handlers[op](header, payload)
            except KeyboardInterrupt:
                self.chan.send({"ev": "fail", "id": header.get("id"), "code": "interrupted", "message": "interrupted"})
            except Exception as e:  # a bug of ours must not kill PID 1
                self.chan.send({"ev": "fail", "id": header.get("id"), "code": "agent_error",
                                "message": f"{type(e).__name__}: {e}"})
            self._wake_reaper_if_children()

    def _start_reaper(self):
        """The orphan reaper, with no child to wait for, sleeps until a call has left one; polling
        instead woke fifty idle agents a hundred times a second between them."""
        self.have_children = threading.Event()
        _start_thread(self._reap_orphans)

    def _wake_reaper_if_children(self):
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        self.have_children.set()

    def _begin(self, call_id):
        with self.emit_lock:
            self.call_id = call_id
            self.call_bytes = 0
            self.truncated = False

    def _end(self, header):
        self._finish_output()
        with self.emit_lock:
            self.chan.send(header)
            self.call_id = None

    def exec(self, req, _payload):
        self._begin(req["id"])
        if req.get("lang") == "bash":
            code, timed_out = self._run_bash(req)
        else:
            code, timed_out = self._run_python(req)
        self._end({"ev": "exit", "id": req["id"], "code": code, "timeout": timed_out})

    # ---- python -------------------------------------------------------------

    def _run_python(self, req):
        env_before = dict(os.environ)
        cwd_before = os.getcwd()
        timeout = req.get("timeout") or 0
        timed_out = False
        exit_code = 0
        try:
            os.environ.update(req.get("env") or {})
            if req.get("cwd"):
                os.chdir(req["cwd"])
            self.cells += 1
            filename = f"<cell-{self.cells}>"
            source = req["code"]
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            tree = ast.parse(source, filename, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            body = compile(tree, filename, "exec")
            tail = compile(last, filename, "eval") if last is not None else None
            self._arm(timeout)
            try:
                exec(body, self.globals)
                value = eval(tail, self.globals) if tail is not None else None
            finally:
                self._disarm()
            if tail is not None and value is not None and req.get("rich"):
                self.chan.send({"ev": "result", "id": req["id"], **_describe(value)})
        except CellTimeout:
            timed_out = True
            exit_code = 124
            self._report_error(req, "TimeoutError", f"execution exceeded the timeout of {timeout:g} s", None)
        except SystemExit as e:
            exit_code = _exit_status(e.code)
        except BaseException as e:  # user code: report it, keep the REPL
            exit_code = 1
            self._report_error(req, type(e).__name__, str(e), e.__traceback__)
        finally:
            self._disarm()
            try:
                os.chdir(cwd_before)
            except OSError:
                pass
            os.environ.clear()
            os.environ.update(env_before)
        return exit_code, timed_out

    def _report_error(self, req, name, value, tb):
        # Drop the agent's own frames so the traceback starts in the cell.
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        text = "".join(traceback.format_list(traceback.extract_tb(tb))) if tb else ""
        text = ("Traceback (most recent call last):\n" + text if text else "") + f"{name}: {value}\n"
        sys.stderr.write(text)
        sys.stderr.flush()
        if req.get("rich"):
            self.chan.send({"ev": "error", "id": req["id"], "name": name, "value": value, "traceback": text})

    def _arm(self, timeout):
        if timeout > 0:
            signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)

    def _disarm(self):
        signal.setitimer(signal.ITIMER_REAL, 0)
        _timer.pending = False

    # ---- bash ---------------------------------------------------------------

    def _run_bash(self, req):
        env = dict(os.environ)
        env.update(req.get("env") or {})
        timeout = req.get("timeout") or 0
        try:
            proc = subprocess.Popen(["/bin/bash", "-c", req["code"]], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=req.get("cwd") or None,
                                    env=env, start_new_session=True)
        except OSError as e:
            self.sinks[2].feed(f"forkbox: cannot start bash: {e}\n".encode())
            return 127, False
        self.tracked.add(proc.pid)
        deadline = time.monotonic() + timeout if timeout > 0 else None
        # The call ends when bash exits, not when its pipes close: a command that leaves
        # something running in the background (`server &`) must not hold the call open.
        exited = os.pidfd_open(proc.pid)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, self.sinks[1])
        sel.register(proc.stderr, selectors.EVENT_READ, self.sinks[2])
        sel.register(exited, selectors.EVENT_READ, None)
        timed_out = False
        draining = 0
        while sel.get_map() and draining < 256:
            if draining:
                draining += 1
                wait = 0
            elif deadline is None:
                wait = None
            else:
                wait = max(0.0, deadline - time.monotonic())
            events = sel.select(wait)
            if not events:
                if draining:
                    break  # bash is gone and what it wrote has been read
                timed_out = True
                _kill_group(proc.pid)
                break
            for key, _ in events:
                if key.fd == exited:
                    sel.unregister(exited)
                    draining = 1
                    continue
                data = os.read(key.fd, 65536)
                if data:
                    key.data.feed(data)
                else:
                    sel.unregister(key.fileobj)
        sel.close()
        os.close(exited)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        self.tracked.discard(proc.pid)
        if timed_out:
            self.sinks[2].feed(f"forkbox: command exceeded the timeout of {timeout:g} s and was killed\n".encode())
            return 124, True
        rc = proc.returncode
        return (128 - rc if rc < 0 else rc), False

    def setenv(self, req, _payload):
        """Environment given at create, applied when a pooled sandbox is taken."""
        os.environ.update(req["env"])
        self.chan.send({"ev": "ok", "id": req["id"]})

    # ---- fork ---------------------------------------------------------------

    def fork(self, req, _payload):
        """Forks this agent n times, between two calls. Each fork goes through an intermediate
        process that unshares fresh mount, net, ipc, uts and pid namespaces and forks again, so
        the fork is PID 1 of its own namespace; it then waits on an abstract socket in its new
        network namespace for hostd's helper, which gives it its own root (a snapshot of ours)
        and its own control socket. Answers the forks' pids as this sandbox sees them."""
        self._finish_output()
        started = []
        for _ in range(req["n"]):
            r, w = os.pipe2(os.O_CLOEXEC)
            pid = os.fork()
            if pid == 0:
                os.close(r)
                self._fork_intermediate(w)  # never returns
            os.close(w)
            started.append((pid, r))
        pids, errors = [], []
        for pid, r in started:
            with os.fdopen(r, "rb") as f:
                report = f.read().decode("utf-8", "replace")
            # Reaped in the background: tearing down its copy of our memory is no one's wait.
            _start_thread(os.waitpid, pid, 0)
            if report.startswith("ok "):
                pids.append(int(report[3:]))
            else:
                errors.append(report or "the fork exited before it was ready")
        if errors:
            for pid in pids:
                _kill_quietly(pid)
            self.chan.send({"ev": "fail", "id": req["id"], "code": "agent_error",
                            "message": f"fork failed: {errors[0]}"})
            return
        self.chan.send({"ev": "ok", "id": req["id"], "pids": pids})

    def _fork_intermediate(self, report_fd):
        code = 1
        try:
            linux.unshare(FORK_NAMESPACES)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(HANDOFF_ADDRESS)
            listener.listen(1)
            # What the fork must reopen in its own root, taken here: once this process has
            # reported, hostd's helper may move the fork's root at any moment.
            files = _open_files({listener.fileno(), report_fd, self.chan.sock.fileno(), *self.pump_fds})
            cwd = os.getcwd()
            pid = os.fork()
            if pid == 0:
                os.close(report_fd)
                self._forked(listener, files, cwd)  # never returns
            os.write(report_fd, f"ok {pid}".encode())
            code = 0
        except BaseException as e:
            os.write(report_fd, f"{type(e).__name__}: {e}".encode()[:4000])
        finally:
            os.close(report_fd)  # the reader's EOF now, not after the kernel has torn our memory down
            os._exit(code)

    def _forked(self, listener, files, cwd):
        """The fork, PID 1 of its namespaces: waits for its root and control socket, then carries
        on as the agent, with this process's memory."""
        try:
            listener.settimeout(HANDOFF_TIMEOUT)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(HANDOFF_TIMEOUT)
                message, fds, _, _ = socket.recv_fds(conn, 65536, 1)
            listener.close()
            info = json.loads(message)
            sock = socket.socket(fileno=fds[0])
        except BaseException:
            os._exit(1)  # hostd's helper reports that it could not hand over
        try:
            linux.unshare(linux.CLONE_NEWCGROUP)  # hostd has moved us into our own cgroup by now
            self._resume_as_fork(sock, info, files, cwd)
        except BaseException as e:
            # Say why on the new control socket, in place of the hello hostd waits for.
            try:
                sock.sendall(encode({"ev": "hello", "id": info["id"], "token": info["token"],
                                     "error": f"{type(e).__name__}: {e}"}))
            finally:
                os._exit(1)

    def _resume_as_fork(self, sock, info, files, cwd):
        old = self.chan.sock
        self.chan = Channel(sock)
        old.close()
        for fd in self.pump_fds:
            os.close(fd)
        _reopen_files(files)
        try:
            os.chdir(cwd)
        except OSError:
            os.chdir("/")
        self._install_fd_pump()
        self._start_reaper()
        self.chan.send({"ev": "hello", "id": info["id"], "token": info["token"]})
        self._serve_calls()  # never returns

    # ---- hibernate ----------------------------------------------------------

    def save_state(self, req, _payload):
        """Writes the REPL's state under req["path"], for a fresh agent to restore (hibernate.py)."""
        self._state_op(req, lambda: hibernate.save(self.globals, req["path"], self.baseline_modules))

    def restore_state(self, req, _payload):
        """Takes up a state hibernate wrote, and removes it."""
        self._state_op(req, lambda: hibernate.restore(self.globals, req["path"]))

    def _state_op(self, req, op):
        # Pickling runs user code (a __reduce__ that prints): with no call in progress its output
        # has nowhere to go, and must not stay half a line in a sink to open the next call's.
        streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = _Discard()
        try:
            result = op()
        except OSError as e:
            return self._fail(req, e)
        finally:
            sys.stdout, sys.stderr = streams
            self._drop_output()
        self.chan.send({"ev": "ok", "id": req["id"], **result})

    def _drop_output(self):
        """Drops what was written to fd 1 and 2 (os.write, C code) and not yet sent."""
        if hasattr(self, "pump_fds"):  # serving
            self._drain()
        for sink in self.sinks.values():
            with sink.lock:
                sink.pending = b""

    # ---- files --------------------------------------------------------------

    def _fail(self, req, err):
        code = {2: "not_found", 20: "not_a_directory", 21: "is_a_directory", 13: "forbidden",
                28: "no_space", 122: "no_space", 17: "exists", 39: "not_empty"}.get(getattr(err, "errno", None), "file_error")
        self.chan.send({"ev": "fail", "id": req["id"], "code": code,
                        "message": f"{req.get('path')}: {getattr(err, 'strerror', None) or err}"})

    def write_file(self, req, payload):
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
            return self._fail(req, e)
        self.chan.send({"ev": "ok", "id": req["id"], "size": len(payload)})

    def read_file(self, req, _payload):
        try:
            with open(req["path"], "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise IsADirectoryError(21, "not a regular file")
                size = os.fstat(f.fileno()).st_size
                if size > req.get("max", 1 << 62):
                    self.chan.send({"ev": "fail", "id": req["id"], "code": "too_large",
                                    "message": f"{req['path']} is {size} bytes, over the limit of {req['max']}"})
                    return
                data = f.read()
        except OSError as e:
            return self._fail(req, e)
        self.chan.send({"ev": "ok", "id": req["id"], "size": len(data)}, data)

    def list_dir(self, req, _payload):
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
                    entries.append({"name": e.name, "type": kind, "size": st.st_size, "mtime": st.st_mtime})
        except OSError as e:
            return self._fail(req, e)
        entries.sort(key=lambda x: x["name"])
        self.chan.send({"ev": "ok", "id": req["id"], "entries": entries})

    def remove(self, req, _payload):
        path = req["path"]
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                if req.get("recursive"):
                    import shutil
                    shutil.rmtree(path)
                else:
                    os.rmdir(path)
            else:
                os.unlink(path)
        except OSError as e:
            return self._fail(req, e)
        self.chan.send({"ev": "ok", "id": req["id"]})


class _TimerState:
    """A timeout must not land in the middle of a frame on the control socket: while the main
    thread is sending, the alarm is only noted, and raised when the send is complete."""
    critical = 0
    pending = False


_timer = _TimerState()
_MAIN = threading.get_ident()


def _on_alarm(_signum, _frame):
    if _timer.critical:
        _timer.pending = True
        return
    raise CellTimeout()


def _children_of_pid1():
    """(pid, state, session id) of each child of PID 1, from /proc."""
    for name in os.listdir("/proc"):
        if not name.isdigit() or name == "1":
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()  # state, ppid, pgrp, session, …
        if fields[1] == b"1":
            yield int(name), fields[0], int(fields[3])


def _zombie_children():
    """(pid, session id) of each zombie whose parent is PID 1."""
    return ((pid, sid) for pid, state, sid in _children_of_pid1() if state == b"Z")


# What PID 1 becomes when its sandbox is closed while forks of it still run: the kernel kills
# every nested PID namespace (a fork's among them) when PID 1 exits, so it stays, as a process
# that holds none of the sandbox's memory, until its last fork has exited.
_REAPER = """import os
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def _retire():
    """The sandbox is closed (hostd closed the channel, or sent SIGUSR2 while a call ran): exit,
    or if forks of this sandbox still run, become the reaper."""
    if _has_forks():
        # hostd may signal once more; an ignored signal stays ignored across exec, a handler would not.
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        os.execv(sys.executable, ["forkbox-reaper", "-I", "-S", "-c", _REAPER])
    os._exit(0)


def _ns_depth(pid):
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"NSpid:"):
                return len(line.split()) - 1
    return 0


def _has_forks():
    """Whether a child of ours runs in a deeper PID namespace: a fork, or something of the user's."""
    depth = _ns_depth("self")
    for pid, _, _ in _children_of_pid1():
        try:
            if _ns_depth(pid) > depth:
                return True
        except OSError:
            continue
    return False


def _open_files(skip):
    """(fd, path, flags, offset, cloexec) of each descriptor this process has open, so a fork can
    open the same paths again in its own root: until then every one is a window into the parent
    (its files, its live directories, its sockets and pipes). path is None for what cannot be
    opened again by name (a socket, a pipe, an anonymous inode, a deleted file or directory,
    through which '..' still leads to the parent's live tree): the fork gets /dev/null there."""
    files = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd in skip:  # 0-2 are replaced by the fork's own pipes and /dev/null
            continue
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
            mode = os.fstat(fd).st_mode
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            cloexec = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
            offset = os.lseek(fd, 0, os.SEEK_CUR) if stat.S_ISREG(mode) else 0
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor among them)
        reopenable = (path.startswith("/") and not path.endswith(" (deleted)")
                      and (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or (stat.S_ISCHR(mode) and path.startswith("/dev/"))))
        files.append((fd, path if reopenable else None, flags, offset, cloexec))
    return files


def _reopen_files(files):
    """Points each fd of _open_files at the same path in this root. One that has no path, or
    cannot be opened again, becomes /dev/null rather than stay a window into the parent."""
    for fd, path, flags, offset, cloexec in files:
        new = None
        if path is not None:
            try:
                new = os.open(path, flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC))
                if offset:
                    os.lseek(new, offset, os.SEEK_SET)
            except OSError:
                if new is not None:
                    os.close(new)
                new = None
        if new is None:
            new = os.open("/dev/null", flags & os.O_ACCMODE)
        os.dup2(new, fd, inheritable=not cloexec)
        os.close(new)


def _start_thread(target, *args):
    """A helper thread, started without waiting for it to run (threading.Thread.start waits):
    in a fresh fork on busy cores that wait was several milliseconds per thread."""
    _thread.start_new_thread(target, args)


def _kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _describe(value):
    """The result event of a last expression: its repr, and its JSON value when it has one."""
    out = {"repr": _safe_repr(value), "kind": type(value).__name__}
    if _is_json(value, 0):
        out["data"] = value
    else:
        out["data"] = out["repr"]
    return out


def _safe_repr(value):
    try:
        text = repr(value)
    except Exception as e:
        text = f"<unrepresentable {type(value).__name__}: {e}>"
    return text if len(text) <= 1 << 20 else text[: 1 << 20] + "…"


def _is_json(v, depth):
    if depth > 20:
        return False
    if v is None or isinstance(v, (bool, str)):
        return True
    if isinstance(v, int):
        return abs(v) < 2 ** 53
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, (list, tuple)):
        return len(v) <= 10000 and all(_is_json(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return len(v) <= 10000 and all(isinstance(k, str) and _is_json(x, depth + 1) for k, x in v.items())
    return False


def run(sock, output_limit):
    Agent(sock, output_limit).serve()

