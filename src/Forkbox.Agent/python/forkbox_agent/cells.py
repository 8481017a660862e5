"""Python cells: run(agent, req) runs one in the REPL's persistent namespace, like a notebook
(the value of a last expression comes back, described by describe), under its timeout, and
reports what it raised with a traceback that starts in the cell (format_error)."""

import ast
import linecache
import math
import os
import signal
import sys
import threading
import traceback

from . import protocol


class CellTimeout(BaseException):
    """Raised inside a cell by the timer; BaseException so `except Exception` in user code does not eat it."""


class _TimerState:
    """What the timer and an interrupt may raise in the main thread. Only while a call's user code
    or command runs (armed: an interrupt between calls is dropped, so one meant for a call that
    just ended cannot land in the next one), and never in the middle of a frame on the control
    socket: while the main thread is sending, the exception is only noted (pending), and raised
    when the send is complete (channel.py)."""
    armed = False
    critical = 0
    pending = None  # the exception class to raise once the send is complete


timer = _TimerState()
MAIN_THREAD = threading.get_ident()


def _raise_in_call(exc):
    if not timer.armed:
        return
    if timer.critical:
        timer.pending = exc
        return
    raise exc()


def _on_alarm(_signum, _frame):
    _raise_in_call(CellTimeout)


def on_interrupt(_signum, _frame):
    """SIGINT from hostd (POST /interrupt, or the client of an exec stream went away):
    KeyboardInterrupt in the running cell or command; the REPL stays."""
    _raise_in_call(KeyboardInterrupt)


def _arm(timeout):
    timer.armed = True
    if timeout > 0:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)


def _disarm():
    timer.armed = False
    signal.setitimer(signal.ITIMER_REAL, 0)
    timer.pending = None


HOME = "/root"
_homeless = False  # set while the REPL waits in / for a deleted HOME to come back


def working_directory():
    """The agent's working directory, moved back to HOME (or / while HOME is missing) when it was
    deleted under the REPL: a process whose directory was removed fails every os.getcwd() and
    every relative path, even after a mkdir of the same name."""
    global _homeless
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        cwd = None
    if cwd is None or (_homeless and cwd == "/" and os.path.isdir(HOME)):
        _homeless = not os.path.isdir(HOME)
        os.chdir("/" if _homeless else HOME)
        cwd = os.getcwd()
    return cwd


def missing_cwd(cwd):
    """The message for a call whose cwd is not a directory, or None when it is (or none was given)."""
    if cwd and not os.path.isdir(cwd):
        return f"forkbox: cwd {cwd} is not a directory in the sandbox\n"
    return None


def run(agent, req):
    """Runs req["code"] in agent.globals, with req's env and cwd for its duration. Returns
    (exit code, timed out)."""
    env_before = dict(os.environ)
    cwd_before = working_directory()
    timeout = req.get("timeout") or 0
    timed_out = False
    exit_code = 0
    if message := missing_cwd(req.get("cwd")):
        sys.stderr.write(message)
        return 1, False
    try:
        os.environ.update(req.get("env") or {})
        if req.get("cwd"):
            os.chdir(req["cwd"])
        agent.cells += 1
        filename = f"<cell-{agent.cells}>"
        source = req["code"]
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        tree = ast.parse(source, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = compile(tree, filename, "exec")
        tail = compile(last, filename, "eval") if last is not None else None
        _arm(timeout)
        try:
            exec(body, agent.globals)
            value = eval(tail, agent.globals) if tail is not None else None
        finally:
            _disarm()
        if tail is not None and value is not None and req.get("rich"):
            described = describe(value)
            agent.chan.send(protocol.result(req["id"], described["repr"], described["kind"], described["data"]))
    except CellTimeout:
        timed_out = True
        exit_code = 124
        _report_error(agent.chan, req, "TimeoutError", f"execution exceeded the timeout of {timeout:g} s", None)
    except KeyboardInterrupt as e:  # interrupted: as a shell reports SIGINT
        exit_code = 130
        _report_error(agent.chan, req, "KeyboardInterrupt", "interrupted", e.__traceback__)
    except SystemExit as e:
        exit_code = exit_status(e.code)
    except BaseException as e:  # user code: report it, keep the REPL
        exit_code = 1
        _report_error(agent.chan, req, type(e).__name__, str(e), e.__traceback__)
    finally:
        _disarm()
        try:
            os.chdir(cwd_before)
        except OSError:
            pass
        os.environ.clear()
        os.environ.update(env_before)
    return exit_code, timed_out


def _report_error(chan, req, name, value, tb):
    text = format_error(name, value, tb)
    sys.stderr.write(text)
    sys.stderr.flush()
    if req.get("rich"):
        chan.send(protocol.error(req["id"], name, value, text))


def format_error(name, value, tb):
    """The traceback text of an error a cell raised, without the frames of this file before it
    (those of run), so it starts in the cell."""
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_list(traceback.extract_tb(tb))) if tb else ""
    return ("Traceback (most recent call last):\n" + text if text else "") + f"{name}: {value}\n"


def exit_status(code):
    """The exit code of a cell that raised SystemExit(code), as sys.exit would make it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def describe(value):
    """The result event of a last expression: its repr, and its JSON value when it has one."""
    out = {"repr": safe_repr(value), "kind": type(value).__name__}
    if is_json(value, 0):
        out["data"] = value
    else:
        out["data"] = out["repr"]
    return out


def safe_repr(value):
    try:
        text = repr(value)
    except Exception as e:
        text = f"<unrepresentable {type(value).__name__}: {e}>"
    return text if len(text) <= 1 << 20 else text[: 1 << 20] + "…"


def is_json(v, depth):
    if depth > 20:
        return False
    if v is None or isinstance(v, (bool, str)):
        return True
    if isinstance(v, int):
        return abs(v) < 2 ** 53
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, (list, tuple)):
        return len(v) <= 10000 and all(is_json(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return len(v) <= 10000 and all(isinstance(k, str) and is_json(x, depth + 1) for k, x in v.items())
    return False
