"""What calls return: an Execution of code or a command, file entries, a diff."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class ExecutionError:
    """An exception raised by a cell: its type name, message and formatted traceback."""

    name: str
    value: str
    traceback: str


@dataclass(frozen=True)
class Execution:
    """What a finished ``run_code`` or ``exec`` call produced.

    ``stdout`` and ``stderr`` are the lines joined with ``\\n``; ``result`` is the JSON value of a
    cell's last expression (run_code only; the ``repr`` string when it has no JSON form) or None;
    ``error`` is the cell's uncaught exception; ``duration`` is in seconds, measured by the client.
    ``result_kind`` says which ``result`` is: "json" (the value itself) or "repr" (its repr).
    ``result_mime`` is the result's MIME bundle: "text/plain", and "text/html", "image/png" (base64),
    "image/svg+xml", "application/json"… when the value has them. ``displays`` are the MIME bundles
    the cell showed while it ran (a matplotlib figure's ``plt.show()``), in order.
    """

    stdout_lines: List[str]
    stderr_lines: List[str]
    exit_code: int
    result: Any = None
    error: Optional[ExecutionError] = None
    duration: float = 0.0
    timed_out: bool = False
    result_kind: Optional[str] = None
    result_mime: Optional[Dict[str, Any]] = None
    displays: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)


@dataclass(frozen=True)
class FileEntry:
    """One entry of a directory in a sandbox. ``type`` is "file", "dir", "symlink" or "other"; ``mtime`` is Unix seconds."""

    name: str
    type: str
    size: int
    mtime: float


@dataclass(frozen=True)
class Diff:
    """Paths under the compared directories that the other sandbox has and this one lacks (added), the
    reverse (removed), and those whose contents differ (changed); sorted."""

    added: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
