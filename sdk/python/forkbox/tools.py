"""Sandbox tools for agent frameworks, without their SDKs: JSON-schema tool definitions in the
OpenAI and Anthropic shapes, and a handler that runs the calls a model makes and formats what
came back for the model to read.

    handler = ToolHandler(sandbox)
    tools = openai_tools()          # or anthropic_tools()
    ... the model answers with tool calls ...
    messages += [handler.openai_tool_result(call) for call in message["tool_calls"]]

Tools: run_code (Python in the sandbox's persistent REPL), exec (a shell command), upload (a text
file), download (a file, as text or base64), fork (copies of the sandbox to try things in
parallel; later calls pick one with ``sandbox_id``).
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import ForkboxError
from .models import Execution
from .sandbox import Sandbox

DEFAULT_MAX_OUTPUT_CHARS = 20_000
MAX_FORKS_PER_CALL = 8

_SANDBOX_ID = {
    "type": "string",
    "description": "Which sandbox to use: the id of a fork made by the fork tool. Leave out for the main sandbox.",
}

_TOOLS: List[Dict[str, Any]] = [
    {
        "name": "run_code",
        "description": (
            "Run Python code in a persistent Python REPL in an isolated Linux sandbox. Variables, imports and "
            "files persist between calls. Returns stdout, stderr, the value of the last expression (if any), "
            "the exception raised (if any) and the exit code. Use print() to see intermediate values."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Python source to run, as a cell of the REPL."},
                "timeout_s": {"type": "number", "description": "Seconds before the code is interrupted (default 300)."},
                "sandbox_id": _SANDBOX_ID,
            },
            "required": ["code"],
            "additionalProperties": False,
        },
    },
    {
        "name": "exec",
        "description": (
            "Run a shell command with bash in the sandbox (a fresh process, in /root unless cwd is given). "
            "Returns stdout, stderr and the exit code. The sandbox has no network access beyond loopback."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command line, run as bash -c COMMAND."},
                "cwd": {"type": "string", "description": "Working directory inside the sandbox."},
                "timeout_s": {"type": "number", "description": "Seconds before the command is killed (default 300)."},
                "sandbox_id": _SANDBOX_ID,
            },
            "required": ["command"],
            "additionalProperties": False,
        },
    },
    {
        "name": "upload",
        "description": "Write a text file in the sandbox (parent directories are created; an existing file is replaced).",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Path in the sandbox; relative paths start at /root."},
                "content": {"type": "string", "description": "The file's full text (written as UTF-8)."},
                "sandbox_id": _SANDBOX_ID,
            },
            "required": ["path", "content"],
            "additionalProperties": False,
        },
    },
    {
        "name": "download",
        "description": "Read a file from the sandbox. Text files come back as text; binary files as base64.",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Path in the sandbox; relative paths start at /root."},
                "sandbox_id": _SANDBOX_ID,
            },
            "required": ["path"],
            "additionalProperties": False,
        },
    },
    {
        "name": "fork",
        "description": (
            "Make n exact copies of the sandbox as it is now (its Python variables, imports and files) to try "
            "different approaches independently. Returns the forks' ids; pass one as sandbox_id to run_code, exec, "
            "upload or download to work in that fork. The forks do not affect each other or the original."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "n": {"type": "integer", "minimum": 1, "maximum": MAX_FORKS_PER_CALL,
                      "description": "How many copies (default 1)."},
                "sandbox_id": {"type": "string", "description": "The sandbox to copy: a fork's id, or leave out for the main sandbox."},
            },
            "additionalProperties": False,
        },
    },
]

TOOL_NAMES: Tuple[str, ...] = tuple(t["name"] for t in _TOOLS)


def _selected(names: Optional[Sequence[str]]) -> List[Dict[str, Any]]:
    if names is None:
        return _TOOLS
    unknown = set(names) - set(TOOL_NAMES)
    if unknown:
        raise ValueError(f"unknown tools {sorted(unknown)}; the tools are {list(TOOL_NAMES)}")
    return [t for t in _TOOLS if t["name"] in names]


def openai_tools(names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """Tool definitions for OpenAI's chat completions ``tools=``: ``{"type": "function", "function": {…}}``."""
    return [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                              "parameters": copy.deepcopy(t["parameters"])}}
            for t in _selected(names)]


