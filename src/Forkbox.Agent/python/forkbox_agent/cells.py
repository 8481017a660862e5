"""Python cells: run(agent, req) runs one in the REPL's persistent namespace, like a notebook
(the value of a last expression comes back, described by describe, with its MIME bundle from
rich.py), under its timeout, and reports what it raised with a traceback that starts in the cell
and has no frame of the agent (format_error). A cell may await at its top level, as in Jupyter:
its coroutine runs on an event loop that persists from cell to cell (_await)."""

import ast
import asyncio
import inspect
import linecache
import math
import os
import signal
import sys
import threading
import traceback

from . import protocol, rich

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
        body = compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        tail = compile(last, filename, "eval", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT) if last is not None else None
        rich_call = bool(req.get("rich"))
        agent.figures.begin(rich_call)
        _arm(timeout)
        try:
            value = _run_cell(body, tail, agent.globals)
            # Still under the timeout: the value's _repr_*_ methods and drawing figures are user code.
            if tail is not None and value is not None and rich_call:
                described = describe(value)
                if rich.is_figure(value):
                    agent.figures.shown_as_result(value)
                agent.chan.send(protocol.result(req["id"], described["repr"], described["kind"], described["data"],
                                                described["data_kind"], described["mime"]))
            agent.figures.end()
        finally:
            agent.figures.active = False
            _disarm()
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
        _report_error(agent.chan, req, type(e).__name__, _text(e), e.__traceback__, e)
    finally:
        _disarm()
        try:
            os.chdir(cwd_before)
        except OSError:
            pass
        os.environ.clear()
        os.environ.update(env_before)
    return exit_code, timed_out


def _run_cell(body, tail, namespace):
    """Runs a cell's statements, then evaluates its last expression (tail, or None) and returns its
    value. A cell that awaits anywhere at its top level runs whole as one coroutine on the loop,
    as in Jupyter, so its last expression sees the running loop too."""
    if not (body.co_flags | (tail.co_flags if tail is not None else 0)) & inspect.CO_COROUTINE:
        eval(body, namespace)
        return eval(tail, namespace) if tail is not None else None
    return _await(_run_async(body, tail, namespace))


async def _run_async(body, tail, namespace):
    # Compiled with PyCF_ALLOW_TOP_LEVEL_AWAIT, code that awaits evaluates to a coroutine.
    done = eval(body, namespace)
    if body.co_flags & inspect.CO_COROUTINE:
        await done
    if tail is None:
        return None
    value = eval(tail, namespace)
    return (await value) if tail.co_flags & inspect.CO_COROUTINE else value


class _Loop:
    """The REPL's event loop: made by the first cell that awaits, kept for the later ones, so tasks
    a cell starts (asyncio.create_task) go on while a later cell awaits, as in Jupyter."""
    current = None
    # A fork's child leaves its parent's loop alone: the two share the loop's epoll instance, so
    # closing it in the child (or letting it be collected, which closes it) would unregister the
    # parent's wake-up socket. It is kept here, unused, and the child makes its own.
    inherited = []


def _forget_loop_in_child():
    if _Loop.current is not None:
        _Loop.inherited.append(_Loop.current)
        _Loop.current = None


os.register_at_fork(after_in_child=_forget_loop_in_child)


def _await(coro):
    if _Loop.current is None or _Loop.current.is_closed():
        _Loop.current = asyncio.new_event_loop()
    task = _Loop.current.create_task(coro)
    try:
        return _Loop.current.run_until_complete(task)
    except BaseException:
        # Timed out or interrupted in the loop: the cell is over, so is its task (the loop runs
        # again only under a later cell that awaits; its cancellation is processed then).
        task.cancel()
        raise


def _text(e):
    try:
        return str(e)
    except Exception as err:
        return f"<str() of {type(e).__name__} raised {type(err).__name__}>"


def _report_error(chan, req, name, value, tb, exc=None):
    text = format_error(name, value, tb, exc)
    sys.stderr.write(text)
    sys.stderr.flush()
    if req.get("rich"):
        chan.send(protocol.error(req["id"], name, value, text))


_AGENT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _is_cell(filename):
    return filename.startswith("<cell-")


def _user_frames(stack):
    """The frames of a traceback the user wrote or called: from the first in a cell on, without
    those of the agent (the signal handler that raises a timeout or an interrupt, say). Before the
    first cell frame are the agent's and asyncio's, which ran the cell; a SyntaxError of a cell
    has none at all (its place is in the exception: file, line and caret)."""
    start = next((i for i, f in enumerate(stack) if _is_cell(f.filename)), len(stack))
    return traceback.StackSummary.from_list(
        [f for f in stack[start:] if not f.filename.startswith(_AGENT_DIR)])


def _trim(te, seen):
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    te.stack = _user_frames(te.stack)
    _trim(te.__cause__, seen)
    _trim(te.__context__, seen)
    for sub in te.exceptions or ():  # an ExceptionGroup's
        _trim(sub, seen)


def format_error(name, value, tb, exc=None):
    """The traceback text of an error a cell raised, as Python prints it (chained exceptions, a
    SyntaxError's line and caret, notes) but with only the user's frames (_user_frames). name
    and value make the last line when there is no exception object (a timeout)."""
    if exc is not None:
        try:
            te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
            _trim(te, set())
            return "".join(te.format())
        except Exception:  # an exception whose formatting fails: the plain form below
            tb = exc.__traceback__
    frames = _user_frames(traceback.extract_tb(tb)) if tb else []
    text = "".join(frames.format()) if frames else ""
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
    """The result event of a last expression: its repr, its type's name, its JSON value when it has
    one (data_kind "json"; else data is the repr, data_kind "repr"), and its MIME bundle (rich.py)."""
    text = safe_repr(value)
    out = {"repr": text, "kind": type(value).__name__}
    if is_json(value, 0):
        out["data"], out["data_kind"] = value, "json"
    else:
        out["data"], out["data_kind"] = text, "repr"
    out["mime"] = rich.bundle(value, text, is_json)
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
