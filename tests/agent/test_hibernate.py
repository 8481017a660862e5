"""Tests of the agent's hibernate / restore (src/Forkbox.Agent/python/forkbox_agent/hibernate.py).

Run from the repository root with the sandbox's interpreter, which has dill:
    /usr/bin/python3 -m unittest discover -s tests/agent -v
"""

import builtins
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import tracemalloc
import unittest

AGENT_PYTHON = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src", "Forkbox.Agent", "python"))
sys.path.insert(0, AGENT_PYTHON)

from forkbox_agent import agent, hibernate  # noqa: E402
from forkbox_agent.protocol import FrameReader, encode  # noqa: E402

HAS_DILL = hibernate._load_codec()[0].startswith("dill")


def fresh_namespace():
    return {"__name__": "__main__", "__builtins__": builtins}


def repl(source, namespace=None):
    """Runs source the way the agent runs a cell: exec'd into a plain dict whose __name__ is __main__."""
    namespace = fresh_namespace() if namespace is None else namespace
    exec(compile(textwrap.dedent(source), "<cell-1>", "exec"), namespace)
    return namespace


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hibernate-test-")
        self.path = os.path.join(self.tmp, "state-dir")
        self.addCleanup(_rmtree, self.tmp)
        # save and restore change the environment and the working directory: put them back.
        env, cwd = dict(os.environ), os.getcwd()
        self.addCleanup(os.chdir, cwd)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(env)))

    def round_trip(self, namespace):
        saved = hibernate.save(namespace, self.path)
        target = fresh_namespace()
        restored = hibernate.restore(target, self.path)
        return saved, restored, target

    def restore_in_new_interpreter(self, checks):
        """Restores self.path in a fresh /usr/bin/python3, runs checks there (source using `ns` and
        `result`, setting entries of `out`) and returns (restore result, out)."""
        script = textwrap.dedent("""
            import builtins, json, sys
            sys.path[:0] = json.loads(sys.argv[2])
            from forkbox_agent import hibernate
            ns = {"__name__": "__main__", "__builtins__": builtins}
            result = hibernate.restore(ns, sys.argv[1])
            out = {}
        """) + textwrap.dedent(checks) + "\nprint(json.dumps({'result': result, 'out': out}))\n"
        proc = subprocess.run([sys.executable, "-c", script, self.path, json.dumps([AGENT_PYTHON])],
                              capture_output=True, text=True, timeout=120, cwd=self.tmp)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        reply = json.loads(proc.stdout.strip().splitlines()[-1])
        return reply["result"], reply["out"]