def anthropic_tools(names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """Tool definitions for Anthropic's messages ``tools=``: ``{"name", "description", "input_schema"}``."""
    return [{"name": t["name"], "description": t["description"], "input_schema": copy.deepcopy(t["parameters"])}
            for t in _selected(names)]


class ToolError(Exception):
    """A tool call that could not run (bad arguments, unknown tool or sandbox, an API error); its
    message is what the model is told."""


class ToolHandler:
    """Runs tool calls against a sandbox and formats what came back for a model.

    Forks made by the fork tool are kept in ``sandboxes`` (by id, the main sandbox included) so that
    later calls may name one with ``sandbox_id``; ``close()`` closes those forks (not the main
    sandbox, which its owner closes). Output past ``max_output_chars`` keeps its beginning and end
    around a ``[… N characters truncated …]`` marker.
    """

    def __init__(self, sandbox: Sandbox, *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        self.sandbox = sandbox
        self.max_output_chars = max_output_chars
        self.sandboxes: Dict[str, Sandbox] = {sandbox.id: sandbox}

    # ---- entry points ---------------------------------------------------------------------------

    def handle(self, name: str, arguments: Union[Mapping[str, Any], str, None]) -> str:
        """Runs one call; ``arguments`` is a dict or its JSON text (as OpenAI sends it). Returns the
        text for the model; a call that failed returns the reason, starting with "error:"."""
        return self._handle(name, arguments)[0]

    def openai_tool_result(self, tool_call: Any) -> Dict[str, Any]:
        """Runs a tool call from an OpenAI chat completion (the dict, or the SDK's object) and
        returns the message to append: ``{"role": "tool", "tool_call_id": …, "content": …}``."""
        function = _field(tool_call, "function")
        text, _ = self._handle(_field(function, "name"), _field(function, "arguments"))
        return {"role": "tool", "tool_call_id": _field(tool_call, "id"), "content": text}

    def anthropic_tool_result(self, tool_use_block: Any) -> Dict[str, Any]:
        """Runs a ``tool_use`` content block from an Anthropic message (the dict, or the SDK's
        object) and returns the ``tool_result`` block for the next user message; ``is_error`` is set
        when the call itself failed (not when the code it ran raised: that is in the output)."""
        text, failed = self._handle(_field(tool_use_block, "name"), _field(tool_use_block, "input"))
        block: Dict[str, Any] = {"type": "tool_result", "tool_use_id": _field(tool_use_block, "id"), "content": text}
        if failed:
            block["is_error"] = True
        return block

    def close(self) -> None:
        """Closes the forks this handler made."""
        for sid, sb in list(self.sandboxes.items()):
            if sb is not self.sandbox:
                sb.close()
                del self.sandboxes[sid]

    def __enter__(self) -> "ToolHandler":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- the tools --------------------------------------------------------------------------------

    def _handle(self, name: str, arguments: Union[Mapping[str, Any], str, None]) -> Tuple[str, bool]:
        try:
            args = _arguments(arguments)
            tool = getattr(self, "_tool_" + str(name), None) if name in TOOL_NAMES else None
            if tool is None:
                raise ToolError(f"unknown tool {name!r}; the tools are {', '.join(TOOL_NAMES)}")
            return self._truncate(tool(args)), False
        except ToolError as e:
            return f"error: {e}", True
        except ForkboxError as e:
            return f"error: {e}", True

    def _tool_run_code(self, args: Dict[str, Any]) -> str:
        sb = self._target(args)
        return format_execution(sb.run_code(_string(args, "code"), timeout=_number(args, "timeout_s")))

    def _tool_exec(self, args: Dict[str, Any]) -> str:
        sb = self._target(args)
        cwd = args.get("cwd")
        return format_execution(sb.exec(_string(args, "command"), timeout=_number(args, "timeout_s"),
                                        cwd=str(cwd) if cwd is not None else None))

    def _tool_upload(self, args: Dict[str, Any]) -> str:
        sb = self._target(args)
        path = _string(args, "path")
        entry = sb.upload(path, _string(args, "content"))
        return f"wrote {entry.size} bytes to {path}"

    def _tool_download(self, args: Dict[str, Any]) -> str:
        sb = self._target(args)
        path = _string(args, "path")
        data = sb.download(path)
        try:
            text = data.decode("utf-8")
            if "\x00" not in text:
                return text if text else f"({path} is empty)"
        except UnicodeDecodeError:
            pass
        return f"{path} is binary ({len(data)} bytes); base64:\n" + base64.b64encode(data).decode("ascii")

    def _tool_fork(self, args: Dict[str, Any]) -> str:
        sb = self._target(args)
        n = args.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or not 1 <= n <= MAX_FORKS_PER_CALL:
            raise ToolError(f"n must be an integer from 1 to {MAX_FORKS_PER_CALL}")
        children = sb.fork(int(n))
        for child in children:
            self.sandboxes[child.id] = child
        ids = ", ".join(c.id for c in children)
        noun = "fork" if len(children) == 1 else "forks"
        return (f"made {len(children)} {noun} of {sb.id}: {ids}. Pass one of them as sandbox_id to work in it; "
                "each starts with the same variables and files.")

    # ---- helpers ------------------------------------------------------------------------------------

    def _target(self, args: Dict[str, Any]) -> Sandbox:
        sid = args.get("sandbox_id")
        if sid is None or sid == "":
            return self.sandbox
        sb = self.sandboxes.get(str(sid))
        if sb is None:
            raise ToolError(f"unknown sandbox_id {sid!r}; known: {', '.join(self.sandboxes)}")
        return sb

    def _truncate(self, text: str) -> str:
        return truncate(text, self.max_output_chars)


def format_execution(ex: Execution) -> str:
    """An Execution as text for a model: stdout, stderr, result, error and exit code, in sections
    that are left out when empty."""
    parts: List[str] = []
    if ex.stdout_lines:
        parts.append("stdout:\n" + ex.stdout)
    if ex.stderr_lines:
        parts.append("stderr:\n" + ex.stderr)
    if ex.result is not None:
        parts.append("result: " + json.dumps(ex.result, ensure_ascii=False))
    if ex.error is not None:
        line = f"error: {ex.error.name}: {ex.error.value}"
        if ex.error.traceback and ex.error.traceback.strip() not in ex.stderr:
            line += "\n" + ex.error.traceback.rstrip()
        parts.append(line)
    if ex.timed_out:
        parts.append("timed out: the call was interrupted at its timeout")
    if not parts:
        parts.append("(no output)")
    parts.append(f"exit code: {ex.exit_code}")
    return "\n".join(parts)


def truncate(text: str, limit: int) -> str:
    """Keeps the first and last halves of ``limit`` characters around a marker saying how many went."""
    if limit <= 0 or len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    return f"{text[:head]}\n[… {len(text) - head - tail} characters truncated …]\n{text[-tail:]}"


def _field(obj: Any, name: str) -> Any:
    """A field of an API object, whether it is a dict (raw JSON) or an SDK object with attributes."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _arguments(arguments: Union[Mapping[str, Any], str, None]) -> Dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError as e:
            raise ToolError(f"the arguments are not valid JSON ({e}); send a JSON object") from None
    if not isinstance(arguments, Mapping):
        raise ToolError("the arguments must be a JSON object")
    return dict(arguments)


def _string(args: Dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise ToolError(f"'{name}' is required and must be a string")
    return value


def _number(args: Dict[str, Any], name: str) -> Optional[float]:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ToolError(f"'{name}' must be a positive number of seconds")
    return float(value)
