"""Sandbox against a real server: create, connect, list, code, commands, files, errors, closing."""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
import unittest
from typing import List

from forkbox_server import module_server

import forkbox
from forkbox import (
    BadRequestError,
    ConflictError,
    Execution,
    FileEntry,
    ForkboxClient,
    NotFoundError,
    PayloadTooLargeError,
    Sandbox,
)

setUpModule, tearDownModule, url = module_server("sandbox")


class CreateAndConnect(unittest.TestCase):
    def test_create_applies_the_options_and_reports_the_sandbox(self) -> None:
        with Sandbox(url(), timeout_s=120, memory_mb=300, cpus=0.5, env={"GREETING": "hi"},
                     metadata={"owner": "tests"}) as sb:
            self.assertTrue(sb.id.startswith("sbx_"))
            self.assertEqual(sb.info["state"], "ready")
            self.assertEqual(sb.info["template"], "default")
            self.assertEqual(sb.info["limits"]["memory_mb"], 300)
            self.assertEqual(sb.info["limits"]["cpus"], 0.5)
            self.assertEqual(sb.info["metadata"], {"owner": "tests"})
            self.assertEqual(sb.run_code("import os; os.environ['GREETING']").result, "hi")
            self.assertIn(sb.id, repr(sb))
            self.assertIn("ready", repr(sb))
        self.assertIn("closed", repr(sb))

    def test_host_defaults_to_FORKBOX_HOST_and_accepts_host_port_without_a_scheme(self) -> None:
        bare = url().replace("http://", "")
        old = os.environ.get("FORKBOX_HOST")
        os.environ["FORKBOX_HOST"] = bare
        try:
            with Sandbox() as sb:
                self.assertEqual(sb.client.host, url())
                self.assertEqual(sb.run_code("6 * 7").result, 42)
        finally:
            if old is None:
                del os.environ["FORKBOX_HOST"]
            else:
                os.environ["FORKBOX_HOST"] = old

    def test_connect_attaches_to_an_existing_sandbox_and_refresh_reads_its_state(self) -> None:
        with Sandbox.create(url()) as sb:
            sb.run_code("x = 5")
            other = Sandbox.connect(sb.id, host=url())
            self.assertEqual(other.id, sb.id)
            self.assertEqual(other.info["state"], "ready")
            self.assertEqual(other.run_code("x").result, 5)
            info = sb.refresh()
            self.assertIn("memory_bytes", info)
            self.assertIs(info, sb.info)

    def test_list_on_the_class_lists_sandboxes_and_on_an_instance_lists_files(self) -> None:
        with Sandbox(url()) as sb:
            listed = Sandbox.list(host=url())
            self.assertIn(sb.id, [s.id for s in listed])
            self.assertTrue(all(isinstance(s, Sandbox) for s in listed))
            sb.upload("/root/here.txt", "x")
            self.assertEqual([e.name for e in sb.list()], ["here.txt"])

    def test_the_client_keeps_one_connection_alive_across_calls(self) -> None:
        with Sandbox(url()) as sb:
            sb.run_code("1")
            sock = sb.client._slot().conn.sock
            sb.exec("true")
            sb.upload("/root/f", b"1")
            sb.download("/root/f")
            sb.list()
            self.assertIs(sb.client._slot().conn.sock, sock)
            # Every sandbox of the same host and key shares the client, so the connection too.
            with Sandbox(url()) as second:
                self.assertIs(second.client, sb.client)
                self.assertIs(sb.client._slot().conn.sock, sock)

    def test_each_thread_has_its_own_connection(self) -> None:
        with Sandbox(url()) as sb:
            sb.run_code("1")
            socks: List[object] = []

            def work() -> None:
                sb.run_code("2")
                socks.append(sb.client._slot().conn.sock)

            t = threading.Thread(target=work)
            t.start()
            t.join()
            self.assertIsNot(socks[0], sb.client._slot().conn.sock)


class WithSandbox(unittest.TestCase):
    """One sandbox for the tests of a class."""

    sb: Sandbox

    @classmethod
    def setUpClass(cls) -> None:
        cls.sb = Sandbox(url())

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sb.close()