class DataTests(Base):
    def test_plain_values_round_trip(self):
        ns = repl("""
            n = 42
            big = 2 ** 100
            x = 1.5
            s = "héllo"
            items = [1, "two", 3.0, None, True]
            table = {"a": [1, 2], "b": {"c": (3, 4)}, 5: {6, 7}}
        """)
        saved, restored, target = self.round_trip(ns)
        for name in ("n", "big", "x", "s", "items", "table"):
            self.assertIn(name, saved["saved"])
            self.assertIn(name, restored["restored"])
            self.assertEqual(target[name], ns[name])
        self.assertEqual(saved["not_saved"], {})
        self.assertEqual(restored["not_restored"], {})
        self.assertEqual(saved["bytes"], restored["bytes"])
        self.assertGreater(saved["bytes"], 0)

    def test_large_bytes_round_trip(self):
        ns = repl("blob = bytes(range(256)) * (10 * 4096)  # 10 MiB")
        self.assertEqual(len(ns["blob"]), 10 << 20)
        saved, restored, target = self.round_trip(ns)
        self.assertGreaterEqual(saved["bytes"], 10 << 20)
        self.assertEqual(target["blob"], ns["blob"])

    def test_save_streams_a_large_object_without_copying_it(self):
        # A bytes object, and a PickleBuffer as numpy arrays give pickle: dill's pure-Python pickler
        # would copy the latter (m.tobytes()) were it not written straight from the buffer.
        ns = repl("""
            import pickle
            class Buffer:
                def __init__(self, data): self.data = data
                def __reduce_ex__(self, protocol):
                    return Buffer, (pickle.PickleBuffer(self.data),)
            blob = b"x" * (32 << 20)
            buf = Buffer(bytearray(b"y" * (32 << 20)))
        """)
        tracemalloc.start()
        try:
            saved = hibernate.save(ns, self.path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.assertEqual(sorted(saved["not_saved"]), [])
        self.assertGreater(saved["bytes"], 64 << 20)
        self.assertLess(peak, 8 << 20, "save made a copy of a 32 MiB object")
        target = fresh_namespace()
        hibernate.restore(target, self.path)
        self.assertEqual(target["blob"], ns["blob"])
        self.assertEqual(target["buf"].data, ns["buf"].data)
        self.assertIsInstance(target["buf"].data, bytearray)

    def test_data_goes_to_the_c_pickler_and_code_of_the_repl_to_dill(self):
        # The C pickler saves a large array at the disk's pace; only what it can refer to by name
        # alone in a module that does not hold it (a function of the REPL) needs dill.
        ns = repl("""
            import array
            numbers = array.array("d", range(1 << 20))
            table = {"a": [1, 2, 3]}
            def double(v):
                return v * 2
        """)
        hibernate.save(ns, self.path)
        with open(os.path.join(self.path, "state"), "rb") as f:
            _, records, _ = hibernate._scan(f, os.fstat(f.fileno()).st_size, "state")
            tags = {}
            for name, start in records:
                f.seek(start)
                tags[name] = f.read(1)
        self.assertEqual(tags["numbers"], b"p")
        self.assertEqual(tags["table"], b"p")
        if HAS_DILL:
            self.assertEqual(tags["double"], b"d")
        target = fresh_namespace()
        hibernate.restore(target, self.path)
        self.assertEqual(target["numbers"], ns["numbers"])
        if HAS_DILL:
            self.assertEqual(target["double"](21), 42)

    def test_identity_between_globals_is_kept(self):
        ns = repl("""
            shared = [1, 2]
            alias = shared
            holder = {"list": shared}
            early = None          # bound before the class exists: still an instance of that class
            class Thing:
                pass
            early = Thing()
        """)
        _, _, target = self.round_trip(ns)
        self.assertIs(target["alias"], target["shared"])
        self.assertIs(target["holder"]["list"], target["shared"])
        self.assertIs(type(target["early"]), target["Thing"])

    def test_deep_structure(self):
        # Too deep for dill's pure-Python pickler: saved by the C pickler instead.
        ns = repl("""
            class Node:
                def __init__(self, nxt): self.nxt = nxt
            chain = None
            for _ in range(3000):
                chain = Node(chain)
            nested = []
            for _ in range(3000):
                nested = [nested]
        """)
        saved, restored, target = self.round_trip(ns)
        self.assertEqual(saved["not_saved"], {})
        n, node = 0, target["chain"]
        while node is not None:
            self.assertIs(type(node), target["Node"])
            n, node = n + 1, node.nxt
        self.assertEqual(n, 3000)

    def test_environ_and_cwd(self):
        work = os.path.join(self.tmp, "work")
        os.mkdir(work)
        os.chdir(work)
        os.environ["HIBERNATE_TEST"] = "saved value"
        hibernate.save(repl("x = 1"), self.path)
        os.environ["HIBERNATE_TEST"] = "changed"
        os.environ["HIBERNATE_NEW"] = "not there at save"
        os.chdir(self.tmp)
        result = hibernate.restore(fresh_namespace(), self.path)
        self.assertEqual(os.environ["HIBERNATE_TEST"], "saved value")
        self.assertNotIn("HIBERNATE_NEW", os.environ)
        self.assertEqual(os.getcwd(), work)
        self.assertNotIn("os.chdir", result["not_restored"])

    def test_missing_cwd_is_reported(self):
        work = os.path.join(self.tmp, "gone")
        os.mkdir(work)
        os.chdir(work)
        hibernate.save(repl("x = 1"), self.path)
        os.chdir(self.tmp)
        os.rmdir(work)
        target = fresh_namespace()
        result = hibernate.restore(target, self.path)
        self.assertIn("FileNotFoundError", result["not_restored"]["os.chdir"])
        self.assertEqual(target["x"], 1)

    def test_directory_is_replaced_private_and_removed_by_restore(self):
        os.mkdir(self.path)
        with open(os.path.join(self.path, "old"), "w") as f:
            f.write("previous content")
        hibernate.save(repl("x = 1"), self.path)
        self.assertEqual(os.listdir(self.path), ["state"])
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o700)
        hibernate.restore(fresh_namespace(), self.path)
        self.assertFalse(os.path.exists(self.path))


