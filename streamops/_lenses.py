"""Chunk lenses: run text operators over provider chunk objects, give the same type back.

A lens reads the text of each chunk for the operators and rebuilds the chunk
with the text they released, so an app that expects ``ChatCompletionChunk``
objects (or Anthropic events, LangChain ``AIMessageChunk``, wire-format dicts,
raw ``bytes``) keeps receiving them. Importing this module registers every lens
with :func:`streamops.register_lens`; the first chunk of a stream that is not
a ``str`` picks the lens. The provider SDKs are never imported to *detect* a
chunk (duck typing), only to build a synthetic chunk of their type.

The contract of every lens here:

- one chunk out per chunk in, carrying the text released while that chunk was
  fed (possibly ``""``); chunks without text (role chunks, tool-call deltas,
  framing events) pass through unchanged, metadata and all;
- *end chunks* (a finish reason, usage, Anthropic's ``content_block_stop`` /
  ``message_delta`` / ``message_stop``, Responses ``*.done`` events) are held
  back until the text is final: text still held by the operators at the end is
  attached to the first of them (OpenAI) or put in a text chunk just before
  them. Text already released is never delayed by this;
- chunk fields that copy the text (logprobs, Responses' ``*.done`` full texts)
  are cleared or rewritten to the released text, so nothing the operators
  removed leaks around them.
"""

from __future__ import annotations

import abc
import codecs
import copy
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ._core import Lens, _find_lens, register_lens
from ._errors import ChunkTypeError, StreamOpsError

__all__ = [
    "AnthropicLens",
    "BytesLens",
    "LangChainLens",
    "LensError",
    "OpenAIChatLens",
    "OpenAIResponsesLens",
    "find_lens",
]


class LensError(StreamOpsError, ValueError):
    """Raised when a chunk of a recognised provider cannot be mapped to text safely.

    Examples: an OpenAI stream with more than one choice (``n > 1``), invalid
    UTF-8 in a bytes stream with ``errors="strict"``, Anthropic helper events
    that carry snapshots of the whole text. It is not raised for chunk types no
    lens knows: that is a :class:`~streamops.ChunkTypeError`.

    >>> from streamops import BytesLens
    >>> BytesLens().unwrap(b"\\xff")
    Traceback (most recent call last):
    ...
    streamops._lenses.LensError: chunk 0: invalid UTF-8 (invalid start byte); pass errors=...
    """


