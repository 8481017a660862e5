"""The agent: PID 1 of a sandbox, serving hostd over one control socket.

It runs Python cells in one persistent namespace (the value of a last
expression comes back, like a notebook), runs shell commands in fresh
subprocesses, and reads and writes files. Output streams line by line as it is
produced. Requests arrive one at a time: hostd serialises calls per sandbox.

This file keeps the agent's state, the table of ops and the loop that serves
them; each mechanism has a module of its own: channel.py (the control socket),
output.py (streams into line events), pid1.py (orphans, retirement), cells.py
(Python), rich.py (results' MIME bundles, matplotlib figures), shell.py (bash), forking.py (forks of a running sandbox), files.py and
hibernate.py.

Standard library only; it was imported in the zygote before the fork, so
nothing here touches the sandbox's disk to start: every module it uses is
imported here, at the top.
"""

import _thread
import builtins
import os
import signal
import sys
import threading

from . import cells, files, forking, hibernate, output, pid1, protocol, rich, shell
from .channel import Channel


class Agent:
    def __init__(self, sock, output_limit):
        self.chan = Channel(sock)
        self.output_limit = output_limit
        self.call_id = None
        self.call_bytes = 0
        self.truncated = False
        self.globals = {"__name__": "__main__", "__builtins__": builtins}
        self.cells = 0
        self.sinks = {1: output.OutputSink(self, 1), 2: output.OutputSink(self, 2)}
        self.figures = rich.Figures(self.display)
        self.emit_lock = threading.Lock()
        self.tracked = set()
        self.pump = None  # an output.FdPump while serving
        self.reaper = None  # a pid1.Reaper while serving
        # Modules there are before any call (the template's, preloaded in the zygote): a fresh agent
        # has them too, so hibernate records only the others to import again.
        self.baseline_modules = set(sys.modules)

    # ---- output -------------------------------------------------------------

    def emit_lines(self, stream, lines):
        with self.emit_lock:
            if self.call_id is None or self.truncated:
                return
            stream, lines, size, self.truncated = output.cap_lines(self.call_bytes, stream, lines, self.output_limit)
            self.call_bytes += size
            self.chan.send(protocol.out(self.call_id, stream, lines))

    def display(self, mime):
        """Sends a MIME bundle the running cell showed (a matplotlib figure), after the output before it."""
        with self.emit_lock:
            if self.call_id is None or self.truncated:  # past the output limit nothing more is sent
                return
            self.chan.send(protocol.display(self.call_id, mime))

    def start_pump(self):
        self.pump = output.FdPump(self.sinks)
        _start_thread(self.pump.run)

    def finish_output(self, call_ends=False):
        """Sends what the call wrote and has not been sent. call_ends: what fd 1 and 2 are given
        from now on goes to the background log (FdPump.end), not to this call's sinks."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.pump.end() if call_ends else self.pump.drain()
        for sink in self.sinks.values():
            sink.flush()

    def _drop_output(self):
        """Drops what was written to fd 1 and 2 (os.write, C code) and not yet sent."""
        if self.pump is not None:  # serving
            self.pump.drain()
        for sink in self.sinks.values():
            with sink.lock:
                sink.pending = b""

    # ---- calls --------------------------------------------------------------

    def serve(self):
        self.start_pump()
        sys.stdout = output.StreamWriter(self.sinks[1], "<stdout>")
        sys.stderr = output.StreamWriter(self.sinks[2], "<stderr>")
        sys.stdin = open(os.devnull)
        self.figures.install()
        self.start_reaper()
        signal.signal(signal.SIGUSR2, lambda *_: pid1.retire())
        signal.signal(signal.SIGINT, cells.on_interrupt)
        self.serve_calls()

    def serve_calls(self):
        handlers = {protocol.OP_EXEC: self.exec, protocol.OP_WRITE: self._answer(files.write),
                    protocol.OP_READ: self._answer(files.read), protocol.OP_LIST: self._answer(files.list_dir),
                    protocol.OP_REMOVE: self._answer(files.remove), protocol.OP_SETENV: self.setenv,
                    protocol.OP_FORK: self.fork, protocol.OP_HIBERNATE: self.save_state,
                    protocol.OP_RESTORE: self.restore_state}
        while True:
            try:
                header, payload = self.chan.reader.read()
            except EOFError:
                pid1.retire()
            except KeyboardInterrupt:
                continue
            op = header.get("op")
            try:
                handlers[op](header, payload)
            except KeyboardInterrupt:
                self.chan.send(protocol.fail(header.get("id"), protocol.ERR_INTERRUPTED, "interrupted"))
            except Exception as e:  # a bug of ours must not kill PID 1
                self.chan.send(protocol.fail(header.get("id"), protocol.ERR_AGENT, f"{type(e).__name__}: {e}"))
            self.reaper.wake_if_children()

    def _answer(self, op):
        """A handler for an op of files.py, which returns the frame to answer."""
        return lambda req, payload: self.chan.send(*op(req, payload))

    def start_reaper(self):
        self.reaper = pid1.Reaper(self.tracked)
        _start_thread(self.reaper.run)

    def _begin(self, call_id):
        with self.emit_lock:
            self.call_id = call_id
            self.call_bytes = 0
            self.truncated = False
        if self.pump is not None:  # serving
            self.pump.begin()

    def _end(self, header):
        self.finish_output(call_ends=True)
        with self.emit_lock:
            self.chan.send(header)
            self.call_id = None

    def exec(self, req, _payload):
        self._begin(req["id"])
        bash = req.get("lang") == "bash"  # else "python"
        code, timed_out = shell.run(req, self.sinks, self.tracked, self.pump.adopt) if bash else cells.run(self, req)
        self._end(protocol.exit_(req["id"], code, timed_out))
        if not bash:
            # After the answer, off the call's time: what the cell left running keeps the pipes
            # it has, which now write to the background log, not to the next call.
            self.pump.rotate()

    def setenv(self, req, _payload):
        """Environment given at create, applied when a pooled sandbox is taken."""
        os.environ.update(req["env"])
        self.chan.send(protocol.ok(req["id"]))

    def fork(self, req, _payload):
        """Forks this agent req["n"] times (forking.py)."""
        forking.fork(self, req)

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
        sys.stdout = sys.stderr = output.Discard()
        try:
            result = op()
        except OSError as e:
            return self.chan.send(files.failure(req, e))
        finally:
            sys.stdout, sys.stderr = streams
            self._drop_output()
        self.chan.send(protocol.ok(req["id"], **result))


def _start_thread(target, *args):
    """A helper thread, started without waiting for it to run (threading.Thread.start waits):
    in a fresh fork on busy cores that wait was several milliseconds per thread. It blocks the
    signals that stop a call, so that they reach the main thread and wake it from a blocking
    call (a cell in time.sleep, a command's select)."""
    _thread.start_new_thread(_without_call_signals, (target, args))


def _without_call_signals(target, args):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGALRM})
    target(*args)


def run(sock, output_limit):
    Agent(sock, output_limit).serve()
