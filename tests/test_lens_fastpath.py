"""OpenAIChatLens's fast ways (SDK objects, wire dicts) give exactly what its general way gives.

``OpenAIChatLens.process`` takes the common chunk (one choice, text fields
only, no finish reason) the fast way: it feeds the same fields to the same
channels in the same order and rebuilds a changed chunk with the steps of
``model_copy(update=...)`` inline. These tests run the same streams through
the lens and through its general way alone, whose rebuilt objects come from
pydantic's own ``model_copy``, and compare every chunk that comes out: type,
``__dict__`` (recursively), ``model_fields_set``, extras, private attributes,
and which chunks are passed through as the very objects that came in.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta
from pydantic import BaseModel, PrivateAttr

import streamops as so
import streamops._providers._lenses as lenses
from streamops import OpenAIChatLens

SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
ANSWER = (
    f"Sure. Export your key (mine was {SECRET}) and send a GET to /v1/items."
    " Questions go to maria.lopez@example.com; retry on HTTP 429, call 555-0100."
)


class _General(OpenAIChatLens):
    """The lens with its fast ways never learnt: every chunk goes the general way."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()
        self._learn = False


def _model_copy(obj: Any, **changes: Any) -> Any:
    """The reference rebuild: pydantic's own ``model_copy`` (dicts: a merged dict)."""
    if isinstance(obj, BaseModel):
        return obj.model_copy(update=changes)
    assert type(obj) is dict
    return {**obj, **changes}


def _state(value: Any) -> Any:
    """Everything observable of a chunk, recursively (models by their parts, not by ==)."""
    if isinstance(value, BaseModel):
        return (
            type(value),
            _state(value.__dict__),
            value.__pydantic_fields_set__,
            _state(value.__pydantic_extra__),
            value.__pydantic_private__,
        )
    if type(value) is dict:
        return ("dict", [(k, _state(v)) for k, v in value.items()])  # (key order too)
    if type(value) is list:
        return ("list", [_state(v) for v in value])
    return (type(value), value)


def _dump(chunk: Any) -> str:
    return json.dumps(chunk) if isinstance(chunk, dict) else chunk.model_dump_json()


Operators = Callable[[], so.Operator[Any, Any]]
OPERATORS: dict[str, Operators] = {
    "redact": lambda: so.redact(),
    "redact email": lambda: so.redact(["email"]),
    "redact | budget": lambda: so.redact() | so.budget(max_tokens=12),  # stops the stream
    "redact twice": lambda: so.redact(["email"]) | so.redact(),
}


def _compare(
    source: list[Any], operators: Operators, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Any], int]:
    """Run ``source`` the fast way and the general way; assert the outputs are the same.

    Returns the fast way's output and how many chunks it took the fast way.
    """
    before = [_dump(c) for c in source]
    taken = 0
    fast_objects, fast_dicts = OpenAIChatLens._fast, OpenAIChatLens._fast_dict

    def spy_objects(self: Any, shape: Any, chunk: Any, channels: Any) -> Any:
        nonlocal taken
        out = fast_objects(self, shape, chunk, channels)
        taken += out is not None
        return out

    def spy_dicts(self: Any, chunk: Any, channels: Any) -> Any:
        nonlocal taken
        out = fast_dicts(self, chunk, channels)
        taken += out is not None
        return out

    with monkeypatch.context() as patch:
        patch.setattr(OpenAIChatLens, "_fast", spy_objects)
        patch.setattr(OpenAIChatLens, "_fast_dict", spy_dicts)
        stream = operators()(source)
        fast = list(stream)
        fast_report = _summary(stream.report)
    with monkeypatch.context() as patch:
        patch.setattr(lenses, "_replace", _model_copy)
        stream = operators()(source, lens=lambda chunk: _General())
        general = list(stream)
        general_report = _summary(stream.report)

    assert [_state(c) for c in fast] == [_state(c) for c in general]
    # The same texts released in the same order (fields fed in the same order).
    assert fast_report == general_report
    assert [_dump(c) for c in fast] == [_dump(c) for c in general]
    # The chunks passed through unchanged are the ones that came in, on both ways.
    ids = {id(c) for c in source}
    assert [id(c) in ids for c in fast] == [id(c) in ids for c in general]
    assert [_dump(c) for c in source] == before  # the upstream's chunks are untouched
    for out in fast:  # a rebuilt chunk owns its containers, as model_copy's does
        if isinstance(out, BaseModel) and id(out) not in ids:
            _assert_owns(out, source)
    return fast, taken


