"""The agent's end of its control socket: frames in through protocol.FrameReader, frames out
through Channel.send, which the output pump thread uses too."""

import threading

from .cells import MAIN_THREAD, timer
from .protocol import FrameReader, encode


class Channel:
    """The control socket; sends are serialised because the output pump thread sends too."""

    def __init__(self, sock):
        self.sock = sock
        self.reader = FrameReader(sock)
        self.lock = threading.Lock()

    def send(self, header, payload=b""):
        data = encode(header, payload)
        main = threading.get_ident() == MAIN_THREAD
        with self.lock:
            if main:
                timer.critical += 1
            try:
                self.sock.sendall(data)
            finally:
                if main:
                    timer.critical -= 1
        if main and timer.pending and not timer.critical:
            exc, timer.pending = timer.pending, None
            raise exc()
