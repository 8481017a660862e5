"""Frames on the control channel between hostd and an agent.

A frame is: u32 header length, u32 payload length (both big-endian), a UTF-8
JSON header, then the payload bytes (file contents; empty for most frames).
The C# side is Forkbox.Host/Agents/AgentFrame.cs: change both together."""

import json
import struct

_PREFIX = struct.Struct(">II")
MAX_HEADER = 16 << 20


def encode(header, payload=b""):
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return _PREFIX.pack(len(h), len(payload)) + h + payload


class FrameReader:
    """Reads whole frames from a blocking socket."""

    def __init__(self, sock):
        self._sock = sock

    def _exact(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self._sock.recv_into(view[got:])
            if k == 0:
                raise EOFError("control channel closed")
            got += k
        return bytes(buf)

    def read(self):
        hlen, plen = _PREFIX.unpack(self._exact(8))
        if hlen > MAX_HEADER:
            raise ValueError(f"frame header of {hlen} bytes is over the limit")
        header = json.loads(self._exact(hlen))
        payload = self._exact(plen) if plen else b""
        return header, payload
