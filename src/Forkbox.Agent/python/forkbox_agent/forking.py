"""Forks of a running sandbox: fork(agent, req) forks the agent n times between two calls; each
fork becomes PID 1 of fresh namespaces and waits for hostd's helper (graft.py, in the zygote) to
give it its own root and control socket, then carries on as the agent with this one's memory."""

import _thread
import fcntl
import json
import os
import signal
import socket
import stat

from . import linux, protocol
from .channel import Channel
from .protocol import encode

# Where a fork waits for hostd's helper to hand it its control socket: an abstract socket in the
# fork's own, brand-new network namespace, so nothing else can reach it.
HANDOFF_ADDRESS = b"\0forkbox-fork"
HANDOFF_TIMEOUT = 30.0
FORK_NAMESPACES = linux.CLONE_NEWNS | linux.CLONE_NEWNET | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS | linux.CLONE_NEWPID


def fork(agent, req):
    """Forks this agent n times, between two calls. Each fork goes through an intermediate
    process that unshares fresh mount, net, ipc, uts and pid namespaces and forks again, so
    the fork is PID 1 of its own namespace; it then waits on an abstract socket in its new
    network namespace for hostd's helper, which gives it its own root (a snapshot of ours)
    and its own control socket. Answers the forks' pids as this sandbox sees them."""
    agent.finish_output()
    started = []
    for _ in range(req["n"]):
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _fork_intermediate(agent, w)  # never returns
        os.close(w)
        started.append((pid, r))
    pids, errors = [], []
    for pid, r in started:
        with os.fdopen(r, "rb") as f:
            report = f.read().decode("utf-8", "replace")
        # Reaped in the background: tearing down its copy of our memory is no one's wait.
        # (_thread, not threading: see agent._start_thread.)
        _thread.start_new_thread(os.waitpid, (pid, 0))
        if report.startswith("ok "):
            pids.append(int(report[3:]))
        else:
            errors.append(report or "the fork exited before it was ready")
    if errors:
        for pid in pids:
            _kill_quietly(pid)
        agent.chan.send(protocol.fail(req["id"], protocol.ERR_AGENT, f"fork failed: {errors[0]}"))
        return
    agent.chan.send(protocol.ok(req["id"], pids=pids))


def _fork_intermediate(agent, report_fd):
    code = 1
    try:
        linux.unshare(FORK_NAMESPACES)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(HANDOFF_ADDRESS)
        listener.listen(1)
        # What the fork must reopen in its own root, taken here: once this process has
        # reported, hostd's helper may move the fork's root at any moment.
        files = _open_files({listener.fileno(), report_fd, agent.chan.sock.fileno(), *agent.pump.own_fds()})
        cwd = os.getcwd()
        pid = os.fork()
        if pid == 0:
            os.close(report_fd)
            _forked(agent, listener, files, cwd)  # never returns
        os.write(report_fd, f"ok {pid}".encode())
        code = 0
    except BaseException as e:
        os.write(report_fd, f"{type(e).__name__}: {e}".encode()[:4000])
    finally:
        os.close(report_fd)  # the reader's EOF now, not after the kernel has torn our memory down
        os._exit(code)


def _forked(agent, listener, files, cwd):
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
        _resume_as_fork(agent, sock, info, files, cwd)
    except BaseException as e:
        # Say why on the new control socket, in place of the hello hostd waits for.
        try:
            sock.sendall(encode(protocol.hello(info["id"], info["token"], f"{type(e).__name__}: {e}")))
        finally:
            os._exit(1)


def _resume_as_fork(agent, sock, info, files, cwd):
    old = agent.chan.sock
    agent.chan = Channel(sock)
    old.close()
    agent.pump.close()
    _reopen_files(files)
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")
    agent.start_pump()
    agent.start_reaper()
    agent.chan.send(protocol.hello(info["id"], info["token"]))
    agent.serve_calls()  # never returns


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


def _kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