class CodeTests(Base):
    SOURCE = """
        import json as j
        import hibpkg.sub

        counter = 0

        def bump(by=1):
            global counter
            counter += by
            return counter

        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)

        def make_adder(k):
            def add(x):
                return x + k
            return add

        add3 = make_adder(3)
        square = lambda x: x * x

        class Shape:
            sides = 0
            def describe(self):
                return f"{type(self).__name__} with {self.sides} sides"

        class Square(Shape):
            sides = 4
            def __init__(self, size):
                super().__init__()
                self.size = size
            def area(self):
                return square(self.size)

        sq = Square(5)
        shapes = [sq, Square(2)]
    """

    def setUp(self):
        super().setUp()
        # A package of the user's, imported after the agent started from a directory it added to
        # sys.path: recorded, and imported again from there.
        self.lib = os.path.join(self.tmp, "lib")
        os.makedirs(os.path.join(self.lib, "hibpkg"))
        open(os.path.join(self.lib, "hibpkg", "__init__.py"), "w").close()
        with open(os.path.join(self.lib, "hibpkg", "sub.py"), "w") as f:
            f.write("def hello():\n    return 'hello from hibpkg.sub'\n")
        sys.path.insert(0, self.lib)
        self.addCleanup(sys.path.remove, self.lib)
        self.addCleanup(lambda: [sys.modules.pop(m, None) for m in ("hibpkg", "hibpkg.sub")])

    def test_functions_and_classes_survive_a_new_interpreter(self):
        ns = repl(self.SOURCE)
        ns["bump"](2)
        saved = hibernate.save(ns, self.path)
        self.assertEqual(saved["not_saved"], {})
        self.assertIn("hibpkg", saved["modules"])
        for name in ("j", "hibpkg", "counter", "bump", "fact", "add3", "square", "Shape", "Square", "sq", "shapes"):
            self.assertIn(name, saved["saved"])

        result, out = self.restore_in_new_interpreter("""
            import types
            out["bump"] = [ns["bump"](), ns["counter"]]        # the function's globals are ns
            ns["counter"] = 100
            out["bump_after_set"] = ns["bump"]()
            out["globals_is_ns"] = ns["bump"].__globals__ is ns
            out["fact"] = ns["fact"](10)
            out["add3"] = ns["add3"](4)
            out["square"] = ns["square"](7)
            sq = ns["sq"]
            out["isinstance"] = [isinstance(sq, ns["Square"]), isinstance(sq, ns["Shape"]),
                                 all(type(s) is ns["Square"] for s in ns["shapes"]), ns["shapes"][0] is sq]
            out["methods"] = [sq.area(), sq.describe(), ns["Square"](3).area()]
            out["json"] = [isinstance(ns["j"], types.ModuleType), ns["j"].__name__, ns["j"].dumps({"a": 1})]
            out["submodule"] = ns["hibpkg"].sub.hello()
            out["order"] = [k for k in ns if k != "__builtins__"]
        """)  # hibpkg's directory is not given: restore puts back the sys.path of the save

        self.assertEqual(result["not_restored"], {})
        self.assertIn("hibpkg", result["modules"])
        self.assertEqual(out["bump"], [3, 3])
        self.assertEqual(out["bump_after_set"], 101)
        self.assertTrue(out["globals_is_ns"])
        self.assertEqual(out["fact"], 3628800)
        self.assertEqual(out["add3"], 7)
        self.assertEqual(out["square"], 49)
        self.assertEqual(out["isinstance"], [True, True, True, True])
        self.assertEqual(out["methods"], [25, "Square with 4 sides", 9])
        self.assertEqual(out["json"], [True, "json", '{"a": 1}'])
        self.assertEqual(out["submodule"], "hello from hibpkg.sub")
        self.assertEqual(out["order"], [k for k in ns if k != "__builtins__"])
        self.assertFalse(os.path.exists(self.path))

    def test_in_process_module_alias(self):
        saved, restored, target = self.round_trip(repl("import json as j"))
        self.assertIn("j", saved["saved"])
        self.assertIs(target["j"], json)

    def test_a_record_that_fails_on_restore_leaves_the_others(self):
        ns = repl("""
            import hibpkg.sub
            from hibpkg.sub import hello
            kept = [1, 2, 3]
        """)
        hibernate.save(ns, self.path)
        _rmtree(os.path.join(self.lib, "hibpkg"))
        result, out = self.restore_in_new_interpreter("""
            out["kept"] = ns.get("kept")
        """)
        self.assertIn("ModuleNotFoundError", result["not_restored"]["import hibpkg"])
        self.assertIn("ModuleNotFoundError", result["not_restored"]["hibpkg"])
        self.assertIn("ModuleNotFoundError", result["not_restored"]["hello"])
        self.assertEqual(out["kept"], [1, 2, 3])
        self.assertIn("kept", result["restored"])

    def test_open_file_is_reopened_at_its_position_without_truncation(self):
        name = os.path.join(self.tmp, "log.txt")
        ns = repl(f"""
            log = open({name!r}, "w")
            log.write("before ")
        """)
        hibernate.save(ns, self.path)
        ns["log"].close()
        result, out = self.restore_in_new_interpreter("""
            ns["log"].write("after")
            ns["log"].close()
        """)
        self.assertIn("log", result["restored"])
        with open(name) as f:
            self.assertEqual(f.read(), "before after")


