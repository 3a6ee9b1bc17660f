"""Chunk lenses: run text operators over provider chunk objects, give the same type back.

A lens reads the text of each chunk for the operators and rebuilds the chunk
with the text they released, so an app that expects ``ChatCompletionChunk``
objects (or Anthropic events, LangChain ``AIMessageChunk``, wire-format dicts,
raw ``bytes``) keeps receiving them. Importing this module registers every lens
with :func:`streamops.register_lens`; the first chunk of a stream that is not
a ``str`` picks the lens. The provider SDKs are never imported to *detect* a
chunk (duck typing), only to build a synthetic chunk of their type.

The contract of every lens here:

- every text channel of a chunk (the answer, a refusal, reasoning or
  thinking, each tool call's arguments) is fed to its own channel through
  ``channels.feed(key, kind, text)``, and the chunk is rebuilt with what the
  operators released (possibly ``""``); chunks without text (role chunks, a
  tool call's header, framing events) pass through unchanged, metadata and all;
- what a channel still holds goes out at the provider's own boundary for it,
  in order: in the OpenAI finish chunk or LangChain's last chunk, or as one
  more delta just before an Anthropic block's stop or a Responses ``*.done``;
  boundary events that come before the provider says whether the message was
  cut wait for the next event (so a cut is known before the held text goes);
- a message the provider cut (``length``, ``max_tokens``, ``incomplete``, an
  error event, no end event at all) ends its channels *truncated*;
- chunk fields that copy the text (logprobs, Responses' ``*.done`` full texts,
  LangChain's copies of tool arguments) are cleared or rewritten to the
  released text, so nothing the operators removed leaks around them.
"""

from __future__ import annotations

import abc
import codecs
import copy
import json
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .._core._channels import follow_arguments
from .._core._errors import ChunkTypeError, LensError
from .._core._stages import ChannelLens, Lens, _find_lens, register_lens
from ._usage import record_usage

__all__ = [
    "AnthropicLens",
    "BytesLens",
    "LangChainLens",
    "LensError",
    "OpenAIChatLens",
    "OpenAIResponsesLens",
    "find_lens",
]


def _get(obj: Any, name: str) -> Any:
    """Read a field of an SDK object or of its wire-format dict (``None`` if absent).

    Pydantic models are read from their ``__dict__`` and extras: ``getattr``
    of a missing field goes through ``BaseModel.__getattr__`` and an
    exception, which cost more per chunk than the text operators.
    """
    if type(obj) is dict:
        return obj.get(name)
    values = getattr(obj, "__dict__", None)
    if values is not None:
        if name in values:
            return values[name]
        if hasattr(type(obj), "__pydantic_fields__"):
            extra = obj.__pydantic_extra__
            return None if extra is None else extra.get(name)
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


_object_setattr = object.__setattr__  # pydantic models refuse plain attribute writes
# BaseModel's slots, written through their descriptors (no attribute lookup).
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
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
        if allow_extra and not changes.keys() <= fields.keys():
            extra = {} if extra is None else extra.copy()
            for key, value in changes.items():
                if key in fields:
                    values[key] = value
                else:
                    extra[key] = value
        else:
            values.update(changes)
            if extra is not None:
                extra = extra.copy()
        _object_setattr(new, "__dict__", values)
        _set_extra(new, extra)
        fields_set = obj.__pydantic_fields_set__.copy()  # not union(): it may grow the table
        fields_set.update(changes)
        _set_fields_set(new, fields_set)
        private = obj.__pydantic_private__
        if private is not None:
            private = {k: v for k, v in private.items() if v is not PydanticUndefined}
        _set_private(new, private)
        return new
    model_copy = getattr(obj, "model_copy", None)
    if model_copy is not None:
        return model_copy(update=changes)
    new = copy.copy(obj)
    for key, value in changes.items():
        setattr(new, key, value)
    return new


