"""Output of a call: bytes or text written to stdout and stderr become line events.

A cell's sys.stdout and sys.stderr are StreamWriters; fd 1 and 2 are pipes the FdPump drains,
for what subprocesses and C code write; a shell command's pipes are read by shell.py. All of it
goes through one OutputSink per stream, which cuts it into lines for the Agent to send, within
the call's output limit (cap_lines).
"""

import io
import os
import selectors
import threading

LINE_CHUNK = 64 * 1024


def split_lines(pending, data, final=False):
    """(lines, pending): the whole lines of pending + data, and the partial line left over.
    A partial line is sent in LINE_CHUNK pieces once it is that long, so output that never
    writes a newline still streams; final sends what is left of it too."""
    lines = (pending + data).split(b"\n")
    pending = lines.pop()
    while len(pending) >= LINE_CHUNK:
        lines.append(pending[:LINE_CHUNK])
        pending = pending[LINE_CHUNK:]
    if final and pending:
        lines.append(pending)
        pending = b""
    return lines, pending


def cap_lines(sent, stream, lines, limit):
    """(stream, lines, size, truncated): what to send of lines written to stream, when sent bytes
    of the call have gone out already. Past the limit it is one marker line on stderr instead, and
    truncated says to send nothing more, so a cell printing a gigabyte cannot flood hostd or the
    client. size counts the lines as written, a newline each."""
    size = sum(len(l) + 1 for l in lines)
    if sent + size > limit:
        return 2, [f"[forkbox: output truncated after {sent} bytes]"], size, True
    return stream, lines, size, False


class OutputSink:
    """Turns bytes written to one stream into lines, passed as text to agent.emit_lines(stream, lines)."""

    def __init__(self, agent, stream):
        self.agent = agent
        self.stream = stream  # 1 stdout, 2 stderr
        self.pending = b""
        self.lock = threading.Lock()

    def feed(self, data, final=False):
        with self.lock:
            lines, self.pending = split_lines(self.pending, data, final)
            if lines:
                self.agent.emit_lines(self.stream, [l.decode("utf-8", "replace") for l in lines])

    def flush(self):
        self.feed(b"", final=True)


class BinaryWriter(io.BufferedIOBase):
    """sys.stdout.buffer / sys.stderr.buffer for cells: bytes go to the same sink as the text, so
    the two keep their order (bytes that are not UTF-8 arrive replaced, as from a subprocess)."""

    def __init__(self, sink):
        self.sink = sink

    def writable(self):
        return True

    def fileno(self):
        return self.sink.stream

    def write(self, b):
        data = bytes(memoryview(b))  # TypeError for str, as a real buffer raises
        self.sink.feed(data)
        return len(data)

    def flush(self):
        self.sink.flush()


class StreamWriter(io.TextIOBase):
    """sys.stdout / sys.stderr for cells: text goes straight to the control socket, a line at a time."""

    def __init__(self, sink, name):
        self.sink = sink
        self._name = name
        self._buffer = BinaryWriter(sink)

    @property
    def buffer(self):
        return self._buffer

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


class Discard(io.TextIOBase):
    """sys.stdout / sys.stderr while no call is in progress: what is written is dropped."""

    def writable(self):
        return True

    def write(self, s):
        return len(s)


class FdPump:
    """fd 1 and 2 are pipes drained by a thread (run), so output of subprocesses a cell starts
    (os.system, subprocess with inherited stdout) reaches the caller too. Making one points fd 1
    and 2 at its pipes and fd 0 at /dev/null."""

    def __init__(self, sinks):
        self.fds = {}  # read end -> the sink of its stream
        for stream in (1, 2):
            r, w = os.pipe()
            os.dup2(w, stream)
            os.close(w)
            os.set_blocking(r, False)
            self.fds[r] = sinks[stream]
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        self.lock = threading.Lock()

    def run(self):
        sel = selectors.DefaultSelector()
        for fd in self.fds:
            sel.register(fd, selectors.EVENT_READ)
        while True:
            sel.select()
            self.drain()

    def drain(self):
        """Feeds what the pipes hold now to their sinks (also called from the main thread, so a
        call's output is all sent before the call ends)."""
        with self.lock:
            for fd, sink in self.fds.items():
                while True:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    if not data:
                        break
                    sink.feed(data)

    def close(self):
        """Closes the read ends (a fork, whose pump thread did not come along, makes a new pump)."""
        for fd in self.fds:
            os.close(fd)