class UnpicklableTests(Base):
    def setUp(self):
        super().setUp()
        self.ns = repl("""
            import socket, threading
            lock = threading.Lock()
            sock = socket.socket()
            gen = (i for i in range(3))
            holder = {"sock": sock}
            fine = {"a": 1}
        """)
        self.addCleanup(self.ns["sock"].close)

    def test_unpicklable_globals_are_reported_and_the_rest_restored(self):
        saved, restored, target = self.round_trip(self.ns)
        for name in ("sock", "holder"):
            self.assertEqual(saved["not_saved"][name], "TypeError: cannot pickle 'socket' object")
            self.assertEqual(restored["not_restored"][name], saved["not_saved"][name])
        self.assertEqual(saved["not_saved"]["gen"], "TypeError: cannot pickle 'generator' object")
        self.assertEqual(target["fine"], {"a": 1})
        self.assertIs(target["socket"], socket)
        for name in ("sock", "holder", "gen"):
            self.assertNotIn(name, target)
            self.assertNotIn(name, saved["saved"])
        if HAS_DILL:
            # dill pickles a lock (as a new one, held or not as it was).
            self.assertTrue(target["lock"].acquire(blocking=False))
        else:
            self.assertEqual(saved["not_saved"]["lock"], "TypeError: cannot pickle '_thread.lock' object")

    def test_without_dill(self):
        """The standard pickle fallback: a lock, a socket and functions of the REPL are reported."""
        self.addCleanup(setattr, hibernate, "_codec", hibernate._codec)
        hibernate._codec = ("pickle", hibernate._Pickler, hibernate._Unpickler)
        repl("def f():\n    return 1\n", self.ns)
        saved, restored, target = self.round_trip(self.ns)
        self.assertEqual(saved["not_saved"]["lock"], "TypeError: cannot pickle '_thread.lock' object")
        self.assertEqual(saved["not_saved"]["sock"], "TypeError: cannot pickle 'socket' object")
        self.assertIn("f", saved["not_saved"])
        for name in ("lock", "sock", "f"):
            self.assertIn(name, restored["not_restored"])
        self.assertEqual(target["fine"], {"a": 1})

    def test_threads_and_processes_are_reported(self):
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait, name="hibernate-test-worker", daemon=True)
        worker.start()
        child = subprocess.Popen(["sleep", "60"])
        try:
            saved = hibernate.save(self.ns, self.path)
        finally:
            stop.set()
            child.kill()
            child.wait()
        self.assertIn("hibernate-test-worker (daemon)", saved["threads"])
        self.assertIn(f"pid {child.pid}: sleep 60", saved["processes"])
        self.assertNotIn(f"pid {os.getpid()}:", " ".join(saved["processes"]))
        json.dumps(saved)  # the reply goes out as JSON


