"""Tests of the REPL as a notebook user meets it, in this process (no root, no sandbox): bytes
written to sys.stdout.buffer, tracebacks with the user's frames only (a SyntaxError's caret
included), top-level await on a loop that persists, MIME bundles of results (rich.py) and
matplotlib figures as image/png.

Run from the repository root: /usr/bin/python3 -m unittest tests/agent/test_repl.py -v
"""

import base64
import contextlib
import importlib.util
import io
import os
import signal
import socket
import sys
import unittest

AGENT_PYTHON = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src", "Forkbox.Agent", "python"))
sys.path.insert(0, AGENT_PYTHON)

from forkbox_agent import agent, cells, output, rich  # noqa: E402
from forkbox_agent.protocol import FrameReader  # noqa: E402

# Looked up, not imported: importing it (and numpy) at discovery would change what the other test
# modules' interpreters hold (hibernate's tests record the modules a REPL imported).
if importlib.util.find_spec("matplotlib") is None:
    MATPLOTLIB = "matplotlib is not installed here; scripts/setup.sh installs python3-matplotlib"
    print(f"test_repl: skipping the figure tests: {MATPLOTLIB}", file=sys.stderr)
else:
    MATPLOTLIB = None

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Repl(unittest.TestCase):
    """An Agent on a socketpair whose cells run here with the agent's own sys.stdout and
    sys.stderr (StreamWriters), as in a sandbox; the test reads the frames it sends."""

    def setUp(self):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        ours.settimeout(30)
        self.agent = agent.Agent(theirs, 1 << 20)
        self.reader = FrameReader(ours)
        self.agent.figures.install()
        self.addCleanup(lambda: sys.meta_path.remove(next(f for f in sys.meta_path if isinstance(f, rich._ImportWatch))))

    def run_cell(self, code, rich_call=True, **req):
        """(exit code, timed out), and the frames of the call: out frames joined per stream as
        ("stdout"|"stderr", text) in order, the others as sent."""
        self.agent._begin(7)
        streams = sys.stdout, sys.stderr
        sys.stdout = output.StreamWriter(self.agent.sinks[1], "<stdout>")
        sys.stderr = output.StreamWriter(self.agent.sinks[2], "<stderr>")
        try:
            result = cells.run(self.agent, {"id": 7, "code": code, "rich": rich_call, **req})
            for sink in self.agent.sinks.values():
                sink.flush()
        finally:
            sys.stdout, sys.stderr = streams
            self.agent.call_id = None
        self.agent.chan.send({"ev": "mark"})
        frames = []
        while True:
            header, _ = self.reader.read()
            if header["ev"] == "mark":
                return result, frames
            if header["ev"] == "out":
                frames.append(("stdout" if header["s"] == 1 else "stderr", "\n".join(header["lines"])))
            else:
                frames.append(header)

    def only(self, frames, ev):
        found = [f for f in frames if isinstance(f, dict) and f["ev"] == ev]
        self.assertEqual(len(found), 1, frames)
        return found[0]


class BinaryOutput(Repl):
    def test_bytes_written_to_stdout_buffer_are_a_stdout_line(self):
        (code, _), frames = self.run_cell("import sys\nsys.stdout.buffer.write(b'hi\\n')")
        self.assertEqual(code, 0)
        self.assertEqual(frames[0], ("stdout", "hi"))
        self.assertEqual(self.only(frames, "result")["data"], 3)  # what write returned, as in Jupyter

    def test_bytes_written_to_stderr_buffer_are_a_stderr_line(self):
        (code, _), frames = self.run_cell("import sys\nsys.stderr.buffer.write(b'oops\\n')\nsys.stderr.buffer.flush()")
        self.assertEqual(code, 0)
        self.assertEqual(frames, [("stderr", "oops")])

    def test_text_and_bytes_keep_their_order_on_one_line(self):
        (_, _), frames = self.run_cell("import sys\nprint('a', end='')\nsys.stdout.buffer.write(b'b')\nprint('c')")
        self.assertEqual(frames, [("stdout", "abc")])

    def test_a_text_wrapper_around_the_buffer_writes_through(self):
        (code, _), frames = self.run_cell(
            "import io, sys\nw = io.TextIOWrapper(sys.stdout.buffer, encoding='utf-8', write_through=True)\n"
            "w.write('wrapped \\u00e9\\n')\nw.flush()\nw.detach()\nNone")
        self.assertEqual(code, 0, frames)
        self.assertEqual(frames, [("stdout", "wrapped \u00e9")])

    def test_the_buffer_takes_bytes_only(self):
        sink = output.OutputSink(None, 1)
        buffer = output.StreamWriter(sink, "<stdout>").buffer
        with self.assertRaises(TypeError):
            buffer.write("text")
        self.assertEqual(buffer.fileno(), 1)
        self.assertTrue(buffer.writable())


