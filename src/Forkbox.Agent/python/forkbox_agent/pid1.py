"""What the agent owes its sandbox as PID 1: reaping orphans (Reaper) and, when the sandbox is
closed, exiting or staying on as a reaper while forks of it still run (retire)."""

import os
import signal
import sys
import threading
import time

ZOMBIE_GRACE = 5.0


class Reaper:
    """As PID 1 the agent inherits every orphan and must reap it, without stealing the exit
    status of a child that user code will wait for (subprocess.run, os.system). A zombie is
    reaped at once if it is from another session (what bash calls leave behind: each runs in
    a session of its own), else only after it has stayed a zombie for ZOMBIE_GRACE seconds.

    With no child to wait for, run sleeps until a call has left one (wake_if_children); polling
    instead woke fifty idle agents a hundred times a second between them."""

    def __init__(self, tracked):
        self.tracked = tracked  # pids a shell call waits for itself
        self.have_children = threading.Event()

    def run(self):
        own_sid = os.getsid(0)
        first_seen = {}
        while True:
            try:
                os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)  # sleeps until a child is a zombie
            except ChildProcessError:
                self.have_children.wait()  # only a call makes children (see Agent.serve_calls)
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

    def wake_if_children(self):
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        self.have_children.set()


def parse_stat(stat):
    """(state, ppid, session id) from the contents of /proc/<pid>/stat. The command name before
    them is in parentheses and may hold spaces and parentheses itself: fields start after the last ')'."""
    fields = stat[stat.rindex(b")") + 2:].split()  # state, ppid, pgrp, session, …
    return fields[0], int(fields[1]), int(fields[3])


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
        state, ppid, sid = parse_stat(stat)
        if ppid == 1:
            yield int(name), state, sid


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


def retire():
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
