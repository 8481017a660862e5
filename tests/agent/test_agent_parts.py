"""Tests of the agent's parts that need no root, no sandbox and no fork: output cut into lines and
capped at the output limit (output.py), the description of a cell's result and its errors
(cells.py), the fail codes of file ops (files.py), /proc parsing (pid1.py), and the frames on the
control socket (protocol.py, channel.py), over a socketpair.

Run from the repository root, as any user: /usr/bin/python3 -m unittest discover -s tests/agent -v
"""

import contextlib
import errno
import io
import os
import shutil
import socket
import stat
import struct
import sys
import tempfile
import threading
import unittest

AGENT_PYTHON = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src", "Forkbox.Agent", "python"))
sys.path.insert(0, AGENT_PYTHON)

from forkbox_agent import agent, cells, files, output, pid1, shell  # noqa: E402
from forkbox_agent.channel import Channel  # noqa: E402
from forkbox_agent.output import LINE_CHUNK  # noqa: E402
from forkbox_agent.protocol import MAX_HEADER, FrameReader, encode  # noqa: E402


class Lines:
    """Stands for the Agent an OutputSink sends to: keeps the lines it is given."""

    def __init__(self):
        self.calls = []

    def emit_lines(self, stream, lines):
        self.calls.append((stream, lines))

    def all(self):
        return [line for _, lines in self.calls for line in lines]


class AgentOnASocketpair(unittest.TestCase):
    """An Agent whose control socket is one end of a socketpair; the test reads the other."""

    output_limit = 1 << 20

    def setUp(self):
        self.ours, theirs = socket.socketpair()
        self.addCleanup(self.ours.close)
        self.addCleanup(theirs.close)
        self.ours.settimeout(30)
        self.agent = agent.Agent(theirs, self.output_limit)
        self.reader = FrameReader(self.ours)

    def frames_until_mark(self):
        """The frames the agent sent, up to a mark the test sends after them."""
        self.agent.chan.send({"ev": "mark"})
        frames = []
        while True:
            header, _ = self.reader.read()
            if header["ev"] == "mark":
                return frames
            frames.append(header)


class OutputSplittingWithoutRoot(unittest.TestCase):
    def test_a_partial_line_waits_for_its_newline(self):
        sent = Lines()
        sink = output.OutputSink(sent, 1)
        sink.feed(b"ab")
        self.assertEqual(sent.calls, [])
        sink.feed(b"c\nd")
        self.assertEqual(sent.calls, [(1, ["abc"])])
        self.assertEqual(sink.pending, b"d")

    def test_the_final_flush_sends_the_partial_line_and_only_once(self):
        sent = Lines()
        sink = output.OutputSink(sent, 2)
        sink.feed(b"no newline")
        sink.flush()
        sink.flush()
        self.assertEqual(sent.calls, [(2, ["no newline"])])
        self.assertEqual(sink.pending, b"")

    def test_several_lines_in_one_write_are_one_event_and_empty_lines_stay(self):
        sent = Lines()
        sink = output.OutputSink(sent, 1)
        sink.feed(b"1\n\n3\n")
        self.assertEqual(sent.calls, [(1, ["1", "", "3"])])
        self.assertEqual(sink.pending, b"")

    def test_a_long_partial_line_goes_in_chunks(self):
        lines, pending = output.split_lines(b"", b"x" * (2 * LINE_CHUNK + 5))
        self.assertEqual([len(l) for l in lines], [LINE_CHUNK, LINE_CHUNK])
        self.assertEqual(pending, b"xxxxx")
        lines, pending = output.split_lines(pending, b"", final=True)
        self.assertEqual((lines, pending), ([b"xxxxx"], b""))

    def test_split_lines_joins_what_was_pending(self):
        self.assertEqual(output.split_lines(b"he", b"llo\nwor"), ([b"hello"], b"wor"))
        self.assertEqual(output.split_lines(b"", b""), ([], b""))

    def test_bytes_that_are_not_utf8_are_replaced(self):
        sent = Lines()
        output.OutputSink(sent, 1).feed(b"caf\xc3\xa9 \xff\n")
        self.assertEqual(sent.all(), ["café \ufffd"])

    def test_a_stream_writer_takes_text_only_and_feeds_its_sink(self):
        sent = Lines()
        writer = output.StreamWriter(output.OutputSink(sent, 2), "<stderr>")
        self.assertEqual(writer.write("é\n"), 2)
        self.assertEqual(sent.all(), ["é"])
        self.assertEqual((writer.fileno(), writer.name, writer.isatty()), (2, "<stderr>", False))
        with self.assertRaises(TypeError) as caught:
            writer.write(b"bytes")
        self.assertEqual(str(caught.exception), "write() argument must be str, not bytes")

    def test_discard_drops_what_is_written(self):
        self.assertEqual(output.Discard().write("dropped"), 7)


