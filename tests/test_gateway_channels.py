"""Every text channel through the gateway: reasoning and tool-call arguments, split secrets.

`FakeOpenAIServer` streams answer text only, so this module serves scripted
provider events (OpenAI chat chunks, Anthropic events) from a small Starlette
app on a loopback socket, and reads them back with the real SDKs.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from streamops._gateway import load_config
from streamops._gateway._thread import GatewayServer

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


async def chat(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for chunk in CHAT:
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


async def messages(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for event in ANTHROPIC:
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

    return StreamingResponse(body(), media_type="text/event-stream")


@contextlib.contextmanager
def scripted_upstream() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    while not server.started:
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@contextlib.contextmanager
def gateway() -> Iterator[GatewayServer]:
    with scripted_upstream() as url:
        config = load_config(["--upstream", url, "--policy", "safe-chat", "--port", "0"])
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