class RunCode(WithSandbox):
    def test_globals_persist_and_the_last_expression_is_the_result(self) -> None:
        self.sb.run_code("x = 41")
        r = self.sb.run_code("print(x + 1)\n{'x': x, 'list': [1, 2]}")
        self.assertIsInstance(r, Execution)
        self.assertEqual(r.stdout, "42")
        self.assertEqual(r.stdout_lines, ["42"])
        self.assertEqual(r.result, {"x": 41, "list": [1, 2]})
        self.assertEqual(r.exit_code, 0)
        self.assertIsNone(r.error)
        self.assertFalse(r.timed_out)
        self.assertGreater(r.duration, 0)

    def test_a_result_says_json_or_repr_and_carries_its_mime_bundle(self) -> None:
        r = self.sb.run_code("'hi'")
        self.assertEqual((r.result, r.result_kind, r.result_mime), ("hi", "json", {"text/plain": "'hi'"}))
        r = self.sb.run_code("class Page:\n    def __repr__(self): return 'Page()'\n"
                             "    def _repr_html_(self): return '<h1>page</h1>'\nPage()")
        self.assertEqual((r.result, r.result_kind), ("Page()", "repr"))
        self.assertEqual(r.result_mime, {"text/plain": "Page()", "text/html": "<h1>page</h1>"})
        self.assertEqual(r.displays, [])
        self.assertIsNone(self.sb.run_code("x = 1").result_kind)

    def test_a_cell_awaits_at_its_top_level(self) -> None:
        self.assertEqual(self.sb.run_code("import asyncio\nawait asyncio.sleep(0.1); 1 + 1").result, 2)

    def test_stdout_and_stderr_are_lines_joined_with_newlines(self) -> None:
        r = self.sb.run_code("import sys\nprint('a'); print('b')\nprint('c', file=sys.stderr); print('d', file=sys.stderr)")
        self.assertEqual(r.stdout_lines, ["a", "b"])
        self.assertEqual(r.stdout, "a\nb")
        self.assertEqual(r.stderr, "c\nd")

    def test_an_exception_is_reported_as_error_with_its_traceback(self) -> None:
        r = self.sb.run_code("1 / 0")
        self.assertEqual(r.exit_code, 1)
        assert r.error is not None
        self.assertEqual(r.error.name, "ZeroDivisionError")
        self.assertEqual(r.error.value, "division by zero")
        self.assertIn("Traceback", r.error.traceback)
        self.assertIn("ZeroDivisionError", r.stderr)
        self.assertIsNone(r.result)

    def test_callbacks_get_each_line_as_it_arrives_before_the_call_returns(self) -> None:
        started = time.monotonic()
        seen: List[tuple] = []
        r = self.sb.run_code(
            "import sys, time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second')\nprint('oops', file=sys.stderr)",
            on_stdout=lambda line: seen.append(("out", line, time.monotonic())),
            on_stderr=lambda line: seen.append(("err", line, time.monotonic())))
        returned = time.monotonic()
        self.assertEqual([(k, line) for k, line, _ in seen], [("out", "first"), ("out", "second"), ("err", "oops")])
        self.assertLess(seen[0][2] - started, returned - started - 0.7,
                        "the first line must reach the callback about a second before the call returns")
        self.assertEqual(r.stdout, "first\nsecond")

    def test_a_timeout_interrupts_the_cell_and_the_repl_survives(self) -> None:
        self.sb.run_code("kept = 'yes'")
        r = self.sb.run_code("import time\ntime.sleep(30)", timeout=1)
        self.assertTrue(r.timed_out)
        self.assertEqual(r.exit_code, 124)
        self.assertEqual(self.sb.run_code("kept").result, "yes")

    def test_interrupt_from_another_thread_stops_the_cell_and_keeps_its_variables(self) -> None:
        self.sb.run_code("kept = 'yes'")
        self.assertFalse(self.sb.interrupt(), "nothing runs yet")
        started = threading.Event()
        threading.Timer(30, started.set).start()  # the test fails, not hangs, if the cell never prints
        done: List[Execution] = []
        worker = threading.Thread(target=lambda: done.append(
            self.sb.run_code("import time\nprint('go', flush=True)\ntime.sleep(120)", on_stdout=lambda _: started.set())))
        worker.start()
        started.wait()
        self.assertTrue(self.sb.interrupt())
        worker.join(10)
        self.assertEqual(done[0].exit_code, 130)
        assert done[0].error is not None
        self.assertEqual(done[0].error.name, "KeyboardInterrupt")
        self.assertEqual(self.sb.run_code("kept").result, "yes")

    def test_stream_yields_the_raw_events(self) -> None:
        events = list(self.sb.stream("print('hi')\n7"))
        self.assertEqual([e["type"] for e in events], ["stdout", "result", "exit"])
        self.assertEqual(events[0]["data"], "hi")
        self.assertEqual(events[1]["data"], 7)

    def test_stopping_a_stream_early_leaves_the_client_usable(self) -> None:
        for ev in self.sb.stream("for i in range(3): print(i)", rich=False):
            break
        self.assertEqual(self.sb.run_code("print('after')").stdout, "after")