def _get(obj: Any, name: str) -> Any:
    """Read a field of an SDK object or of its wire-format dict."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


_object_setattr = object.__setattr__  # pydantic models refuse plain attribute writes
_object_new = object.__new__
# Per class: (unknown keys go to the extras, the model's fields) for a pydantic
# model copied the way BaseModel copies, None for anything else.
_CopyPlan = tuple[bool, dict[str, Any]] | None
_COPY_PLANS: dict[type, _CopyPlan] = {}


def _copy_plan(cls: type) -> _CopyPlan:
    plan: _CopyPlan = None
    if (
        issubclass(cls, BaseModel)
        and cls.model_copy is BaseModel.model_copy
        and cls.__copy__ is BaseModel.__copy__
        and cls.__new__ is object.__new__  # so object.__new__(cls) is what __copy__ calls
    ):
        plan = (cls.model_config.get("extra") == "allow", cls.__pydantic_fields__)
    _COPY_PLANS[cls] = plan
    return plan


def _replace(obj: Any, **changes: Any) -> Any:
    """Return a shallow copy of ``obj`` with ``changes``; dicts, pydantic models, others.

    A pydantic model gets exactly what ``obj.model_copy(update=changes)`` gives
    (``tests/test_lenses.py`` compares the dumps and ``fields_set``), built with
    the steps of pydantic's ``BaseModel.__copy__`` and ``model_copy`` inline:
    each changed OpenAI chunk is three copies, and the generic path through
    ``copy.copy`` cost more than the text operators themselves.
    """
    if isinstance(obj, dict):
        return {**obj, **changes}
    cls = type(obj)
    try:
        plan = _COPY_PLANS[cls]
    except KeyError:
        plan = _copy_plan(cls)
    if plan is not None:
        allow_extra, fields = plan
        new = _object_new(cls)
        values = obj.__dict__.copy()
        extra = obj.__pydantic_extra__
        if extra is not None:
            extra = extra.copy()
        if allow_extra:
            for key, value in changes.items():
                if key in fields:
                    values[key] = value
                else:
                    if extra is None:
                        extra = {}
                    extra[key] = value
        else:
            values.update(changes)
        _object_setattr(new, "__dict__", values)
        _object_setattr(new, "__pydantic_extra__", extra)
        fields_set = obj.__pydantic_fields_set__.copy()  # not union(): it may grow the table
        fields_set.update(changes)
        _object_setattr(new, "__pydantic_fields_set__", fields_set)
        private = getattr(obj, "__pydantic_private__", None)
        if private is not None:
            private = {k: v for k, v in private.items() if v is not PydanticUndefined}
        _object_setattr(new, "__pydantic_private__", private)
        return new
    model_copy = getattr(obj, "model_copy", None)
    if model_copy is not None:
        return model_copy(update=changes)
    new = copy.copy(obj)
    for key, value in changes.items():
        setattr(new, key, value)
    return new


def find_lens(chunk: Any, /) -> Lens:
    """Return a fresh lens for ``chunk`` from the registered lens factories.

    Raises :class:`~streamops.ChunkTypeError` when no lens recognises it.

    >>> import streamops as so
    >>> type(so.find_lens({"object": "chat.completion.chunk", "choices": []})).__name__
    'OpenAIChatLens'
    >>> so.find_lens(42)
    Traceback (most recent call last):
    ...
    streamops._errors.ChunkTypeError: chunk 0 has type int, expected str or a chunk type ...
    """
    lens = _find_lens(chunk)
    if lens is None:
        raise ChunkTypeError(
            0,
            chunk,
            "str or a chunk type with a lens",
            "register a lens with streamops.register_lens() for this chunk type",
        )
    return lens


class _ChunkLens(abc.ABC):
    """Shared logic of the provider lenses: one chunk out per chunk in, end chunks held.

    Subclasses say where the text is (``_read``/``_write``), which chunks end
    the message (``_is_end``), how to make a chunk that carries only text
    (``_synth``) and whether an end chunk can carry text itself (``_carries``).
    """

    __slots__ = ("_held", "_n", "_slot", "truncated")

    def __init__(self) -> None:
        self._held: list[Any] = []
        self._n = 0
        self._slot: str | None = None  # the text of the chunk being fed; None: no text field
        # The provider said it cut the message (a length or content-filter finish):
        # the driver then truncates the operators instead of closing them.
        self.truncated = False

    # -- hooks -------------------------------------------------------------
    @abc.abstractmethod
    def _read(self, chunk: Any) -> str | None:
        """Return the chunk's text, or ``None`` when it has no text field."""

    @abc.abstractmethod
    def _write(self, chunk: Any, text: str) -> Any:
        """Return a copy of ``chunk`` carrying ``text`` instead of its own."""

    @abc.abstractmethod
    def _synth(self, text: str) -> list[Any]:
        """Return new chunks that carry ``text`` (flushed at the end of the stream)."""

    def _is_end(self, chunk: Any) -> bool:
        return False

    def _carries(self, chunk: Any) -> bool:
        return False

    def _release(self, chunk: Any) -> Any:
        """Called on every upstream chunk as it is handed out (state, rewrites)."""
        return chunk

    # -- the Lens protocol -------------------------------------------------
    def unwrap(self, chunk: Any, /) -> str:
        """Return the text of ``chunk`` (``""`` for chunks that carry none)."""
        self._slot = text = self._read(chunk)
        self._n += 1
        return text or ""

    def wrap(self, chunk: Any, texts: list[str], /) -> list[Any]:
        """Return ``chunk`` carrying ``texts``, after any end chunks it releases."""
        text = "".join(texts)
        slot = self._slot
        if self._is_end(chunk):
            if slot:  # an end chunk that brought text: the text goes out now, the end waits
                chunk = self._write(chunk, "")
            self._held.append(chunk)
            return self._synth(text) if text else []
        # Text released with a chunk that has no text field goes before the held
        # end chunks (the synthetic chunk belongs to the message they end).
        out = self._synth(text) if text and slot is None else []
        if self._held:
            out += [self._release(c) for c in self._held]
            self._held = []
        if slot is not None and text != slot:
            chunk = self._write(chunk, text)
        out.append(self._release(chunk))
        return out

    def finish(self, texts: list[str], /) -> list[Any]:
        """Return the held end chunks, the text flushed at the end attached."""
        text = "".join(texts)
        held, self._held = self._held, []
        if text:
            if held and self._carries(held[0]):
                held[0] = self._write(held[0], text)
            else:
                return self._synth(text) + [self._release(c) for c in held]
        return [self._release(c) for c in held]


