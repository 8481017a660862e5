"""HTTP to a Forkbox host or edge over http.client: one kept-alive connection per client and thread.

Retries are limited to what cannot run a call twice: idempotent requests (GET, DELETE, PUT of a
file) after a connection failure, and any request whose connection was refused before a byte of
it was sent. An exec or a create whose bytes went out is never sent again: the server may be
running it.
"""

from __future__ import annotations

import atexit
import http.client
import io
import json
import os
import select
import socket
import stat
import threading
import time
import urllib.parse
from typing import IO, Any, Dict, Generator, List, Mapping, Optional, Tuple, Union

from ._version import __version__
from .errors import ForkboxConnectionError, ForkboxError, ForkboxTimeoutError, error_from_response

DEFAULT_HOST = "http://127.0.0.1:7070"

Body = Union[None, bytes, IO[bytes]]

_IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE", "PUT"})
_HINT = "check FORKBOX_HOST (or the host argument) and that `forkbox serve` runs there"


class ForkboxClient:
    """A Forkbox host or edge: its address, API key and connections.

    ``host`` defaults to FORKBOX_HOST, else http://127.0.0.1:7070 ("host:port" without a scheme
    means http); ``api_key`` to FORKBOX_API_KEY, sent as ``Authorization: Bearer``. ``timeout`` is
    how long to wait for the server's next bytes (None: as long as calls take, as exec streams may
    run for minutes); ``retries`` bounds the safe retries described in the module's docstring.
    Sandboxes made with the same host and key share one client (``ForkboxClient.shared``).
    """

    _shared: Dict[Tuple[str, Optional[str]], "ForkboxClient"] = {}
    _shared_lock = threading.Lock()

    def __init__(
        self,
        host: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
        connect_timeout: float = 10.0,
        retries: int = 2,
    ) -> None:
        self.host = resolve_host(host)
        parts = urllib.parse.urlsplit(self.host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"host {self.host!r}: expected http://HOST:PORT, https://HOST[:PORT] or HOST:PORT")
        self._https = parts.scheme == "https"
        self._hostname = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")  # an edge may serve the API under a path
        if api_key is None:
            api_key = os.environ.get("FORKBOX_API_KEY") or None
        self.api_key = api_key
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self._local = threading.local()

    @classmethod
    def shared(cls, host: Optional[str] = None, api_key: Optional[str] = None) -> "ForkboxClient":
        """The process's client for this host and key, made on first use (so connections are reused)."""
        key = (resolve_host(host), api_key if api_key is not None else (os.environ.get("FORKBOX_API_KEY") or None))
        with cls._shared_lock:
            client = cls._shared.get(key)
            if client is None:
                client = cls._shared[key] = cls(key[0], key[1])
            return client

    def __repr__(self) -> str:
        return f"ForkboxClient({self.host!r}{', api_key=…' if self.api_key else ''})"

    # ---- the public API beyond one sandbox -------------------------------------------------

    def list_sandboxes(self, name: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every sandbox this key may see; with ``name``, this key's sandbox of that name (none or one)."""
        reply = self.request_json("GET", "/v1/sandboxes", query={"name": name} if name is not None else None)
        return list(reply.get("sandboxes", []))

    def capacity(self) -> Dict[str, Any]:
        return self.request_json("GET", "/v1/capacity")

    def templates(self) -> List[Dict[str, Any]]:
        return list(self.request_json("GET", "/v1/templates").get("templates", []))

    def set_pool_size(self, template: str, size: int) -> Dict[str, Any]:
        """How many ready sandboxes the server keeps for a template; the reply is the pool's state."""
        return self.request_json("PUT", f"/v1/templates/{_quote(template)}/pool", json_body={"size": size})

    def delete_template(self, name: str) -> None:
        self.request("DELETE", f"/v1/templates/{_quote(name)}")

    def healthy(self) -> bool:
        """Whether GET /v1/healthz answers (no authentication needed)."""
        try:
            return self.request("GET", "/v1/healthz")[0] == 200
        except ForkboxError:
            return False

    # ---- requests -------------------------------------------------------------------------

    def request_json(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        query: Optional[Mapping[str, str]] = None,
    ) -> Any:
        body = None if json_body is None else json.dumps(json_body).encode()
        status, _, data = self.request(method, path, body=body, query=query,
                                       content_type="application/json" if body is not None else None)
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise ForkboxError(status, "bad_response", f"{method} {path}: the answer is not JSON: {data[:200]!r}") from None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Body = None,
        query: Optional[Mapping[str, str]] = None,
        content_type: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Tuple[int, http.client.HTTPMessage, bytes]:
        """Sends one request and reads its whole answer: (status, headers, body). Errors raise."""
        resp, conn = self._send(method, path, body, query, content_type, timeout)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self._broken(method, path, e, timeout) from e
        self._release(conn, resp)
        if resp.status >= 400:
            raise error_from_response(resp.status, resp.reason, resp.headers, data)
        return resp.status, resp.headers, data

    def stream_lines(
        self,
        method: str,
        path: str,
        *,
        json_body: Any,
        timeout: Optional[float] = None,
    ) -> Generator[bytes, None, None]:
        """Sends one request and yields its answer's lines as they arrive (NDJSON). The connection
        goes back to the thread's slot once the answer is read to its end, and is closed if the
        caller stops early."""
        resp, conn = self._send(method, path, json.dumps(json_body).encode(), None, "application/json", timeout)
        if resp.status >= 400:
            try:
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise self._broken(method, path, e, timeout) from e
            self._release(conn, resp)
            raise error_from_response(resp.status, resp.reason, resp.headers, data)
        return self._lines(method, path, resp, conn, timeout)

    def _lines(self, method: str, path: str, resp: http.client.HTTPResponse,
               conn: http.client.HTTPConnection, timeout: Optional[float]) -> Generator[bytes, None, None]:
        done = False
        try:
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as e:
                    raise self._broken(method, path, e, timeout) from e
                if not line:
                    break
                line = line.rstrip(b"\r\n")
                if line:
                    yield line
            done = True
        finally:
            if done:
                self._release(conn, resp)
            else:  # the caller stopped early or the stream broke: the connection is mid-answer
                conn.close()

    def _send(
        self,
        method: str,
        path: str,
        body: Body,
        query: Optional[Mapping[str, str]],
        content_type: Optional[str],
        timeout: Optional[float],
    ) -> Tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        url = self._prefix + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"User-Agent": f"forkbox-python/{__version__}", "Accept-Encoding": "identity"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if content_type:
            headers["Content-Type"] = content_type
        start = _body_start(body)
        if body is not None:
            length = _body_length(body, start)
            if length is not None:  # else http.client sends the body chunked
                headers["Content-Length"] = str(length)
        idempotent = method in _IDEMPOTENT and (body is None or isinstance(body, bytes) or start is not None)
        attempt = 0
        while True:
            conn = self._take()
            sent = False
            try:
                if conn.sock is None:
                    conn.connect()
                    # http.client sends a request's head and body in two writes: without NODELAY,
                    # Nagle's algorithm would hold the body until the head is acknowledged.
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
                conn.sock.settimeout(timeout if timeout is not None else self.timeout)  # type: ignore[union-attr]
                sent = True
                if start is not None:
                    body.seek(start)  # type: ignore[union-attr]
                conn.request(method, url, body=body, headers=headers)
                return conn.getresponse(), conn
            except socket.timeout as e:
                conn.close()
                if not sent:
                    raise ForkboxConnectionError(f"could not connect to {self.host} within {self.connect_timeout} s: {_HINT}") from e
                raise self._broken(method, path, e, timeout) from e
            except (OSError, http.client.HTTPException) as e:
                if sent and body is not None and isinstance(e, (BrokenPipeError, ConnectionResetError)):
                    # The server may have answered before reading the whole body (413 for an upload
                    # over its limit) and closed; that answer is still readable, and is the real one.
                    try:
                        return conn.getresponse(), conn
                    except (OSError, http.client.HTTPException):
                        pass
                conn.close()
                retry = (not sent and isinstance(e, ConnectionError)) or (idempotent and not isinstance(e, socket.gaierror))
                if not retry or attempt >= self.retries:
                    if not sent:
                        raise ForkboxConnectionError(f"could not connect to {self.host}: {e}; {_HINT}") from e
                    raise self._broken(method, path, e, timeout) from e
                time.sleep(0.1 * (2 ** attempt))
                attempt += 1

    def _broken(self, method: str, path: str, e: BaseException, timeout: Optional[float]) -> ForkboxConnectionError:
        if isinstance(e, socket.timeout):
            wait = timeout if timeout is not None else self.timeout
            return ForkboxTimeoutError(f"{method} {path}: {self.host} did not answer within {wait} s")
        return ForkboxConnectionError(
            f"{method} {path}: the connection to {self.host} broke before the answer was complete "
            f"({type(e).__name__}: {e}); {_HINT}")

    # ---- connections: one kept-alive connection per client and thread --------------------

    def _take(self) -> http.client.HTTPConnection:
        """The thread's connection, taken out of its slot while a request uses it (so a callback
        that makes another call on this thread, mid-stream, gets a connection of its own)."""
        slot = self._slot()
        conn = slot.conn
        if conn is None:
            return self._new_connection()
        slot.conn = None
        if conn.sock is not None and _closed_by_peer(conn.sock):
            conn.close()  # the server closed it while idle; request() below reconnects
        return conn

    def _release(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        slot = self._slot()
        if resp.will_close or slot.conn is not None:
            conn.close()
        else:
            slot.conn = conn

    def _slot(self) -> "_ConnectionSlot":
        slot: Optional[_ConnectionSlot] = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._local.slot = _ConnectionSlot()
        return slot

    def _new_connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._hostname, self._port, timeout=self.connect_timeout, blocksize=1 << 16)
        return http.client.HTTPConnection(self._hostname, self._port, timeout=self.connect_timeout, blocksize=1 << 16)

    def close(self) -> None:
        """Closes this thread's kept-alive connection (others close when their threads end)."""
        slot = self._slot()
        conn, slot.conn = slot.conn, None
        if conn is not None:
            conn.close()


class _ConnectionSlot:
    """A thread's kept-alive connection to one host, closed when the thread ends (its
    threading.local goes with it) rather than left for the garbage collector to find."""

    __slots__ = ("conn",)

    def __init__(self) -> None:
        self.conn: Optional[http.client.HTTPConnection] = None

    def __del__(self) -> None:
        if self.conn is not None:
            self.conn.close()


@atexit.register
def _close_shared_clients() -> None:
    for client in list(ForkboxClient._shared.values()):
        client.close()


def resolve_host(host: Optional[str]) -> str:
    """The base URL: ``host``, else FORKBOX_HOST, else http://127.0.0.1:7070; "host:port" means http."""
    h = host or os.environ.get("FORKBOX_HOST") or DEFAULT_HOST
    if "://" not in h:
        h = "http://" + h
    return h.rstrip("/")


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle kept-alive connection that is readable has been closed by the server (or sent
    something unasked): either way it cannot carry the next request."""
    try:
        if hasattr(select, "poll"):
            p = select.poll()
            p.register(sock, select.POLLIN)
            return bool(p.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _body_start(body: Body) -> Optional[int]:
    """Where a seekable file body starts, so a retry can send it again; None otherwise."""
    if body is None or isinstance(body, bytes):
        return None
    if isinstance(body, io.TextIOBase):
        raise TypeError("upload a file opened in binary mode ('rb'), or pass str or bytes")
    try:
        if body.seekable():
            return body.tell()
    except (AttributeError, OSError, ValueError):
        pass
    return None


def _body_length(body: Body, start: Optional[int]) -> Optional[int]:
    """The body's length when it can be known without reading it (a regular file, a seekable
    stream); None for a pipe or other stream, which then goes chunked."""
    if isinstance(body, bytes):
        return len(body)
    assert body is not None
    try:
        st = os.fstat(body.fileno())
        if stat.S_ISREG(st.st_mode):
            return st.st_size - (start or 0)
    except (AttributeError, OSError, ValueError):
        pass
    if start is not None:
        end = body.seek(0, io.SEEK_END)
        body.seek(start)
        return end - start
    return None