class Exec(unittest.TestCase):
    def test_exec_runs_bash_with_cwd_env_and_exit_code(self) -> None:
        with Sandbox(url()) as sb:
            sb.exec("mkdir -p /tmp/work")
            lines: List[str] = []
            r = sb.exec("pwd; echo $NAME; echo bad >&2; exit 3", on_stdout=lines.append, cwd="/tmp/work",
                        env={"NAME": "forkbox"})
            self.assertEqual(r.stdout_lines, ["/tmp/work", "forkbox"])
            self.assertEqual(lines, ["/tmp/work", "forkbox"])
            self.assertEqual(r.stderr, "bad")
            self.assertEqual(r.exit_code, 3)
            self.assertIsNone(r.result)
            self.assertEqual(sb.exec("pwd").stdout, "/root")

    def test_exec_timeout_kills_the_command(self) -> None:
        with Sandbox(url()) as sb:
            r = sb.exec("sleep 30", timeout=1)
            self.assertEqual(r.exit_code, 124)


class Files(WithSandbox):
    def test_upload_bytes_str_and_a_file_object_then_download(self) -> None:
        entry = self.sb.upload("/root/d/bytes.bin", b"\x00\x01\xff")
        self.assertEqual(entry, FileEntry("bytes.bin", "file", 3, entry.mtime))
        self.sb.upload("/root/d/text.txt", "héllo")
        payload = os.urandom(3 << 20)
        with tempfile.TemporaryFile() as f:
            f.write(payload)
            f.seek(0)
            self.assertEqual(self.sb.upload("d/stream.bin", f).size, len(payload))
        self.assertEqual(self.sb.download("/root/d/bytes.bin"), b"\x00\x01\xff")
        self.assertEqual(self.sb.download("/root/d/text.txt").decode(), "héllo")
        self.assertEqual(self.sb.download("/root/d/stream.bin"), payload)
        self.assertEqual(self.sb.run_code("open('/root/d/text.txt').read()").result, "héllo")

    def test_upload_streams_a_file_object_of_unknown_length(self) -> None:
        class Chunks(io.RawIOBase):
            def __init__(self) -> None:
                self.left = 4

            def readable(self) -> bool:
                return True

            def readinto(self, b: bytearray) -> int:  # type: ignore[override]
                if not self.left:
                    return 0
                self.left -= 1
                b[:4] = b"abcd"
                return 4

        self.sb.upload("/root/chunked.txt", io.BufferedReader(Chunks()))
        self.assertEqual(self.sb.download("/root/chunked.txt"), b"abcd" * 4)

    def test_upload_of_a_text_mode_file_is_refused(self) -> None:
        with tempfile.TemporaryFile("w+") as f:
            with self.assertRaises(TypeError):
                self.sb.upload("/root/t", f)  # type: ignore[arg-type]

    def test_list_and_remove(self) -> None:
        self.sb.upload("/root/l/a.txt", "a")
        self.sb.upload("/root/l/sub/b.txt", "bb")
        entries = {e.name: e for e in self.sb.list("/root/l")}
        self.assertEqual(set(entries), {"a.txt", "sub"})
        self.assertEqual((entries["a.txt"].type, entries["a.txt"].size), ("file", 1))
        self.assertEqual(entries["sub"].type, "dir")
        self.sb.remove("/root/l/a.txt")
        self.assertEqual([e.name for e in self.sb.list("/root/l")], ["sub"])
        self.sb.remove("/root/l", recursive=True)
        self.assertNotIn("l", [e.name for e in self.sb.list()])

    def test_missing_file_is_not_found_and_a_directory_is_a_bad_request(self) -> None:
        with self.assertRaises(NotFoundError) as cm:
            self.sb.download("/root/nope.txt")
        self.assertEqual(cm.exception.status, 404)
        self.assertEqual(cm.exception.code, "file_not_found")
        with self.assertRaises(BadRequestError):
            self.sb.download("/root")
        with self.assertRaises(BadRequestError):
            self.sb.download("/root/../etc/passwd")

    def test_an_upload_over_the_server_limit_is_payload_too_large(self) -> None:
        with tempfile.TemporaryFile() as f:
            f.truncate(65 << 20)  # sparse: over MaxUploadBytes (64 MiB), refused from its Content-Length
            with self.assertRaises(PayloadTooLargeError) as cm:
                self.sb.upload("/root/big.bin", f)
        self.assertEqual(cm.exception.code, "too_large")
        self.assertEqual(self.sb.run_code("print('still fine')").stdout, "still fine")