# --------------------------------------------------------------------------
# bytes
# --------------------------------------------------------------------------


class BytesLens:
    """Decode ``bytes`` chunks incrementally as UTF-8; hand the released text back as bytes.

    A multi-byte character split across chunks is decoded once complete.
    ``errors="strict"`` (default) raises :class:`LensError` on invalid UTF-8,
    naming the chunk; ``"replace"`` puts U+FFFD in its place (an incomplete
    character at the very end becomes U+FFFD too, appended after the
    operators' output). Each chunk in gives one ``bytes`` chunk out.

    >>> import streamops as so
    >>> list(so.redact(["email"])([b"caf\\xc3", b"\\xa9, mail a@b.co"]))
    [b'', b'caf\\xc3\\xa9, mail ', b'[EMAIL]']

    (``"caf"`` was held back: it could have begun an address.)
    """

    __slots__ = ("_decoder", "_errors", "_n")

    def __init__(self, *, errors: Literal["strict", "replace"] = "strict") -> None:
        if errors not in ("strict", "replace"):
            raise ValueError(f'errors must be "strict" or "replace", got {errors!r}')
        self._errors = errors
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors)
        self._n = 0

    @classmethod
    def match(cls, chunk: Any, /) -> BytesLens | None:
        """Return a lens for ``bytes``/``bytearray``/``memoryview`` chunks, else ``None``."""
        return cls() if isinstance(chunk, (bytes, bytearray, memoryview)) else None

    def _decode(self, data: bytes, final: bool) -> str:
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise LensError(
                f"chunk {self._n}: invalid UTF-8 ({exc.reason});"
                ' pass errors="replace" to BytesLens to replace it'
            ) from exc

    def unwrap(self, chunk: Any, /) -> str:
        """Decode ``chunk``; bytes of an incomplete character wait for the next one."""
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise ChunkTypeError(self._n, chunk, "bytes (the stream started with bytes)")
        text = self._decode(bytes(chunk), False)
        self._n += 1
        return text

    def wrap(self, chunk: Any, texts: list[str], /) -> list[Any]:
        """Return the released text as one UTF-8 ``bytes`` chunk."""
        return ["".join(texts).encode()]

    def finish(self, texts: list[str], /) -> list[Any]:
        """Return the flushed text; an incomplete character left over is an error (or U+FFFD)."""
        tail = self._decode(b"", True)
        text = "".join(texts) + tail
        return [text.encode()] if text else []


# --------------------------------------------------------------------------
# OpenAI Chat Completions
# --------------------------------------------------------------------------

# Finish and stop reasons that mean "the message was cut", by provider:
# OpenAI, Anthropic, Gemini (upper case) and LangChain's copies of them.
_CUT_FINISHES = frozenset(
    {
        "length",
        "content_filter",
        "max_tokens",
        "refusal",
        "model_context_window_exceeded",
        "MAX_TOKENS",
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
    }
)