class OutputLimitWithoutRoot(AgentOnASocketpair):
    output_limit = 100

    def test_cap_lines_passes_lines_up_to_the_limit(self):
        self.assertEqual(output.cap_lines(0, 1, ["a" * 9], 10), (1, ["a" * 9], 10, False))
        self.assertEqual(output.cap_lines(90, 1, ["abc", "d"], 96), (1, ["abc", "d"], 6, False))

    def test_cap_lines_past_the_limit_is_one_marker_on_stderr(self):
        stream, lines, size, truncated = output.cap_lines(95, 1, ["abcdef"], 100)
        self.assertEqual((stream, lines, size, truncated),
                         (2, ["[forkbox: output truncated after 95 bytes]"], 7, True))

    def test_a_call_that_writes_too_much_gets_the_marker_and_nothing_after(self):
        self.agent._begin(7)
        for i in range(30):
            self.agent.sinks[1].feed(f"line {i:02}\n".encode())  # 8 bytes each, newline counted
        self.agent.sinks[2].feed(b"late\n")
        frames = self.frames_until_mark()
        sent = [line for f in frames[:-1] for line in f["lines"]]
        self.assertEqual(sent, [f"line {i:02}" for i in range(12)])  # 96 bytes; a 13th is past 100
        self.assertEqual(frames[-1], {"ev": "out", "id": 7, "s": 2,
                                      "lines": ["[forkbox: output truncated after 96 bytes]"]})
        self.assertTrue(all(f["id"] == 7 and f["s"] == 1 for f in frames[:-1]))

    def test_the_next_call_starts_with_the_whole_limit(self):
        self.agent._begin(1)
        self.agent.sinks[1].feed(b"x" * 200 + b"\n")
        self.agent._begin(2)
        self.agent.sinks[1].feed(b"fits\n")
        frames = self.frames_until_mark()
        self.assertEqual([(f["id"], f["s"], f["lines"]) for f in frames],
                         [(1, 2, ["[forkbox: output truncated after 0 bytes]"]), (2, 1, ["fits"])])

    def test_output_with_no_call_in_progress_is_not_sent(self):
        self.agent.sinks[1].feed(b"between calls\n")
        self.assertEqual(self.frames_until_mark(), [])


