"""LiteLLM: the lens over real ModelResponseStream chunks and the proxy guardrail.

Offline: litellm talks to our FakeOpenAIServer over loopback (its OpenAI
provider, ``api_base=``), and its price map is the bundled copy
(``LITELLM_LOCAL_MODEL_COST_MAP``, set before litellm is imported).
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from litellm.proxy._types import UserAPIKeyAuth
from litellm.types.guardrails import GuardrailEventHooks
from litellm.types.utils import Delta, ModelResponse, ModelResponseStream, StreamingChoices

import streamops as so
from streamops.litellm import LiteLLMLens, StreamOpsGuardrail
from streamops.testing import FakeOpenAIServer, FakeStreamingModel

# litellm's own types make pydantic warn (TypedDicts with ReadOnly items) on first use.
# ...and litellm reads a pydantic attribute pydantic 2.11 deprecated, for stream usage.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Items? .*ReadOnly. qualifier:UserWarning"),
    pytest.mark.filterwarnings("ignore:Accessing the 'model_(computed_)?fields' attribute"),
]

EMAIL = "ann.lee@example.com"
REPLY = f"Write to {EMAIL} today, please."
REDACTED = "Write to [EMAIL] today, please."


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    model = FakeStreamingModel(REPLY, chunking="char", format="openai-dict")
    with FakeOpenAIServer(model) as fake:
        yield fake


def call(server: FakeOpenAIServer, **options: Any) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o",
        "messages": [{"role": "user", "content": "who?"}],
        "api_base": server.base_url,
        "api_key": "sk-test",
        **options,
    }


def content(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_lens_over_a_real_litellm_stream(server: FakeOpenAIServer) -> None:
    response = await litellm.acompletion(
        **call(server, stream=True, stream_options={"include_usage": True})
    )
    stream = so.redact()(response)
    chunks = [c async for c in stream]
    assert all(isinstance(c, ModelResponseStream) for c in chunks)
    assert content(chunks) == REDACTED
    assert EMAIL not in repr(chunks)
    usage = stream.report["usage"]
    assert isinstance(usage, so.ProviderUsage)
    assert usage.completion_tokens is not None
    assert usage.completion_tokens > 0


def test_lens_is_chosen_for_litellm_chunks() -> None:
    from streamops.lowlevel import find_lens

    chunk = ModelResponseStream(choices=[StreamingChoices(delta=Delta(content="a"))])
    assert isinstance(find_lens(chunk), LiteLLMLens)


def test_thinking_blocks_mirror_the_released_reasoning() -> None:
    def chunk(text: str, finish: str | None = None) -> ModelResponseStream:
        block: Any = {"type": "thinking", "thinking": text, "signature": "sig"}
        delta = Delta(reasoning_content=text, thinking_blocks=[block])
        return ModelResponseStream(choices=[StreamingChoices(delta=delta, finish_reason=finish)])

    out = list(so.redact(["email"])([chunk("think of ann.lee@exa"), chunk("mple.com ok", "stop")]))
    reasoning = "".join(c.choices[0].delta.reasoning_content or "" for c in out)
    blocks: list[Any] = [b for c in out for b in c.choices[0].delta.thinking_blocks or ()]
    thinking = "".join(b["thinking"] for b in blocks)
    assert reasoning == "think of [EMAIL] ok"
    assert thinking == reasoning
    assert EMAIL[:8] not in thinking.replace("[EMAIL]", "")


# -- the guardrail -------------------------------------------------------------


async def test_guardrail_redacts_a_value_split_across_chunks(server: FakeOpenAIServer) -> None:
    """LiteLLM issue #41611: per-chunk guardrails miss a value split across chunks."""
    reports: list[so.StreamReport] = []
    guard = StreamOpsGuardrail(so.redact(), on_report=reports.append)
    assert guard.should_run_guardrail(data={}, event_type=GuardrailEventHooks.post_call)
    response = await litellm.acompletion(**call(server, stream=True))
    hooked = guard.async_post_call_streaming_iterator_hook(
        user_api_key_dict=UserAPIKeyAuth(), response=response, request_data={}
    )
    chunks = [c async for c in hooked]
    assert all(isinstance(c, ModelResponseStream) for c in chunks)
    assert content(chunks) == REDACTED
    # The email arrived one character per chunk: no chunk held more than a piece of it.
    assert max(len(c.choices[0].delta.content or "") for c in chunks if c.choices) < len(EMAIL)
    assert reports[0].stop_reason == so.StopReason.COMPLETE


async def test_guardrail_with_a_policy_budget_closes_the_upstream() -> None:
    # Real gaps between chunks on the server: the cut reaches it before it is done.
    model = FakeStreamingModel("one two three four five six", format="openai-dict", delay=0.2)
    with FakeOpenAIServer(model) as fake:
        guard = StreamOpsGuardrail(so.Policy.from_dict({"budget": {"max_tokens": 2}}))
        response = await litellm.acompletion(**call(fake, stream=True))
        hooked = guard.async_post_call_streaming_iterator_hook(
            user_api_key_dict=UserAPIKeyAuth(), response=response, request_data={}
        )
        chunks = [c async for c in hooked]
        for _ in range(100):  # the server notices the closed connection at its next write
            if model.last_call.finalized:
                break
            await asyncio.sleep(0.05)
    assert content(chunks) == "one two"
    assert model.last_call.closed_early


async def test_guardrail_on_a_whole_response(server: FakeOpenAIServer) -> None:
    guard = StreamOpsGuardrail(so.redact())
    response = await litellm.acompletion(**call(server))
    assert isinstance(response, ModelResponse)
    out = await guard.async_post_call_success_hook({}, UserAPIKeyAuth(), response)
    assert out.choices[0].message.content == REDACTED


async def test_guardrail_redacts_whole_tool_arguments() -> None:
    guard = StreamOpsGuardrail(so.redact(["email"]))
    response = ModelResponse(
        choices=[
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "send", "arguments": f'{{"to": "{EMAIL}"}}'},
                        }
                    ],
                }
            }
        ]
    )
    out = await guard.async_post_call_success_hook({}, UserAPIKeyAuth(), response)
    assert out.choices[0].message.tool_calls[0].function.arguments == '{"to": "[EMAIL]"}'


def test_guardrail_bad_arguments() -> None:
    with pytest.raises(TypeError, match="streamops operator"):
        StreamOpsGuardrail(42)
    with pytest.raises(TypeError, match="on_report must be callable"):
        StreamOpsGuardrail(so.redact(), on_report="log")


def test_example_litellm() -> None:
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "litellm_guardrail.py"
    assert runpy.run_path(str(path))["main"]() == REDACTED


async def test_guardrail_on_a_whole_response_redacts_its_thinking_blocks() -> None:
    from litellm.types.utils import Choices, Message

    secret = "ann@example.com"
    message = Message(
        content=f"mail {secret}",
        reasoning_content=f"think {secret}",
        thinking_blocks=[
            {"type": "thinking", "thinking": f"think {secret}", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
        ],
    )
    response = ModelResponse(choices=[Choices(message=message, index=0, finish_reason="stop")])
    guard = StreamOpsGuardrail(so.redact(["email"]))
    out = await guard.async_post_call_success_hook({}, UserAPIKeyAuth(), response)
    got = out.choices[0].message
    assert got.reasoning_content == "think [EMAIL]"
    assert got.thinking_blocks == [
        {"type": "thinking", "thinking": "think [EMAIL]", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
    ]