def find_lens(chunk: Any, /) -> Lens | ChannelLens:
    """Return a fresh lens for ``chunk`` from the registered lens factories.

    Raises :class:`~streamops.ChunkTypeError` when no lens recognises it.

    >>> import streamops as so
    >>> type(find_lens({"object": "chat.completion.chunk", "choices": []})).__name__
    'OpenAIChatLens'
    >>> find_lens(42)
    Traceback (most recent call last):
    ...
    streamops.ChunkTypeError: chunk 0 has type int, expected str or a chunk type ...
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


# Keys whose string values in a tool's payload are not text a person reads:
# identifiers, enum values, encodings and opaque blobs (base64 data, signatures).
_OPAQUE_KEYS = frozenset(
    {
        "approval_request_id",
        "background",
        "call_id",
        "container_id",
        "created_by",
        "data",
        "encrypted_content",
        "encrypted_index",
        "error_code",
        "file_id",
        "file_type",
        "id",
        "image_url",
        "item_id",
        "language",
        "media_type",
        "mime_type",
        "model",
        "name",
        "namespace",
        "outcome",
        "output_format",
        "page_age",
        "phase",
        "quality",
        "retrieved_at",
        "role",
        "server_label",
        "signature",
        "size",
        "status",
        "tool_use_id",
        "toolset_name",
        "type",
    }
)


class Ahead(NamedTuple):
    """What feeding one chunk will do to a stream's channels, read before it is fed.

    ``wholes``: the texts that come whole, as ``(kind, text)`` in the order
    they are fed, each into a channel of its own that ends at once.
    ``ends``: whether feeding it may end a channel that holds text from
    before (a block's stop, a finish) or end messages as it goes (tool-call
    arguments, whose JSON string values are messages of their own).
    """

    wholes: list[tuple[str, str]]
    ends: bool


class _Reader:
    """Stands in for a stream's channels to read a chunk ahead: every text comes back as it came.

    A lens reading ahead runs its own ``process`` over this reader (the same
    traversal, the same opaque and skip rules as the real feed); the reader
    notes which channels a chunk opens and ends at once (texts that come
    whole) and whether it ends any other. It keeps the open channels from one
    chunk to the next, as the real channels do, so a lens that looks at them
    (Gemini's thought channel) takes the same paths.
    """

    __slots__ = ("_args", "_open", "ends", "wholes")

    def __init__(self) -> None:
        # key -> [kind, the texts fed during this chunk, opened during this chunk]
        self._open: dict[Any, list[Any]] = {}
        # key -> the arguments read as the real channel reads them: what it still
        # holds outside strings (a closing brace) is released whole at its end
        self._args: dict[Any, Any] = {}
        self.wholes: list[tuple[str, str]] = []
        self.ends = False

    def begin(self) -> None:
        self.wholes = []
        self.ends = False
        for entry in self._open.values():
            entry[1] = []
            entry[2] = False

    def feed(self, key: Any, kind: str, text: str) -> str:
        if not text:
            return ""
        entry = self._open.get(key)
        if entry is None:
            entry = self._open[key] = [kind, [], True]
        entry[1].append(text)
        if kind == "tool_arguments":  # each JSON string value is a message that ends in it
            self.ends = True
            args = self._args.get(key)
            if args is None:
                args = self._args[key] = follow_arguments()
            elif args.held():  # released with this text (': ' before a number, say)
                self.wholes.append((kind, args.held()))
            args.feed(text)
        return text

    def end(self, key: Any, *, forced: bool | None = None) -> str:
        entry = self._open.pop(key, None)
        if entry is None:
            return ""
        kind, texts, fresh = entry
        args = self._args.pop(key, None)
        if fresh:
            self.wholes.append((kind, "".join(texts)))
        else:
            self.ends = True
            if args is not None and args.held():
                self.wholes.append((kind, args.held()))
        return ""

    def open_keys(self) -> list[Any]:
        return list(self._open)


def _text_source(value: Any) -> bool:
    """Whether ``value`` is a source whose ``data`` is plain text, not a blob.

    Anthropic's ``PlainTextSource`` (``{"type": "text", "media_type":
    "text/plain", "data": ...}``): a fetched page, a document.
    """
    return bool(_get(value, "type") == "text")


def _at(at: tuple[Any, ...] | None, step: Any) -> tuple[Any, ...] | None:
    """The place one step inside ``at`` (``None`` stays ``None``: not remembered)."""
    return None if at is None else (*at, step)


class _ChannelLens(abc.ABC):
    """Shared logic of the provider lenses: every text channel of a chunk is a stream.

    ``process(chunk, channels)`` feeds each text field of the chunk to its
    channel (``channels.feed(key, kind, text)``) and rebuilds the chunk with
    what the operators released; a chunk that ends a channel (a block stop, a
    finish reason) first gets that channel's held text (``channels.end(key)``)
    in front of it, in the provider's own shape. A block stop that comes
    before the provider says whether the message was cut (Anthropic's
    ``content_block_stop`` before ``message_delta``, Responses' ``*.done``
    events before ``response.incomplete``) is held until the next event
    tells, so that a live partial secret of a cut message is masked, never
    released. Chunks without text pass through unchanged, metadata and all.
    ``unwrap`` reads the answer text alone (for value operators such as
    :func:`~streamops.parse_json`).
    """

    __slots__ = ("_ended", "_n", "_pending", "_reader", "_seen", "_wholes", "truncated")

    # False when the lens never holds a chunk and its _process sets ``truncated``
    # itself: process() then skips the generic hooks (the per-chunk hot path).
    _generic = True

    def __init__(self) -> None:
        self._n = 0
        # Boundary chunks held until the next chunk says whether the message was cut.
        self._pending: list[Any] = []
        # The provider said it cut the message (a length or content-filter finish):
        # the channels then end truncated instead of closed.
        self.truncated = False
        # The provider said the message is complete (a finish reason, a stop
        # event): a stream that ends without it (a dropped connection, an error
        # event) ended by force.
        self._ended = False
        self._wholes = 0  # texts that came whole (see _whole)
        self._seen: dict[tuple[Any, ...], tuple[str, str]] = {}  # see _scrub's ``at``
        self._reader: _Reader | None = None  # (read_ahead's stand-in channels)

    @abc.abstractmethod
    def unwrap(self, chunk: Any, /) -> str:
        """Return the answer text of ``chunk`` (``""`` if none)."""

    @abc.abstractmethod
    def texts(self, chunk: Any, /) -> list[str]:
        """Return every text ``chunk`` carries, in all its channels (read only).

        What a ledger budget reserves for before the chunk is fed.
        """

    def read_ahead(self, chunk: Any = None, /, *, end: bool = False) -> Ahead:
        """Return what feeding ``chunk`` (or, with ``end``, ending the stream) will do.

        What a ledger budget reserves for before the chunk is fed, beyond
        :meth:`texts`: the texts that come whole (a tool's output, a tool's
        input given at once, citations, grounding), which end their channel
        at once, and whether a channel ends. Call it on a lens of its own,
        once per chunk, in order: it follows the stream's state (a held
        boundary's whole texts come when the chunk that releases it is fed).

        >>> lens = AnthropicLens()
        >>> result = {"type": "code_execution_tool_result", "tool_use_id": "s1", "content": {
        ...     "type": "code_execution_result", "stdout": "42", "stderr": "", "return_code": 0}}
        >>> lens.read_ahead({"type": "content_block_start", "index": 0, "content_block": result})
        Ahead(wholes=[('tool_output', '42')], ends=False)
        """
        reader = self._reader
        if reader is None:
            reader = self._reader = _Reader()
        reader.begin()
        if end:
            self.finish_channels(reader)
        else:
            self.process(chunk, reader)
        return Ahead(reader.wholes, reader.ends)

    @abc.abstractmethod
    def _process(self, chunk: Any, channels: Any) -> list[Any]:
        """Feed one chunk that is not held; return the chunks to emit for it."""

    def _whole(self, channels: Any, kind: str, text: str) -> str:
        """``text`` that came whole (a tool's output, a quote): through a channel of its own.

        The channel is ended at once as a complete text (a partial match at its
        end is no secret's prefix: nothing more will come).
        """
        self._wholes += 1
        key = ("whole", self._wholes)
        out: str = channels.feed(key, kind, text) + channels.end(key, forced=False)
        return out

    def _scrub(
        self,
        value: Any,
        channels: Any,
        skip: frozenset[str] = frozenset(),
        *,
        opaque: frozenset[str] = frozenset(),
        kind: str = "tool_output",
        at: tuple[Any, ...] | None = None,
    ) -> Any:
        """``value`` (a payload that came whole) with each of its texts through :meth:`_whole`.

        Every string in it, at any depth of dicts, lists and SDK models, is a
        ``kind`` text, except the values of :data:`_OPAQUE_KEYS` and ``opaque``
        at any depth and of ``skip`` at the top (identifiers, enum values,
        encodings, opaque blobs). Returns ``value`` itself when nothing changed.

        ``at`` names where ``value`` sits in the message (an item's id, say)
        when the stream repeats it whole in later events: a text at the same
        place, equal to the one seen there before, is not fed again but shown
        as released then (a budget counts it once, a redaction reports it
        once, and every repetition shows the same cut).
        """
        if type(value) is str:
            if not value:
                return value
            if at is None:
                return self._whole(channels, kind, value)
            seen = self._seen.get(at)
            if seen is not None and seen[0] == value:
                return seen[1]
            out = self._whole(channels, kind, value)
            self._seen[at] = (value, out)
            return out
        if isinstance(value, list | tuple):
            new = [
                self._scrub(v, channels, opaque=opaque, kind=kind, at=_at(at, i))
                for i, v in enumerate(value)
            ]
            if all(a is b for a, b in zip(new, value, strict=True)):
                return value
            return type(value)(new) if isinstance(value, tuple) else new
        pairs = _fields(value) if isinstance(value, dict | BaseModel) else ()
        changes: dict[str, Any] = {}
        for name, item in pairs:
            if name in opaque or name in skip or item is None:
                continue
            if name in _OPAQUE_KEYS and not (name == "data" and _text_source(value)):
                continue
            fixed = self._scrub(item, channels, opaque=opaque, kind=kind, at=_at(at, name))
            if fixed is not item:
                changes[name] = fixed
        return _replace(value, **changes) if changes else value

    def _holds(self, chunk: Any) -> bool:
        """Whether ``chunk`` is a boundary to hold until the next chunk (default: never)."""
        return False

    def _cuts(self, chunk: Any) -> bool:
        """Whether ``chunk`` says the message was cut (a length finish, say)."""
        return False

    def _release(self, chunk: Any, channels: Any) -> list[Any]:
        """Emit a held boundary chunk: the held text of what it ends, then itself."""
        return [chunk]

    def _flush(self, channels: Any) -> list[Any]:
        """At the end of the stream: chunks carrying what the open channels still held."""
        return []

    def process(self, chunk: Any, channels: Any, /) -> list[Any]:
        """Return the chunks to emit for ``chunk`` (see the class docstring)."""
        self._n += 1
        if not self._generic:
            return self._process(chunk, channels)
        if self._cuts(chunk):
            self.truncated = True
        if self._holds(chunk):
            self._pending.append(chunk)
            return []
        out: list[Any] = []
        if self._pending:
            held, self._pending = self._pending, []
            for c in held:
                out += self._release(c, channels)
        return out + self._process(chunk, channels)

    def finish_channels(self, channels: Any, /) -> list[Any]:
        """Return the held chunks and what the open channels still held, at the end."""
        if not self._ended:
            self.truncated = True
        out: list[Any] = []
        held, self._pending = self._pending, []
        for c in held:
            out += self._release(c, channels)
        return out + self._flush(channels)


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

    def truncate(self, texts: list[str], /) -> list[Any]:
        """The stream was cut: the bytes of a character it left incomplete are dropped."""
        self._decoder.reset()
        text = "".join(texts)
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

# delta fields that carry text, and their channel kind. ``reasoning_content``
# is what OpenAI-compatible reasoning models (DeepSeek, vLLM, ...) stream;
# ``reasoning`` what others (OpenRouter, Ollama) do.
_OPENAI_FIELDS = (
    ("content", "content"),
    ("refusal", "refusal"),
    ("reasoning_content", "reasoning"),
    ("reasoning", "reasoning"),
)
_OPENAI_KINDS = dict(_OPENAI_FIELDS)
_OPENAI_RANK = {field: rank for rank, (field, _) in enumerate(_OPENAI_FIELDS)}
# delta fields holding an object whose one field is text: (that field, channel kind).
# ``function_call`` is the deprecated functions API; ``audio`` an audio answer's transcript.
_OPENAI_NESTED = {
    "function_call": ("arguments", "tool_arguments"),
    "audio": ("transcript", "content"),
}


def _nested(delta: Any, key: str, data: dict[str, Any]) -> Any:
    """The value of field ``key`` of ``delta``'s type holding ``data`` (a model, or the dict)."""
    if type(delta) is dict:
        return data
    return _get(type(delta).model_validate({key: data}), key)


def _fields(obj: Any) -> Any:
    """The (name, value) pairs of a dict or an SDK model (fields and extras)."""
    if type(obj) is dict:
        return obj.items()
    values = getattr(obj, "__dict__", None)
    if values is None:
        return ()
    extra = getattr(obj, "__pydantic_extra__", None)
    return (*values.items(), *extra.items()) if extra else values.items()


class _ChatShape(NamedTuple):
    """What :meth:`OpenAIChatLens._fast` knows of one (chunk, choice, delta) class triple."""

    chunk: type[Any]
    choice: type[Any]
    delta: type[Any]
    # The delta's text fields, (field, channel kind), in the order they are fed.
    texts: tuple[tuple[str, str], ...]
    # The delta's fields that, when set, send the chunk the general way (nested
    # texts, tool calls).
    others: tuple[str, ...]


_CHAT_SHAPES: dict[tuple[type, type, type], _ChatShape | None] = {}


def _chat_shape(chunk: Any, choice: Any, delta: Any) -> _ChatShape | None:
    """The fast path's shape for these objects' classes, or ``None`` if they do not qualify.

    They qualify when all three are pydantic models copied the way
    ``BaseModel.model_copy`` copies (see :func:`_copy_plan`) with the fields the
    lens reads (so a value missing from ``__dict__`` is missing, never an extra).
    """
    key = (type(chunk), type(choice), type(delta))
    try:
        return _CHAT_SHAPES[key]
    except KeyError:
        pass
    shape: _ChatShape | None = None
    plans = [_COPY_PLANS[cls] if cls in _COPY_PLANS else _copy_plan(cls) for cls in key]
    if (
        plans[0] is not None
        and plans[1] is not None
        and plans[2] is not None
        and "choices" in plans[0][1]
        and {"delta", "index", "finish_reason", "logprobs"} <= plans[1][1].keys()
    ):
        fields = plans[2][1]
        shape = _ChatShape(
            *key,
            texts=tuple((f, kind) for f, kind in _OPENAI_FIELDS if f in fields),
            others=tuple(f for f in (*_OPENAI_NESTED, "tool_calls") if f in fields),
        )
    _CHAT_SHAPES[key] = shape
    return shape


def _private_copy(private: dict[str, Any]) -> dict[str, Any]:
    """The private attributes of a copy, as ``BaseModel.__copy__`` makes them."""
    return {k: v for k, v in private.items() if v is not PydanticUndefined}


def _feed_texts(
    channels: Any, values: dict[str, Any], fields: Iterable[tuple[str, str]]
) -> dict[str, Any] | None:
    """Feed each text field of a chat delta's ``values``; the fields whose text changed."""
    changes: dict[str, Any] | None = None
    for field, kind in fields:
        value = values.get(field)
        if value and type(value) is str:
            text = channels.feed(field, kind, value)
            if text != value:
                if changes is None:
                    changes = {}
                changes[field] = text
    return changes


class OpenAIChatLens(_ChannelLens):
    """Lens for OpenAI ``ChatCompletionChunk`` objects and their wire-format dicts.

    Every text channel of ``choices[0].delta`` goes through the operators, each
    with its own state: ``content``, ``refusal``, ``reasoning_content`` (and
    ``reasoning``) and the ``function.arguments`` of each tool call (by its
    ``index``; operators see the decoded JSON string values, so a replacement
    keeps the arguments valid JSON). Roles, tool-call ids and names, ids,
    ``system_fingerprint``, finish reasons and usage pass through. Text the
    operators still hold when the finish-reason chunk comes is released just
    before it (or in it, for a field it carries); a ``length`` or
    ``content_filter`` finish ends the channels truncated. When a chunk's text
    changes, its ``logprobs`` are dropped (they would spell the original).

    Streams with several choices (``n > 1``) are refused with
    :class:`LensError` rather than letting the other choices bypass the
    operators.

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

    __slots__ = ("_dicts", "_learn", "_shape", "_template")

    def __init__(self) -> None:
        super().__init__()
        self._template: Any = None
        # The fast way (process()), learnt from the first chunk with a choice: the
        # shape of its SDK classes, or dicts.
        self._learn = True
        self._shape: _ChatShape | None = None
        self._dicts = False

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
            raise ChunkTypeError(max(self._n - 1, 0), chunk, "an OpenAI chat completion chunk")
        if not choices:
            return None
        if len(choices) > 1 or _get(choices[0], "index") not in (0, None):
            index = _get(choices[-1], "index")
            raise LensError(
                f"chunk {max(self._n - 1, 0)}: choice index {index}; streamops runs one text"
                " pipeline per stream, so only n=1 streams can be wrapped (request n=1,"
                " or make one request per choice)"
            )
        return choices[0]

    def unwrap(self, chunk: Any, /) -> str:
        """Return ``choices[0].delta.content`` (``""`` if none)."""
        choice = self._choice(chunk)
        content = _get(_get(choice, "delta"), "content") if choice is not None else None
        return content if isinstance(content, str) else ""

    def texts(self, chunk: Any, /) -> list[str]:
        """Return the texts of every field and tool call of ``choices[0].delta``."""
        choice = self._choice(chunk)
        if choice is None:
            return []
        delta = _get(choice, "delta")
        out = [t for f, _ in _OPENAI_FIELDS if isinstance(t := _get(delta, f), str) and t]
        for field, (sub, _) in _OPENAI_NESTED.items():
            text = _get(_get(delta, field), sub)
            if isinstance(text, str) and text:
                out.append(text)
        for call in _get(delta, "tool_calls") or ():
            args = _get(_get(call, "function"), "arguments")
            if isinstance(args, str) and args:
                out.append(args)
        return out

    _generic = False

    def _process(self, chunk: Any, channels: Any) -> list[Any]:
        choice = self._choice(chunk)
        if choice is None:  # the usage chunk (empty choices)
            record_usage(channels, _get(chunk, "usage"))
            return [chunk]
        self._template = chunk
        delta = _get(choice, "delta")
        if self._learn:  # the first chunk with a choice: may the next ones go the fast way?
            self._learn = False
            cls = type(self)
            if (
                cls._process is OpenAIChatLens._process  # (LiteLLMLens adds to it)
                and cls._fast is OpenAIChatLens._fast
                and cls._fast_dict is OpenAIChatLens._fast_dict
                and cls._write is OpenAIChatLens._write
            ):
                if type(chunk) is dict:
                    self._dicts = True
                else:
                    self._shape = _chat_shape(chunk, choice, delta)
        changes: dict[str, Any] = {}
        calls: Any = None
        new_calls: list[Any] | None = None
        # Only the fields the delta has (most deltas have one), not a probe of each;
        # fed in one fixed order (content first), whatever the order of the keys.
        found: list[tuple[int, str, str]] = []
        for field, value in _fields(delta):
            if field == "tool_calls":
                calls = value
                continue
            nested = _OPENAI_NESTED.get(field)
            if nested is not None and value is not None:
                sub, kind = nested
                text = _get(value, sub)
                if isinstance(text, str) and text:
                    out = channels.feed(field, kind, text)
                    if out != text:
                        changes[field] = _replace(value, **{sub: out})
                continue
            rank = _OPENAI_RANK.get(field)
            if rank is not None and value and type(value) is str:
                found.append((rank, field, value))
        if len(found) > 1:
            found.sort()
        for _, field, value in found:
            out = channels.feed(field, _OPENAI_KINDS[field], value)
            if out != value:
                changes[field] = out
        if calls:
            for k, call in enumerate(calls):
                function = _get(call, "function")
                args = _get(function, "arguments")
                if isinstance(args, str) and args:
                    out = channels.feed(("tool", _get(call, "index")), "tool_arguments", args)
                    if out != args:
                        if new_calls is None:
                            new_calls = list(calls)
                        new_calls[k] = _replace(call, function=_replace(function, arguments=out))
        finish = _get(choice, "finish_reason")
        if finish is not None:  # every channel of the message ends
            self._ended = True
            record_usage(channels, _get(chunk, "usage"))
            if finish in _CUT_FINISHES:
                self.truncated = True
            for key in channels.open_keys():  # its held text goes in this chunk, in order
                text = channels.end(key)
                if not text:
                    continue
                if isinstance(key, tuple):  # ("tool", index)
                    if new_calls is None:
                        new_calls = list(calls or [])
                    new_calls.append(self._tool_delta(chunk, key[1], text))
                elif key in _OPENAI_NESTED:
                    sub = _OPENAI_NESTED[key][0]
                    value = changes.get(key, _get(delta, key))
                    changes[key] = (
                        _nested(delta, key, {sub: text})
                        if value is None
                        else _replace(value, **{sub: (_get(value, sub) or "") + text})
                    )
                else:
                    changes[key] = changes.get(key, _get(delta, key) or "") + text
        if changes or new_calls is not None:
            chunk = self._write(chunk, choice, delta, changes, new_calls)
        return [chunk]

    def process(self, chunk: Any, channels: Any, /) -> list[Any]:
        """Return the chunks to emit for ``chunk`` (see :class:`_ChannelLens`)."""
        self._n += 1
        shape = self._shape
        if shape is not None and type(chunk) is shape.chunk:
            out = self._fast(shape, chunk, channels)
            if out is not None:
                return out
        elif self._dicts and type(chunk) is dict:
            out = self._fast_dict(chunk, channels)
            if out is not None:
                return out
        return self._process(chunk, channels)

    def _fast_dict(self, chunk: dict[str, Any], channels: Any) -> list[Any] | None:
        """:meth:`_fast` for wire-format dicts: ``None`` for any chunk it does not take."""
        choices = chunk.get("choices")
        if type(choices) is not list or len(choices) != 1:
            return None
        choice = choices[0]
        if type(choice) is not dict:
            return None
        index = choice.get("index")
        if type(index) is not int or index != 0 or choice.get("finish_reason") is not None:
            return None
        delta = choice.get("delta")
        if (
            type(delta) is not dict
            or delta.get("tool_calls")
            or delta.get("function_call") is not None
            or delta.get("audio") is not None
        ):
            return None
        self._template = chunk
        changes = _feed_texts(channels, delta, _OPENAI_FIELDS)
        if changes is None:
            return [chunk]
        if choice.get("logprobs") is None:
            new_choice = {**choice, "delta": {**delta, **changes}}
        else:  # they would spell the original
            new_choice = {**choice, "delta": {**delta, **changes}, "logprobs": None}
        return [{**chunk, "choices": [new_choice]}]

    def _fast(self, shape: _ChatShape, chunk: Any, channels: Any) -> list[Any] | None:
        """``_process`` for the common SDK chunk: one choice, text fields only, no finish.

        Returns ``None``, having done nothing, for any other chunk (``_process``
        takes it). For the chunks it takes it returns what ``_process`` returns
        (``tests/test_lens_fastpath.py`` compares them): the same fields fed to
        the same channels in the same order, the chunk passed through as is when
        no text changed, and otherwise the delta, its choice and the chunk
        rebuilt with the steps of ``model_copy(update=...)`` (a new
        ``__dict__``, extras, fields set and private attributes for each), with
        the checks that ``_replace`` makes per call made once, in the shape.
        """
        values = chunk.__dict__
        choices = values.get("choices")
        if type(choices) is not list or len(choices) != 1:
            return None
        choice = choices[0]
        if type(choice) is not shape.choice:
            return None
        choice_values = choice.__dict__
        index = choice_values.get("index")
        if type(index) is not int or index != 0 or choice_values.get("finish_reason") is not None:
            return None
        delta = choice_values.get("delta")
        if type(delta) is not shape.delta or delta.__pydantic_extra__:
            return None  # (a delta's extras may be text: reasoning_content, say)
        delta_values = delta.__dict__
        for field in shape.others:
            if delta_values.get(field) is not None:
                return None
        self._template = chunk
        changes = _feed_texts(channels, delta_values, shape.texts)
        if changes is None:
            return [chunk]
        # Each changed field is a field of the class already in __dict__, so the
        # copy's __dict__ keeps the original's key order, as model_copy's does.
        new_delta = _object_new(shape.delta)
        _object_setattr(new_delta, "__dict__", {**delta_values, **changes})
        _set_extra(new_delta, None if delta.__pydantic_extra__ is None else {})
        fields_set = delta.__pydantic_fields_set__.copy()
        fields_set.update(changes)
        _set_fields_set(new_delta, fields_set)
        private = delta.__pydantic_private__
        _set_private(new_delta, None if private is None else _private_copy(private))

        new_choice = _object_new(shape.choice)
        new_values = choice_values.copy()
        new_values["delta"] = new_delta
        fields_set = choice.__pydantic_fields_set__.copy()
        fields_set.add("delta")
        if choice_values.get("logprobs") is not None:  # they would spell the original
            new_values["logprobs"] = None
            fields_set.add("logprobs")
        _object_setattr(new_choice, "__dict__", new_values)
        extra = choice.__pydantic_extra__
        _set_extra(new_choice, None if extra is None else extra.copy())
        _set_fields_set(new_choice, fields_set)
        private = choice.__pydantic_private__
        _set_private(new_choice, None if private is None else _private_copy(private))

        new = _object_new(shape.chunk)
        new_values = values.copy()
        new_values["choices"] = [new_choice]
        _object_setattr(new, "__dict__", new_values)
        extra = chunk.__pydantic_extra__
        _set_extra(new, None if extra is None else extra.copy())
        fields_set = chunk.__pydantic_fields_set__.copy()
        fields_set.add("choices")
        _set_fields_set(new, fields_set)
        private = chunk.__pydantic_private__
        _set_private(new, None if private is None else _private_copy(private))
        return [new]

    @staticmethod
    def _tool_delta(template: Any, index: Any, text: str) -> Any:
        call = {"index": index, "function": {"arguments": text}}
        if isinstance(template, dict):
            return call
        from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

        return ChoiceDeltaToolCall.model_validate(call)

    @staticmethod
    def _write(
        chunk: Any, choice: Any, delta: Any, changes: dict[str, Any], calls: list[Any] | None
    ) -> Any:
        if calls is not None:
            changes = {**changes, "tool_calls": calls}
        choice_changes: dict[str, Any] = {"delta": _replace(delta, **changes)}
        if _get(choice, "logprobs") is not None:
            choice_changes["logprobs"] = None
        return _replace(chunk, choices=[_replace(choice, **choice_changes)])

    def _flush(self, channels: Any) -> list[Any]:
        out: list[Any] = []
        for key in channels.open_keys():
            text = channels.end(key)
            if text:
                out += self._synth(key, text)
        return out

    def _synth(self, key: Any, text: str) -> list[Any]:
        """A chunk carrying only ``text`` for channel ``key`` (a field or a tool call)."""
        template = self._template
        if template is None:  # pragma: no cover - text only comes from chunks with a choice
            raise LensError("released text before any chat completion chunk")
        dicts = isinstance(template, dict)
        delta: dict[str, Any]
        if isinstance(key, tuple):  # ("tool", index)
            delta = {"tool_calls": [self._tool_delta(template, key[1], text)]}
        elif key in _OPENAI_NESTED:
            delta = {key: {_OPENAI_NESTED[key][0]: text}}
        else:
            delta = {key: text}
        choice: Any
        if dicts:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        else:
            from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta

            choice = Choice(index=0, delta=ChoiceDelta(**delta), finish_reason=None)
        changes: dict[str, Any] = {"choices": [choice]}
        if _get(template, "usage") is not None:
            changes["usage"] = None
        return [_replace(template, **changes)]


# --------------------------------------------------------------------------
# OpenAI Responses API
# --------------------------------------------------------------------------

# delta event type -> (channel prefix, the event field of its index, kind)
_RESPONSE_DELTAS = {
    "response.output_text.delta": ("output_text", "content_index", "content"),
    "response.refusal.delta": ("refusal", "content_index", "refusal"),
    "response.reasoning_text.delta": ("reasoning_text", "content_index", "reasoning"),
    "response.reasoning_summary_text.delta": ("summary", "summary_index", "reasoning"),
    "response.function_call_arguments.delta": ("arguments", None, "tool_arguments"),
    "response.mcp_call_arguments.delta": ("mcp_arguments", None, "tool_arguments"),
    "response.custom_tool_call_input.delta": ("custom_input", None, "tool_input"),
    "response.code_interpreter_call_code.delta": ("code", None, "tool_input"),
    "response.audio.transcript.delta": ("transcript", None, "content"),
}
# done event type -> (channel prefix, index field, the field repeating the whole text)
_RESPONSE_DONES: dict[str, tuple[str, str | None, str | None]] = {
    "response.output_text.done": ("output_text", "content_index", "text"),
    "response.refusal.done": ("refusal", "content_index", "refusal"),
    "response.reasoning_text.done": ("reasoning_text", "content_index", "text"),
    "response.reasoning_summary_text.done": ("summary", "summary_index", "text"),
    "response.function_call_arguments.done": ("arguments", None, "arguments"),
    "response.mcp_call_arguments.done": ("mcp_arguments", None, "arguments"),
    "response.custom_tool_call_input.done": ("custom_input", None, "input"),
    "response.code_interpreter_call_code.done": ("code", None, "code"),
    "response.audio.transcript.done": ("transcript", None, None),
}
_RESPONSE_KINDS = {prefix: kind for prefix, _, kind in _RESPONSE_DELTAS.values()}
# output item type -> (its text field, the channel prefix of that field)
_RESPONSE_ITEM_TEXTS = {
    "function_call": ("arguments", "arguments"),
    "mcp_call": ("arguments", "mcp_arguments"),
    "custom_tool_call": ("input", "custom_input"),
    "code_interpreter_call": ("code", "code"),
}
# output item type -> its fields that _fix_item does not scrub as tool output:
# the texts with channels of their own, and blobs (an image's base64 data).
_RESPONSE_ITEM_SKIP_ALL = frozenset({"content", "summary"})
_RESPONSE_ITEM_SKIP = {
    **{t: _RESPONSE_ITEM_SKIP_ALL | {name} for t, (name, _) in _RESPONSE_ITEM_TEXTS.items()},
    "image_generation_call": _RESPONSE_ITEM_SKIP_ALL | {"result"},
}
_ANY = object()  # (any index)
_RESPONSE_PART_DONES = frozenset(
    {
        "response.content_part.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    }
)
_RESPONSE_FINALS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _item(item_id: Any, output_index: Any) -> Any:
    """Which output item a Responses event is about: its id, else its place in the output.

    The stream repeats an item whole at ``output_item.added``, at
    ``output_item.done`` and in the final event (at that index of its
    ``output``), and a cited annotation at ``annotation.added`` and in every
    event that repeats its part: what came whole is remembered by item, and
    each text channel is keyed by it. The real wire always sends an id; a
    proxy or a hand-built stream may not, and its item is then still the one
    at ``output_index``.
    """
    return item_id if isinstance(item_id, str) and item_id else ("output", output_index)


class OpenAIResponsesLens(_ChannelLens):
    """Lens for OpenAI Responses API stream events (SDK objects or dicts).

    Every text delta is a channel of its own: ``output_text``, ``refusal``,
    reasoning text and reasoning summaries (per part), and function-call
    arguments (per item; operators see the decoded JSON string values).
    The ``*.done`` events, ``content_part.done``, ``output_item.done`` and the
    final ``response.completed`` repeat the whole texts: they are rewritten to
    what was released for each channel, so they always equal the
    concatenated deltas, and a removed secret cannot come back through them.
    A tool's output or a citation that the stream repeats whole (at
    ``output_item.added``, ``output_item.done`` and in the final event) goes
    through the operators once: a budget counts it once, and every repetition
    shows what was released the first time. An error's message (the
    ``error`` event's, ``response.failed``'s) comes whole too, and is
    redacted as such. A channel's held text is
    released as one more delta event just before its ``*.done`` event;
    ``*.done`` events wait for the next event, which says
    whether the response was cut (``response.incomplete``: a live partial
    secret is then masked). Sequence numbers are shifted past inserted
    events, so they stay unique and increasing. ``logprobs`` of a changed
    delta are emptied.

    Wrap the raw events (``client.responses.create(..., stream=True)``), not
    the ``responses.stream()`` helper events: their deltas carry a snapshot
    of the whole text so far that would bypass the operators, so they raise
    :class:`LensError`.

    >>> import streamops as so
    >>> events = [
    ...     {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0,
    ...      "content_index": 0, "delta": "Mail a@b.co", "logprobs": [], "sequence_number": 1},
    ...     {"type": "response.output_text.done", "item_id": "m1", "output_index": 0,
    ...      "content_index": 0, "text": "Mail a@b.co", "logprobs": [], "sequence_number": 2},
    ... ]
    >>> [(e.get("delta", e.get("text")), e["sequence_number"])
    ...  for e in so.redact(["email"])(events)]
    [('Mail ', 1), ('[EMAIL]', 2), ('Mail [EMAIL]', 3)]
    """

    __slots__ = ("_channels", "_last", "_seq", "_shift", "_texts")

    def __init__(self) -> None:
        super().__init__()
        self._channels: Any = None
        self._texts: dict[tuple[Any, ...], list[str]] = {}
        self._last: dict[tuple[Any, ...], Any] = {}  # the last delta event of each channel
        self._shift = 0  # events inserted so far: later sequence numbers move up by it
        self._seq = -1  # the last sequence number handed out

    @classmethod
    def match(cls, chunk: Any, /) -> OpenAIResponsesLens | None:
        """Return a lens for ``response.*`` events (objects or dicts), else ``None``."""
        kind = _get(chunk, "type")
        return cls() if isinstance(kind, str) and kind.startswith("response.") else None

    def unwrap(self, chunk: Any, /) -> str:
        """Return the ``delta`` of an ``output_text`` delta event (``""`` otherwise)."""
        if _get(chunk, "type") != "response.output_text.delta":
            return ""
        delta = _get(chunk, "delta")
        return delta if isinstance(delta, str) else ""

    def texts(self, chunk: Any, /) -> list[str]:
        """Return the ``delta`` of a text, reasoning or arguments delta event."""
        if _get(chunk, "type") in _RESPONSE_DELTAS:
            delta = _get(chunk, "delta")
            return [delta] if isinstance(delta, str) and delta else []
        return []

    @staticmethod
    def _key(chunk: Any, prefix: str, index_field: str | None) -> tuple[Any, ...]:
        index = None if index_field is None else _get(chunk, index_field)
        return (prefix, _item(_get(chunk, "item_id"), _get(chunk, "output_index")), index)

    def _holds(self, chunk: Any) -> bool:
        kind = _get(chunk, "type")
        return kind in _RESPONSE_DONES or kind in _RESPONSE_PART_DONES

    def _cuts(self, chunk: Any) -> bool:
        kind = _get(chunk, "type")
        if kind in ("response.incomplete", "response.failed", "error"):
            return True
        return kind == "response.output_item.done" and bool(
            _get(_get(chunk, "item"), "status") == "incomplete"
        )

    def _numbered(self, chunk: Any) -> Any:
        seq = _get(chunk, "sequence_number")
        if seq is None:
            return chunk
        seq += self._shift
        self._seq = seq
        return chunk if not self._shift else _replace(chunk, sequence_number=seq)

    def _insert(self, key: tuple[Any, ...], text: str) -> list[Any]:
        """A delta event carrying ``text`` for channel ``key``, numbered after the last."""
        last = self._last.get(key)
        if last is None:  # pragma: no cover - text only comes from delta events
            raise LensError(f"released text for {key} before any delta event")
        self._texts.setdefault(key, []).append(text)
        self._shift += 1
        self._seq += 1
        changes: dict[str, Any] = {"delta": text}
        if _get(last, "logprobs"):
            changes["logprobs"] = []
        if _get(last, "sequence_number") is not None:
            changes["sequence_number"] = self._seq
        return [_replace(last, **changes)]

    def _process(self, chunk: Any, channels: Any) -> list[Any]:
        self._channels = channels
        kind = _get(chunk, "type")
        spec = _RESPONSE_DELTAS.get(kind)
        if spec is not None:
            prefix, index_field, channel = spec
            if _get(chunk, "snapshot") is not None:
                raise LensError(
                    f"chunk {self._n - 1}: OpenAI {kind!r} helper event from"
                    " responses.stream() carries the accumulated text (snapshot); wrap the"
                    " raw events of client.responses.create(..., stream=True) instead"
                )
            key = self._key(chunk, prefix, index_field)
            text = _get(chunk, "delta")
            if isinstance(text, str):
                self._last[key] = chunk
                out = channels.feed(key, channel, text)
                self._texts.setdefault(key, []).append(out)
                if out != text:
                    changes: dict[str, Any] = {"delta": out}
                    if _get(chunk, "logprobs"):
                        changes["logprobs"] = []
                    chunk = _replace(chunk, **changes)
        elif kind == "response.output_text.annotation.added":
            annotation = _get(chunk, "annotation")
            item_id = _item(_get(chunk, "item_id"), _get(chunk, "output_index"))
            at = ("annotation", item_id, _get(chunk, "content_index"))
            fixed = self._scrub(annotation, channels, at=_at(at, _get(chunk, "annotation_index")))
            if fixed is not annotation:
                chunk = _replace(chunk, annotation=fixed)
        elif kind == "response.output_item.added":
            # Its texts stream as deltas after it (it carries empty ones), but
            # whatever text it does carry is shown, read as the later events
            # read it: arguments given whole here are arguments, and are
            # remembered for the events that repeat them.
            item = _get(chunk, "item")
            fixed = self._fix_item(item, _item(_get(item, "id"), _get(chunk, "output_index")))
            if fixed is not item:
                chunk = _replace(chunk, item=fixed)
        elif kind in _RESPONSE_FINALS:
            self._ended = True
            record_usage(channels, _get(_get(chunk, "response"), "usage"))
            return [*self._flush(channels), self._numbered(self._fix_final(chunk))]
        elif kind == "error":
            changes = self._fix_error(chunk)
            if changes:
                chunk = _replace(chunk, **changes)
        return [self._numbered(chunk)]

    def _fix_error(self, error: Any) -> dict[str, Any]:
        """The change to ``error`` for its message: the API's words may quote the output."""
        message = _get(error, "message")
        if not isinstance(message, str) or not message or self._channels is None:
            return {}
        out = self._whole(self._channels, "tool_output", message)
        return {} if out == message else {"message": out}

    def _release(self, chunk: Any, channels: Any) -> list[Any]:
        self._channels = channels
        kind = _get(chunk, "type")
        done = _RESPONSE_DONES.get(kind)
        if done is not None:
            prefix, index_field, field = done
            key = self._key(chunk, prefix, index_field)
            text = channels.end(key)
            out = self._insert(key, text) if text else []
            changes: dict[str, Any] = {}
            if field is not None:
                changes[field] = self._full(key, _get(chunk, field))
            if _get(chunk, "logprobs"):
                changes["logprobs"] = []
            done = _replace(chunk, **changes) if changes else chunk
            return [*out, self._numbered(done)]
        # A stream may skip a text's own done event: what its channel holds is
        # released before the part or the item that repeats the text whole.
        out = []
        if kind == "response.content_part.done" or kind == "response.reasoning_summary_part.done":
            part = _get(chunk, "part")
            item_id = _item(_get(chunk, "item_id"), _get(chunk, "output_index"))
            index = _get(
                chunk, "content_index" if kind == "response.content_part.done" else "summary_index"
            )
            out = self._end_open(channels, item_id, index)
            fixed = self._fix_part(part, item_id, chunk)
            if fixed is not part:
                chunk = _replace(chunk, part=fixed)
        elif kind == "response.output_item.done":
            item = _get(chunk, "item")
            item_id = _item(_get(item, "id"), _get(chunk, "output_index"))
            out = self._end_open(channels, item_id)
            chunk = _replace(chunk, item=self._fix_item(item, item_id))
        return [*out, self._numbered(chunk)]

    def _end_open(self, channels: Any, item_id: Any, index: Any = _ANY) -> list[Any]:
        """End the open channels of item ``item_id`` (of its part ``index``): their deltas."""
        out: list[Any] = []
        for key in channels.open_keys():
            if key[1] == item_id and (index is _ANY or key[2] == index):
                text = channels.end(key)
                if text:
                    out += self._insert(key, text)
        return out

    def _flush(self, channels: Any) -> list[Any]:
        out: list[Any] = []
        for key in channels.open_keys():
            text = channels.end(key)
            if text:
                out += self._insert(key, text)
        return out

    def _full(self, key: tuple[Any, ...], old: Any) -> Any:
        """The released text of channel ``key``, for an event that repeats it whole.

        A text that came with no delta (a done event or an item not streamed)
        goes through the operators here, once, as a complete message.
        """
        parts = self._texts.get(key)
        if parts is not None:
            return "".join(parts)
        kind = _RESPONSE_KINDS.get(key[0])
        if not isinstance(old, str) or not old or kind is None or self._channels is None:
            return old
        text = self._channels.feed(key, kind, old) + self._channels.end(key, forced=False)
        self._texts[key] = [text]
        return text

    def _fix_part(self, part: Any, item_id: Any, event: Any) -> Any:
        ptype = _get(part, "type")
        if ptype == "output_text":
            key = ("output_text", item_id, _get(event, "content_index"))
            changes = {"text": self._full(key, _get(part, "text")), "logprobs": []}
            annotations = _get(part, "annotations")
            if annotations and self._channels is not None:  # cited titles, file names, URLs
                at = ("annotation", item_id, _get(event, "content_index"))
                changes["annotations"] = self._scrub(annotations, self._channels, at=at)
            return _replace(part, **changes)
        if ptype == "refusal":
            key = ("refusal", item_id, _get(event, "content_index"))
            return _replace(part, refusal=self._full(key, _get(part, "refusal")))
        if ptype == "summary_text":
            key = ("summary", item_id, _get(event, "summary_index"))
            return _replace(part, text=self._full(key, _get(part, "text")))
        if ptype == "reasoning_text":
            key = ("reasoning_text", item_id, _get(event, "content_index"))
            return _replace(part, text=self._full(key, _get(part, "text")))
        return part

    def _fix_item(self, item: Any, item_id: Any) -> Any:
        """``item`` (whole) with its texts as released; ``item_id``: see :func:`_item`."""
        itype = _get(item, "type")
        changes: dict[str, Any] = {}
        text_field = _RESPONSE_ITEM_TEXTS.get(itype)
        if text_field is not None:
            name, channel = text_field
            value = _get(item, name)
            fixed = self._full((channel, item_id, None), value)
            if fixed is not value:
                changes[name] = fixed
        channels = self._channels
        if channels is not None:
            # The rest of the item came whole: a tool's output, a search's
            # results, a shell command (the fields above have channels of their own).
            skip = _RESPONSE_ITEM_SKIP.get(itype, _RESPONSE_ITEM_SKIP_ALL)
            item = self._scrub(item, channels, skip, at=("item", item_id))
        for field, prefix in (("content", None), ("summary", "summary")):
            parts = _get(item, field)
            if not parts:
                continue
            new = []
            for i, part in enumerate(parts):
                ptype = _get(part, "type")
                if prefix is None:
                    fake = {"content_index": i}
                    new.append(self._fix_part(part, item_id, fake))
                elif ptype == "summary_text":
                    new.append(self._fix_part(part, item_id, {"summary_index": i}))
                else:
                    new.append(part)
            changes[field] = new
        return _replace(item, **changes) if changes else item

    def _fix_final(self, chunk: Any) -> Any:
        response = _get(chunk, "response")
        changes: dict[str, Any] = {}
        output = _get(response, "output")
        if output:
            changes["output"] = [
                self._fix_item(item, _item(_get(item, "id"), i)) for i, item in enumerate(output)
            ]
        error = _get(response, "error")  # response.failed's
        fixed_error = self._fix_error(error) if error is not None else None
        if fixed_error:
            changes["error"] = _replace(error, **fixed_error)
        return _replace(chunk, response=_replace(response, **changes)) if changes else chunk


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
# content block type -> (its channel kind, the field of its text in the block)
_ANTHROPIC_BLOCKS = {
    "text": ("content", "text"),
    "thinking": ("reasoning", "thinking"),
    "tool_use": ("tool_arguments", None),
    "server_tool_use": ("tool_arguments", None),
}
# delta type -> (channel kind, its text field)
_ANTHROPIC_DELTAS = {
    "text_delta": ("content", "text"),
    "thinking_delta": ("reasoning", "thinking"),
    "input_json_delta": ("tool_arguments", "partial_json"),
}
_ANTHROPIC_DELTA_OF = {kind: (dtype, field) for dtype, (kind, field) in _ANTHROPIC_DELTAS.items()}


class AnthropicLens(_ChannelLens):
    """Lens for Anthropic Messages stream events (``anthropic.types`` objects or dicts).

    Each content block is a channel with its own operator state: text blocks
    (``text_delta``), thinking blocks (``thinking_delta``) and the JSON input
    of tool-use blocks (``input_json_delta``; operators see the decoded
    string values). What comes whole is read whole: a tool's input given in
    its block's start, the results of server tools (code execution output,
    web search and fetch results, MCP results) and citations' quoted text,
    as ``tool_output`` texts (see :data:`~streamops.lowlevel.ALL_CHANNELS`).
    ``message_start``, signatures and ``ping`` pass through. A block's held
    text is released as one more delta at that block's
    ``content_block_stop``, in order, so nothing moves to another block.
    The stop waits for the next event: when that is a
    ``message_delta`` with ``stop_reason`` ``max_tokens`` (or ``refusal``),
    the message was cut and a live partial secret is masked.

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

    __slots__ = ("_dicts", "_kinds")

    def __init__(self) -> None:
        super().__init__()
        self._kinds: dict[Any, str] = {}  # block index -> channel kind
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

    def unwrap(self, chunk: Any, /) -> str:
        """Return the text of a ``text_delta`` or a text block's start (``""`` otherwise)."""
        kind = _get(chunk, "type")
        if kind == "content_block_delta":
            delta = _get(chunk, "delta")
            if _get(delta, "type") == "text_delta":
                return _get(delta, "text") or ""
        elif kind == "content_block_start":
            block = _get(chunk, "content_block")
            if _get(block, "type") == "text":
                return _get(block, "text") or ""
        return ""

    def texts(self, chunk: Any, /) -> list[str]:
        """Return the text of a block start or a text, thinking or input JSON delta."""
        kind = _get(chunk, "type")
        text: Any = None
        if kind == "content_block_delta":
            delta = _get(chunk, "delta")
            spec = _ANTHROPIC_DELTAS.get(_get(delta, "type"))
            text = _get(delta, spec[1]) if spec is not None else None
        elif kind == "content_block_start":
            block = _get(chunk, "content_block")
            spec2 = _ANTHROPIC_BLOCKS.get(_get(block, "type"))
            text = _get(block, spec2[1]) if spec2 is not None and spec2[1] else None
        return [text] if isinstance(text, str) and text else []

    def _check(self, chunk: Any, kind: Any) -> None:
        if kind in _ANTHROPIC_HELPERS or (
            kind in ("content_block_stop", "message_stop")
            and (_get(chunk, "content_block") is not None or _get(chunk, "message") is not None)
        ):
            raise LensError(
                f"chunk {self._n - 1}: Anthropic {kind!r} helper event from messages.stream()"
                " carries the accumulated text; wrap the raw events of"
                " client.messages.create(..., stream=True) instead"
            )

    def _holds(self, chunk: Any) -> bool:
        kind = _get(chunk, "type")
        self._check(chunk, kind)
        return kind == "content_block_stop" and _get(chunk, "index") in self._kinds

    def _cuts(self, chunk: Any) -> bool:
        kind = _get(chunk, "type")
        return kind == "error" or (
            kind == "message_delta" and _get(_get(chunk, "delta"), "stop_reason") in _CUT_FINISHES
        )

    def _process(self, chunk: Any, channels: Any) -> list[Any]:
        kind = _get(chunk, "type")
        if kind == "content_block_start":
            index = _get(chunk, "index")
            block = _get(chunk, "content_block")
            spec = _ANTHROPIC_BLOCKS.get(_get(block, "type"))
            if spec is None:  # a server tool's result, say: it comes whole
                fixed = self._scrub(block, channels)
                return [chunk if fixed is block else _replace(chunk, content_block=fixed)]
            channel, field = spec
            self._kinds[index] = channel
            changes: dict[str, Any] = {}
            text = _get(block, field) if field is not None else None
            if field is not None and isinstance(text, str) and text:
                out = channels.feed(index, channel, text)
                if out != text:
                    changes[field] = out
            tool_input = _get(block, "input") if field is None else None
            if tool_input:  # a tool's input that came whole, not as input_json deltas
                whole = json.dumps(tool_input, ensure_ascii=False)
                out = self._whole(channels, "tool_arguments", whole)
                if out != whole:
                    try:
                        changes["input"] = json.loads(out)
                    except ValueError:  # cut short by a budget: no input rather than a part
                        changes["input"] = {}
            citations = _get(block, "citations")
            if citations:
                fixed = self._scrub(citations, channels)
                if fixed is not citations:
                    changes["citations"] = fixed
            if changes:
                chunk = _replace(chunk, content_block=_replace(block, **changes))
            return [chunk]
        if kind == "content_block_delta":
            delta = _get(chunk, "delta")
            spec = _ANTHROPIC_DELTAS.get(_get(delta, "type"))
            if spec is None:  # a citation's quoted text: a whole text of its own
                citation = _get(delta, "citation")
                fixed = self._scrub(citation, channels) if citation is not None else None
                if fixed is not citation:
                    chunk = _replace(chunk, delta=_replace(delta, citation=fixed))
                return [chunk]
            channel, field = spec
            index = _get(chunk, "index")
            self._kinds.setdefault(index, channel)
            text = _get(delta, field)
            if isinstance(text, str) and text:
                out = channels.feed(index, channel, text)
                if out != text:
                    chunk = _replace(chunk, delta=_replace(delta, **{field: out}))
            return [chunk]
        if kind in ("message_delta", "message_stop"):  # the message is over: every block too
            self._ended = True
            record_usage(channels, _get(chunk, "usage"))
            return [*self._flush(channels), chunk]
        if kind == "message_start":
            record_usage(channels, _get(_get(chunk, "message"), "usage"))
        return [chunk]

    def _release(self, chunk: Any, channels: Any) -> list[Any]:
        index = _get(chunk, "index")
        channel = self._kinds.pop(index, None)
        text = channels.end(index)
        if not text or channel is None:
            return [chunk]
        return [self._delta(index, channel, text), chunk]

    def _flush(self, channels: Any) -> list[Any]:
        out: list[Any] = []
        for index in channels.open_keys():
            text = channels.end(index)
            channel = self._kinds.pop(index, "content")
            if text:
                out.append(self._delta(index, channel, text))
        return out

    def _delta(self, index: Any, channel: str, text: str) -> Any:
        dtype, field = _ANTHROPIC_DELTA_OF[channel]
        data = {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": dtype, field: text},
        }
        if self._dicts:
            return data
        from anthropic.types import RawContentBlockDeltaEvent

        return RawContentBlockDeltaEvent.model_validate(data)


# --------------------------------------------------------------------------
# LangChain
# --------------------------------------------------------------------------


def _is_message_chunk(chunk: Any) -> bool:
    return any(
        cls.__name__ == "BaseMessageChunk" and cls.__module__.startswith("langchain_core")
        for cls in type(chunk).__mro__
    )


# content block type -> the field of its text (reasoning blocks of several providers)
_LC_REASONING_BLOCKS = {"thinking": "thinking", "reasoning": "reasoning"}


class LangChainLens(_ChannelLens):
    """Lens for LangChain message chunks (``AIMessageChunk`` from a chat model's ``astream``).

    Channels: the answer text (``content`` as a ``str``, or the text blocks
    of a list of content blocks: the first text block then carries the
    released text, other text blocks are dropped), reasoning (``thinking`` and
    ``reasoning`` blocks, reasoning summaries, ``additional_kwargs
    ["reasoning_content"]``), a refusal (``additional_kwargs["refusal"]``)
    and the ``args`` of each tool-call chunk (by ``index``; operators see the
    decoded JSON string values). ``id``, tool-call names and ids,
    ``response_metadata`` and ``usage_metadata`` pass through, and a chunk
    whose tool-call arguments changed is rebuilt so that its parsed
    ``tool_calls`` agree, so ``chunk1 + chunk2`` still merges. The chunk that
    ends the message (a finish reason, usage, or ``chunk_position="last"``)
    gets the text the operators still held, in place; a ``length`` finish ends
    the channels truncated.

    >>> import streamops as so
    >>> from langchain_core.messages import AIMessageChunk
    >>> out = list(so.redact(["email"])([AIMessageChunk(content="Mail a@b.co", id="r1")]))
    >>> [(c.content, c.id) for c in out]
    [('Mail ', 'r1'), ('[EMAIL]', 'r1')]
    """

    __slots__ = ("_mirrors", "_template", "_text_at")

    def __init__(self) -> None:
        super().__init__()
        self._template: Any = None
        self._text_at: Any = None  # the index of the text block being read, if any
        # Where this stream repeats tool-call arguments besides tool_call_chunks:
        # "kwargs" (additional_kwargs["tool_calls"]) and/or "blocks" (input_json_delta).
        self._mirrors: set[str] = set()

    @classmethod
    def match(cls, chunk: Any, /) -> LangChainLens | None:
        """Return a lens for ``langchain_core`` message chunks, else ``None``."""
        return cls() if _is_message_chunk(chunk) else None

    def _message(self, chunk: Any) -> Any:
        if not _is_message_chunk(chunk):
            raise ChunkTypeError(self._n - 1, chunk, "a LangChain message chunk")
        return chunk

    def unwrap(self, chunk: Any, /) -> str:
        """Return the answer text of ``chunk`` (its text blocks when ``content`` is a list)."""
        content = self._message(chunk).content
        if isinstance(content, str):
            return content
        return "".join(
            block if isinstance(block, str) else block.get("text", "")
            for block in content
            if isinstance(block, str) or block.get("type") == "text"
        )

    def texts(self, chunk: Any, /) -> list[str]:
        """Return the answer, reasoning, refusal and tool-argument texts of ``chunk``."""
        chunk = self._message(chunk)
        out: list[Any] = [self.unwrap(chunk)]
        if not isinstance(chunk.content, str):
            for block in chunk.content:
                if isinstance(block, dict):
                    field = _LC_REASONING_BLOCKS.get(str(block.get("type")))
                    if field is not None:
                        out.append(block.get(field) or "")
                    for part in block.get("summary") or ():
                        out.append((part.get("text") or "") if isinstance(part, dict) else "")
        kwargs = chunk.additional_kwargs or {}
        out += [kwargs.get(f) or "" for f in ("reasoning_content", "refusal")]
        out += [c.get("args") or "" for c in getattr(chunk, "tool_call_chunks", None) or ()]
        return [t for t in out if isinstance(t, str) and t]

    def _cuts(self, chunk: Any) -> bool:
        meta = getattr(chunk, "response_metadata", None) or {}
        return meta.get("finish_reason") in _CUT_FINISHES or meta.get("stop_reason") in (
            _CUT_FINISHES
        )

    @staticmethod
    def _ends(chunk: Any) -> bool:
        meta = chunk.response_metadata or {}
        return bool(
            meta.get("finish_reason")
            or meta.get("stop_reason")
            or getattr(chunk, "usage_metadata", None)
            or getattr(chunk, "chunk_position", None) == "last"
        )

    def _process(self, chunk: Any, channels: Any) -> list[Any]:
        chunk = self._message(chunk)
        self._template = chunk
        changes: dict[str, Any] = {}
        # Tool calls first: content blocks and additional_kwargs may mirror their
        # arguments (langchain-anthropic's input_json_delta blocks, the raw tool
        # calls langchain-openai keeps), and a mirror must say what they say.
        calls = getattr(chunk, "tool_call_chunks", None) or []
        new_calls: list[Any] | None = None
        released_args: dict[Any, str] = {}
        for k, call in enumerate(calls):
            args = call.get("args")
            if isinstance(args, str) and args:
                out = channels.feed(("tool", call.get("index")), "tool_arguments", args)
                released_args[call.get("index")] = out
                if out != args:
                    if new_calls is None:
                        new_calls = list(calls)
                    new_calls[k] = {**call, "args": out}
        content = chunk.content
        if isinstance(content, str):
            if content:
                out = channels.feed("content", "content", content)
                if out != content:
                    changes["content"] = out
        else:
            new = self._blocks(content, channels, released_args)
            if new is not None:
                changes["content"] = new
        kwargs = chunk.additional_kwargs or {}
        new_kwargs: dict[str, Any] | None = None
        for field, channel in (("reasoning_content", "reasoning"), ("refusal", "refusal")):
            text = kwargs.get(field)
            if isinstance(text, str) and text:
                out = channels.feed(field, channel, text)
                if out != text:
                    new_kwargs = {**(new_kwargs or kwargs), field: out}
        if kwargs.get("tool_calls"):
            self._mirrors.add("kwargs")
        mirrored = self._mirror(kwargs.get("tool_calls"), channels, released_args, bool(calls))
        if mirrored is not None:
            new_kwargs = {**(new_kwargs or kwargs), "tool_calls": mirrored}
        if self._ends(chunk):  # every channel of the message ends here, in place
            self._ended = True
            record_usage(channels, getattr(chunk, "usage_metadata", None))
            for key in channels.open_keys():
                text = channels.end(key)
                if not text:
                    continue
                if key == "content":
                    changes["content"] = _lc_append(
                        changes.get("content", content), text, index=self._text_at
                    )
                elif isinstance(key, str):  # additional_kwargs
                    base = new_kwargs or kwargs
                    new_kwargs = {**base, key: (base.get(key) or "") + text}
                elif key[0] == "tool":
                    # The tail joins this chunk's piece of the same call, if it has
                    # one: LangChain parses each entry of an ending chunk on its
                    # own, so a second entry would be a second, invalid call.
                    new_calls = _lc_extend(
                        new_calls if new_calls is not None else calls,
                        key[1],
                        text,
                        _lc_tool_chunk,
                    )
                    # ...and in the copies the stream keeps of the arguments.
                    if "kwargs" in self._mirrors:
                        base = new_kwargs or kwargs
                        raw = _lc_extend(base.get("tool_calls") or [], key[1], text, _lc_raw_call)
                        new_kwargs = {**base, "tool_calls": raw}
                    if "blocks" in self._mirrors:
                        changes["content"] = _lc_append(
                            changes.get("content", content), text, block=_lc_json(key[1], text)
                        )
                else:  # a reasoning block or summary
                    changes["content"] = _lc_append(
                        changes.get("content", content), text, block=_lc_block(key, text)
                    )
        if new_kwargs is not None:
            changes["additional_kwargs"] = new_kwargs
        if new_calls is not None:
            return [_lc_rebuild(chunk, changes, new_calls)]
        return [_replace(chunk, **changes)] if changes else [chunk]

    @staticmethod
    def _mirror(
        raw: Any, channels: Any, released: dict[Any, str], has_chunks: bool
    ) -> list[Any] | None:
        """The raw tool calls of ``additional_kwargs``, saying what the tool channels released."""
        if not isinstance(raw, list) or not raw:
            return None
        new: list[Any] = []
        changed = False
        for n, call in enumerate(raw):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                new.append(call)
                continue
            args = function.get("arguments")
            if not isinstance(args, str) or not args:
                new.append(call)
                continue
            index = call.get("index", n)
            if index in released:
                out = released[index]
            elif has_chunks:  # a mirror of a call whose chunk carried no text yet
                out = ""
            else:  # no tool-call chunks: the raw calls are the channel
                out = channels.feed(("tool", index), "tool_arguments", args)
            if out != args:
                call = {**call, "function": {**function, "arguments": out}}
                changed = True
            new.append(call)
        return new if changed else None

    def _end_text(self, channels: Any, new: list[Any]) -> bool:
        """The text block being read ended (another block began): put its held text."""
        flushed = channels.end("content")
        index, self._text_at = self._text_at, None
        if not flushed:
            return False
        block = {"type": "text", "text": flushed}
        new.append(block if index is None else {**block, "index": index})
        return True

    def _blocks(
        self, content: list[Any], channels: Any, released_args: dict[Any, str]
    ) -> list[Any] | None:
        """Feed the blocks of a list ``content``; the new list, or ``None`` if unchanged.

        Each text block's text goes through the answer's channel; when a block
        with another ``index`` begins (a tool call after the text), the text
        channel ends there and what it held is put in a text block of its own
        index, before the new block (never after the tool call).
        """
        changed = False
        new: list[Any] = []
        for i, block in enumerate(content):
            if isinstance(block, str):
                out = channels.feed("content", "content", block) if block else ""
                changed = changed or out != block
                new.append(out)
                continue
            btype = block.get("type")
            index = block.get("index")
            if index is not None and self._text_at is not None and index != self._text_at:
                changed = self._end_text(channels, new) or changed
            if btype == "text":
                if index is not None:
                    self._text_at = index
                text = block.get("text", "")
                out = channels.feed("content", "content", text) if text else ""
                if out != text:
                    block = {**block, "text": out}
                    changed = True
                new.append(block)
                continue
            partial = block.get("partial_json")
            if isinstance(partial, str):
                self._mirrors.add("blocks")
            if isinstance(partial, str) and partial:  # a mirror of a tool call's arguments
                key = index if index is not None else i
                out = (
                    released_args[key]
                    if key in released_args
                    else channels.feed(("tool", key), "tool_arguments", partial)
                )
                if out != partial:
                    block = {**block, "partial_json": out}
                    changed = True
            field = _LC_REASONING_BLOCKS.get(btype)
            value = block.get(field) if field is not None else None
            if isinstance(value, str) and value:
                key = ("block", block.get("index", i), field)
                out = channels.feed(key, "reasoning", value)
                if out != value:
                    block = {**block, field: out}
                    changed = True
            summary = block.get("summary") if btype == "reasoning" else None
            if isinstance(summary, list):
                parts = []
                for j, part in enumerate(summary):
                    value = part.get("text") if isinstance(part, dict) else None
                    if isinstance(value, str) and value:
                        out = channels.feed(
                            ("summary", block.get("index", i), j), "reasoning", value
                        )
                        if out != value:
                            part = {**part, "text": out}
                            changed = True
                    parts.append(part)
                block = {**block, "summary": parts}
            new.append(block)
        return new if changed else None

    def _flush(self, channels: Any) -> list[Any]:
        out: list[Any] = []
        cls = type(self._template) if self._template is not None else None
        for key in channels.open_keys():
            text = channels.end(key)
            if not text or cls is None:
                continue
            tid = self._template.id
            if key == "content":
                out.append(cls(content=text, id=tid))
            elif isinstance(key, str):
                out.append(cls(content="", id=tid, additional_kwargs={key: text}))
            elif key[0] == "tool":
                kwargs = (
                    {"tool_calls": [_lc_raw_call(key[1], text)]}
                    if "kwargs" in self._mirrors
                    else {}
                )
                content = [_lc_json(key[1], text)] if "blocks" in self._mirrors else ""
                out.append(
                    cls(
                        content=content,
                        id=tid,
                        tool_call_chunks=[_lc_tool_chunk(key[1], text)],
                        additional_kwargs=kwargs,
                    )
                )
            else:
                out.append(cls(content=[_lc_block(key, text)], id=tid))
        return out


def _lc_block(key: tuple[Any, ...], text: str) -> dict[str, Any]:
    """The content block that carries flushed reasoning ``text`` of channel ``key``."""
    kind, index, field = key
    if kind == "summary":  # ("summary", block index, summary index)
        part = {"type": "summary_text", "text": text, "index": field}
        return {"type": "reasoning", "summary": [part], "index": index}
    block = {"type": field, field: text}  # ("block", index, "thinking" or "reasoning")
    return block if index is None else {**block, "index": index}


def _lc_append(
    content: Any, text: str, *, block: dict[str, Any] | None = None, index: Any = None
) -> Any:
    """``content`` with ``text`` added at its end (as text, or the given block)."""
    if block is None and isinstance(content, str):
        return content + text
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) and content else []
    if not isinstance(content, str):
        blocks = list(content)
    if block is None:
        block = {"type": "text", "text": text}
        if index is not None:
            block["index"] = index
    blocks.append(block)
    return blocks


