"""A sandbox on a Forkbox host: run code and commands, move files, fork, merge, pause and hibernate."""

from __future__ import annotations

import json
import time
import types
from typing import IO, Any, Callable, Dict, Generator, Iterable, Iterator, List, Optional, Type, Union

from .client import ForkboxClient, _quote
from .errors import ForkboxError, NotFoundError
from .models import Diff, Execution, ExecutionError, FileEntry

LineCallback = Callable[[str], Any]
UploadData = Union[bytes, bytearray, memoryview, str, IO[bytes]]

# How much longer than a call's own timeout the client waits for the server's answer: the server
# interrupts a cell at its timeout, and kills a sandbox that ignores the interrupt 5 s later.
_TIMEOUT_GRACE_S = 30.0


class _ClassOrInstanceMethod:
    """One name, two methods: ``Sandbox.list(name=…)`` lists sandboxes on the host, while
    ``sb.list(path)`` lists a directory in that sandbox (the API names both "list")."""

    def __init__(self, on_class: Callable[..., Any], on_instance: Callable[..., Any]) -> None:
        self._on_class = on_class
        self._on_instance = on_instance
        self.__doc__ = on_instance.__doc__

    def __get__(self, obj: Any, objtype: Optional[type] = None) -> Callable[..., Any]:
        if obj is None:
            return types.MethodType(self._on_class, objtype)
        return types.MethodType(self._on_instance, obj)