class ResultDescriptionWithoutRoot(unittest.TestCase):
    def test_ints_strings_and_none_are_their_own_data(self):
        self.assertEqual(cells.describe(42), {"repr": "42", "kind": "int", "data": 42, "data_kind": "json",
                                              "mime": {"text/plain": "42"}})
        self.assertEqual(cells.describe("hi"), {"repr": "'hi'", "kind": "str", "data": "hi", "data_kind": "json",
                                                "mime": {"text/plain": "'hi'"}})
        self.assertEqual(cells.describe(True), {"repr": "True", "kind": "bool", "data": True, "data_kind": "json",
                                                "mime": {"text/plain": "True"}})
        self.assertEqual(cells.describe(None)["data"], None)

    def test_nested_json_values_are_data(self):
        value = {"a": [1, 2.5, {"b": None, "c": (True, "x")}]}
        described = cells.describe(value)
        self.assertIs(described["data"], value)
        self.assertEqual(described["kind"], "dict")
        # And the frame that carries it encodes.
        header, _ = _round_trip(encode({"ev": "result", **described}))
        self.assertEqual(header["data"], {"a": [1, 2.5, {"b": None, "c": [True, "x"]}]})

    def test_what_json_cannot_carry_is_described_by_its_repr(self):
        for value in (2 ** 53, -(2 ** 53), float("nan"), float("inf"), {1: "int key"}, {"a": {1, 2}},
                      b"bytes", [object()], list(range(10001))):
            with self.subTest(value=type(value).__name__):
                described = cells.describe(value)
                self.assertEqual(described["data"], described["repr"])
        self.assertEqual(cells.describe(2 ** 53 - 1)["data"], 2 ** 53 - 1)
        self.assertEqual(cells.describe(list(range(10000)))["data"], list(range(10000)))

    def test_deep_nesting_stops_at_twenty_levels(self):
        def nested(levels):
            v = 0
            for _ in range(levels):
                v = [v]
            return v
        self.assertTrue(cells.is_json(nested(20), 0))
        self.assertFalse(cells.is_json(nested(21), 0))
        # Too deep for repr itself: described, not raised.
        described = cells.describe(nested(100000))
        self.assertTrue(described["repr"].startswith("<unrepresentable list: "), described["repr"][:80])
        self.assertEqual(described["data"], described["repr"])

    def test_an_object_whose_repr_raises(self):
        class Broken:
            def __repr__(self):
                raise RuntimeError("no repr today")
        self.assertEqual(cells.describe(Broken()), {"repr": "<unrepresentable Broken: no repr today>",
                                                    "kind": "Broken",
                                                    "data": "<unrepresentable Broken: no repr today>",
                                                    "data_kind": "repr",
                                                    "mime": {"text/plain": "<unrepresentable Broken: no repr today>"}})

    def test_a_huge_repr_is_cut_at_one_mebibyte(self):
        text = cells.safe_repr("x" * (2 << 20))
        self.assertEqual(len(text), (1 << 20) + 1)
        self.assertTrue(text.startswith("'xxx"))
        self.assertTrue(text.endswith("x…"))
        exact = "y" * ((1 << 20) - 2)  # its repr is 1 MiB exactly, quotes included: kept whole
        self.assertEqual(cells.safe_repr(exact), repr(exact))


