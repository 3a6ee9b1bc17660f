"""Test helpers shared by the test modules: provider-shaped chunks, sources, readers.

Builders make chunks as plain dicts (what a JSON wire gives) or, with
``objects=True``, as the SDK's own types; readers take either back apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic import types as at
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

import streamops as so

# -- text --------------------------------------------------------------------


def splits(text: str, size: int = 4) -> list[str]:
    """Cut ``text`` in pieces of ``size`` characters (the last one shorter).

    >>> splits("abcdefghij", 4)
    ['abcd', 'efgh', 'ij']
    """
    return [text[i : i + size] for i in range(0, len(text), size)]


def thirds(text: str, n: int = 3) -> list[str]:
    """Cut ``text`` in about ``n`` equal pieces.

    >>> thirds("abcdefghi")
    ['abc', 'def', 'ghi']
    """
    return splits(text, max(1, len(text) // n))


def get(obj: Any, name: str) -> Any:
    """Read ``name`` from a dict chunk or an SDK object alike (``None`` if absent)."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def dump(chunk: Any) -> str:
    """Serialise a chunk of any shape (dict, pydantic object, other) for substring checks."""
    if isinstance(chunk, dict):
        return json.dumps(chunk)
    return chunk.model_dump_json() if hasattr(chunk, "model_dump_json") else repr(chunk)