def _summary(report: so.StreamReport) -> tuple[Any, ...]:
    return (report.released_text, report.stop_reason, report.chunks_in, report.chunks_out)


def _parts(chunk: Any) -> list[BaseModel]:
    """A chunk, its choices and their deltas (the models a rebuild copies)."""
    out = [chunk]
    for choice in chunk.__dict__.get("choices") or ():
        out += [choice, choice.__dict__.get("delta")]
    return [m for m in out if isinstance(m, BaseModel)]


def _assert_owns(out: BaseModel, source: list[Any]) -> None:
    """No container of a rebuilt model is one of an upstream model's."""
    names = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
    upstream = [m for c in source if isinstance(c, BaseModel) for m in _parts(c)]
    theirs = {id(getattr(m, name)) for m in upstream for name in names}
    for m in _parts(out):
        if any(m is u for u in upstream):
            continue  # passed through as is (a choice of an unchanged chunk, say)
        for name in names:
            mine = getattr(m, name)
            assert mine is None or id(mine) not in theirs, (type(m).__name__, name)


# --------------------------------------------------------------------------
# the fake model's streams: the benchmark's workload, at several chunkings
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["openai", "openai-dict"])
@pytest.mark.parametrize("chunking", [1, 3, 7, "token", "word"])
@pytest.mark.parametrize("op", list(OPERATORS))
def test_fake_model_streams(
    fmt: Any, chunking: Any, op: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = list(so.FakeStreamingModel(ANSWER, chunking=chunking, format=fmt).stream("hi"))
    out, taken = _compare(source, OPERATORS[op], monkeypatch)
    if "budget" in op:
        assert taken > 0
    else:  # all but the role, finish and usage chunks went the fast way
        assert taken >= len(source) - 3
    if op == "redact":
        assert SECRET[:12] not in "".join(_dump(c) for c in out)


# --------------------------------------------------------------------------
# hand-made chunks: extras, logprobs, several text fields, tool calls, finish
# --------------------------------------------------------------------------


def _wire(
    *,
    finish: str | None = None,
    chunk_extra: dict[str, Any] | None = None,
    choice_extra: dict[str, Any] | None = None,
    logprobs: Any = None,
    **delta: Any,
) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{**choice, **(choice_extra or {})}],
        **(chunk_extra or {}),
    }