class Tracebacks(Repl):
    def test_a_syntax_error_shows_the_line_and_its_caret_and_no_frame(self):
        (code, _), frames = self.run_cell("x = 1\ny = (2,\nz = 3")
        self.assertEqual(code, 1)
        error = self.only(frames, "error")
        self.assertEqual(error["name"], "SyntaxError")
        self.assertEqual(error["traceback"],
                         '  File "<cell-1>", line 2\n    y = (2,\n        ^\nSyntaxError: \'(\' was never closed\n')
        self.assertIn(("stderr", error["traceback"].rstrip("\n")), frames)

    def test_an_invalid_syntax_points_at_the_token(self):
        (_, _), frames = self.run_cell("def f(:\n    pass")
        self.assertEqual(self.only(frames, "error")["traceback"],
                         '  File "<cell-1>", line 1\n    def f(:\n          ^\nSyntaxError: invalid syntax\n')

    def test_an_error_in_awaited_code_starts_in_the_cell(self):
        (code, _), frames = self.run_cell("import asyncio\nasync def f():\n    raise KeyError('k')\nawait f()")
        self.assertEqual(code, 1)
        tb = self.only(frames, "error")["traceback"]
        self.assertTrue(tb.startswith('Traceback (most recent call last):\n  File "<cell-1>", line 4, in <module>\n'), tb)
        self.assertIn('File "<cell-1>", line 3, in f', tb)
        self.assertNotIn("asyncio", tb)
        self.assertNotIn("forkbox_agent", tb)

    def test_an_interrupt_has_no_frame_of_the_signal_handler(self):
        previous = signal.signal(signal.SIGINT, cells.on_interrupt)
        self.addCleanup(signal.signal, signal.SIGINT, previous)
        (code, _), frames = self.run_cell("import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)")
        self.assertEqual(code, 130)
        tb = self.only(frames, "error")["traceback"]
        self.assertIn('File "<cell-1>"', tb)
        self.assertNotIn("forkbox_agent", tb)
        self.assertTrue(tb.endswith("KeyboardInterrupt: interrupted\n"), tb)

    def test_a_chained_exception_shows_both_with_the_cells_frames(self):
        (_, _), frames = self.run_cell("try:\n    1/0\nexcept ZeroDivisionError as e:\n    raise ValueError('bad') from e")
        tb = self.only(frames, "error")["traceback"]
        self.assertIn("ZeroDivisionError: division by zero\n\nThe above exception was the direct cause", tb)
        self.assertTrue(tb.endswith("ValueError: bad\n"))
        self.assertNotIn("forkbox_agent", tb)


