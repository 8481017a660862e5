"""The zygote: one per template, a long-lived Python process with the
template's modules already imported. hostd sends it one JSON line per
sandbox on stdin; it forks, the child isolates itself and becomes the agent,
and the zygote answers one JSON line on stdout:

    -> {"op": "spawn", "id": "sbx_…", "token": "…", …spec…}
    <- {"id": "sbx_…", "ok": true, "pid": 1234, "setup_ms": 1.2}
    <- {"id": "sbx_…", "ok": false, "error": "mount overlay on …: Invalid argument"}
    <- {"exited": 1234, "status": 9}          (a sandbox's PID 1 is gone)

    -> {"op": "graft", "id": "…", "strategy": "copy", "children": [{…}, …]}
    <- {"id": "…", "ok": true, "steps": {…}}   (each fork has its root and control socket)

    -> {"op": "restore", "id": "…", "strategy": "copy", "uid_from": N, "uid_to": M,
        "layers": [{"src": "…", "dst": "…"}, …]}
    <- {"id": "…", "ok": true, "entries": 12, "steps": {…}}

A restore copies a hibernated sandbox's saved writable layers into the new
sandbox's (the saved ones stay, as its checkpoint), owned by the new uid range.

A graft finishes a fork of a running sandbox (see forking.py and graft.py): the
zygote gives each child its own root and control socket.

It stays single-threaded: fork() is only safe in a process with one thread.
"""

import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback

from . import agent, graft, isolate, linux, protocol, storage
from .protocol import encode


