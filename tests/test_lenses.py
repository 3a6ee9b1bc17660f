"""Unit tests of the chunk lenses: provider types in, the same types out, only the text changed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from anthropic import types as at
from langchain_core.messages import AIMessageChunk
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseContentPartDoneEvent,
    ResponseOutputItemDoneEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from pydantic import BaseModel, ConfigDict, PrivateAttr

import streamops as so
import streamops._providers._lenses as lenses
from streamops import AnthropicLens, BytesLens, LangChainLens, LensError, OpenAIChatLens
from streamops.lowlevel import find_lens, register_lens
from streamops.testing import Fault

SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
REPLY = f"The key is {SECRET} so keep it. Mail bob"


def redact() -> so.Operator[str, str]:
    return so.redact(["openai_key", "email"])


def model(
    fmt: Any, reply: str = REPLY, *, chunking: Any = 5, **options: Any
) -> so.FakeStreamingModel:
    return so.FakeStreamingModel(reply, chunking=chunking, format=fmt, **options)


def dump(chunk: Any) -> str:
    if isinstance(chunk, dict):
        return json.dumps(chunk)
    text: str = chunk.model_dump_json()
    return text


# --------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "lens"),
    [
        ("openai", OpenAIChatLens),
        ("openai-dict", OpenAIChatLens),
        ("anthropic", AnthropicLens),
        ("anthropic-dict", AnthropicLens),
        ("langchain", LangChainLens),
    ],
)
def test_detection_picks_the_provider_lens(fmt: Any, lens: type) -> None:
    first = next(model(fmt).stream("hi"))
    assert type(find_lens(first)) is lens


def test_detection_of_bytes_and_responses_events() -> None:
    assert type(find_lens(b"x")) is BytesLens
    assert type(find_lens(bytearray(b"x"))) is BytesLens
    event = {"type": "response.created", "response": {}}
    assert type(find_lens(event)) is so.OpenAIResponsesLens


def test_unknown_chunk_type_says_how_to_register_a_lens() -> None:
    with pytest.raises(so.ChunkTypeError, match=r"chunk 1 has type float.*register_lens"):
        list(redact()(["a", 1.5]))
    with pytest.raises(TypeError, match="register_lens"):
        find_lens(object())


def test_a_registered_lens_handles_a_custom_chunk_type() -> None:
    class Msg:
        def __init__(self, text: str) -> None:
            self.text = text

    class MsgLens:
        def unwrap(self, chunk: Any, /) -> str:
            text: str = chunk.text
            return text

        def wrap(self, chunk: Any, texts: list[str], /) -> list[Any]:
            return [Msg("".join(texts))]

        def finish(self, texts: list[str], /) -> list[Any]:
            return [Msg("".join(texts))] if texts else []

    register_lens(lambda chunk: MsgLens() if isinstance(chunk, Msg) else None)
    out = list(redact()([Msg("mail a@b.co"), Msg(" now")]))
    assert [m.text for m in out] == ["mail ", "[EMAIL] ", "now"]  # "now" could start an email


# --------------------------------------------------------------------------
# OpenAI chat completions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["openai", "openai-dict"])
def test_openai_secret_split_across_chunks_never_appears(fmt: Any) -> None:
    source = list(model(fmt).stream("hi"))
    assert not any(SECRET in dump(c) for c in source[1:-2])  # it is split
    out = list(redact()(source))
    assert len(out) == len(source)  # one chunk out per chunk in
    assert all(type(c) is type(source[0]) for c in out)
    assert not any(SECRET[:12] in dump(c) for c in out)
    text = "".join(_content(c) for c in out)
    assert text == "The key is [OPENAI_KEY] so keep it. Mail bob"
    assert [_get(c, "id") for c in out] == [_get(c, "id") for c in source]
    # The finish chunk carries the text held to the end ("bob" could start an email).
    assert _content(out[-2]) == "bob"
    assert _get(_get(out[-2], "choices")[0], "finish_reason") == "stop"
    assert _get(out[-1], "usage") == _get(source[-1], "usage")
    assert _get(out[-1], "choices") == []


def _get(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def _content(chunk: Any) -> str:
    choices = _get(chunk, "choices")
    if not choices:
        return ""
    return _get(_get(choices[0], "delta"), "content") or ""


def test_openai_unchanged_chunks_are_the_same_objects() -> None:
    source = list(model("openai", "Hello there friend").stream("hi"))
    out = list(so.redact(["email"])(source))
    assert out[0] is source[0]  # the role chunk
    assert out[-1] is source[-1]  # usage chunk
    assert out[0].choices[0].delta.role == "assistant"


def chat_chunk(**delta: Any) -> ChatCompletionChunk:
    data = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return ChatCompletionChunk.model_validate(data)


def test_openai_tool_call_deltas_pass_through() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    args = {"index": 0, "function": {"arguments": '{"x": 1}'}}
    source = [chat_chunk(content="Calling a@b.co"), chat_chunk(tool_calls=[call])]
    source.append(chat_chunk(tool_calls=[args]))
    out = list(so.redact(["email"])(source))
    assert out[1] is source[1]  # the tool call's header: no text
    assert out[0].choices[0].delta.content == "Calling "
    # No finish chunk: the text held to the end comes in chunks of its own (the
    # rest of the arguments, ": 1}", waited: a number is complete at its end).
    assert out[3].choices[0].delta.content == "[EMAIL]"
    assert out[3].id == "c1"
    assert out[3].choices[0].finish_reason is None
    updates = list(so.parse_tool_calls()(out))
    assert updates[-1].arguments == {"x": 1}


def test_openai_changed_text_drops_its_logprobs() -> None:
    chunk = chat_chunk(content="a@b.co!")
    logprobs = {
        "content": [{"token": "a@b.co", "logprob": -0.1, "bytes": None, "top_logprobs": []}]
    }
    chunk = chunk.model_copy(
        update={
            "choices": [
                chunk.choices[0].model_copy(update={"logprobs": logprobs}),
            ]
        }
    )
    out = list(so.redact(["email"])([chunk]))
    assert out[0].choices[0].delta.content == "[EMAIL]!"
    assert out[0].choices[0].logprobs is None
    assert "a@b.co" not in out[0].model_dump_json()


def test_openai_several_choices_are_refused() -> None:
    data = chat_chunk(content="x").model_dump()
    data["choices"][0]["index"] = 1
    with pytest.raises(LensError, match=r"chunk 0: choice index 1.*n=1"):
        list(redact()([data]))


def test_openai_text_in_the_finish_chunk_goes_out_before_the_finish() -> None:
    source = [chat_chunk(content="Hi "), chat_chunk(content="there ")]
    last = source[1].model_copy(
        update={"choices": [source[1].choices[0].model_copy(update={"finish_reason": "length"})]}
    )
    out = list(so.redact(["email"])([source[0], last]))
    assert [(c.choices[0].delta.content, c.choices[0].finish_reason) for c in out] == [
        ("Hi ", None),
        ("there ", "length"),  # its own text, then what was held, then the finish
    ]


def test_openai_disconnected_stream_flushes_into_a_new_chunk() -> None:
    m = model("openai", "Mail bob", chunking="word", faults=[Fault.disconnect_at(2)])
    out = list(so.redact(["email"])(m.stream("hi")))
    assert [c.choices[0].delta.content for c in out] == ["", "", "Mail ", "bob"]
    assert out[-1].choices[0].finish_reason is None
    assert out[-1].id == "chatcmpl-fake0"


def test_openai_budget_stop_keeps_chunk_types() -> None:
    out = list(so.budget(max_tokens=3)(model("openai", "one two three four five six").stream()))
    assert all(isinstance(c, ChatCompletionChunk) for c in out)
    assert "".join(_content(c) for c in out) == "one two three"


async def test_openai_async_stream() -> None:
    stream = redact()(model("openai").astream("hi"))
    out = [c async for c in stream]
    assert "".join(_content(c) for c in out).startswith("The key is [OPENAI_KEY]")
    assert stream.report.stop_reason == "complete"


# --------------------------------------------------------------------------
# OpenAI Responses API
# --------------------------------------------------------------------------

_IDS = {"item_id": "msg_1", "output_index": 0, "content_index": 0}


def responses_events(deltas: list[str]) -> list[Any]:
    full = "".join(deltas)
    part = {"type": "output_text", "text": full, "annotations": [], "logprobs": []}
    item: dict[str, Any] = {"type": "message", "id": "msg_1", "role": "assistant"}
    item["status"] = "completed"
    item["content"] = [part]
    usage = {
        "input_tokens": 3,
        "output_tokens": 9,
        "total_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    response = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1.0,
        "model": "gpt-x",
        "output": [item],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }
    events: list[Any] = [
        ResponseTextDeltaEvent.model_validate(
            {"type": "response.output_text.delta", "delta": d, "logprobs": []}
            | _IDS
            | {"sequence_number": i}
        )
        for i, d in enumerate(deltas)
    ]
    n = len(deltas)
    events += [
        ResponseTextDoneEvent.model_validate(
            {"type": "response.output_text.done", "text": full, "logprobs": []}
            | _IDS
            | {"sequence_number": n}
        ),
        ResponseContentPartDoneEvent.model_validate(
            {"type": "response.content_part.done", "part": part} | _IDS | {"sequence_number": n}
        ),
        ResponseOutputItemDoneEvent.model_validate(
            {"type": "response.output_item.done", "item": item, "output_index": 0}
            | {"sequence_number": n + 1}
        ),
        ResponseCompletedEvent.model_validate(
            {"type": "response.completed", "response": response, "sequence_number": n + 2}
        ),
    ]
    return events


def test_responses_events_rewrite_every_copy_of_the_text() -> None:
    deltas = ["The key is sk-pr", "oj-4f9a8b7c6d5e4f3a", "2b1c0d9e8f7a6b5c", " ok. Mail bob"]
    source = responses_events(deltas)
    out = list(redact()(source))
    assert [type(e) for e in out[-4:]] == [type(e) for e in source[-4:]]
    assert not any("sk-proj" in dump(e) for e in out)
    released = "".join(e.delta for e in out if e.type == "response.output_text.delta")
    assert released == "The key is [OPENAI_KEY] ok. Mail bob"
    assert out[-4].text == released
    assert out[-3].part.text == released
    assert out[-2].item.content[0].text == released
    completed = out[-1]
    assert completed.response.output_text == released
    assert completed.response.usage.total_tokens == 12
    assert lenses._usage(completed) == lenses._usage(source[-1])
    usage = lenses._usage(completed)
    assert usage is not None
    assert usage["total_tokens"] == 12


def test_responses_other_events_pass_through() -> None:
    created = {"type": "response.created", "response": {"id": "r1"}, "sequence_number": 0}
    args: dict[str, Any] = {
        "type": "response.function_call_arguments.delta",
        "item_id": "fc_1",
        "output_index": 1,
        "delta": '{"a": "b"}',
        "sequence_number": 5,
    }
    out = list(redact()([created, args]))
    assert out[0] is created
    # Arguments are a channel: the same text, in order ("}" after the last string
    # waits for the end of the arguments), with sequence numbers still increasing.
    assert "".join(e["delta"] for e in out[1:]) == args["delta"]
    assert [e["sequence_number"] for e in out] == [0, 5, 6]


# --------------------------------------------------------------------------
# Anthropic
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["anthropic", "anthropic-dict"])
def test_anthropic_events_keep_types_and_metadata(fmt: Any) -> None:
    source = list(model(fmt).stream("hi"))
    out = list(redact()(source))
    # one more delta, for the text held to the end, just before the block's stop
    assert out[:-4] == [redact_free(e, o) for e, o in zip(source[:-3], out, strict=False)]
    assert [_get(e, "type") for e in out[-4:]] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert {type(e) for e in out} == {type(e) for e in source}
    assert not any(SECRET[:12] in dump(e) for e in out)
    deltas = [e for e in out if _get(e, "type") == "content_block_delta"]
    text = "".join(_get(_get(e, "delta"), "text") for e in deltas)
    assert text == "The key is [OPENAI_KEY] so keep it. Mail bob"
    # the held "bob" arrives before the block's stop, in one more delta
    assert _get(_get(deltas[-1], "delta"), "text") == "bob"
    assert out[-3:] == source[-3:]  # content_block_stop, message_delta (usage), message_stop


def test_anthropic_held_text_is_flushed_in_its_own_block_before_the_tool_call() -> None:
    """Issue 15: held text used to come out in a new block after the tool call."""
    raw: list[dict[str, Any]] = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "bob"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
        },
        {"type": "content_block_stop", "index": 1},
        {"type": "message_stop"},
    ]
    adapter: dict[str, Any] = {
        "content_block_start": at.RawContentBlockStartEvent,
        "content_block_delta": at.RawContentBlockDeltaEvent,
        "content_block_stop": at.RawContentBlockStopEvent,
        "message_stop": at.RawMessageStopEvent,
    }
    source = [adapter[d["type"]].model_validate(d) for d in raw]
    out = list(so.redact(["email"])(source))
    kinds = [(e.type, e.index if hasattr(e, "index") else None) for e in out]
    assert kinds == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),  # ": 1}": a number is complete at its end
        ("content_block_stop", 1),
        ("message_stop", None),
    ]
    assert isinstance(out[2], at.RawContentBlockDeltaEvent)
    assert out[2].delta.text == "bob"  # type: ignore[union-attr]
    assert out[4] == source[3]  # the tool_use block's start, unchanged
    updates = list(so.parse_tool_calls()(out))
    assert updates[-1].arguments == {"a": 1}


def test_anthropic_helper_events_are_refused() -> None:
    events = [{"type": "message_start", "message": {}}, {"type": "text", "text": "hi"}]
    with pytest.raises(LensError, match=r"chunk 1: Anthropic 'text' helper event"):
        list(redact()(events))


def redact_free(source: Any, out: Any) -> Any:
    """``out`` if it only differs from ``source`` by its delta text, else ``source``."""
    if _get(source, "type") == "content_block_delta":
        return out
    return source


# --------------------------------------------------------------------------
# LangChain
# --------------------------------------------------------------------------


def test_langchain_chunks_merge_and_keep_usage() -> None:
    source = list(model("langchain").stream("hi"))
    out = list(redact()(source))
    assert len(out) == len(source)
    assert all(isinstance(c, AIMessageChunk) for c in out)
    merged = out[0]
    for chunk in out[1:]:
        merged = merged + chunk
    assert merged.content == "The key is [OPENAI_KEY] so keep it. Mail bob"
    assert out[-1].content == "bob"  # the held text, attached to the final chunk
    assert out[-1].usage_metadata == source[-1].usage_metadata
    assert out[-1].response_metadata["finish_reason"] == "stop"
    assert {c.id for c in out} == {source[0].id}


def test_langchain_content_blocks() -> None:
    blocks: list[Any] = [
        {"type": "text", "text": "mail a@b.co", "index": 0},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}, "index": 1},
    ]
    out = list(so.redact(["email"])([AIMessageChunk(content=blocks, id="r1")]))
    # The text block ends where the tool_use block begins: its held text goes
    # there, in a text block of its own index, before the tool call.
    assert out == [
        AIMessageChunk(
            content=[
                {"type": "text", "text": "mail ", "index": 0},
                {"type": "text", "text": "[EMAIL]", "index": 0},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {}, "index": 1},
            ],
            id="r1",
        )
    ]


# --------------------------------------------------------------------------
# bytes
# --------------------------------------------------------------------------


def test_bytes_multibyte_character_split_across_chunks() -> None:
    data = "naïve café ☕ 𝄞".encode()
    pieces = [data[i : i + 1] for i in range(len(data))]
    out = list(so.redact(["email"])(pieces))
    assert all(isinstance(p, bytes) for p in out)
    assert len(out) == len(pieces)
    assert b"".join(out) == data


def test_bytes_invalid_utf8_is_an_error_or_replaced() -> None:
    with pytest.raises(LensError, match=r"chunk 1: invalid UTF-8.*errors=\"replace\""):
        list(redact()([b"ok", b"\xff"]))
    with pytest.raises(LensError, match="invalid UTF-8"):
        list(redact()([b"ok \xe2\x98"]))  # incomplete at the end
    lens = BytesLens(errors="replace")
    got = [lens.unwrap(b"a\xff"), lens.unwrap(b"\xe2\x98")]
    assert got == ["a\ufffd", ""]
    assert lens.finish([]) == ["\ufffd".encode()]
    with pytest.raises(ValueError, match="errors must be"):
        BytesLens(errors="ignore")  # type: ignore[arg-type]


def test_bytes_lens_rejects_a_mixed_stream() -> None:
    lens = BytesLens()
    lens.unwrap(b"a")
    with pytest.raises(so.ChunkTypeError, match="chunk 1 has type int"):
        lens.unwrap(3)


# --------------------------------------------------------------------------
# usage
# --------------------------------------------------------------------------


def test_usage_of_provider_chunks() -> None:
    openai = list(model("openai", "one two").stream("hi"))
    assert lenses._usage(openai[-1]) == {
        "completion_tokens": 2,
        "prompt_tokens": 1,
        "total_tokens": 3,
    }
    assert lenses._usage(openai[0]) is None
    anthropic = list(model("anthropic-dict", "one two").stream("hi"))
    assert lenses._usage(anthropic[0]) == {"input_tokens": 1, "output_tokens": 0}
    assert lenses._usage(anthropic[-2]) == {"output_tokens": 2}
    langchain = list(model("langchain", "one two").stream("hi"))
    assert lenses._usage(langchain[-1]) == {
        "input_tokens": 1,
        "output_tokens": 2,
        "total_tokens": 3,
    }
    assert lenses._usage("text") is None


def test_async_bytes_stream() -> None:
    async def source() -> Any:
        for piece in (b"caf\xc3", b"\xa9"):
            yield piece

    async def main() -> list[bytes]:
        return [p async for p in so.redact(["email"])(source())]

    assert b"".join(asyncio.run(main())) == "café".encode()


# --------------------------------------------------------------------------
# rebuilding pydantic chunks: the fast copy is model_copy(update=...)
# --------------------------------------------------------------------------


class _Plain(BaseModel):
    text: str = ""
    n: int = 0


class _Extras(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str = ""


class _Private(BaseModel):
    text: str = ""
    _seen: int = PrivateAttr(default=0)
    _later: int = PrivateAttr()  # unset: model_copy drops it


class _OwnCopy(BaseModel):
    text: str = ""

    def model_copy(self, *, update: Any = None, deep: bool = False) -> Any:
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__["text"] = "own " + copied.text
        return copied


def _state(m: BaseModel) -> tuple[Any, ...]:
    return (
        type(m),
        m.model_dump(),
        m.model_dump(exclude_unset=True),
        m.model_dump_json(),
        m.model_dump_json(exclude_unset=True),
        m.model_fields_set,
        m.__dict__,
        m.__pydantic_extra__,
        m.__pydantic_private__,
    )


def _openai_chunk() -> ChatCompletionChunk:
    chunk = next(c for c in model("openai").stream() if c.choices)
    assert isinstance(chunk, ChatCompletionChunk)
    return chunk


_PRIVATE = _Private(text="p")
_PRIVATE._seen = 3


@pytest.mark.parametrize(
    ("original", "update"),
    [
        pytest.param(_Plain(text="a"), {"text": "b"}, id="a field, another unset"),
        pytest.param(_Plain(), {"n": 2}, id="a default made explicit"),
        pytest.param(_Plain(text="a"), {"nope": 1}, id="an unknown key, extras forbidden"),
        pytest.param(
            _Extras.model_validate({"text": "a", "tag": 1}), {"text": "b"}, id="extras kept"
        ),
        pytest.param(_Extras(text="a"), {"tag": 2}, id="an unknown key becomes an extra"),
        pytest.param(_Extras.model_construct(text="a"), {"text": "b"}, id="constructed"),
        pytest.param(_PRIVATE, {"text": "q"}, id="private attributes"),
        pytest.param(_openai_chunk(), {"choices": []}, id="ChatCompletionChunk"),
        pytest.param(_openai_chunk().choices[0], {"logprobs": None}, id="Choice"),
        pytest.param(_openai_chunk().choices[0].delta, {"content": "x"}, id="ChoiceDelta"),
        pytest.param(AIMessageChunk(content="a", id="m1"), {"content": "b"}, id="AIMessageChunk"),
    ],
)
def test_rebuilt_pydantic_chunk_equals_model_copy(original: BaseModel, update: Any) -> None:
    before = _state(original)
    fast = lenses._replace(original, **update)
    assert _state(fast) == _state(original.model_copy(update=update))
    assert _state(original) == before  # the upstream's object is untouched
    # The copy owns its containers, as model_copy's does.
    for name in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__"):
        mine, theirs = getattr(fast, name), getattr(original, name)
        assert mine is None or mine is not theirs


def test_a_model_with_its_own_copy_is_copied_by_it() -> None:
    assert lenses._replace(_OwnCopy(text="a"), text="b").text == "own b"


def test_a_rebuilt_sdk_chunk_is_still_a_live_model() -> None:
    chunk = _openai_chunk()
    fast = lenses._replace(chunk, id="other")
    fast.model = "changed"  # pydantic's own __setattr__ works on the copy ...
    assert (fast.id, fast.model) == ("other", "changed")
    assert chunk.model != "changed"  # ... and leaves the original alone
    assert ChatCompletionChunk.model_validate(fast.model_dump()) == fast
