"""Forkbox tools with OpenAI's chat completions API, without an LLM: the model's replies below are
shaped exactly as the API returns them (a ChatCompletion as JSON), and the handler runs their
tool calls in a sandbox. With the real API, pass ``tools=openai_tools()`` to
``client.chat.completions.create`` and feed ``response.choices[0].message.tool_calls`` (the SDK's
objects work as well as these dicts) to ``handler.openai_tool_result``.

    FORKBOX_HOST=127.0.0.1:7070 python3 sdk/python/examples/openai_tools.py
"""

import json
import re

from forkbox import Sandbox
from forkbox.tools import ToolHandler, openai_tools


def chat_completion(*tool_calls):
    """A ChatCompletion whose assistant message asks for these tool calls, as the API sends it."""
    return {
        "id": "chatcmpl-AbC123",
        "object": "chat.completion",
        "created": 1764374400,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": None, "tool_calls": list(tool_calls)},
            "logprobs": None,
            "finish_reason": "tool_calls",
        }],
        "usage": {"prompt_tokens": 412, "completion_tokens": 61, "total_tokens": 473},
    }


def call(call_id, name, **arguments):
    # OpenAI sends the arguments as a JSON string.
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


tools = openai_tools()
print("tools:", [t["function"]["name"] for t in tools])
messages = [{"role": "user", "content": "How many primes are there below 10,000? Then try two sieves."}]

with Sandbox() as sb, ToolHandler(sb) as handler:
    turns = [
        chat_completion(
            call("call_1", "run_code", code="primes = [n for n in range(2, 10_000) if all(n % d for d in range(2, int(n ** 0.5) + 1))]\nlen(primes)"),
            call("call_2", "upload", path="/root/primes.txt", content="2 3 5 7 11\n"),
            call("call_3", "exec", command="wc -w /root/primes.txt && python3 --version"),
            call("call_4", "download", path="/root/primes.txt"),
        ),
        chat_completion(call("call_5", "fork", n=2)),
    ]
    for response in turns:
        message = response["choices"][0]["message"]
        messages.append(message)
        for tool_call in message["tool_calls"]:
            result = handler.openai_tool_result(tool_call)
            messages.append(result)
            print(f"--- {tool_call['function']['name']} ({result['tool_call_id']})\n{result['content']}")

    # The model reads the forks' ids from the last result and works in each.
    fork_ids = re.findall(r"sbx_[0-9a-f]{32}", messages[-1]["content"])[1:]
    final = chat_completion(*(
        call(f"call_{6 + i}", "run_code", sandbox_id=fid,
             code=f"sieve = bytearray([1]) * 10_000\nfor i in range(2, 100):\n    sieve[i*i::i] = bytes(len(sieve[i*i::i]))\n"
                  f"print('fork {i}:', sum(sieve[2:]) == len(primes))")
        for i, fid in enumerate(fork_ids)))
    for tool_call in final["choices"][0]["message"]["tool_calls"]:
        result = handler.openai_tool_result(tool_call)
        messages.append(result)
        print(f"--- run_code in a fork ({result['tool_call_id']})\n{result['content']}")

print(f"{len(messages)} messages to send back to the model")