class Errors(unittest.TestCase):
    def test_an_unknown_id_is_not_found(self) -> None:
        with self.assertRaises(NotFoundError) as cm:
            Sandbox.connect("sbx_" + "0" * 32, host=url())
        self.assertEqual((cm.exception.status, cm.exception.code), (404, "not_found"))
        self.assertIn("not found", cm.exception.message)

    def test_an_unknown_template_is_a_bad_request(self) -> None:
        with self.assertRaises(BadRequestError) as cm:
            Sandbox(url(), template="no-such-template")
        self.assertEqual((cm.exception.status, cm.exception.code), (400, "bad_request"))
        self.assertIn("no-such-template", str(cm.exception))

    def test_a_dead_sandbox_answers_conflict(self) -> None:
        with Sandbox(url()) as sb:
            r = sb.run_code("import os; os._exit(3)")
            self.assertEqual(r.exit_code, 137)
            assert r.error is not None
            self.assertEqual(r.error.name, "SandboxDied")
            self.assertEqual(sb.refresh()["state"], "dead")
            with self.assertRaises(ConflictError) as cm:
                sb.run_code("1")
            self.assertEqual((cm.exception.status, cm.exception.code), (409, "sandbox_dead"))

    def test_every_api_error_is_a_ForkboxError(self) -> None:
        self.assertTrue(issubclass(NotFoundError, forkbox.ForkboxError))
        self.assertTrue(issubclass(forkbox.ForkboxConnectionError, forkbox.ForkboxError))


class Closing(unittest.TestCase):
    def test_the_with_block_closes_the_sandbox(self) -> None:
        with Sandbox(url()) as sb:
            sid = sb.id
        self.assertTrue(sb.closed)
        with self.assertRaises(NotFoundError):
            Sandbox.connect(sid, host=url())

    def test_the_with_block_closes_the_sandbox_when_its_body_raises(self) -> None:
        sid = ""
        with self.assertRaises(ValueError):
            with Sandbox(url()) as sb:
                sid = sb.id
                raise ValueError("the body failed")
        with self.assertRaises(NotFoundError):
            Sandbox.connect(sid, host=url())

    def test_closing_twice_or_a_sandbox_already_gone_is_not_an_error(self) -> None:
        sb = Sandbox(url())
        Sandbox.connect(sb.id, host=url()).close()
        sb.close()
        sb.close()
        self.assertTrue(sb.closed)

    def test_a_client_can_be_made_explicitly(self) -> None:
        client = ForkboxClient(url(), timeout=30)
        self.assertTrue(client.healthy())
        self.assertIn("templates", client.capacity())
        self.assertIn("default", [t["name"] for t in client.templates()])
        client.close()


if __name__ == "__main__":
    unittest.main()