class CellErrorsWithoutRoot(AgentOnASocketpair):
    """Cells run in this process, as the agent runs them; their stderr is captured."""

    def run_cell(self, code, **req):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            result = cells.run(self.agent, {"id": 5, "code": code, "rich": True, **req})
        return result, stderr.getvalue(), self.frames_until_mark()

    def test_an_exception_is_reported_from_the_cell_down(self):
        (code, timed_out), stderr, frames = self.run_cell("def f():\n    raise ValueError('bad')\nf()")
        self.assertEqual((code, timed_out), (1, False))
        [error] = frames
        self.assertEqual((error["ev"], error["id"], error["name"], error["value"]), ("error", 5, "ValueError", "bad"))
        self.assertTrue(error["traceback"].startswith('Traceback (most recent call last):\n  File "<cell-1>", line 3'))
        self.assertIn("raise ValueError('bad')", error["traceback"])  # the cell's source, from linecache
        self.assertTrue(error["traceback"].endswith("ValueError: bad\n"))
        self.assertNotIn("cells.py", error["traceback"])
        self.assertEqual(stderr, error["traceback"])

    def test_a_last_expression_comes_back_as_a_result(self):
        (code, _), _, frames = self.run_cell("x = 20\nx * 2 + 2")
        self.assertEqual(code, 0)
        self.assertEqual(frames, [{"ev": "result", "id": 5, "repr": "42", "kind": "int", "data": 42, "data_kind": "json",
                                   "mime": {"text/plain": "42"}}])
        self.assertEqual(self.agent.globals["x"], 20)

    def test_a_timeout_is_a_timeout_error_with_exit_code_124(self):
        (code, timed_out), _, frames = self.run_cell("while True:\n    pass", timeout=0.2)
        self.assertEqual((code, timed_out), (124, True))
        self.assertEqual(frames, [{"ev": "error", "id": 5, "name": "TimeoutError",
                                   "value": "execution exceeded the timeout of 0.2 s",
                                   "traceback": "TimeoutError: execution exceeded the timeout of 0.2 s\n"}])

    def test_system_exit_is_an_exit_code_not_an_error(self):
        self.assertEqual(self.run_cell("raise SystemExit(3)")[0], (3, False))
        (code, _), stderr, frames = self.run_cell("import sys; sys.exit('bye')")
        self.assertEqual((code, stderr, frames), (1, "bye\n", []))

    def test_exit_status_is_what_sys_exit_makes_of_its_argument(self):
        self.assertEqual([cells.exit_status(c) for c in (None, 0, 3, 256, -1)], [0, 0, 3, 0, 255])

    def test_a_shell_killed_by_a_signal_exits_with_128_and_its_number(self):
        self.assertEqual([shell.exit_code(rc) for rc in (0, 2, -9, -15)], [0, 2, 137, 143])