class OpenAIChatLens(_ChunkLens):
    """Lens for OpenAI ``ChatCompletionChunk`` objects and their wire-format dicts.

    The operators see ``choices[0].delta.content``; roles, tool-call deltas
    (parse them with :func:`streamops.parse_tool_calls` after the lens),
    refusals, ids, ``system_fingerprint``, finish reasons and usage pass
    through. The finish-reason chunk and the usage chunk (empty ``choices``)
    are held until the end, and text the operators flush then is put in the
    finish-reason chunk's ``delta.content``. When a chunk's text changes, its
    ``logprobs`` are dropped (they would spell the original text).

    One text pipeline runs per stream, so streams with several choices
    (``n > 1``) are refused with :class:`LensError` rather than letting the
    other choices bypass the operators.

    >>> import streamops as so
    >>> chunks = [
    ...     {"id": "c1", "object": "chat.completion.chunk", "choices": [
    ...         {"index": 0, "delta": {"content": "Mail a@b.co"}, "finish_reason": None}]},
    ...     {"id": "c1", "object": "chat.completion.chunk", "choices": [
    ...         {"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ... ]
    >>> out = list(so.redact(["email"])(chunks))
    >>> [(c["choices"][0]["delta"].get("content"), c["choices"][0]["finish_reason"]) for c in out]
    [('Mail ', None), ('[EMAIL]', 'stop')]
    """

    __slots__ = ("_template",)

    def __init__(self) -> None:
        super().__init__()
        self._template: Any = None

    @classmethod
    def match(cls, chunk: Any, /) -> OpenAIChatLens | None:
        """Return a lens for chat-completion chunks (objects or dicts), else ``None``."""
        if _get(chunk, "object") == "chat.completion.chunk" or (
            isinstance(chunk, dict) and "choices" in chunk
        ):
            return cls()
        return None

    def _choice(self, chunk: Any) -> Any:
        choices = _get(chunk, "choices")
        if choices is None and not isinstance(chunk, dict) and not hasattr(chunk, "choices"):
            raise ChunkTypeError(self._n, chunk, "an OpenAI chat completion chunk")
        if not choices:
            return None
        if len(choices) > 1 or _get(choices[0], "index") not in (0, None):
            raise LensError(
                f"chunk {self._n}: choice index {_get(choices[-1], 'index')}; streamops runs one"
                " text pipeline per stream, so only n=1 streams can be wrapped (request n=1,"
                " or make one request per choice)"
            )
        return choices[0]

    def _read(self, chunk: Any) -> str | None:
        choice = self._choice(chunk)
        if choice is None:
            return None
        self._template = chunk
        content: str | None = _get(_get(choice, "delta"), "content")
        return content

    def _write(self, chunk: Any, text: str) -> Any:
        choice = _get(chunk, "choices")[0]
        delta = _replace(_get(choice, "delta"), content=text)
        changes: dict[str, Any] = {"delta": delta}
        if _get(choice, "logprobs") is not None:
            changes["logprobs"] = None
        return _replace(chunk, choices=[_replace(choice, **changes)])

    def _is_end(self, chunk: Any) -> bool:
        choices = _get(chunk, "choices")
        if not choices:
            return True
        finish = _get(choices[0], "finish_reason")
        if finish in _CUT_FINISHES:
            self.truncated = True
        return finish is not None

    def _carries(self, chunk: Any) -> bool:
        return bool(_get(chunk, "choices"))

    def _synth(self, text: str) -> list[Any]:
        template = self._template
        if isinstance(template, dict):
            choice: Any = {
                "index": 0,
                "delta": {"content": text},
                "logprobs": None,
                "finish_reason": None,
            }
        else:
            from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta

            choice = Choice(index=0, delta=ChoiceDelta(content=text), finish_reason=None)
        changes: dict[str, Any] = {"choices": [choice]}
        if _get(template, "usage") is not None:
            changes["usage"] = None
        return [_replace(template, **changes)]


# --------------------------------------------------------------------------
# OpenAI Responses API
# --------------------------------------------------------------------------

