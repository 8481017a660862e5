"""Output of a call: bytes or text written to stdout and stderr become line events.

A cell's sys.stdout and sys.stderr are StreamWriters; fd 1 and 2 are pipes the FdPump drains,
for what subprocesses and C code write; a shell command's pipes are read by shell.py. All of it
goes through one OutputSink per stream, which cuts it into lines for the Agent to send, within
the call's output limit (cap_lines).
"""

import fcntl
import io
import os
import select
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

    def feed_cell(self, data):
        """What the cell itself writes (print, sys.stdout.buffer): what its subprocesses wrote to
        fd 1 and 2 before it is fed first, so `subprocess.run("echo a"); print("b")` reads a, b.
        Checked once per line, as it starts: never inside a line the cell is writing."""
        if not self.pending and (pump := getattr(self.agent, "pump", None)) is not None:
            pump.drain_if_ready()
        self.feed(data)

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
        self.sink.feed_cell(data)
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
        self.sink.feed_cell(s.encode("utf-8", "surrogateescape"))
        return len(s)

    def flush(self):
        self.sink.flush()


class Discard(io.TextIOBase):
    """sys.stdout / sys.stderr while no call is in progress: what is written is dropped."""

    def writable(self):
        return True

    def write(self, s):
        return len(s)


class BackgroundLog:
    """Where output of a process a call left running goes once that call has ended: appended to
    PATH in the sandbox, never to a later call. Past MAX_BYTES the log moves to PATH + ".1" (the
    one before it is dropped) and a new one starts, so a chatty server keeps its latest output
    and cannot fill the disk. What cannot be written (the directory removed, the disk full) is
    dropped."""

    PATH = "/tmp/forkbox-background.log"
    MAX_BYTES = 1 << 20

    def __init__(self):
        self.fd = None
        self.size = 0

    def feed(self, data):
        try:
            if self.fd is None:
                self.fd = os.open(self.PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                self.size = os.fstat(self.fd).st_size
            if self.size + len(data) > self.MAX_BYTES and self.size > 0:
                os.close(self.fd)
                self.fd = None
                os.replace(self.PATH, self.PATH + ".1")
                return self.feed(data)
            os.write(self.fd, data)
            self.size += len(data)
        except OSError:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class FdPump:
    """fd 1 and 2 are pipes drained by a thread (run), so output of subprocesses a cell starts
    (os.system, subprocess with inherited stdout) reaches the caller too. Making one points fd 1
    and 2 at its pipes and fd 0 at /dev/null.

    Each Python call has pipes of its own: after it ends, rotate() gives fd 1 and 2 new ones, and
    the old read ends (which a process the call left running may still write to) feed the
    BackgroundLog until their last writer closes them. A shell command's pipes are handed over the
    same way (adopt). So what a background process writes never reaches a later call's output."""

    MAX_BACKGROUND = 128  # pipes held for background writers; past it the oldest are closed

    def __init__(self, sinks):
        self.sinks = sinks
        self.log = BackgroundLog()
        self.fds = {}  # read end -> the sink of its stream, or the background log
        self.current = ()  # the read ends of fd 1 and 2 now
        self.active = False  # a call is running: what fd 1 and 2 are given is its output
        # Reentrant: a finalizer that prints can run on the pump thread while it holds the lock.
        self.lock = threading.RLock()
        self.sel = selectors.DefaultSelector()
        self.poller = select.poll()  # the current pipes, for drain_if_ready (select() stops at fd 1024)
        self.widowed = set()  # current pipes whose writers all went (user code closed fd 1 or 2)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        self._point_fds()
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)

    def _point_fds(self):
        current = []
        for stream in (1, 2):
            r, w = (_above_stdio(fd) for fd in os.pipe())  # fd 1 or 2 may be free (closed by user code)
            os.dup2(w, stream)
            os.close(w)
            os.set_blocking(r, False)
            self.fds[r] = self.sinks[stream]
            self.sel.register(r, selectors.EVENT_READ)
            self.poller.register(r, select.POLLIN)
            current.append(r)
        self.current = tuple(current)

    def rotate(self):
        """After a Python call: fd 1 and 2 get new pipes; the old ones go to the background log."""
        with self.lock:
            old = self.current
            self._point_fds()
            for r in old:
                if r in self.widowed:  # unwatched already: nothing can write to it any more
                    self.widowed.discard(r)
                    del self.fds[r]
                    os.close(r)
                else:
                    self.poller.unregister(r)
                    self._to_background(r)

    def adopt(self, fileobj):
        """Takes over a shell command's pipe (proc.stdout or proc.stderr) after bash has exited:
        what is still written to it goes to the background log."""
        r = os.dup(fileobj.fileno())
        fileobj.close()
        os.set_blocking(r, False)
        with self.lock:
            self.sel.register(r, selectors.EVENT_READ)
            self._to_background(r)

    def _to_background(self, r):
        self.fds[r] = self.log
        backgrounds = [fd for fd, sink in self.fds.items() if sink is self.log]
        for fd in backgrounds[:-self.MAX_BACKGROUND]:
            self._forget(fd)
        try:
            os.write(self.wake_w, b"x")  # the pump thread selects again, with the new set
        except BlockingIOError:
            pass  # it has a wake-up pending already

    def _forget(self, fd):
        self.sel.unregister(fd)
        del self.fds[fd]
        os.close(fd)

    def run(self):
        while True:
            events = self.sel.select()
            with self.lock:
                for key, _ in events:
                    if key.fd == self.wake_r:
                        _read_all(self.wake_r)
                    elif key.fd in self.fds:
                        self._read(key.fd)

    def drain(self):
        """Feeds what the call's pipes hold now to their sinks (also called from the main thread,
        so a call's output is all sent before the call ends)."""
        with self.lock:
            for fd in self.current:
                self._read(fd)

    def begin(self):
        """A call starts: fd 1 and 2's pipes feed its sinks."""
        with self.lock:
            self.active = True

    def end(self):
        """A call ends: the last of its output is fed to its sinks, and whatever fd 1 and 2 are
        given until the next call (a process it left running, before rotate) goes to the log."""
        with self.lock:
            self.drain()
            self.active = False

    def drain_if_ready(self):
        """drain, when the call's pipes hold something (one poll when they do not)."""
        with self.lock:
            if self.poller.poll(0):
                self.drain()

    def _read(self, fd):
        sink = self.fds[fd] if self.active or fd not in self.current else self.log
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not data:  # its last writer has gone
                if fd in self.current:
                    # User code closed or replaced fd 1 or 2 (os.dup2(devnull, 1)): the pipe stays
                    # the call's until rotate, unwatched, so it is neither read in a loop nor its
                    # number closed under whoever opens it next.
                    if fd not in self.widowed:
                        self.widowed.add(fd)
                        self.sel.unregister(fd)
                        self.poller.unregister(fd)
                else:
                    self._forget(fd)
                return
            sink.feed(data)

    def own_fds(self):
        """The descriptors this pump owns, which a fork does not reopen (it closes them)."""
        fds = {*self.fds, self.wake_r, self.wake_w, self.sel.fileno()}
        return fds | ({self.log.fd} if self.log.fd is not None else set())

    def close(self):
        """Closes what it owns (a fork, whose pump thread did not come along, makes a new pump)."""
        for fd in self.fds:
            os.close(fd)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.sel.close()
        self.log.close()


def _above_stdio(fd):
    """fd, or a close-on-exec copy of it numbered 3 or more (the original closed)."""
    if fd > 2:
        return fd
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return copy


def _read_all(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
