"""PID 1 of every sandbox: a fork of the agent's process that only reaps.

The agent runs as PID 2. Keeping PID 1 apart from it is what lets a sandbox's
forks outlive it: the kernel kills every process in nested PID namespaces (and
a fork's namespace nests in its parent's) when PID 1 exits, so PID 1 must be a
process that stays as long as any fork does, and holds no user state.

- Orphans of the sandbox's own processes are reparented here and reaped at once.
- When the agent exits (hostd closed the sandbox, or it crashed), every other
  process of this PID namespace is killed; forks run in namespaces of their
  own and are left alone.
- When no child is left, it exits, and the namespace goes with it.
"""

import os
import signal

from . import linux


def _namespace_depth(pid):
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"NSpid:"):
                return len(line.split()) - 1
    return 0


def _kill_own_namespace():
    """SIGKILL every process of our PID namespace but us, until none is left; processes in
    nested namespaces (forks of this sandbox) have a deeper NSpid and are skipped."""
    depth = _namespace_depth("self")
    for _ in range(100):
        killed = 0
        for name in os.listdir("/proc"):
            if not name.isdigit() or name == "1":
                continue
            try:
                if _namespace_depth(name) == depth:
                    os.kill(int(name), signal.SIGKILL)
                    killed += 1
            except (OSError, ValueError):
                continue
        if not killed:
            return
        while True:  # reap what died, so the next scan does not count zombies
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                return


def run(agent_pid):
    """Never returns."""
    linux.set_process_name("forkbox-init")
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in range(3):
        os.dup2(devnull, fd)
    os.closerange(3, 65536)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == agent_pid:
            _kill_own_namespace()
