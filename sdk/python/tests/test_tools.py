"""forkbox.tools against a real server: the definitions in both shapes, and every tool run
through the handler from OpenAI tool calls and Anthropic tool_use blocks."""

from __future__ import annotations

import base64
import json
import re
import types
import unittest
from typing import Any, Dict, Optional

from forkbox_server import ForkboxServer

from forkbox import Execution, ExecutionError, Sandbox
from forkbox.tools import TOOL_NAMES, ToolHandler, anthropic_tools, format_execution, openai_tools, truncate

server: Optional[ForkboxServer] = None
sandbox: Optional[Sandbox] = None


def setUpModule() -> None:
    global server, sandbox
    server = ForkboxServer("tools")
    sandbox = Sandbox(server.url)


def tearDownModule() -> None:
    assert server is not None and sandbox is not None
    sandbox.close()
    server.stop()


def openai_call(call_id: str, name: str, **arguments: Any) -> Dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def tool_use(block_id: str, name: str, **tool_input: Any) -> Dict[str, Any]:
    return {"type": "tool_use", "id": block_id, "name": name, "input": tool_input}


class Definitions(unittest.TestCase):
    def test_openai_shape(self) -> None:
        tools = openai_tools()
        self.assertEqual([t["function"]["name"] for t in tools], list(TOOL_NAMES))
        self.assertEqual(list(TOOL_NAMES), ["run_code", "exec", "upload", "download", "fork"])
        for t in tools:
            self.assertEqual(set(t), {"type", "function"})
            self.assertEqual(t["type"], "function")
            self.assertEqual(set(t["function"]), {"name", "description", "parameters"})
            self.assertRegex(t["function"]["name"], r"^[a-zA-Z0-9_-]{1,64}$")
            self.assertEqual(t["function"]["parameters"]["type"], "object")
        json.dumps(tools)

    def test_anthropic_shape(self) -> None:
        tools = anthropic_tools()
        for t in tools:
            self.assertEqual(set(t), {"name", "description", "input_schema"})
            schema = t["input_schema"]
            self.assertEqual(schema["type"], "object")
            self.assertTrue(set(schema.get("required", [])) <= set(schema["properties"]))
            self.assertIn("sandbox_id", schema["properties"])
        by_name = {t["name"]: t for t in tools}
        self.assertEqual(by_name["run_code"]["input_schema"]["required"], ["code"])
        self.assertEqual(by_name["upload"]["input_schema"]["required"], ["path", "content"])

    def test_a_subset_and_copies(self) -> None:
        self.assertEqual([t["name"] for t in anthropic_tools(["run_code"])], ["run_code"])
        openai_tools()[0]["function"]["parameters"]["properties"].clear()
        self.assertIn("code", openai_tools()[0]["function"]["parameters"]["properties"])
        with self.assertRaises(ValueError):
            openai_tools(["rm_rf"])


class WithHandler(unittest.TestCase):
    """A ToolHandler on the module's sandbox for each test; the forks it makes are closed after."""

    def setUp(self) -> None:
        assert sandbox is not None
        self.handler = ToolHandler(sandbox)

    def tearDown(self) -> None:
        self.handler.close()


class OpenAIShape(WithHandler):
    def test_run_code(self) -> None:
        msg = self.handler.openai_tool_result(openai_call("call_1", "run_code", code="v = 6\nprint('seen')\nv * 7"))
        self.assertEqual(msg, {"role": "tool", "tool_call_id": "call_1", "content": "stdout:\nseen\nresult: 42\nexit code: 0"})

    def test_run_code_reports_an_exception_once(self) -> None:
        content = self.handler.openai_tool_result(openai_call("call_2", "run_code", code="{}['k']"))["content"]
        self.assertIn("error: KeyError: 'k'", content)
        self.assertEqual(content.count("Traceback"), 1)
        self.assertTrue(content.endswith("exit code: 1"))

    def test_exec(self) -> None:
        content = self.handler.openai_tool_result(openai_call("call_3", "exec", command="pwd; echo no >&2; exit 4", cwd="/tmp"))["content"]
        self.assertEqual(content, "stdout:\n/tmp\nstderr:\nno\nexit code: 4")

    def test_upload_then_download_text(self) -> None:
        up = self.handler.openai_tool_result(openai_call("call_4", "upload", path="/root/t/notes.md", content="# héllo\n"))
        self.assertEqual(up["content"], "wrote 9 bytes to /root/t/notes.md")
        down = self.handler.openai_tool_result(openai_call("call_5", "download", path="/root/t/notes.md"))
        self.assertEqual(down["content"], "# héllo\n")

    def test_download_binary_as_base64(self) -> None:
        assert sandbox is not None
        sandbox.upload("/root/blob.bin", b"\x89PNG\x00\xff")
        content = self.handler.openai_tool_result(openai_call("call_6", "download", path="/root/blob.bin"))["content"]
        head, _, encoded = content.partition("base64:\n")
        self.assertIn("binary (6 bytes)", head)
        self.assertEqual(base64.b64decode(encoded), b"\x89PNG\x00\xff")

    def test_fork_then_calls_target_a_fork_with_sandbox_id(self) -> None:
        self.handler.handle("run_code", {"code": "who = 'parent'"})
        content = self.handler.openai_tool_result(openai_call("call_7", "fork", n=2))["content"]
        forks = re.findall(r"sbx_[0-9a-f]{32}", content)[1:]
        self.assertEqual(len(forks), 2)
        self.assertEqual(set(self.handler.sandboxes), set(forks) | {self.handler.sandbox.id})
        self.handler.openai_tool_result(openai_call("call_8", "run_code", sandbox_id=forks[0], code="who = 'fork'"))
        in_fork = self.handler.openai_tool_result(openai_call("call_9", "run_code", sandbox_id=forks[0], code="who"))
        in_main = self.handler.openai_tool_result(openai_call("call_10", "run_code", code="who"))
        self.assertIn('result: "fork"', in_fork["content"])
        self.assertIn('result: "parent"', in_main["content"])
        self.handler.close()
        self.assertEqual(list(self.handler.sandboxes), [self.handler.sandbox.id])
        self.assertTrue(self.handler.sandbox.run_code("1").exit_code == 0, "close() leaves the main sandbox alone")

    def test_the_sdks_objects_work_as_well_as_dicts(self) -> None:
        call = types.SimpleNamespace(id="call_11", type="function",
                                     function=types.SimpleNamespace(name="run_code", arguments='{"code": "2 + 2"}'))
        self.assertEqual(self.handler.openai_tool_result(call)["content"], "result: 4\nexit code: 0")

    def test_bad_arguments_unknown_tools_and_sandboxes_are_explained(self) -> None:
        self.assertTrue(self.handler.handle("run_code", "{not json").startswith("error: the arguments are not valid JSON"))
        self.assertIn("'code' is required", self.handler.handle("run_code", {}))
        self.assertIn("unknown tool 'rm'", self.handler.handle("rm", {}))
        self.assertIn("unknown sandbox_id", self.handler.handle("exec", {"command": "true", "sandbox_id": "sbx_nope"}))
        self.assertIn("n must be an integer", self.handler.handle("fork", {"n": 99}))