# -- OpenAI Chat Completions -----------------------------------------------------


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` dict with a single choice carrying ``delta``."""
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def chat_stream(
    fields: Iterable[tuple[str, list[str]]] = (),
    *,
    tool_args: list[str] | None = None,
    tool_index: int = 0,
    tool_name: str = "f",
    tool_head_with_role: bool = False,
    finish: str | None = None,
    objects: bool = False,
) -> list[Any]:
    """A whole chat stream: the role chunk, one chunk per piece of each field, the end.

    ``fields`` are ``(delta field, pieces)`` in order (``content``, ``refusal``,
    ``reasoning_content``...); ``tool_args`` streams one tool call's arguments
    after them (its header in its own chunk, or in the role chunk with
    ``tool_head_with_role``). ``finish`` defaults to ``"tool_calls"`` with a
    tool call, else ``"stop"``. ``objects=True`` gives ``ChatCompletionChunk``.

    >>> [c["choices"][0]["delta"] for c in chat_stream([("content", ["Hi", "!"])])]
    [{'role': 'assistant'}, {'content': 'Hi'}, {'content': '!'}, {}]
    """
    role: dict[str, Any] = {"role": "assistant"}
    chunks: list[dict[str, Any]] = [chat_chunk(role)]
    for name, pieces in fields:
        chunks += [chat_chunk({name: piece}) for piece in pieces]
    if tool_args is not None:
        function = {"name": tool_name}
        head = {"index": tool_index, "id": "call_1", "type": "function", "function": function}
        if tool_head_with_role:
            role["tool_calls"] = [head]
        else:
            chunks.append(chat_chunk({"tool_calls": [head]}))
        chunks += [
            chat_chunk({"tool_calls": [{"index": tool_index, "function": {"arguments": piece}}]})
            for piece in tool_args
        ]
    if finish is None:
        finish = "stop" if tool_args is None else "tool_calls"
    chunks.append(chat_chunk({}, finish))
    if objects:
        return [ChatCompletionChunk.model_validate(c) for c in chunks]
    return chunks


def _delta(chunk: Any) -> dict[str, Any] | None:
    choices = chunk["choices"] if isinstance(chunk, dict) else chunk.choices
    if not choices:
        return None
    if isinstance(chunk, dict):
        return choices[0]["delta"]  # type: ignore[no-any-return]
    return choices[0].delta.model_dump()  # type: ignore[no-any-return]


def chat_text(out: Iterable[Any], field: str) -> str:
    """The text of delta ``field`` over chat chunks (dicts or objects; no choices: none)."""
    return "".join((d.get(field) or "") for c in out if (d := _delta(c)) is not None)


def chat_arguments(out: Iterable[Any]) -> str:
    """Every tool call's argument text over chat chunks, concatenated."""
    return "".join(
        (call.get("function") or {}).get("arguments") or ""
        for c in out
        if (d := _delta(c)) is not None
        for call in d.get("tool_calls") or []
    )


# -- Anthropic Messages ------------------------------------------------------------

_BLOCKS: dict[str, tuple[dict[str, Any], str, str]] = {
    "thinking": (
        {"type": "thinking", "thinking": "", "signature": ""},
        "thinking_delta",
        "thinking",
    ),
    "text": ({"type": "text", "text": ""}, "text_delta", "text"),
    "tool_use": (
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
        "input_json_delta",
        "partial_json",
    ),
}
_EVENT: TypeAdapter[Any] = TypeAdapter(at.RawMessageStreamEvent)


def anthropic_events(
    blocks: Iterable[tuple[str, list[str]]],
    *,
    stop_reason: str = "end_turn",
    output_tokens: int = 9,
    objects: bool = False,
) -> list[Any]:
    """A whole Messages stream: ``message_start``, one block per ``(kind, pieces)``, the end.

    ``kind`` is ``"thinking"``, ``"text"`` or ``"tool_use"`` (the pieces are
    then the input JSON). ``objects=True`` gives the SDK's event types.

    >>> [e["type"] for e in anthropic_events([("text", ["Hi"])])][1:4]
    ['content_block_start', 'content_block_delta', 'content_block_stop']
    """
    message: dict[str, Any] = {
        "id": "m1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    raw: list[dict[str, Any]] = [{"type": "message_start", "message": message}]
    for index, (kind, pieces) in enumerate(blocks):
        start, delta_type, key = _BLOCKS[kind]
        raw.append({"type": "content_block_start", "index": index, "content_block": start})
        raw += [
            {"type": "content_block_delta", "index": index, "delta": {"type": delta_type, key: p}}
            for p in pieces
        ]
        raw.append({"type": "content_block_stop", "index": index})
    raw.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )
    raw.append({"type": "message_stop"})
    return [_EVENT.validate_python(e) for e in raw] if objects else raw


def anthropic_message(*events: dict[str, Any]) -> list[dict[str, Any]]:
    """A Messages stream of dict events: ``message_start``, ``events``, an ``end_turn`` end."""
    start: dict[str, Any] = {
        "type": "message_start",
        "message": {
            "id": "m1", "type": "message", "role": "assistant", "model": "c", "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 0},
        },
    }  # fmt: skip
    end: list[dict[str, Any]] = [
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    ]  # fmt: skip
    return [start, *events, *end]


def anthropic_delta_text(event: Any) -> str:
    """The text a ``content_block_delta`` carries, whatever its block kind."""
    d = get(event, "delta")
    return get(d, "thinking") or get(d, "text") or get(d, "partial_json") or ""


def anthropic_blocks(out: Iterable[Any]) -> dict[int, str]:
    """Each content block's text by index, over Anthropic events (dicts or objects)."""
    got: dict[int, str] = {}
    for e in out:
        if get(e, "type") == "content_block_delta":
            got[get(e, "index")] = got.get(get(e, "index"), "") + anthropic_delta_text(e)
    return got


# -- sources -------------------------------------------------------------------------


async def aiter_of(items: Iterable[Any]) -> AsyncIterator[Any]:
    """Yield ``items`` from an async generator."""
    for item in items:
        yield item


class Tracked:
    """A sync source that records how far it was read and whether it was closed."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.pulled = 0
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.items:
                self.pulled += 1
                yield item
        finally:
            self.closed = True


class ATracked(Tracked):
    """The async :class:`Tracked`: it yields to the loop before each item."""

    async def _gen(self) -> AsyncIterator[Any]:
        try:
            for item in self.items:
                self.pulled += 1
                await asyncio.sleep(0)
                yield item
        finally:
            self.closed = True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._gen()


class SDKSyncStream:
    """Shaped like openai's sync ``Stream``: only ``close()`` on the object releases it.

    ``closed`` counts the ``close()`` calls, ``pulled`` the items read,
    ``exhausted`` says the items ran out.
    """

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.closed = 0
        self.pulled = 0
        self.exhausted = False
        self._iterator = self._stream()

    def _stream(self) -> Generator[Any, None, None]:
        for item in self.items:
            self.pulled += 1
            yield item
        self.exhausted = True

    def __iter__(self) -> Iterator[Any]:
        yield from self._iterator

    def close(self) -> None:
        self.closed += 1
        self._iterator.close()


class SDKAsyncStream:
    """Shaped like openai's ``AsyncStream``: ``__aiter__`` makes a new generator each
    call, and only ``close()`` on the object releases the response (as :class:`SDKSyncStream`).

    With ``yield_to_loop`` each item waits one turn of the event loop first (as
    a network read would), so a task can be cancelled between any two items.
    """

    def __init__(self, items: list[Any], *, yield_to_loop: bool = False) -> None:
        self.items = items
        self.closed = 0
        self.pulled = 0
        self.exhausted = False
        self._yield_to_loop = yield_to_loop
        self._iterator = self._stream()

    async def _stream(self) -> AsyncGenerator[Any, None]:
        for item in self.items:
            if self._yield_to_loop:
                await asyncio.sleep(0)
            self.pulled += 1
            yield item
        self.exhausted = True

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for item in self._iterator:
            yield item

    async def close(self) -> None:
        self.closed += 1
        await self._iterator.aclose()


@pytest.fixture
def close_sdk_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every sync ``openai``/``anthropic`` client a test made, when it ends.

    Tests that talk to a server through many short-lived SDK clients use it
    (``pytestmark = pytest.mark.usefixtures("close_sdk_clients")``): a client
    left to the garbage collector closes its sockets with a ``ResourceWarning``
    in whichever later test happens to collect it.
    """
    import anthropic
    import openai

    made: list[Any] = []
    for cls in (openai.OpenAI, anthropic.Anthropic):
        original = cls.__init__

        def init(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> None:
            __original(self, *args, **kwargs)
            made.append(self)

        monkeypatch.setattr(cls, "__init__", init)
    yield
    for client in made:
        client.close()


def keys_file(tmp_path: Path, **keys: dict[str, Any]) -> str:
    """Write a gateway keys file (``key=`` becomes its ``sha256``); return its path."""
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


class HoldLast:
    """Hold back the last character of the input until the next chunk or the end."""

    def __init__(self) -> None:
        self.done = False
        self.tail = ""

    def feed(self, item: str, /) -> list[str]:
        text = self.tail + item
        self.tail = text[-1:]
        return [text[:-1]] if text[:-1] else []

    def close(self) -> list[str]:
        return [self.tail] if self.tail else []


def hold_last() -> so.Operator[str, str]:
    """An operator that holds back the last character until the next chunk or the end
    (so it changes the chunking downstream)."""
    return so.Operator.from_processor(lambda report: HoldLast(), name="hold_last")
