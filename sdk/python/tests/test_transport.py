"""The HTTP client's failure handling, against small fake servers that misbehave on purpose:
which requests are retried, reconnecting after an idle close, and how error answers map to
exceptions. (The real server is exercised by the other modules.)"""

from __future__ import annotations

import json
import socket
import threading
import time
import unittest
from typing import Callable, List, Tuple

import forkbox_server  # noqa: F401  (puts this checkout's SDK on sys.path)

from forkbox import (
    AtCapacityError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ExecutorError,
    ForkboxClient,
    ForkboxConnectionError,
    ForkboxError,
    ForkboxTimeoutError,
    InsufficientStorageError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    Sandbox,
)
from forkbox.client import resolve_host

# A handler gets the request's head (bytes up to the blank line) and the socket; it answers or not.
Handler = Callable[[bytes, socket.socket], None]


class FakeServer:
    """A loopback TCP server that hands each request to ``handler`` and records the request lines.
    Connections are kept open across requests unless the handler closes them."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: List[str] = []
        self.connections = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                while len(buf) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[length:]
                self.requests.append(head.split(b"\r\n")[0].decode())
                try:
                    self.handler(head, conn)
                except OSError:
                    return
                if conn.fileno() == -1:
                    return

    def close(self) -> None:
        self._listener.close()


def answer(status: int, body: bytes = b"{}", headers: Tuple[Tuple[str, str], ...] = (),
           close: bool = False) -> Handler:
    def handle(head: bytes, conn: socket.socket) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     f"{extra}\r\n".encode() + body)
        if close:  # close without saying so: a keep-alive connection the server dropped
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()
    return handle


def hang_up(head: bytes, conn: socket.socket) -> None:
    """Reads the request, then closes without a byte of answer."""
    conn.close()


def unused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


class Retries(unittest.TestCase):
    def test_a_refused_connection_is_retried_for_any_request_then_names_FORKBOX_HOST(self) -> None:
        client = ForkboxClient(f"127.0.0.1:{unused_port()}", retries=2)
        started = time.monotonic()
        with self.assertRaises(ForkboxConnectionError) as cm:
            client.request_json("POST", "/v1/sandboxes", json_body={})
        self.assertGreaterEqual(time.monotonic() - started, 0.3, "two retries back off 0.1 s then 0.2 s")
        self.assertIn("FORKBOX_HOST", str(cm.exception))
        self.assertIn("forkbox serve", str(cm.exception))
        self.assertEqual(cm.exception.status, 0)

    def test_a_refused_connection_then_a_server_succeeds_on_retry(self) -> None:
        port = unused_port()
        client = ForkboxClient(f"127.0.0.1:{port}", retries=3)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def start_late() -> None:
            time.sleep(0.15)
            listener.bind(("127.0.0.1", port))
            listener.listen(1)
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"id\":\"x\"}\n")
            conn.close()

        t = threading.Thread(target=start_late)
        t.start()
        try:
            self.assertEqual(client.request_json("POST", "/v1/sandboxes", json_body={}), {"id": "x"})
        finally:
            t.join()
            listener.close()

    def test_a_post_whose_bytes_went_out_is_never_sent_again(self) -> None:
        fake = FakeServer(hang_up)
        try:
            client = ForkboxClient(fake.url, retries=3)
            with self.assertRaises(ForkboxConnectionError):
                client.request_json("POST", "/v1/sandboxes", json_body={})
            with self.assertRaises(ForkboxConnectionError):
                list(client.stream_lines("POST", "/v1/sandboxes/sbx_1/exec", json_body={"code": "1"}))
            self.assertEqual(fake.requests, ["POST /v1/sandboxes HTTP/1.1", "POST /v1/sandboxes/sbx_1/exec HTTP/1.1"])
        finally:
            fake.close()

    def test_idempotent_requests_are_retried_after_a_broken_connection(self) -> None:
        fake = FakeServer(hang_up)
        try:
            client = ForkboxClient(fake.url, retries=2)
            for method in ("GET", "DELETE"):
                with self.assertRaises(ForkboxConnectionError):
                    client.request(method, "/v1/sandboxes/sbx_1")
            with self.assertRaises(ForkboxConnectionError):
                client.request("PUT", "/v1/sandboxes/sbx_1/files", body=b"data", query={"path": "/root/f"})
            self.assertEqual([r.split()[0] for r in fake.requests], ["GET"] * 3 + ["DELETE"] * 3 + ["PUT"] * 3)
        finally:
            fake.close()

    def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_request(self) -> None:
        fake = FakeServer(answer(200, b'{"id": "sbx_1"}', close=True))
        try:
            client = ForkboxClient(fake.url, retries=0)
            client.request_json("POST", "/v1/sandboxes", json_body={})
            time.sleep(0.1)  # the server's close reaches the client
            # Not retried (POST, no retries allowed): it works because the dead connection is noticed first.
            self.assertEqual(client.request_json("POST", "/v1/sandboxes", json_body={}), {"id": "sbx_1"})
            self.assertEqual(fake.connections, 2)
        finally:
            fake.close()

    def test_a_server_that_does_not_answer_in_time_is_a_timeout_and_is_not_asked_again(self) -> None:
        fake = FakeServer(lambda head, conn: None)  # reads the request, never answers
        try:
            client = ForkboxClient(fake.url, timeout=0.3, retries=2)
            with self.assertRaises(ForkboxTimeoutError) as cm:
                client.request("GET", "/v1/sandboxes/sbx_1")
            self.assertIn("0.3 s", str(cm.exception))
            self.assertEqual(cm.exception.code, "timeout")
            self.assertEqual(len(fake.requests), 1)
        finally:
            fake.close()

    def test_a_kept_alive_connection_carries_every_request(self) -> None:
        fake = FakeServer(answer(200, b'{"sandboxes": []}'))
        try:
            client = ForkboxClient(fake.url)
            for _ in range(5):
                client.list_sandboxes()
            self.assertEqual(fake.connections, 1)
            self.assertEqual(len(fake.requests), 5)
            client.close()
        finally:
            fake.close()


class ErrorAnswers(unittest.TestCase):
    def error(self, status: int, code: str, headers: Tuple[Tuple[str, str], ...] = ()) -> ForkboxError:
        body = json.dumps({"error": f"what went wrong ({code})", "code": code}).encode()
        fake = FakeServer(answer(status, body, headers))
        try:
            client = ForkboxClient(fake.url)
            with self.assertRaises(ForkboxError) as cm:
                client.request("GET", "/v1/sandboxes/sbx_1")
            client.close()
            return cm.exception
        finally:
            fake.close()

    def test_each_status_maps_to_its_exception_with_status_code_and_message(self) -> None:
        cases = [
            (400, "bad_request", BadRequestError),
            (401, "unauthorized", AuthenticationError),
            (403, "admin_required", PermissionDeniedError),
            (404, "not_found", NotFoundError),
            (409, "sandbox_busy", ConflictError),
            (409, "name_taken", ConflictError),
            (409, "lost", ConflictError),
            (409, "wrong_state", ConflictError),
            (409, "has_forks", ConflictError),
            (413, "too_large", PayloadTooLargeError),
            (429, "rate_limited", RateLimitError),
            (500, "executor_error", ExecutorError),
            (503, "at_capacity", AtCapacityError),
            (507, "no_space", InsufficientStorageError),
            (502, "bad_gateway", ForkboxError),
        ]
        for status, code, cls in cases:
            with self.subTest(status=status, code=code):
                e = self.error(status, code)
                self.assertIs(type(e), cls)
                self.assertEqual((e.status, e.code, e.message), (status, code, f"what went wrong ({code})"))
                self.assertEqual(str(e), f"what went wrong ({code}) (HTTP {status}, {code})")

    def test_rate_limit_carries_retry_after(self) -> None:
        e = self.error(429, "rate_limited", (("Retry-After", "7"),))
        assert isinstance(e, RateLimitError)
        self.assertEqual(e.retry_after, 7.0)
        self.assertIsNone(self.error(429, "rate_limited").retry_after)  # type: ignore[attr-defined]

    def test_an_answer_that_is_not_forkbox_json_keeps_its_text(self) -> None:
        fake = FakeServer(answer(502, b"<html>bad gateway</html>"))
        try:
            with self.assertRaises(ForkboxError) as cm:
                ForkboxClient(fake.url).request("GET", "/v1/capacity")
            self.assertEqual((cm.exception.status, cm.exception.code), (502, "http_error"))
            self.assertIn("bad gateway", cm.exception.message)
        finally:
            fake.close()

    def test_the_api_key_is_sent_as_a_bearer_token(self) -> None:
        seen: List[bytes] = []

        def handle(head: bytes, conn: socket.socket) -> None:
            seen.append(head)
            answer(200, b'{"sandboxes": []}')(head, conn)

        fake = FakeServer(handle)
        try:
            self.assertEqual(Sandbox.list(host=fake.url, api_key="k3y"), [])
            self.assertIn(b"Authorization: Bearer k3y", seen[0])
        finally:
            fake.close()


class Hosts(unittest.TestCase):
    def test_host_forms(self) -> None:
        self.assertEqual(resolve_host("example.org:7070"), "http://example.org:7070")
        self.assertEqual(resolve_host("https://edge.example.org/"), "https://edge.example.org")
        client = ForkboxClient("https://edge.example.org/forkbox")
        self.assertEqual((client._hostname, client._port, client._prefix), ("edge.example.org", 443, "/forkbox"))
        with self.assertRaises(ValueError):
            ForkboxClient("ftp://example.org")

    def test_an_unknown_name_is_a_connection_error(self) -> None:
        with self.assertRaises(ForkboxConnectionError) as cm:
            ForkboxClient("http://forkbox.invalid:7070", retries=0).capacity()
        self.assertIn("FORKBOX_HOST", str(cm.exception))




if __name__ == "__main__":
    unittest.main()