def _lc_extend(
    calls: list[Any], index: Any, text: str, make: Callable[[Any, str], dict[str, Any]]
) -> list[Any]:
    """``calls`` (tool-call chunks, or raw tool-call deltas) with ``text`` added to the
    arguments of call ``index``: to its entry if it has one, else as a new entry."""
    new = list(calls)
    for n, call in enumerate(new):
        if not isinstance(call, dict) or call.get("index", n) != index:
            continue
        function = call.get("function")
        if isinstance(function, dict):  # a raw delta: {"index", "function": {"arguments"}}
            arguments = (function.get("arguments") or "") + text
            new[n] = {**call, "function": {**function, "arguments": arguments}}
        else:
            new[n] = {**call, "args": (call.get("args") or "") + text}
        return new
    new.append(make(index, text))
    return new


def _lc_raw_call(index: Any, args: str) -> dict[str, Any]:
    """A raw tool-call delta (``additional_kwargs["tool_calls"]``) carrying ``args``."""
    return {"index": index, "function": {"arguments": args}}


def _lc_json(index: Any, args: str) -> dict[str, Any]:
    """An ``input_json_delta`` content block carrying ``args``."""
    block: dict[str, Any] = {"type": "input_json_delta", "partial_json": args}
    return block if index is None else {**block, "index": index}


def _lc_tool_chunk(index: Any, args: str) -> dict[str, Any]:
    return {"name": None, "args": args, "id": None, "index": index, "type": "tool_call_chunk"}


def _lc_rebuild(chunk: Any, changes: dict[str, Any], calls: list[Any]) -> Any:
    """A new chunk with ``calls`` as its tool-call chunks: LangChain parses them again."""
    fields = {name: getattr(chunk, name) for name in chunk.model_fields_set}
    fields.pop("tool_calls", None)
    fields.pop("invalid_tool_calls", None)
    return type(chunk)(**{**fields, **changes, "tool_call_chunks": calls})


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