class FileErrorsWithoutRoot(unittest.TestCase):
    def test_errno_maps_to_the_code_hostd_is_told(self):
        expected = {errno.ENOENT: "not_found", errno.ENOTDIR: "not_a_directory", errno.EISDIR: "is_a_directory",
                    errno.EACCES: "forbidden", errno.ENOSPC: "no_space", errno.EDQUOT: "no_space",
                    errno.EEXIST: "exists", errno.ENOTEMPTY: "not_empty", errno.EPERM: "file_error",
                    errno.EIO: "file_error"}
        for number, code in expected.items():
            with self.subTest(errno=errno.errorcode[number]):
                self.assertEqual(files.error_code(OSError(number, os.strerror(number))), code)
        self.assertEqual(files.error_code(ValueError("no errno")), "file_error")

    def test_the_fail_message_is_the_path_and_the_reason(self):
        err = FileNotFoundError(errno.ENOENT, "No such file or directory")
        self.assertEqual(files.failure({"id": 3, "path": "/root/x"}, err),
                         {"ev": "fail", "id": 3, "code": "not_found", "message": "/root/x: No such file or directory"})
        self.assertEqual(files.failure({"id": 4}, OSError("plain"))["message"], "None: plain")

    def test_ops_on_real_files_answer_these_codes(self):
        tmp = tempfile.mkdtemp(prefix="forkbox-files-")
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "a", "b.txt")
        self.assertEqual(files.write({"id": 1, "path": path}, b"hello"), ({"ev": "ok", "id": 1, "size": 5}, b""))
        self.assertEqual(os.listdir(os.path.dirname(path)), ["b.txt"])  # no upload file left behind
        self.assertEqual(files.read({"id": 2, "path": path}, b""), ({"ev": "ok", "id": 2, "size": 5}, b"hello"))

        def code(frame):
            return frame[0].get("code")
        self.assertEqual(code(files.read({"id": 3, "path": path + ".missing"}, b"")), "not_found")
        self.assertEqual(code(files.read({"id": 4, "path": tmp}, b"")), "is_a_directory")
        self.assertEqual(files.read({"id": 4, "path": "/dev/null"}, b"")[0],
                         {"ev": "fail", "id": 4, "code": "not_a_regular_file",
                          "message": "/dev/null: it is a character device; only regular files can be read or written"})
        self.assertEqual(files.read({"id": 5, "path": path, "max": 4}, b"")[0],
                         {"ev": "fail", "id": 5, "code": "too_large", "message": f"{path} is 5 bytes, over the limit of 4"})
        self.assertEqual(code(files.write({"id": 6, "path": os.path.join(path, "sub", "f")}, b"")), "not_a_directory")
        self.assertEqual(code(files.write({"id": 6, "path": os.path.join(path, "f")}, b"")), "exists")
        self.assertEqual(code(files.remove({"id": 7, "path": os.path.join(tmp, "a")}, b"")), "not_empty")
        os.symlink(path, os.path.join(tmp, "link"))
        entries = files.list_dir({"id": 8, "path": tmp}, b"")[0]["entries"]
        self.assertEqual([(e["name"], e["type"]) for e in entries], [("a", "dir"), ("link", "symlink")])
        self.assertEqual(files.remove({"id": 9, "path": os.path.join(tmp, "a"), "recursive": True}, b""),
                         ({"ev": "ok", "id": 9}, b""))
        self.assertFalse(os.path.exists(os.path.join(tmp, "a")))
        self.assertEqual(code(files.list_dir({"id": 10, "path": os.path.join(tmp, "a")}, b"")), "not_found")


    def test_no_op_opens_a_named_pipe_a_socket_or_a_device(self):
        # Opening a FIFO for reading blocks until a writer comes: each op here would hang the test
        # (and, in a sandbox, the agent's call loop) if it opened one before looking at its type.
        tmp = tempfile.mkdtemp(prefix="forkbox-files-")
        self.addCleanup(shutil.rmtree, tmp)
        fifo, sock_path = os.path.join(tmp, "fifo"), os.path.join(tmp, "sock")
        os.mkfifo(fifo)
        sock = socket.socket(socket.AF_UNIX)
        self.addCleanup(sock.close)
        sock.bind(sock_path)
        kinds = {fifo: "a named pipe", sock_path: "a socket", "/dev/zero": "a character device"}
        for path, kind in kinds.items():
            with self.subTest(kind=kind):
                for op in (files.read, files.write):
                    header = op({"id": 1, "path": path}, b"data")[0]
                    self.assertEqual((header["code"], header["message"]),
                                     ("not_a_regular_file", f"{path}: it is {kind}; only regular files can be read or written"))
                self.assertEqual(files.list_dir({"id": 2, "path": path}, b"")[0]["code"], "not_a_directory")
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode))  # the refused upload left the pipe as it was
        self.assertEqual(sorted(os.listdir(tmp)), ["fifo", "sock"])  # and no upload file behind
        # An upload's temporary name is new each time: a pipe put where one would go is never opened.
        os.mkfifo(os.path.join(tmp, "f.txt.forkbox-upload"))
        self.assertEqual(files.write({"id": 3, "path": os.path.join(tmp, "f.txt")}, b"ok")[0]["ev"], "ok")

    def test_an_upload_through_a_symlink_writes_its_target_and_keeps_the_link(self):
        tmp = tempfile.mkdtemp(prefix="forkbox-files-")
        self.addCleanup(shutil.rmtree, tmp)
        target, link = os.path.join(tmp, "target.txt"), os.path.join(tmp, "link.txt")
        with open(target, "w") as f:
            f.write("old")
        os.symlink("target.txt", link)
        self.assertEqual(files.write({"id": 1, "path": link}, b"new")[0]["ev"], "ok")
        self.assertTrue(os.path.islink(link))
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"new")


class Pid1ParsingWithoutRoot(unittest.TestCase):
    def test_a_command_name_with_spaces_and_parentheses(self):
        stat = b"123 (a) b (c) S 1 123 77 0 -1 4194560 0 0 0 0"
        self.assertEqual(pid1.parse_stat(stat), (b"S", 1, 77))

    def test_this_process_stat(self):
        with open("/proc/self/stat", "rb") as f:
            state, ppid, sid = pid1.parse_stat(f.read())
        self.assertEqual((state, ppid, sid), (b"R", os.getppid(), os.getsid(0)))