def _log(msg):
    sys.stderr.write(f"zygote[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


class Zygote:
    def __init__(self, seccomp_bpf, output_limit, agent_dir):
        self.seccomp_bpf = seccomp_bpf
        self.agent_dir = agent_dir
        self.output_limit = output_limit
        self.own_ns = {name: os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
                       for name in ("pid", "mnt", "net", "uts")}
        self.own_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.out = sys.stdout.buffer
        self.cpus = os.sched_getaffinity(0)

    def reply(self, obj):
        self.out.write(protocol.encode_line(obj))
        self.out.flush()

    def spawn(self, spec):
        """Fork a child that is PID 1 of a new PID namespace without a second fork:
        unshare(CLONE_NEWPID) makes our *next* child the namespace's init, then we
        step back into our own namespace for the ones after."""
        started = time.perf_counter()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        gc.freeze()
        # A pool refill is background work: made at the zygote's nice 19 (hostd sets the sandbox to
        # 0 when it hands it out), with the zygote and the child kept on this CPU until the child is
        # set up. After fork every page either of them writes is copied (copy-on-write), and each
        # copy flushes the TLB of every CPU the process has run on: across CPUs an interrupt each,
        # the largest cost of a refill measured under load (in a VM most of all). On one CPU the
        # flushes are local. A sandbox a client waits for is made at nice 0, on any CPU.
        foreground = spec.get("foreground", False)
        if foreground:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        else:
            os.sched_setaffinity(0, {linux.current_cpu()})
        try:
            linux.unshare(linux.CLONE_NEWPID)
            try:
                pid = os.fork()
            except BaseException:
                linux.setns(self.own_ns["pid"], linux.CLONE_NEWPID)
                raise
            if pid == 0:
                os.close(err_r)
                self._child(spec, err_w, started)  # never returns
            linux.setns(self.own_ns["pid"], linux.CLONE_NEWPID)
            os.close(err_w)
            # The child reports on the pipe when it is ready, or writes why it failed and exits.
            ready, _, _ = select.select([err_r], [], [], 30)
            report = os.read(err_r, 65536) if ready else b"sandbox set-up timed out"
            os.close(err_r)
        finally:
            if foreground:
                os.setpriority(os.PRIO_PROCESS, 0, 19)
            else:
                os.sched_setaffinity(0, self.cpus)
        # Success is a NUL and the set-up's step timings; anything else is the error.
        if report.startswith(b"\0"):
            return protocol.spawn_ok(spec["id"], pid, json.loads(report[1:]), round((time.perf_counter() - started) * 1000, 3))
        error = report.decode("utf-8", "replace") or "the sandbox exited during set-up"
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return protocol.zygote_failure(spec["id"], error.strip())

    def _child(self, spec, err_w, started):
        code = 1
        try:
            forked = time.perf_counter()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(spec["agent_socket"])
            keep = {sock.fileno(), err_w}
            for fd in os.listdir("/proc/self/fd"):
                fd = int(fd)
                if fd > 2 and fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            os.setsid()  # the agent's own session: the orphan reaper tells its children apart by session
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.set_wakeup_fd(-1)
            prepared = time.perf_counter()
            steps = isolate.isolate(spec, self.seccomp_bpf)
            isolated = time.perf_counter()
            os.environ.clear()
            os.environ.update({"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                               "HOME": "/root", "LANG": "C.UTF-8", "TERM": "xterm", "HOSTNAME": "sandbox"})
            os.environ.update(spec.get("env") or {})
            os.chdir("/root")
            sys.path[:] = [p for p in sys.path if p != self.agent_dir]
            linux.set_process_name("forkbox-agent")
            sock.sendall(encode(protocol.hello(spec["id"], spec["token"])))
            steps.update(fork=round((forked - started) * 1000, 3), prepare=round((prepared - forked) * 1000, 3),
                         agent_init=round((time.perf_counter() - isolated) * 1000, 3))
            os.write(err_w, b"\0" + json.dumps(steps).encode())
            os.close(err_w)
            err_w = -1
            os.sched_setaffinity(0, self.cpus)
            agent.run(sock, self.output_limit)
            code = 0
        except BaseException:
            if err_w >= 0:
                msg = traceback.format_exc(limit=-1).strip().splitlines()
                os.write(err_w, (msg[-1] if msg else "unknown error").encode()[:4000])
        finally:
            os._exit(code)

    def graft(self, req):
        """Finishes the forks one after the other, in this process: each graft joins a fork's
        namespaces and comes back to ours (forking a helper per fork costs a copy of this
        process, 10 ms or more for a large template). At normal priority meanwhile, since a
        fork waits on it (the zygote's own work, pool refills, runs at nice 19)."""
        started = time.perf_counter()
        os.setpriority(os.PRIO_PROCESS, 0, 0)
        steps = {}
        try:
            for child in req["children"]:
                try:
                    for name, ms in graft.graft(child, req["strategy"]).items():
                        steps[name] = round(steps.get(name, 0) + ms, 3)
                finally:
                    self._come_back()
        except Exception as e:
            return protocol.zygote_failure(req["id"], f"{type(e).__name__}: {e}")
        finally:
            os.setpriority(os.PRIO_PROCESS, 0, 19)
        steps["total"] = round((time.perf_counter() - started) * 1000, 3)
        return protocol.graft_ok(req["id"], steps)

    def restore(self, req):
        started = time.perf_counter()
        os.setpriority(os.PRIO_PROCESS, 0, 0)
        entries = 0
        steps = {}
        try:
            for layer in req["layers"]:
                t = time.perf_counter()
                entries += storage.snapshot(req["strategy"], layer["src"], layer["dst"])
                steps["snapshot"] = round(steps.get("snapshot", 0) + (time.perf_counter() - t) * 1000, 3)
                t = time.perf_counter()
                storage.shift_owners(layer["dst"], req["uid_from"], req["uid_to"])
                steps["shift_owners"] = round(steps.get("shift_owners", 0) + (time.perf_counter() - t) * 1000, 3)
        finally:
            os.setpriority(os.PRIO_PROCESS, 0, 19)
        steps["total"] = round((time.perf_counter() - started) * 1000, 3)
        return protocol.restore_ok(req["id"], entries, steps)

    def _come_back(self):
        """Back to our own namespaces and root (a chroot, for a built template) after a graft."""
        linux.setns(self.own_ns["net"], linux.CLONE_NEWNET)
        linux.setns(self.own_ns["uts"], linux.CLONE_NEWUTS)
        linux.setns(self.own_ns["mnt"], linux.CLONE_NEWNS)
        os.fchdir(self.own_root)
        os.chroot(".")
        os.chdir("/")

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.reply(protocol.zygote_exited(pid, os.waitstatus_to_exitcode(status)))

    def serve(self):
        sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        stdin = sys.stdin.buffer.raw
        buf = b""
        self.reply(protocol.zygote_ready(os.getpid()))
        while True:
            ready, _, _ = select.select([stdin, sig_r], [], [])
            if sig_r in ready:
                try:
                    os.read(sig_r, 4096)
                except BlockingIOError:
                    pass
                self.reap()
            if stdin in ready:
                chunk = os.read(stdin.fileno(), 1 << 20)
                if not chunk:
                    return  # hostd is gone; sandboxes are its to clean up
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.handle(line)

    def handle(self, line):
        try:
            req = json.loads(line)
        except ValueError as e:
            _log(f"bad request line: {e}")
            return
        ops = {protocol.ZYGOTE_SPAWN: self.spawn, protocol.ZYGOTE_GRAFT: self.graft, protocol.ZYGOTE_RESTORE: self.restore}
        if req.get("op") in ops:
            try:
                self.reply(ops[req["op"]](req))
            except Exception as e:
                self.reply(protocol.zygote_failure(req.get("id"), f"{type(e).__name__}: {e}"))
            self.reap()
        else:
            _log(f"unknown op {req.get('op')!r}")


def main(config):
    """Called by the bootstrap hostd passes with `python3 -I -c`, after it read the first line on
    stdin, so the command line (which every sandbox's `ps` shows as PID 1's) names no host path:
    {"agent_dir": "…", "seccomp": "<BPF program hostd compiled>", "preload": ["json", …],
     "output_limit": <bytes per call>}"""
    with open(config["seccomp"], "rb") as f:
        bpf = f.read()
    for name in config.get("preload", []):
        try:
            importlib.import_module(name)
        except ImportError as e:
            _log(f"preload {name}: {e}")
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Making sandboxes is mostly background work (pool refills): at the lowest priority it never
    # slows the calls of running sandboxes or hostd. A pooled sandbox keeps that priority, its
    # first copy-on-write faults included, until hostd hands it out and sets its process group to 0.
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    Zygote(bpf, config.get("output_limit", 16 << 20), config["agent_dir"]).serve()