class TopLevelAwait(Repl):
    def test_a_cell_awaits_and_its_last_expression_is_the_result(self):
        (code, _), frames = self.run_cell("import asyncio\nawait asyncio.sleep(0.1); 1+1")
        self.assertEqual(code, 0, frames)
        self.assertEqual(self.only(frames, "result")["data"], 2)

    def test_the_last_expression_itself_may_await(self):
        (_, _), frames = self.run_cell("async def five():\n    return 5\nawait five()")
        self.assertEqual(self.only(frames, "result")["data"], 5)

    def test_the_loop_persists_so_a_task_goes_on_in_a_later_cell(self):
        self.run_cell("import asyncio\nawait asyncio.sleep(0)\n"
                      "loop = asyncio.get_running_loop()\ntask = asyncio.create_task(asyncio.sleep(0.05, 'late'))")
        (code, _), frames = self.run_cell("await asyncio.sleep(0.1)\n(task.result(), asyncio.get_running_loop() is loop)")
        self.assertEqual(code, 0, frames)
        self.assertEqual(self.only(frames, "result")["data"], ["late", True])

    def test_a_timeout_in_an_await_stops_the_cell_and_the_next_one_runs(self):
        (result, frames) = self.run_cell("import asyncio\nawait asyncio.sleep(10)", timeout=0.2)
        self.assertEqual(result, (124, True))
        self.assertEqual(self.only(frames, "error")["name"], "TimeoutError")
        (code, _), frames = self.run_cell("await asyncio.sleep(0.01); 'again'")
        self.assertEqual((code, self.only(frames, "result")["data"]), (0, "again"))

    def test_a_fork_makes_its_own_loop(self):
        self.run_cell("import asyncio\nawait asyncio.sleep(0)")
        parent_loop = cells._Loop.current
        self.assertIsNotNone(parent_loop)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a loop of its own, and the parent's left open
            ok = cells._Loop.current is None and parent_loop in cells._Loop.inherited and not parent_loop.is_closed()
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        self.assertEqual(os.read(r, 1), b"1")
        os.close(r)
        os.waitpid(pid, 0)
        self.assertIs(cells._Loop.current, parent_loop)


class MimeBundles(unittest.TestCase):
    def bundle(self, value):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            described = cells.describe(value)
        return described, stderr.getvalue()

    def test_each_repr_method_is_its_mime_type(self):
        class Rich:
            def __repr__(self):
                return "Rich()"

            def _repr_html_(self):
                return "<b>rich</b>"

            def _repr_svg_(self):
                return "<svg/>"

            def _repr_png_(self):
                return PNG_MAGIC

            def _repr_json_(self):
                return {"a": [1, 2]}

            def _repr_markdown_(self):
                return ("**md**", {"isolated": True})  # (data, metadata), as IPython allows

        described, stderr = self.bundle(Rich())
        self.assertEqual(stderr, "")
        self.assertEqual(described["data_kind"], "repr")
        self.assertEqual(described["data"], "Rich()")
        self.assertEqual(described["mime"], {"text/plain": "Rich()", "text/html": "<b>rich</b>", "image/svg+xml": "<svg/>",
                                             "image/png": base64.b64encode(PNG_MAGIC).decode(),
                                             "application/json": {"a": [1, 2]}, "text/markdown": "**md**"})

    def test_a_mimebundle_comes_first_and_may_replace_text_plain(self):
        class Bundled:
            def _repr_mimebundle_(self, include=None, exclude=None):
                return {"text/plain": "a bundle", "text/html": "<i>from the bundle</i>", "application/vnd.custom": "x"}

            def _repr_html_(self):
                return "<i>from the method</i>"

            def _repr_latex_(self):
                return "$x$"

        described, _ = self.bundle(Bundled())
        self.assertEqual(described["mime"], {"text/plain": "a bundle", "text/html": "<i>from the bundle</i>",
                                             "application/vnd.custom": "x", "text/latex": "$x$"})
        self.assertTrue(described["repr"].startswith("<"))  # the repr and data stay the repr

    def test_a_method_that_raises_or_gives_the_wrong_type_is_left_out_and_said_on_stderr(self):
        class Broken:
            def _repr_html_(self):
                raise ValueError("no html today")

            def _repr_json_(self):
                return {1, 2}

            def _repr_svg_(self):
                return 42

        described, stderr = self.bundle(Broken())
        self.assertEqual(list(described["mime"]), ["text/plain"])
        self.assertIn("forkbox: Broken._repr_html_() raised ValueError: no html today", stderr)
        self.assertIn("application/json is not a JSON value", stderr)
        self.assertIn("image/svg+xml is a int, not text or bytes", stderr)

    def test_a_json_value_is_data_and_its_bundle_is_text_plain(self):
        described, _ = self.bundle({"k": [1, "two"]})
        self.assertEqual((described["data"], described["data_kind"], described["mime"]),
                         ({"k": [1, "two"]}, "json", {"text/plain": "{'k': [1, 'two']}"}))

    def test_a_class_and_an_object_that_answers_every_name_have_text_plain_only(self):
        class WithHtml:
            def _repr_html_(self):
                return "<b/>"

        class Anything:
            def __getattr__(self, name):
                return lambda *a, **k: "<b>fake</b>"

        self.assertEqual(list(self.bundle(WithHtml)[0]["mime"]), ["text/plain"])
        self.assertEqual(list(self.bundle(Anything())[0]["mime"]), ["text/plain"])

    def test_an_entry_past_the_bundle_limit_is_dropped(self):
        class Huge:
            def _repr_html_(self):
                return "x" * (rich.BUNDLE_LIMIT + 1)

            def _repr_svg_(self):
                return "<svg/>"

        described, stderr = self.bundle(Huge())
        self.assertEqual(set(described["mime"]), {"text/plain", "image/svg+xml"})
        self.assertIn("text/html", stderr)
        self.assertIn("does not fit", stderr)

    def test_the_limit_counts_the_entry_as_encoded_in_the_frame(self):
        class Escaped:
            def _repr_html_(self):
                return "\x01" * (2 << 20)  # 2 Mi characters, 12 MiB as JSON escapes

        described, stderr = self.bundle(Escaped())
        self.assertEqual(list(described["mime"]), ["text/plain"])
        self.assertIn("does not fit", stderr)