_RESPONSE_ENDS = frozenset(
    {
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)


class OpenAIResponsesLens(_ChunkLens):
    """Lens for OpenAI Responses API stream events (SDK objects or dicts).

    The operators see the ``delta`` of ``response.output_text.delta`` events,
    all output text parts in one pipeline; every other event passes through
    (reasoning, refusals and function-call argument deltas included). The
    ``*.done`` events and ``response.completed`` repeat the whole text: they
    are held until the text is final and their text fields are rewritten to
    what was released for each part, so a removed secret cannot come back
    through them. Text flushed at the end is sent as one more delta event for
    the last text part (with that part's ids and the sequence number of its
    last delta). ``logprobs`` of a changed delta are emptied.

    >>> import streamops as so
    >>> events = [
    ...     {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0,
    ...      "content_index": 0, "delta": "Mail a@b.co", "logprobs": [], "sequence_number": 1},
    ...     {"type": "response.output_text.done", "item_id": "m1", "output_index": 0,
    ...      "content_index": 0, "text": "Mail a@b.co", "logprobs": [], "sequence_number": 2},
    ... ]
    >>> [e.get("delta", e.get("text")) for e in so.redact(["email"])(events)]
    ['Mail ', '[EMAIL]', 'Mail [EMAIL]']
    """

    __slots__ = ("_last", "_texts")

    def __init__(self) -> None:
        super().__init__()
        self._texts: dict[tuple[Any, Any], list[str]] = {}
        self._last: Any = None

    @classmethod
    def match(cls, chunk: Any, /) -> OpenAIResponsesLens | None:
        """Return a lens for ``response.*`` events (objects or dicts), else ``None``."""
        kind = _get(chunk, "type")
        return cls() if isinstance(kind, str) and kind.startswith("response.") else None

    def _read(self, chunk: Any) -> str | None:
        if _get(chunk, "type") != "response.output_text.delta":
            return None
        self._last = chunk
        delta: str = _get(chunk, "delta")
        return delta

    def _write(self, chunk: Any, text: str) -> Any:
        changes: dict[str, Any] = {"delta": text}
        if _get(chunk, "logprobs"):
            changes["logprobs"] = []
        return _replace(chunk, **changes)

    def _is_end(self, chunk: Any) -> bool:
        kind = _get(chunk, "type")
        if kind in ("response.incomplete", "response.failed"):
            self.truncated = True
        return kind in _RESPONSE_ENDS

    def _synth(self, text: str) -> list[Any]:
        if self._last is None:  # pragma: no cover - text only comes from text deltas
            raise LensError("released text before any response.output_text.delta event")
        return [self._release(self._write(self._last, text))]

    def _full(self, item_id: Any, index: Any, old: str) -> str:
        parts = self._texts.get((item_id, index))
        return old if parts is None else "".join(parts)

    def _fix_item(self, item: Any) -> Any:
        content = _get(item, "content")
        if not content or _get(item, "type") != "message":
            return item
        item_id = _get(item, "id")
        new = [
            _replace(part, text=self._full(item_id, i, _get(part, "text")))
            if _get(part, "type") == "output_text"
            else part
            for i, part in enumerate(content)
        ]
        return _replace(item, content=new)

    def _release(self, chunk: Any) -> Any:
        kind = _get(chunk, "type")
        key = (_get(chunk, "item_id"), _get(chunk, "content_index"))
        if kind == "response.output_text.delta":
            self._texts.setdefault(key, []).append(_get(chunk, "delta"))
        elif kind == "response.output_text.done":
            return _replace(chunk, text=self._full(*key, _get(chunk, "text")), logprobs=[])
        elif kind == "response.content_part.done":
            part = _get(chunk, "part")
            if _get(part, "type") == "output_text":
                text = self._full(*key, _get(part, "text"))
                return _replace(chunk, part=_replace(part, text=text, logprobs=[]))
        elif kind == "response.output_item.done":
            return _replace(chunk, item=self._fix_item(_get(chunk, "item")))
        elif kind in _RESPONSE_ENDS:
            response = _get(chunk, "response")
            output = _get(response, "output")
            if output:
                fixed = _replace(response, output=[self._fix_item(i) for i in output])
                return _replace(chunk, response=fixed)
        return chunk


# --------------------------------------------------------------------------
# Anthropic Messages
# --------------------------------------------------------------------------

_ANTHROPIC_RAW = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)
# Events of the SDK's MessageStream helper that repeat the accumulated text.
_ANTHROPIC_HELPERS = frozenset({"text", "citation", "thinking", "signature", "input_json"})


