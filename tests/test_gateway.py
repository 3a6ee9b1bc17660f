"""`streamops serve`: real openai and anthropic SDK clients through the gateway to a real upstream.

The upstream is `streamops.testing.FakeOpenAIServer` (text answers, faults,
records of early closes) or, for reasoning and tool-call channels it does not
produce, a scripted SSE server in this module. Everything runs on loopback
sockets on ephemeral ports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai

import streamops as so
from streamops._gateway import GatewayConfig, load_config
from streamops._gateway._thread import GatewayServer
from streamops.testing import FakeOpenAIServer

SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
ANSWER = f"Sure. The key is {SECRET} and the mail is ann@example.com, bye."
USER: Any = [{"role": "user", "content": "hi"}]


def fake(text: str = ANSWER, **options: Any) -> FakeOpenAIServer:
    options.setdefault("chunking", 5)  # the secret is split over several chunks
    model = so.FakeStreamingModel(text, format="openai-dict", **options)
    return FakeOpenAIServer(model)


def config(*args: str) -> GatewayConfig:
    return load_config([*args, "--port", "0"])


@contextlib.contextmanager
def gateway(*args: str) -> Iterator[GatewayServer]:
    with GatewayServer(config(*args)) as server:
        yield server


def keys_file(tmp_path: Path, **keys: dict[str, Any]) -> str:
    lines = []
    for name, entry in keys.items():
        lines.append(f"[keys.{name}]")
        for field, value in entry.items():
            if field == "key":
                field, value = "sha256", hashlib.sha256(value.encode()).hexdigest()
            lines.append(f"{field} = {json.dumps(value)}")
    path = tmp_path / "keys.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def chat_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --------------------------------------------------------------------------
# the three wires, stream and non-stream, with the real SDKs
# --------------------------------------------------------------------------


def test_openai_sync_chat_stream_redacts_across_chunks_and_keeps_ids_and_usage() -> None:
    with fake() as up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    text = chat_text(chunks)
    assert SECRET not in text
    assert "ann@example.com" not in text
    assert text == "Sure. The key is [OPENAI_KEY] and the mail is [EMAIL], bye."
    assert {c.id for c in chunks} == {"chatcmpl-fake0"}
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_openai_chat_stream_without_include_usage_has_no_usage_chunk() -> None:
    with fake() as up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_openai_async_chat_stream_and_non_stream() -> None:
    async with fake() as up:
        with gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
            async with openai.AsyncOpenAI(
                base_url=gw.base_url, api_key="x", max_retries=0
            ) as client:
                stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
                chunks = [c async for c in stream]
                whole = await client.chat.completions.create(model="m", messages=USER)
    assert chat_text(chunks) == "Sure. The key is [OPENAI_KEY] and the mail is [EMAIL], bye."
    assert whole.choices[0].message.content == chat_text(chunks)
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None
    assert whole.usage.completion_tokens > 0
    assert whole.id == "chatcmpl-fake1"


def test_anthropic_stream_and_non_stream() -> None:
    with fake() as up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        client = anthropic.Anthropic(base_url=gw.root_url, api_key="x", max_retries=0)
        with client.messages.stream(model="m", max_tokens=100, messages=USER) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        whole = client.messages.create(model="m", max_tokens=100, messages=USER)
    assert text == "Sure. The key is [OPENAI_KEY] and the mail is [EMAIL], bye."
    assert final.stop_reason == "end_turn"
    assert final.id == "msg_fake0"
    assert whole.content[0].type == "text"
    assert whole.content[0].text == text
    assert whole.usage.output_tokens > 0


async def test_openai_responses_stream_and_non_stream() -> None:
    async with fake() as up:
        with gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
            async with openai.AsyncOpenAI(
                base_url=gw.base_url, api_key="x", max_retries=0
            ) as client:
                events = [
                    e
                    async for e in await client.responses.create(model="m", input="hi", stream=True)
                ]
                whole = await client.responses.create(model="m", input="hi")
                async with client.responses.stream(model="m", input="hi") as helper:
                    async for _ in helper:
                        pass
                    helped = await helper.get_final_response()
    expected = "Sure. The key is [OPENAI_KEY] and the mail is [EMAIL], bye."
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == expected
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == expected
    seqs = [e.sequence_number for e in events]
    assert seqs == sorted(set(seqs))
    assert whole.output_text == expected
    assert helped.output_text == expected


def test_models_and_healthz_pass_through() -> None:
    with fake() as up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        assert httpx.get(gw.root_url + "/healthz").json() == {"status": "ok"}
        # The fake upstream has no /v1/models: its 404 passes through unchanged.
        assert httpx.get(gw.base_url + "/models").status_code == 404
        assert httpx.get(gw.root_url + "/playground").status_code == 404  # off by default
