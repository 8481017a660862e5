"""AsyncSandbox: the Sandbox API for asyncio, each call run on a worker thread with asyncio.to_thread.

The HTTP client is the synchronous one (one kept-alive connection per worker thread), so an
``await`` never blocks the event loop. ``on_stdout``/``on_stderr`` callbacks run on the worker
thread, as each line arrives; to touch asyncio objects from one, go through
``loop.call_soon_threadsafe`` (e.g. ``lambda line: loop.call_soon_threadsafe(queue.put_nowait, line)``).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Dict, Iterable, List, Optional, Type, Union

from .client import ForkboxClient
from .models import Diff, Execution, FileEntry
from .sandbox import LineCallback, Sandbox, UploadData, _ClassOrInstanceMethod


class AsyncSandbox:
    """``sb = await AsyncSandbox.create(...)`` (same arguments as ``Sandbox``), then ``await
    sb.run_code(...)`` and the rest of Sandbox's methods; ``async with`` closes it."""

    def __init__(self, sandbox: Sandbox) -> None:
        """Wraps a synchronous Sandbox; use ``await AsyncSandbox.create(...)`` to make a new one."""
        self._sync = sandbox

    @classmethod
    async def create(
        cls,
        host: Optional[str] = None,
        api_key: Optional[str] = None,
        template: Optional[str] = None,
        **options: Any,
    ) -> "AsyncSandbox":
        """Creates a sandbox; ``options`` are Sandbox's keyword arguments (timeout_s, memory_mb, persistent, name…)."""
        return cls(await asyncio.to_thread(Sandbox, host, api_key, template, **options))

    @classmethod
    async def connect(cls, id: str, host: Optional[str] = None, api_key: Optional[str] = None) -> "AsyncSandbox":
        return cls(await asyncio.to_thread(Sandbox.connect, id, host, api_key))

    async def _list_sandboxes(cls: Type["AsyncSandbox"], host: Optional[str] = None,  # type: ignore[misc]
                              api_key: Optional[str] = None, name: Optional[str] = None) -> List["AsyncSandbox"]:
        """Sandboxes on the host this key may see; with ``name``, this key's sandbox of that name."""
        return [cls(sb) for sb in await asyncio.to_thread(Sandbox.list, host, api_key, name)]

    async def _list_files(self, path: str = "/root") -> List[FileEntry]:
        """``await sb.list(path="/root")``: a directory's entries; ``await AsyncSandbox.list(name=…)``: sandboxes."""
        return await asyncio.to_thread(self._sync.list, path)

    list = _ClassOrInstanceMethod(_list_sandboxes, _list_files)

    @property
    def sync(self) -> Sandbox:
        """The synchronous Sandbox underneath (for ToolHandler, or code that runs in a thread)."""
        return self._sync

    @property
    def id(self) -> str:
        return self._sync.id

    @property
    def info(self) -> Dict[str, Any]:
        return self._sync.info

    @property
    def client(self) -> ForkboxClient:
        return self._sync.client

    @property
    def closed(self) -> bool:
        return self._sync.closed

    def __repr__(self) -> str:
        return "<Async" + repr(self._sync)[1:]

    async def refresh(self) -> Dict[str, Any]:
        return await asyncio.to_thread(self._sync.refresh)

    async def run_code(self, code: str, on_stdout: Optional[LineCallback] = None,
                       on_stderr: Optional[LineCallback] = None, timeout: Optional[float] = None) -> Execution:
        """Sandbox.run_code; the callbacks run on a worker thread as lines arrive. Cancelling the
        await (``asyncio.wait_for``, a cancelled task) interrupts the cell."""
        return await self._interruptible(self._sync.run_code, code, on_stdout, on_stderr, timeout)

    async def exec(self, cmd: str, on_stdout: Optional[LineCallback] = None, on_stderr: Optional[LineCallback] = None,
                   timeout: Optional[float] = None, cwd: Optional[str] = None,
                   env: Optional[Dict[str, str]] = None) -> Execution:
        """Sandbox.exec; cancelling the await kills the command."""
        return await self._interruptible(self._sync.exec, cmd, on_stdout, on_stderr, timeout, cwd, env)

    async def _interruptible(self, call: Any, *args: Any) -> Execution:
        # The worker thread cannot be cancelled: the call is stopped in the sandbox instead, and the
        # thread then returns on its own.
        try:
            return await asyncio.to_thread(call, *args)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.to_thread(self._sync.interrupt))
            raise

    async def interrupt(self) -> bool:
        """Sandbox.interrupt: stops the call running now, if one is."""
        return await asyncio.to_thread(self._sync.interrupt)

    async def stream(self, code: str, language: str = "python", *, rich: bool = True, timeout: Optional[float] = None,
                     cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> AsyncIterator[Dict[str, Any]]:
        """Sandbox.stream as an async iterator: ``async for ev in sb.stream(code)`` yields each raw event
        as it arrives, each read on a worker thread. Leaving the loop early closes the connection, as
        with Sandbox.stream, which interrupts the call."""
        # The request is sent by stream() itself, so that too runs on a worker thread.
        events = await asyncio.to_thread(lambda: self._sync.stream(code, language, rich=rich, timeout=timeout, cwd=cwd, env=env))
        end = object()
        try:
            while True:
                ev = await asyncio.to_thread(next, events, end)
                if ev is end:
                    return
                yield ev
        finally:
            await asyncio.to_thread(events.close)

    async def upload(self, path: str, data: UploadData) -> FileEntry:
        return await asyncio.to_thread(self._sync.upload, path, data)

    async def download(self, path: str) -> bytes:
        return await asyncio.to_thread(self._sync.download, path)

    async def remove(self, path: str, recursive: bool = False) -> None:
        await asyncio.to_thread(self._sync.remove, path, recursive)

    async def fork(self, n: int = 1) -> List["AsyncSandbox"]:
        return [type(self)(sb) for sb in await asyncio.to_thread(self._sync.fork, n)]

    async def merge_into(self, winner: Union["AsyncSandbox", Sandbox, str]) -> None:
        """Sandbox.merge_into: the winner's id is gone afterwards and its ``close()`` does nothing."""
        await asyncio.to_thread(self._sync.merge_into, winner._sync if isinstance(winner, AsyncSandbox) else winner)

    async def diff(self, other: Union["AsyncSandbox", Sandbox, str], paths: Optional[Iterable[str]] = None) -> Diff:
        return await asyncio.to_thread(self._sync.diff, other._sync if isinstance(other, AsyncSandbox) else other, paths)

    async def pause(self) -> Dict[str, Any]:
        return await asyncio.to_thread(self._sync.pause)

    async def hibernate(self) -> Dict[str, Any]:
        return await asyncio.to_thread(self._sync.hibernate)

    async def resume(self) -> Dict[str, Any]:
        return await asyncio.to_thread(self._sync.resume)

    async def restart(self) -> Dict[str, Any]:
        return await asyncio.to_thread(self._sync.restart)

    async def set_timeout(self, seconds: float) -> Dict[str, Any]:
        return await asyncio.to_thread(self._sync.set_timeout, seconds)

    async def close(self) -> None:
        await asyncio.to_thread(self._sync.close)

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