class FramingWithoutRoot(unittest.TestCase):
    def setUp(self):
        self.a, self.b = socket.socketpair()
        self.addCleanup(self.a.close)
        self.addCleanup(self.b.close)
        self.b.settimeout(30)
        self.reader = FrameReader(self.b)

    def test_a_frame_round_trips(self):
        self.a.sendall(encode({"ev": "ok", "id": 1, "text": "é ✓"}, b"\x00payload\xff"))
        self.assertEqual(self.reader.read(), ({"ev": "ok", "id": 1, "text": "é ✓"}, b"\x00payload\xff"))

    def test_the_prefix_is_both_lengths_big_endian_and_the_header_is_compact_utf8(self):
        data = encode({"a": "é"}, b"xyz")
        header = '{"a":"é"}'.encode()
        self.assertEqual(data, struct.pack(">II", len(header), 3) + header + b"xyz")

    def test_an_empty_payload(self):
        self.a.sendall(encode({"ev": "ok"}) + encode({"ev": "next"}, b"p"))
        self.assertEqual(self.reader.read(), ({"ev": "ok"}, b""))
        self.assertEqual(self.reader.read(), ({"ev": "next"}, b"p"))

    def test_a_payload_larger_than_the_socket_buffer(self):
        payload = os.urandom(4 << 20)
        sender = threading.Thread(target=self.a.sendall, args=(encode({"ev": "big"}, payload),))
        sender.start()
        self.addCleanup(sender.join)
        self.assertEqual(self.reader.read(), ({"ev": "big"}, payload))

    def test_a_header_over_max_header_is_refused_before_it_is_read(self):
        self.a.sendall(struct.pack(">II", MAX_HEADER + 1, 0))
        with self.assertRaises(ValueError) as caught:
            self.reader.read()
        self.assertEqual(str(caught.exception), f"frame header of {MAX_HEADER + 1} bytes is over the limit")

    def test_eof_mid_frame(self):
        data = encode({"ev": "ok"}, b"payload")
        for cut in (3, 8, 10, len(data) - 1):
            with self.subTest(cut=cut):
                a, b = socket.socketpair()
                with a, b:
                    a.sendall(data[:cut])
                    a.shutdown(socket.SHUT_WR)
                    with self.assertRaises(EOFError):
                        FrameReader(b).read()

    def test_eof_between_frames(self):
        self.a.sendall(encode({"ev": "last"}))
        self.a.shutdown(socket.SHUT_WR)
        self.assertEqual(self.reader.read(), ({"ev": "last"}, b""))
        with self.assertRaises(EOFError):
            self.reader.read()

    def test_an_alarm_or_interrupt_during_a_send_is_raised_after_the_whole_frame(self):
        chan = Channel(self.a)
        for handler, exc in ((cells._on_alarm, cells.CellTimeout), (cells.on_interrupt, KeyboardInterrupt)):
            cells.timer.armed = True
            cells.timer.critical = 1  # as while the main thread sends
            try:
                handler(None, None)  # noted, not raised
                cells.timer.critical = 0
                with self.assertRaises(exc):
                    chan.send({"ev": "out", "lines": ["x"]})
            finally:
                cells.timer.armed, cells.timer.critical, cells.timer.pending = False, 0, None
            self.assertEqual(self.reader.read(), ({"ev": "out", "lines": ["x"]}, b""))
            chan.send({"ev": "after"})  # raised once
            self.assertEqual(self.reader.read(), ({"ev": "after"}, b""))

    def test_an_interrupt_between_calls_is_dropped(self):
        cells.timer.armed = False
        cells.on_interrupt(None, None)  # no KeyboardInterrupt
        self.assertIsNone(cells.timer.pending)


def _round_trip(data):
    a, b = socket.socketpair()
    with a, b:
        a.sendall(data)
        return FrameReader(b).read()


if __name__ == "__main__":
    unittest.main()