class AnthropicShape(WithHandler):
    def test_run_code(self) -> None:
        block = self.handler.anthropic_tool_result(tool_use("toolu_1", "run_code", code="[1, 'two']"))
        self.assertEqual(block, {"type": "tool_result", "tool_use_id": "toolu_1", "content": 'result: [1, "two"]\nexit code: 0'})

    def test_exec(self) -> None:
        block = self.handler.anthropic_tool_result(tool_use("toolu_2", "exec", command="echo hi"))
        self.assertEqual(block["content"], "stdout:\nhi\nexit code: 0")
        self.assertNotIn("is_error", block)

    def test_upload_and_download(self) -> None:
        self.handler.anthropic_tool_result(tool_use("toolu_3", "upload", path="a.txt", content="relative"))
        block = self.handler.anthropic_tool_result(tool_use("toolu_4", "download", path="/root/a.txt"))
        self.assertEqual(block["content"], "relative")

    def test_fork_and_sandbox_id(self) -> None:
        block = self.handler.anthropic_tool_result(tool_use("toolu_5", "fork"))
        [fork_id] = re.findall(r"sbx_[0-9a-f]{32}", block["content"])[1:]
        block = self.handler.anthropic_tool_result(tool_use("toolu_6", "exec", command="hostname >/dev/null; echo ok", sandbox_id=fork_id))
        self.assertEqual(block["content"], "stdout:\nok\nexit code: 0")

    def test_a_failed_call_is_an_error_result_but_failing_code_is_not(self) -> None:
        missing = self.handler.anthropic_tool_result(tool_use("toolu_7", "download", path="/root/none.txt"))
        self.assertTrue(missing["is_error"])
        self.assertIn("file_not_found", missing["content"])
        raised = self.handler.anthropic_tool_result(tool_use("toolu_8", "run_code", code="raise ValueError('x')"))
        self.assertNotIn("is_error", raised)
        self.assertIn("error: ValueError: x", raised["content"])

    def test_the_sdks_objects_work_as_well_as_dicts(self) -> None:
        block = types.SimpleNamespace(type="tool_use", id="toolu_9", name="exec", input={"command": "echo obj"})
        self.assertEqual(self.handler.anthropic_tool_result(block)["content"], "stdout:\nobj\nexit code: 0")


class Formatting(unittest.TestCase):
    def test_long_output_keeps_its_beginning_and_end_around_a_marker(self) -> None:
        assert sandbox is not None
        handler = ToolHandler(sandbox, max_output_chars=200)
        content = handler.handle("run_code", {"code": "for i in range(1000): print(i)"})
        self.assertLessEqual(len(content), 260)
        self.assertTrue(content.startswith("stdout:\n0\n1\n"))
        self.assertTrue(content.endswith("999\nexit code: 0"))
        self.assertRegex(content, r"\[… \d+ characters truncated …\]")
        self.assertEqual(truncate("short", 10), "short")

    def test_sections_are_left_out_when_empty(self) -> None:
        ex = Execution([], [], 0)
        self.assertEqual(format_execution(ex), "(no output)\nexit code: 0")
        ex = Execution([], [], 124, timed_out=True)
        self.assertIn("timed out", format_execution(ex))
        ex = Execution([], [], 137, error=ExecutionError("SandboxDied", "killed", ""))
        self.assertEqual(format_execution(ex), "error: SandboxDied: killed\nexit code: 137")


if __name__ == "__main__":
    unittest.main()