class TruncationTests(Base):
    def test_truncated_state_is_refused_whole(self):
        hibernate.save(repl("a = 1\nb = 'x' * 100000\nc = [1, 2, 3]\n"), self.path)
        state = os.path.join(self.path, "state")
        with open(state, "rb") as f:
            data = f.read()
        # Frame boundaries too: a save that stopped between two frames, before the end frame.
        boundaries, pos = [], len(hibernate.MAGIC)
        while pos < len(data):
            boundaries.append(pos)
            pos += hibernate._FRAME.size + hibernate._FRAME.unpack_from(data, pos)[1]
        self.assertEqual(pos, len(data))
        self.assertEqual(len(boundaries), 6)  # header, 4 records (__name__, a, b, c), end
        for size in (0, 5, len(hibernate.MAGIC) + 3, len(data) // 2, len(data) - 1, *boundaries):
            with self.subTest(size=size):
                with open(state, "wb") as f:
                    f.write(data[:size])
                target = fresh_namespace()
                with self.assertRaises(hibernate.StateError) as caught:
                    hibernate.restore(target, self.path)
                self.assertIn("truncated", str(caught.exception))
                self.assertEqual(target, fresh_namespace())  # nothing half restored
                self.assertTrue(os.path.exists(state))  # kept, to look at

    def test_not_a_state_file(self):
        os.mkdir(self.path)
        with open(os.path.join(self.path, "state"), "wb") as f:
            f.write(b"something else entirely")
        with self.assertRaises(hibernate.StateError) as caught:
            hibernate.restore(fresh_namespace(), self.path)
        self.assertIn("not a hibernation state file", str(caught.exception))


class AgentHandlerTests(Base):
    """The two ops as the agent serves them: one frame back, and output of pickling dropped."""

    def setUp(self):
        super().setUp()
        self.ours, theirs = socket.socketpair()
        self.addCleanup(self.ours.close)
        self.addCleanup(theirs.close)
        self.agent = agent.Agent(theirs, 1 << 20)
        self.reader = FrameReader(self.ours)
        self.ours.settimeout(30)

    def call(self, handler, req):
        handler(req, b"")
        return self.reader.read()[0]

    def test_hibernate_and_restore(self):
        repl("""
            class Noisy:
                def __reduce__(self):
                    print("pickling, no newline", end="")
                    return (Noisy, ())
            noisy = Noisy()
            n = 7
        """, self.agent.globals)
        stdout = sys.stdout
        sys.stdout = capture = io.StringIO()  # what serve() has there: the call's output
        try:
            reply = self.call(self.agent.save_state, {"op": "hibernate", "id": 1, "path": self.path})
            self.assertIs(sys.stdout, capture)
        finally:
            sys.stdout = stdout
        self.assertEqual(capture.getvalue(), "")
        self.assertEqual(reply["ev"], "ok")
        self.assertEqual(reply["id"], 1)
        self.assertIn("n", reply["saved"])
        self.assertIn("noisy", reply["saved"])
        for field in ("not_saved", "modules", "bytes", "threads", "processes"):
            self.assertIn(field, reply)

        fresh = agent.Agent(self.agent.chan.sock, 1 << 20)
        reply = self.call(fresh.restore_state, {"op": "restore", "id": 2, "path": self.path})
        self.assertEqual(reply["ev"], "ok")
        self.assertEqual(reply["id"], 2)
        self.assertEqual(fresh.globals["n"], 7)
        self.assertEqual(sorted(reply), ["bytes", "ev", "id", "modules", "not_restored", "restored"])

    def test_os_errors_answer_fail(self):
        reply = self.call(self.agent.restore_state, {"op": "restore", "id": 3, "path": self.path})
        self.assertEqual((reply["ev"], reply["id"], reply["code"]), ("fail", 3, "not_found"))
        blocker = os.path.join(self.tmp, "file")
        open(blocker, "w").close()
        reply = self.call(self.agent.save_state, {"op": "hibernate", "id": 4, "path": os.path.join(blocker, "x")})
        self.assertEqual((reply["ev"], reply["code"]), ("fail", "not_a_directory"))


class EndToEndTests(Base):
    """Two real agent processes on their control sockets: cells, hibernate, a fresh agent, restore."""

    def start_agent(self):
        ours, theirs = socket.socketpair()
        code = (f"import socket, sys; sys.path.insert(0, {AGENT_PYTHON!r}); from forkbox_agent import agent; "
                f"agent.run(socket.socket(fileno={theirs.fileno()}), 1 << 20)")
        proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()], cwd=self.tmp)
        theirs.close()
        ours.settimeout(60)
        self.addCleanup(lambda: (ours.close(), proc.wait(timeout=30)))
        return ours, FrameReader(ours)

    def call(self, conn, header):
        sock, reader = conn
        sock.sendall(encode(header))
        events = []
        while True:
            event, _ = reader.read()
            events.append(event)
            if event["ev"] in ("ok", "fail", "exit"):
                return events

    def output(self, events):
        return [line for e in events if e["ev"] == "out" for line in e["lines"]]

    def test_hibernate_then_restore_in_a_fresh_agent(self):
        first = self.start_agent()
        cell = """
            import json as j, os
            class Noisy:
                def __reduce__(self):
                    print("from print, no newline", end="")
                    os.write(1, b"from fd 1, no newline")
                    return (Noisy, ())
            noisy = Noisy()
            history = [1, 2, 3]
            def greet(who):
                return f"hello {who} #{len(history)}"
        """
        self.assertEqual(self.call(first, {"op": "exec", "id": 1, "code": textwrap.dedent(cell)})[-1]["code"], 0)
        reply = self.call(first, {"op": "hibernate", "id": 2, "path": self.path})[-1]
        self.assertEqual((reply["ev"], reply["id"]), ("ok", 2), reply)
        self.assertEqual(reply["not_saved"], {})
        # What pickling wrote is gone, not the start of the next call's output.
        self.assertEqual(self.output(self.call(first, {"op": "exec", "id": 3, "code": "print('next')"})), ["next"])

        second = self.start_agent()
        reply = self.call(second, {"op": "restore", "id": 4, "path": self.path})[-1]
        self.assertEqual((reply["ev"], reply["id"], reply["not_restored"]), ("ok", 4, {}), reply)
        events = self.call(second, {"op": "exec", "id": 5,
                                    "code": "print(greet('world'), j.dumps(history), type(noisy).__name__)"})
        self.assertEqual(self.output(events), ['hello world #3 [1, 2, 3] Noisy'])
        reply = self.call(second, {"op": "restore", "id": 6, "path": self.path})[-1]
        self.assertEqual((reply["ev"], reply["code"]), ("fail", "not_found"))


def _rmtree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
