"""Shell commands: run(req, sinks, tracked) runs one with bash in a fresh subprocess, in a
session of its own, streaming its output until bash exits or its timeout kills its group."""

import os
import selectors
import signal
import subprocess
import time

from . import cells


def run(req, sinks, tracked, adopt):
    """Runs req["code"] with /bin/bash -c; sinks are the OutputSinks of streams 1 and 2, tracked
    the pids the orphan reaper leaves alone, adopt takes a pipe something left running still
    holds (FdPump.adopt: its output goes to the background log). Returns (exit code, timed out)."""
    env = dict(os.environ)
    env.update(req.get("env") or {})
    timeout = req.get("timeout") or 0
    cwd = req.get("cwd") or cells.working_directory()
    if message := cells.missing_cwd(cwd):
        sinks[2].feed(message.encode())
        return 1, False
    try:
        proc = subprocess.Popen(["/bin/bash", "-c", req["code"]], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                env=env, start_new_session=True)
    except OSError as e:
        sinks[2].feed(f"forkbox: cannot start bash: {e}\n".encode())
        return 127, False
    tracked.add(proc.pid)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    # The call ends when bash exits, not when its pipes close: a command that leaves
    # something running in the background (`server &`) must not hold the call open.
    exited = os.pidfd_open(proc.pid)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, sinks[1])
    sel.register(proc.stderr, selectors.EVENT_READ, sinks[2])
    sel.register(exited, selectors.EVENT_READ, None)
    timed_out = interrupted = False
    cells.timer.armed = True  # SIGINT from hostd raises KeyboardInterrupt here (cells.on_interrupt)
    try:
        timed_out = not _pump(sel, exited, deadline, proc.pid)
    except KeyboardInterrupt:
        interrupted = True
        _kill_group(proc.pid)
    finally:
        cells.timer.armed = False
        cells.timer.pending = None
    if timed_out or interrupted:
        _drain(sel)
    # A pipe still open here is held by something the command left running (`server &`).
    held = [key.fileobj for key in sel.get_map().values() if key.data is not None]
    sel.close()
    os.close(exited)
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe in held:
            adopt(pipe)
        else:
            pipe.close()
    tracked.discard(proc.pid)
    if timed_out:
        sinks[2].feed(f"forkbox: command exceeded the timeout of {timeout:g} s and was killed\n".encode())
        return 124, True
    if interrupted:
        sinks[2].feed(b"forkbox: interrupted; the command's process group was killed\n")
        return 130, False
    return exit_code(proc.returncode), False


def _pump(sel, exited, deadline, pgid):
    """Streams the command's output until bash has exited and what it wrote is read; False when
    the deadline came first (the group is killed)."""
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
            _kill_group(pgid)
            return False
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
    return True


def _drain(sel):
    """What a killed group wrote before it died, without waiting for pipes that something
    outside the group may still hold open."""
    for key, _ in sel.select(0):
        if key.data is not None:
            data = os.read(key.fd, 65536)
            if data:
                key.data.feed(data)


def exit_code(returncode):
    """A shell's exit code for bash's Popen returncode: 128 + n when a signal n killed it."""
    return 128 - returncode if returncode < 0 else returncode


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