_LOGPROBS = {"content": [{"token": "x", "logprob": -0.1, "bytes": None, "top_logprobs": []}]}
_ARGS = '{"to": "maria.lopez@example.com", "n": 4111111111111111}'


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _mixed(size: int) -> list[dict[str, Any]]:
    """Chunks of every kind the lens reads, as the wire sends them."""
    out = [_wire(role="assistant", content="")]
    for n, piece in enumerate(_pieces(ANSWER, size)):
        kind = n % 6
        if kind == 0:
            out.append(_wire(content=piece))
        elif kind == 1:  # extras on the chunk and on the choice (OpenRouter, say)
            out.append(
                _wire(
                    content=piece,
                    chunk_extra={"provider": "p", "meta": {"n": n}},
                    choice_extra={"native_finish_reason": None},
                )
            )
        elif kind == 2:  # logprobs that spell the text
            out.append(_wire(content=piece, logprobs=_LOGPROBS))
        elif kind == 3:  # two text fields in one delta
            out.append(_wire(content=piece, refusal=piece[::-1]))
        elif kind == 4:  # reasoning: an extra field of the SDK's delta
            out.append(_wire(reasoning_content=piece))
        else:  # a tool call's arguments, in pieces
            out.append(_wire(content=piece))
            call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
            if n == 5:
                out.append(_wire(tool_calls=[call]))
            args = _ARGS[(n // 6) * 8 : (n // 6) * 8 + 8]
            if args:
                out.append(_wire(tool_calls=[{"index": 0, "function": {"arguments": args}}]))
    out.append(_wire(content="Mail bob", finish="stop"))  # held text goes into the finish
    return out


@pytest.mark.parametrize("objects", [True, False], ids=["objects", "dicts"])
@pytest.mark.parametrize("size", [2, 5, 11])
@pytest.mark.parametrize("op", list(OPERATORS))
def test_mixed_streams(objects: bool, size: int, op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wire = _mixed(size)
    source: list[Any] = (
        [ChatCompletionChunk.model_validate(c) for c in wire] if objects else copy.deepcopy(wire)
    )
    _, taken = _compare(source, OPERATORS[op], monkeypatch)
    assert taken > (0 if "budget" in op else len(source) // 3)


def test_chunks_with_extra_fields_go_the_fast_way(monkeypatch: pytest.MonkeyPatch) -> None:
    extras: dict[str, Any] = {"chunk_extra": {"provider": "p"}, "choice_extra": {"native": "x"}}
    source = [
        ChatCompletionChunk.model_validate(_wire(content=p, **extras)) for p in _pieces(ANSWER, 4)
    ]
    source.append(ChatCompletionChunk.model_validate(_wire(finish="stop", **extras)))
    out, taken = _compare(source, OPERATORS["redact"], monkeypatch)
    assert taken == len(source) - 2  # not the first (it shows the shape) nor the finish
    assert all(c.__pydantic_extra__ == {"provider": "p"} for c in out)
    assert all(c.choices[0].__pydantic_extra__ == {"native": "x"} for c in out)


def test_constructed_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks built without validation: fields missing from ``__dict__``, a partial fields set."""
    source = [
        ChatCompletionChunk.model_construct(
            id="c1",
            object="chat.completion.chunk",
            choices=[
                Choice.model_construct(
                    index=0, finish_reason=None, delta=ChoiceDelta.model_construct(content=p)
                )
            ],
        )
        for p in _pieces(ANSWER, 6)
    ]
    _, taken = _compare(source, OPERATORS["redact"], monkeypatch)
    assert taken == len(source) - 1  # not the first: it shows the lens the shape


class _Tagged(ChatCompletionChunk):
    _tag: str = PrivateAttr(default="t")
    _unset: int = PrivateAttr()  # unset: a copy drops it


def test_private_attributes_are_copied_as_model_copy_does(monkeypatch: pytest.MonkeyPatch) -> None:
    source = [_Tagged.model_validate(_wire(content=p)) for p in _pieces(ANSWER, 5)]
    source.append(_Tagged.model_validate(_wire(finish="stop")))
    for n, chunk in enumerate(source):
        chunk._tag = f"t{n}"
    out, taken = _compare(source, OPERATORS["redact"], monkeypatch)
    assert taken == len(source) - 2
    assert [c._tag for c in out] == [f"t{n}" for n in range(len(source))]


def test_a_subclass_that_adds_to_process_never_goes_the_fast_way() -> None:
    seen: list[Any] = []

    class Adds(OpenAIChatLens):
        __slots__ = ()

        def _process(self, chunk: Any, channels: Any) -> list[Any]:
            seen.append(chunk)
            return super()._process(chunk, channels)

    lens = Adds()
    source = [ChatCompletionChunk.model_validate(_wire(content=p)) for p in _pieces(ANSWER, 5)]
    out = list(so.redact()(source, lens=lambda chunk: lens))
    assert seen == source
    assert lens._shape is None
    assert not lens._dicts
    assert SECRET[:12] not in "".join(_dump(c) for c in out)


def test_a_rebuilt_chunk_is_a_live_model_of_its_own() -> None:
    source = [ChatCompletionChunk.model_validate(_wire(content=p)) for p in _pieces(ANSWER, 5)]
    source.append(ChatCompletionChunk.model_validate(_wire(finish="stop")))
    out = list(so.redact()(source))
    changed = [c for c, s in zip(out, source, strict=True) if c is not s]
    assert changed
    chunk = changed[-1]
    chunk.model = "changed"  # pydantic's own __setattr__ on the copy ...
    chunk.choices[0].delta.role = "assistant"
    assert "model" in chunk.model_fields_set
    assert "role" in chunk.choices[0].delta.model_fields_set
    assert all(s.model == "m" and s.choices[0].delta.role is None for s in source)  # ... only
    assert ChatCompletionChunk.model_validate(chunk.model_dump()) == chunk


@pytest.mark.parametrize("objects", [True, False], ids=["objects", "dicts"])
@pytest.mark.parametrize("max_tokens", [2, 3, 5, 8])
def test_fields_of_one_delta_are_fed_in_the_general_order(
    objects: bool, max_tokens: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream-wide budget sees content before refusal (and reasoning) on both ways."""
    wire = [_wire(role="assistant", content="")]
    wire += [_wire(content=f"yes {n} ", refusal=f"no {n} ") for n in range(6)]
    wire.append(_wire(finish="stop"))
    source: list[Any] = (
        [ChatCompletionChunk.model_validate(c) for c in wire] if objects else copy.deepcopy(wire)
    )
    out, taken = _compare(source, lambda: so.budget(max_tokens=max_tokens), monkeypatch)
    assert taken > 0
    first = out[1] if objects else ChatCompletionChunk.model_validate(out[1])
    assert (first.choices[0].delta.content or "").startswith("yes")  # content: budget first