class AnthropicLens(_ChunkLens):
    """Lens for Anthropic Messages stream events (``anthropic.types`` objects or dicts).

    The operators see ``text_delta`` texts of ``content_block_delta`` events
    (and the initial text of a ``text`` block's ``content_block_start``), all
    text blocks in one pipeline. ``input_json_delta`` (tool arguments:
    :func:`streamops.parse_tool_calls` reads them), thinking, citations,
    ``message_start`` and ``ping`` pass through. ``content_block_stop`` of the
    open text block, ``message_delta`` (stop reason, usage) and
    ``message_stop`` are held until the text is final; text flushed at the end
    is sent as a ``content_block_delta`` before the held stop, or, if that
    block was already closed, in a new text block after the last index.

    Wrap the raw events (``client.messages.create(..., stream=True)``), not
    the ``messages.stream()`` helper events: those carry snapshots of the whole
    text that would bypass the operators, so they raise :class:`LensError`.

    >>> import streamops as so
    >>> events = [
    ...     {"type": "content_block_start", "index": 0,
    ...      "content_block": {"type": "text", "text": ""}},
    ...     {"type": "content_block_delta", "index": 0,
    ...      "delta": {"type": "text_delta", "text": "Mail a@b.co"}},
    ...     {"type": "content_block_stop", "index": 0},
    ...     {"type": "message_stop"},
    ... ]
    >>> [(e["type"], e.get("delta", {}).get("text")) for e in so.redact(["email"])(events)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('content_block_start', None), ('content_block_delta', 'Mail '),
     ('content_block_delta', '[EMAIL]'), ('content_block_stop', None), ('message_stop', None)]
    """

    __slots__ = ("_dicts", "_max_index", "_open")

    def __init__(self) -> None:
        super().__init__()
        self._open: int | None = None  # index of the text block open downstream
        self._max_index = -1
        self._dicts = True

    @classmethod
    def match(cls, chunk: Any, /) -> AnthropicLens | None:
        """Return a lens for Anthropic stream events (objects or dicts), else ``None``."""
        kind = _get(chunk, "type")
        if kind in _ANTHROPIC_RAW or kind in _ANTHROPIC_HELPERS:
            lens = cls()
            lens._dicts = isinstance(chunk, dict)
            return lens
        return None

    def _read(self, chunk: Any) -> str | None:
        kind = _get(chunk, "type")
        if kind == "content_block_delta":
            delta = _get(chunk, "delta")
            if _get(delta, "type") == "text_delta":
                text: str = _get(delta, "text")
                return text
        elif kind == "content_block_start":
            block = _get(chunk, "content_block")
            if _get(block, "type") == "text":
                start: str = _get(block, "text") or ""
                return start
        elif kind in _ANTHROPIC_HELPERS or (
            kind in ("content_block_stop", "message_stop")
            and (_get(chunk, "content_block") is not None or _get(chunk, "message") is not None)
        ):
            raise LensError(
                f"chunk {self._n}: Anthropic {kind!r} helper event from messages.stream() carries"
                " the accumulated text; wrap the raw events of"
                " client.messages.create(..., stream=True) instead"
            )
        return None

    def _write(self, chunk: Any, text: str) -> Any:
        if _get(chunk, "type") == "content_block_start":
            return _replace(chunk, content_block=_replace(_get(chunk, "content_block"), text=text))
        return _replace(chunk, delta=_replace(_get(chunk, "delta"), text=text))

    def _is_end(self, chunk: Any) -> bool:
        kind = _get(chunk, "type")
        if kind == "content_block_stop":
            return self._open is not None and _get(chunk, "index") == self._open
        if kind == "message_delta" and _get(_get(chunk, "delta"), "stop_reason") in _CUT_FINISHES:
            self.truncated = True
        return kind in ("message_delta", "message_stop")

    def _release(self, chunk: Any) -> Any:
        kind = _get(chunk, "type")
        if kind == "content_block_start":
            index = _get(chunk, "index")
            self._max_index = max(self._max_index, index)
            if _get(_get(chunk, "content_block"), "type") == "text":
                self._open = index
        elif kind == "content_block_stop" and _get(chunk, "index") == self._open:
            self._open = None
        return chunk

    def _event(self, data: dict[str, Any]) -> Any:
        if self._dicts:
            return data
        from anthropic import types as at

        classes: dict[str, Any] = {
            "content_block_start": at.RawContentBlockStartEvent,
            "content_block_delta": at.RawContentBlockDeltaEvent,
            "content_block_stop": at.RawContentBlockStopEvent,
        }
        return classes[data["type"]].model_validate(data)

    def _synth(self, text: str) -> list[Any]:
        delta = {"type": "text_delta", "text": text}
        if self._open is not None:
            return [
                self._event({"type": "content_block_delta", "index": self._open, "delta": delta})
            ]
        self._max_index += 1
        index = self._max_index
        return [
            self._event(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": "", "citations": None},
                }
            ),
            self._event({"type": "content_block_delta", "index": index, "delta": delta}),
            self._event({"type": "content_block_stop", "index": index}),
        ]


