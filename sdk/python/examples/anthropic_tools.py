"""Forkbox tools with Anthropic's messages API, without an LLM: the model's replies below are
shaped exactly as the API returns them (a Message as JSON), and the handler runs their tool_use
blocks in a sandbox. With the real API, pass ``tools=anthropic_tools()`` to
``client.messages.create`` and feed each ``tool_use`` block of ``response.content`` (the SDK's
objects work as well as these dicts) to ``handler.anthropic_tool_result``.

    FORKBOX_HOST=127.0.0.1:7070 python3 sdk/python/examples/anthropic_tools.py
"""

import re

from forkbox import Sandbox
from forkbox.tools import ToolHandler, anthropic_tools


def message(*content):
    """An assistant Message that stops for tool use, as the API sends it."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": list(content),
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 530, "output_tokens": 88},
    }


def tool_use(block_id, name, **tool_input):
    return {"type": "tool_use", "id": block_id, "name": name, "input": tool_input}


tools = anthropic_tools()
print("tools:", [t["name"] for t in tools])
messages = [{"role": "user", "content": "Load the numbers 1..100, then compare two ways to sum them."}]

with Sandbox() as sb, ToolHandler(sb) as handler:
    def run(response):
        """Runs every tool_use block of a response; returns the user message carrying the results."""
        messages.append({"role": "assistant", "content": response["content"]})
        results = []
        for block in response["content"]:
            if block["type"] == "tool_use":
                result = handler.anthropic_tool_result(block)
                flag = " (is_error)" if result.get("is_error") else ""
                print(f"--- {block['name']} ({result['tool_use_id']}){flag}\n{result['content']}")
                results.append(result)
        messages.append({"role": "user", "content": results})
        return results

    run(message(
        {"type": "text", "text": "I'll write the data and load it."},
        tool_use("toolu_01", "upload", path="/root/numbers.txt", content="\n".join(str(i) for i in range(1, 101))),
        tool_use("toolu_02", "run_code", code="numbers = [int(x) for x in open('/root/numbers.txt')]\nlen(numbers)"),
        tool_use("toolu_03", "exec", command="tail -n 2 /root/numbers.txt"),
        tool_use("toolu_04", "download", path="/root/missing.txt"),
    ))
    [forked] = run(message(tool_use("toolu_05", "fork", n=2)))
    a, b = re.findall(r"sbx_[0-9a-f]{32}", forked["content"])[1:]
    run(message(
        tool_use("toolu_06", "run_code", sandbox_id=a, code="sum(numbers)"),
        tool_use("toolu_07", "run_code", sandbox_id=b, code="len(numbers) * (len(numbers) + 1) // 2"),
    ))

print(f"{len(messages)} messages in the conversation")