class Sandbox:
    """A sandbox on a Forkbox host, created by the constructor and closed by ``close()`` or at the
    end of a ``with`` block. Calls on one sandbox run one at a time on the server, in order.

    ``host`` defaults to FORKBOX_HOST (else http://127.0.0.1:7070), ``api_key`` to FORKBOX_API_KEY.
    The keyword arguments are the fields of ``POST /v1/sandboxes``; left out, the server's defaults
    apply. ``persistent=True`` makes a Space (see ``pause``, ``hibernate``, ``resume``);
    ``network="egress"`` gives it outbound access, limited by ``network_policy={"allow": [...], "deny": [...]}``.
    """

    def __init__(
        self,
        host: Optional[str] = None,
        api_key: Optional[str] = None,
        template: Optional[str] = None,
        *,
        timeout_s: Optional[float] = None,
        memory_mb: Optional[int] = None,
        cpus: Optional[float] = None,
        env: Optional[Dict[str, str]] = None,
        metadata: Optional[Dict[str, str]] = None,
        persistent: Optional[bool] = None,
        name: Optional[str] = None,
        idle_timeout_s: Optional[float] = None,
        hibernate_after_s: Optional[float] = None,
        disk_mb: Optional[int] = None,
        network: Optional[str] = None,
        network_policy: Optional[Dict[str, List[str]]] = None,
    ) -> None:
        body = {
            "template": template, "timeout_s": timeout_s, "memory_mb": memory_mb, "cpus": cpus, "env": env,
            "metadata": metadata, "persistent": persistent, "name": name, "idle_timeout_s": idle_timeout_s,
            "hibernate_after_s": hibernate_after_s, "disk_mb": disk_mb,
            "network": network, "network_policy": network_policy,
        }
        client = ForkboxClient.shared(host, api_key)
        info = client.request_json("POST", "/v1/sandboxes", json_body={k: v for k, v in body.items() if v is not None})
        self._attach(client, info)

    def _attach(self, client: ForkboxClient, info: Dict[str, Any]) -> None:
        self._client = client
        self._info = info
        self._closed = False

    @classmethod
    def _of(cls: Type["Sandbox"], client: ForkboxClient, info: Dict[str, Any]) -> "Sandbox":
        sb = cls.__new__(cls)
        sb._attach(client, info)
        return sb

    @classmethod
    def create(cls, *args: Any, **kwargs: Any) -> "Sandbox":
        """The same as ``Sandbox(...)``, for symmetry with ``await AsyncSandbox.create(...)``."""
        return cls(*args, **kwargs)

    @classmethod
    def connect(cls, id: str, host: Optional[str] = None, api_key: Optional[str] = None) -> "Sandbox":
        """Attaches to an existing sandbox by id (NotFoundError if there is none)."""
        client = ForkboxClient.shared(host, api_key)
        sb = cls._of(client, {"id": id})
        sb.refresh()
        return sb

    def _list_sandboxes(cls, host: Optional[str] = None, api_key: Optional[str] = None,  # type: ignore[misc]
                        name: Optional[str] = None) -> List["Sandbox"]:
        """Sandboxes on the host this key may see; with ``name``, this key's sandbox of that name
        (none or one). Each is attached, not created: closing it destroys it."""
        client = ForkboxClient.shared(host, api_key)
        return [cls._of(client, info) for info in client.list_sandboxes(name)]

    def _list_files(self, path: str = "/root") -> List[FileEntry]:
        """``sb.list(path="/root")``: the entries of a directory in the sandbox.
        ``Sandbox.list(host=None, api_key=None, name=None)``: the sandboxes on the host."""
        reply = self._client.request_json("GET", self._path("files/list"), query={"path": path})
        return [FileEntry(e["name"], e["type"], int(e["size"]), float(e["mtime"])) for e in reply["entries"]]

    list = _ClassOrInstanceMethod(_list_sandboxes, _list_files)

    # ---- identity ---------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return str(self._info["id"])

    @property
    def info(self) -> Dict[str, Any]:
        """The server's description of the sandbox when it was created, listed or last refreshed."""
        return self._info

    @property
    def client(self) -> ForkboxClient:
        return self._client

    def refresh(self) -> Dict[str, Any]:
        """Reads the sandbox's state again (memory, disk, state, children…) into ``info``."""
        self._info = self._client.request_json("GET", self._path(""))
        return self._info

    def __repr__(self) -> str:
        state = self._info.get("state", "?") if not self._closed else "closed"
        name = f" name={self._info['name']!r}" if self._info.get("name") else ""
        return f"<Sandbox {self.id} {state} template={self._info.get('template', '?')}{name} host={self._client.host}>"

    # ---- code and commands --------------------------------------------------------------------

    def run_code(
        self,
        code: str,
        on_stdout: Optional[LineCallback] = None,
        on_stderr: Optional[LineCallback] = None,
        timeout: Optional[float] = None,
    ) -> Execution:
        """Runs Python in the sandbox's persistent REPL (globals, imports and files survive between
        calls). The callbacks get each line as it arrives, before this returns; one that raises
        abandons the rest of the output (the connection is closed, which interrupts the cell) and the exception
        propagates. ``timeout`` is in seconds (the server's default is 300): the cell is
        interrupted and the REPL survives."""
        return self._run({"code": code, "language": "python", "rich": True, "timeout_s": timeout},
                         on_stdout, on_stderr)

    def exec(
        self,
        cmd: str,
        on_stdout: Optional[LineCallback] = None,
        on_stderr: Optional[LineCallback] = None,
        timeout: Optional[float] = None,
        cwd: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> Execution:
        """Runs ``bash -c cmd`` in a fresh process in the sandbox (in /root unless ``cwd``)."""
        return self._run({"code": cmd, "language": "bash", "timeout_s": timeout, "cwd": cwd, "env": env},
                         on_stdout, on_stderr)

    def stream(
        self,
        code: str,
        language: str = "python",
        *,
        rich: bool = True,
        timeout: Optional[float] = None,
        cwd: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> Iterator[Dict[str, Any]]:
        """The raw events of one call as the server sends them: dicts with ``type`` stdout,
        stderr, result, display, error or exit (see the API's exec route). Stop iterating to abandon the
        call's output (the connection is then closed, which interrupts the call)."""
        return self._events({"code": code, "language": language, "rich": rich, "timeout_s": timeout,
                             "cwd": cwd, "env": env})

    def _events(self, body: Dict[str, Any]) -> Generator[Dict[str, Any], None, None]:
        timeout = body.get("timeout_s")
        lines = self._client.stream_lines("POST", self._path("exec"),
                                          json_body={k: v for k, v in body.items() if v is not None},
                                          timeout=None if timeout is None else timeout + _TIMEOUT_GRACE_S)
        return _decoded(lines)

    def _run(self, body: Dict[str, Any], on_stdout: Optional[LineCallback], on_stderr: Optional[LineCallback]) -> Execution:
        started = time.perf_counter()
        stdout: List[str] = []
        stderr: List[str] = []
        result: Any = None
        result_kind: Optional[str] = None
        result_mime: Optional[Dict[str, Any]] = None
        displays: List[Dict[str, Any]] = []
        error: Optional[ExecutionError] = None
        exit_code: Optional[int] = None
        timed_out = False
        events = self._events(body)
        try:
            for ev in events:
                kind = ev.get("type")
                if kind == "stdout":
                    stdout.append(ev.get("data") or "")
                    if on_stdout is not None:
                        on_stdout(stdout[-1])
                elif kind == "stderr":
                    stderr.append(ev.get("data") or "")
                    if on_stderr is not None:
                        on_stderr(stderr[-1])
                elif kind == "result":
                    result = ev.get("data")
                    result_kind = ev.get("data_kind")
                    result_mime = ev.get("mime")
                elif kind == "display":
                    displays.append(ev.get("mime") or {})
                elif kind == "error":
                    error = ExecutionError(ev.get("name") or "", ev.get("value") or "", ev.get("traceback") or "")
                elif kind == "exit":
                    exit_code = int(ev.get("data"))
                    timed_out = bool(ev.get("timeout"))
        finally:
            events.close()
        if exit_code is None:
            raise ForkboxError(200, "bad_response", "the exec stream ended without an exit event")
        return Execution(stdout, stderr, exit_code, result, error, time.perf_counter() - started, timed_out,
                         result_kind, result_mime, displays)

    # ---- files ---------------------------------------------------------------------------------

    def upload(self, path: str, data: UploadData) -> FileEntry:
        """Writes a file in the sandbox (parents created, replaced atomically). ``data`` is bytes,
        str (written as UTF-8) or a file object opened in binary mode, which is streamed."""
        if isinstance(data, str):
            body: Any = data.encode("utf-8")
        elif isinstance(data, (bytearray, memoryview)):
            body = bytes(data)
        else:
            body = data
        _, _, reply = self._client.request("PUT", self._path("files"), body=body, query={"path": path},
                                           content_type="application/octet-stream")
        e = json.loads(reply)
        return FileEntry(e["name"], e["type"], int(e["size"]), float(e["mtime"]))

    def download(self, path: str) -> bytes:
        """A file's contents (NotFoundError with code file_not_found if missing; a directory is a BadRequestError)."""
        return self._client.request("GET", self._path("files"), query={"path": path})[2]

    def remove(self, path: str, recursive: bool = False) -> None:
        """Deletes a file, or a directory (with its contents if ``recursive``)."""
        query = {"path": path, "recursive": "true"} if recursive else {"path": path}
        self._client.request("DELETE", self._path("files"), query=query)

    # ---- fork, merge_into, diff --------------------------------------------------------------

    def fork(self, n: int = 1) -> List["Sandbox"]:
        """``n`` (1 to 32) exact copies of this sandbox as it is now: memory, REPL, files. The call
        waits for a running call on this sandbox to end first. Close the forks you do not keep."""
        reply = self._client.request_json("POST", self._path("fork"), json_body={"n": n})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return [type(self)._of(self._client, {
            "id": child, "state": "ready", "template": self._info.get("template"), "created_at": now,
            "expires_at": self._info.get("expires_at"), "metadata": self._info.get("metadata", {}),
            "limits": self._info.get("limits"), "forked_from": self.id,
        }) for child in reply["children"]]

    def merge_into(self, winner: Union["Sandbox", str]) -> None:
        """Makes ``winner`` (a fork of this sandbox, or a fork of one of its forks) take this
        sandbox's place: from now on this id answers with the winner's memory and files. This
        sandbox's former state is destroyed and the winner's own id is gone, so the winner object
        is marked closed (its ``close()`` does nothing)."""
        winner_id = winner if isinstance(winner, str) else winner.id
        self._client.request("POST", self._path(f"merge_into/{_quote(winner_id)}"))
        if isinstance(winner, Sandbox):
            winner._closed = True

    def diff(self, other: Union["Sandbox", str], paths: Optional[Iterable[str]] = None) -> Diff:
        """What differs between this sandbox's files and ``other``'s under ``paths`` (default /root
        and /tmp): ``added`` are paths ``other`` has and this one lacks."""
        other_id = other if isinstance(other, str) else other.id
        query = None if paths is None else {"paths": ",".join(paths)}
        d = self._client.request_json("GET", self._path(f"diff/{_quote(other_id)}"), query=query)
        return Diff(list(d.get("added", [])), list(d.get("removed", [])), list(d.get("changed", [])))

    # ---- Spaces: pause, hibernate, resume ----------------------------------------------------

    def interrupt(self) -> bool:
        """Interrupts the call running now (from another thread or process): KeyboardInterrupt
        in a Python cell, whose variables stay; a shell command's process group killed. The
        interrupted call ends with exit code 130. False when no call was running."""
        reply: Dict[str, Any] = self._client.request_json("POST", self._path("interrupt"))
        return bool(reply["interrupted"])

    def pause(self) -> Dict[str, Any]:
        """Stops every process with the cgroup freezer; memory stays. Any call resumes it."""
        return self._lifecycle("pause")

    def hibernate(self) -> Dict[str, Any]:
        """Writes the sandbox to disk (files and the REPL's picklable globals) and frees its
        memory. The reply's ``saved`` and ``not_restored`` say what was kept and what was not."""
        return self._lifecycle("hibernate")

    def resume(self) -> Dict[str, Any]:
        """Brings a paused or hibernated sandbox back; the reply says what was restored and what was not."""
        return self._lifecycle("resume")

    def restart(self) -> Dict[str, Any]:
        """A fresh interpreter on the same files, like a notebook's kernel restart: variables,
        imports and background processes are gone, files stay. Brings a dead sandbox (killed at
        its memory limit, say) back to ``ready``; a call running in it ends."""
        return self._lifecycle("restart")

    def set_timeout(self, seconds: float) -> Dict[str, Any]:
        """Makes the sandbox expire ``seconds`` from now (sooner or later than before); returns its
        info, with the new ``expires_at``. A persistent sandbox never expires: ConflictError."""
        self._info = self._client.request_json("POST", self._path("timeout"), json_body={"timeout_s": seconds})
        return self._info

    def _lifecycle(self, verb: str) -> Dict[str, Any]:
        reply: Dict[str, Any] = self._client.request_json("POST", self._path(verb))
        if "state" in reply:
            self._info["state"] = reply["state"]
        return reply

    # ---- closing -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Destroys the sandbox. Closing one already gone (or merged away) is not an error."""
        if self._closed:
            return
        try:
            self._client.request("DELETE", self._path(""))
        except NotFoundError:
            pass
        self._closed = True

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _path(self, route: str) -> str:
        base = f"/v1/sandboxes/{_quote(self.id)}"
        return f"{base}/{route}" if route else base


def _decoded(lines: Generator[bytes, None, None]) -> Generator[Dict[str, Any], None, None]:
    """NDJSON lines to events; closing this closes the stream (and its connection) at once."""
    try:
        for line in lines:
            yield json.loads(line)
    finally:
        lines.close()