# --------------------------------------------------------------------------
# LangChain
# --------------------------------------------------------------------------


def _is_message_chunk(chunk: Any) -> bool:
    return any(
        cls.__name__ == "BaseMessageChunk" and cls.__module__.startswith("langchain_core")
        for cls in type(chunk).__mro__
    )


class LangChainLens(_ChunkLens):
    """Lens for LangChain message chunks (``AIMessageChunk`` from a chat model's ``astream``).

    The operators see ``content``: a ``str``, or the ``text`` of the text blocks
    when ``content`` is a list of content blocks (the first text block then
    carries the released text, other text blocks are dropped, other blocks
    are kept). ``id``, tool-call chunks, ``response_metadata`` and
    ``usage_metadata`` pass through, so ``chunk1 + chunk2`` still merges. A
    chunk without content that ends the message (finish reason, usage, or
    ``chunk_position="last"``) is held until the end and gets the text the
    operators flush then.

    >>> import streamops as so
    >>> from langchain_core.messages import AIMessageChunk
    >>> out = list(so.redact(["email"])([AIMessageChunk(content="Mail a@b.co", id="r1")]))
    >>> [(c.content, c.id) for c in out]
    [('Mail ', 'r1'), ('[EMAIL]', 'r1')]
    """

    __slots__ = ("_template",)

    def __init__(self) -> None:
        super().__init__()
        self._template: Any = None

    @classmethod
    def match(cls, chunk: Any, /) -> LangChainLens | None:
        """Return a lens for ``langchain_core`` message chunks, else ``None``."""
        return cls() if _is_message_chunk(chunk) else None

    def _read(self, chunk: Any) -> str | None:
        if not _is_message_chunk(chunk):
            raise ChunkTypeError(self._n, chunk, "a LangChain message chunk")
        self._template = chunk
        content = chunk.content
        if isinstance(content, str):
            return content
        return "".join(
            block if isinstance(block, str) else block.get("text", "")
            for block in content
            if isinstance(block, str) or block.get("type") == "text"
        )

    def _write(self, chunk: Any, text: str) -> Any:
        content = chunk.content
        if isinstance(content, str):
            return _replace(chunk, content=text)
        new: list[Any] = []
        placed = False
        for block in content:
            if isinstance(block, str) or block.get("type") == "text":
                if not placed:
                    new.append(text if isinstance(block, str) else {**block, "text": text})
                    placed = True
            else:
                new.append(block)
        if not placed:
            new.append({"type": "text", "text": text})
        return _replace(chunk, content=new)

    def _is_end(self, chunk: Any) -> bool:
        if chunk.content or getattr(chunk, "tool_call_chunks", None):
            return False
        meta = chunk.response_metadata or {}
        if meta.get("finish_reason") in _CUT_FINISHES or meta.get("stop_reason") in _CUT_FINISHES:
            self.truncated = True
        return bool(
            meta.get("finish_reason")
            or meta.get("stop_reason")
            or getattr(chunk, "usage_metadata", None)
            or getattr(chunk, "chunk_position", None) == "last"
        )

    def _carries(self, chunk: Any) -> bool:
        return True

    def _synth(self, text: str) -> list[Any]:
        return [type(self._template)(content=text, id=self._template.id)]


_ALL: tuple[Any, ...] = (
    BytesLens,
    LangChainLens,
    AnthropicLens,
    OpenAIResponsesLens,
    OpenAIChatLens,
)
for _cls in _ALL:
    register_lens(_cls.match)
del _cls


def _usage(chunk: Any) -> dict[str, Any] | None:
    """Return the token usage a provider chunk reports, as a dict (``None`` if none)."""
    kind = _get(chunk, "type")
    if kind == "message_start":
        found = _get(_get(chunk, "message"), "usage")
    elif kind in ("response.completed", "response.incomplete"):
        found = _get(_get(chunk, "response"), "usage")
    elif isinstance(chunk, (str, bytes)):
        return None
    else:
        found = _get(chunk, "usage")
        if found is None:
            found = _get(chunk, "usage_metadata")
    if found is None:
        return None
    if isinstance(found, dict):
        return found
    dump = getattr(found, "model_dump", None)
    return dump(mode="json", exclude_none=True) if dump is not None else None
