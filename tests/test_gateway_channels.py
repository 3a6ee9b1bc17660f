"""Every text channel through the gateway: reasoning and tool-call arguments, split secrets.

The upstream is the shared `FakeOpenAIServer` with scripted wire events
(`events=`: OpenAI chat chunks with reasoning and tool calls, Anthropic
thinking and tool_use blocks), read back through the gateway with the real SDKs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from helpers import close_sdk_clients  # noqa: F401 - the fixture, used by pytestmark

from streamops._gateway import load_config
from streamops._gateway._thread import GatewayServer
from streamops.testing import FakeOpenAIServer
from streamops.testing._server import Route

pytestmark = pytest.mark.usefixtures("close_sdk_clients")

SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
HALF = len(SECRET) // 2
USER: Any = [{"role": "user", "content": "hi"}]


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-script",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


CHAT = [
    chat_chunk({"role": "assistant", "reasoning_content": f"the key is {SECRET[:HALF]}"}),
    chat_chunk({"reasoning_content": f"{SECRET[HALF:]} so"}),
    chat_chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "send", "arguments": '{"token": "' + SECRET[:HALF]},
                }
            ]
        }
    ),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": SECRET[HALF:] + '"}'}}]}),
    chat_chunk({}, "tool_calls"),
]

ANTHROPIC: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_script",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "m",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 0},
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "use " + SECRET[:HALF]},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": SECRET[HALF:] + " now"},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "sig"},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"token": "' + SECRET[:HALF]},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": SECRET[HALF:] + '"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 30},
    },
    {"type": "message_stop"},
]


@contextlib.contextmanager
def gateway() -> Iterator[GatewayServer]:
    scripts: dict[Route, list[dict[str, Any]]] = {
        "chat.completions": CHAT,
        "messages": ANTHROPIC,
    }
    with FakeOpenAIServer("unused", events=scripts) as up:
        config = load_config(["--upstream", up.base_url, "--policy", "safe-chat", "--port", "0"])
        with GatewayServer(config) as gw:
            yield gw


def test_openai_reasoning_and_tool_arguments_are_redacted_across_chunks() -> None:
    with gateway() as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
        whole = client.chat.completions.create(model="m", messages=USER)
    raw = json.dumps([c.model_dump() for c in chunks]) + whole.model_dump_json()
    assert SECRET[:HALF] not in raw
    assert SECRET[HALF:] not in raw
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks
    )
    assert reasoning == "the key is [OPENAI_KEY] so"
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        for tc in c.choices[0].delta.tool_calls or ()
        if tc.function is not None
    )
    assert json.loads(args) == {"token": "[OPENAI_KEY]"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    calls = whole.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].id == "call_1"
    assert json.loads(calls[0].function.arguments) == {"token": "[OPENAI_KEY]"}  # type: ignore[union-attr]


def test_anthropic_thinking_and_tool_input_are_redacted_across_chunks() -> None:
    with gateway() as gw:
        client = anthropic.Anthropic(base_url=gw.root_url, api_key="x", max_retries=0)
        with client.messages.stream(model="m", max_tokens=100, messages=USER) as stream:
            events = list(stream)
            final = stream.get_final_message()
        whole = client.messages.create(model="m", max_tokens=100, messages=USER)
    raw = json.dumps([e.model_dump() for e in events]) + whole.model_dump_json()
    assert SECRET[:HALF] not in raw
    assert SECRET[HALF:] not in raw
    for message in (final, whole):
        thinking, tool = message.content
        assert thinking.type == "thinking"
        assert thinking.thinking == "use [OPENAI_KEY] now"
        assert tool.type == "tool_use"
        assert tool.input == {"token": "[OPENAI_KEY]"}
        assert message.stop_reason == "tool_use"


def _response(status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "resp_script",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "m",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


CALL = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "send"}
ARGS = '{"token": "' + SECRET + '"}'
RESPONSES: list[dict[str, Any]] = [
    {"type": "response.created", "sequence_number": 0, "response": _response("in_progress", [])},
    {
        "type": "response.output_item.added",
        "sequence_number": 1,
        "output_index": 0,
        "item": {**CALL, "arguments": "", "status": "in_progress"},
    },
    {
        "type": "response.function_call_arguments.delta",
        "sequence_number": 2,
        "item_id": "fc_1",
        "output_index": 0,
        "delta": ARGS[: len(ARGS) // 2],
    },
    {
        "type": "response.function_call_arguments.delta",
        "sequence_number": 3,
        "item_id": "fc_1",
        "output_index": 0,
        "delta": ARGS[len(ARGS) // 2 :],
    },
    {
        "type": "response.function_call_arguments.done",
        "sequence_number": 4,
        "item_id": "fc_1",
        "output_index": 0,
        "arguments": ARGS,
    },
    {
        "type": "response.output_item.done",
        "sequence_number": 5,
        "output_index": 0,
        "item": {**CALL, "arguments": ARGS, "status": "completed"},
    },
    {
        "type": "response.completed",
        "sequence_number": 6,
        "response": _response("completed", [{**CALL, "arguments": ARGS, "status": "completed"}]),
    },
]


def test_responses_function_call_arguments_are_redacted_in_deltas_and_done_events() -> None:
    with (
        FakeOpenAIServer("unused", events={"responses": RESPONSES}) as up,
        GatewayServer(
            load_config(["--upstream", up.base_url, "--policy", "safe-chat", "--port", "0"])
        ) as gw,
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        events = list(client.responses.create(model="m", input="hi", stream=True))
    raw = json.dumps([e.model_dump() for e in events])
    assert SECRET[:HALF] not in raw
    assert SECRET[HALF:] not in raw
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(deltas) == {"token": "[OPENAI_KEY]"}
    final = events[-1]
    assert final.type == "response.completed"
    item: Any = final.response.output[0]
    assert json.loads(item.arguments) == {"token": "[OPENAI_KEY]"}