class ResultsOnTheWire(Repl):
    def test_a_result_carries_data_kind_and_mime(self):
        (_, _), frames = self.run_cell("class H:\n    def __repr__(self): return 'H'\n    def _repr_html_(self): return '<h1>H</h1>'\nH()")
        self.assertEqual(self.only(frames, "result"),
                         {"ev": "result", "id": 7, "repr": "H", "kind": "H", "data": "H", "data_kind": "repr",
                          "mime": {"text/plain": "H", "text/html": "<h1>H</h1>"}})

    def test_a_call_that_is_not_rich_sends_no_result(self):
        (_, _), frames = self.run_cell("1 + 1", rich_call=False)
        self.assertEqual(frames, [])


@unittest.skipIf(MATPLOTLIB, MATPLOTLIB)
class Figures(Repl):
    def setUp(self):
        super().setUp()
        import matplotlib.pyplot as plt
        plt.close("all")
        self.addCleanup(plt.close, "all")

    def assert_png(self, mime):
        self.assertTrue(base64.b64decode(mime["image/png"]).startswith(PNG_MAGIC))
        self.assertTrue(mime["text/plain"].startswith("<Figure size"), mime["text/plain"])

    def test_plt_show_sends_the_figure_as_a_display_between_the_output_around_it(self):
        (code, _), frames = self.run_cell("import matplotlib.pyplot as plt\nprint('before')\nplt.plot([1, 3, 2])\n"
                                          "plt.show()\nprint('after')")
        self.assertEqual(code, 0, frames)
        self.assertEqual([f if isinstance(f, tuple) else f["ev"] for f in frames],
                         [("stdout", "before"), "display", ("stdout", "after")])
        self.assert_png(frames[1]["mime"])
        import matplotlib
        self.assertEqual(matplotlib.get_backend().lower(), "agg")

    def test_a_figure_as_the_last_value_is_the_results_png_and_is_not_sent_twice(self):
        (_, _), frames = self.run_cell("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])\nfig")
        result = self.only(frames, "result")
        self.assertEqual(result["data_kind"], "repr")
        self.assert_png(result["mime"])
        self.assertEqual([f for f in frames if f["ev"] == "display"], [])

    def test_a_figure_left_open_is_shown_at_the_end_of_the_cell_and_closed(self):
        (_, _), frames = self.run_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nx = 1")
        self.assert_png(self.only(frames, "display")["mime"])
        (_, _), frames = self.run_cell("plt.get_fignums()")
        self.assertEqual(self.only(frames, "result")["data"], [])

    def test_a_call_that_is_not_rich_sends_no_figure_and_leaves_it_open(self):
        (_, _), frames = self.run_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()", rich_call=False)
        self.assertEqual(frames, [])
        (_, _), frames = self.run_cell("len(plt.get_fignums())", rich_call=False)
        import matplotlib.pyplot as plt
        self.assertEqual(len(plt.get_fignums()), 1)


if __name__ == "__main__":
    unittest.main()
