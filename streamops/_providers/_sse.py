"""Server-sent events: decode SSE byte streams into events, encode streams as SSE.

The decoder is a sans-I/O state machine (:class:`SSEDecoder`) that follows the
WHATWG event-stream rules exactly: lines end in CRLF, LF or CR (a CRLF split
between two reads is still one line end), ``data:`` lines of one event are
joined with ``\\n``, ``:`` starts a comment, ``event``/``id``/``retry`` fields,
a leading BOM is dropped, an event is dispatched at a blank line and an
incomplete event at the end of the stream is discarded. Bytes are decoded as
UTF-8 incrementally, so a character split between reads is not broken.
httpx-sse implements the same rules but only over an ``httpx`` response, with
its line decoder private; this one takes any byte chunks.

:func:`sse_decode` and :func:`sse_json` wrap it as operators (they compose with
the text operators: ``sse_json() | redact()`` turns an OpenAI-compatible byte
stream into redacted wire-format dicts). :func:`to_sse` and
:func:`sse_response` go the other way, for Starlette/FastAPI.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel

from .._core._driver import AsyncStream, Operator, SyncStream
from .._core._errors import ChunkTypeError, SSEError
from .._core._extras import require
from .._core._report import StreamReport
from .._core._stages import ProcessorStage
from ._lenses import _usage

__all__ = [
    "SSEDecoder",
    "SSEError",
    "SSEEvent",
    "sse_decode",
    "sse_format",
    "sse_json",
    "sse_response",
    "to_sse",
]

_LINE_END = re.compile(r"\r\n|\r|\n")
_Errors: TypeAlias = Literal["replace", "strict"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched server-sent event.

    ``event`` is the event type (``"message"`` when the stream named none),
    ``id`` the last event ID at dispatch (it persists across events, as the
    spec says), ``retry`` the reconnection time set in this event's block.

    >>> SSEEvent('{"a": 1}').json()
    {'a': 1}
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None

    def json(self) -> Any:
        """Return ``data`` parsed as JSON; raise :class:`SSEError` if it is not JSON."""
        try:
            return json.loads(self.data)
        except json.JSONDecodeError as exc:
            raise SSEError(self, exc) from exc


class SSEDecoder:
    """Turn SSE bytes (or text), split anywhere, into :class:`SSEEvent` objects.

    ``feed(chunk)`` returns the events completed by ``chunk``; ``close()`` ends
    the stream (an unfinished event is discarded; with ``errors="strict"`` an
    incomplete UTF-8 character raises ``UnicodeDecodeError``). ``errors``
    applies to invalid UTF-8: ``"replace"`` (the spec's rule) or ``"strict"``.
    A chunk that is not bytes or text raises :class:`~streamops.ChunkTypeError`.

    >>> d = SSEDecoder()
    >>> d.feed(b"data: hel") + d.feed(b"lo\\r")
    []
    >>> d.feed(b"\\n: a comment\\r\\ndata: world\\n\\n")
    [SSEEvent(data='hello\\nworld', event='message', id='', retry=None)]
    """

    __slots__ = (
        "_bom",
        "_buf",
        "_cr",
        "_data",
        "_event",
        "_n",
        "_retry",
        "_utf8",
        "last_event_id",
    )

    def __init__(self, *, errors: _Errors = "replace") -> None:
        if errors not in ("replace", "strict"):
            raise ValueError(f'errors must be "replace" or "strict", got {errors!r}')
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors)
        self._buf = ""  # the unfinished line
        self._cr = False  # the last chunk ended in CR: a LF starting the next one is its pair
        self._bom = True  # a BOM may still come (nothing decoded yet)
        self._data: list[str] = []
        self._event = ""
        self._retry: int | None = None
        self._n = 0  # chunks fed, to name a bad one
        self.last_event_id = ""

    def feed(self, chunk: bytes | bytearray | memoryview | str, /) -> list[SSEEvent]:
        """Take the next piece of the stream; return the events it completed."""
        if isinstance(chunk, str):
            text = chunk
        elif isinstance(chunk, (bytes, bytearray, memoryview)):
            text = self._utf8.decode(bytes(chunk))
        else:
            raise ChunkTypeError(self._n, chunk, "bytes or str (SSE input)")
        self._n += 1
        if not text:
            return []
        if self._bom:
            self._bom = False
            if text[0] == "\ufeff":
                text = text[1:]
        if self._cr:
            self._cr = False
            if text.startswith("\n"):
                text = text[1:]
        lines = _LINE_END.split(text)
        if len(lines) == 1:
            self._buf += text
            return []
        self._cr = text.endswith("\r")
        lines[0] = self._buf + lines[0]
        self._buf = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """End the stream: an unfinished event is discarded (as the spec says)."""
        self._utf8.decode(b"", True)
        self._buf = ""
        self._data = []
        return []

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry = [], "", None
        if not data:
            return None
        return SSEEvent("\n".join(data), event or "message", self.last_event_id, retry)


# --------------------------------------------------------------------------
# decoding operators
# --------------------------------------------------------------------------


class _Decode:
    """The per-stream processor of :func:`sse_decode`/:func:`sse_json`: chunks in, events out.

    Chunks are 1 -> N (none, one or several events per read), so the decoder
    is a plain sans-I/O processor: the core's fused driver runs it over sync
    and async sources alike.
    """

    __slots__ = ("_decoder", "_parse", "_report", "_sentinel", "done")

    def __init__(
        self, report: StreamReport, *, parse: bool, sentinel: str | None, errors: _Errors
    ) -> None:
        self._decoder = SSEDecoder(errors=errors)
        self._parse = parse
        self._sentinel = sentinel
        self._report = report
        self.done = False

    def feed(self, chunk: Any, /) -> list[Any]:
        if self.done:
            return []
        out: list[Any] = []
        for event in self._decoder.feed(chunk):
            self._report.counters["sse.events"] += 1
            if event.data == self._sentinel:
                self.done = True  # the driver stops pulling and closes the upstream
                break
            out.append(event.json() if self._parse else event)
        return out

    def close(self) -> list[Any]:
        # After the sentinel the rest of the stream is ignored, bytes and all.
        return [] if self.done else self._decoder.close()


def _operator(name: str, parse: bool, done: str | None, errors: _Errors) -> Operator[Any, Any]:
    if done is not None and not isinstance(done, str):
        raise TypeError(f"done must be a str or None, got {type(done).__name__}")
    SSEDecoder(errors=errors)  # the decoder checks its options: fail now, not mid-stream

    def factory(report: StreamReport) -> _Decode:
        return _Decode(report, parse=parse, sentinel=done, errors=errors)

    stage = ProcessorStage(name, factory, accepts=None, produces=None)
    return Operator(stage)


def sse_decode(*, done: str | None = None, errors: _Errors = "replace") -> Operator[Any, SSEEvent]:
    """Return an operator that decodes SSE bytes (or text) chunks into :class:`SSEEvent`.

    ``done``: an event whose data equals it ends the stream (the upstream is
    closed, the event is not yielded). ``errors``: for invalid UTF-8.
    A chunk that is not ``bytes`` or ``str`` raises
    :class:`~streamops.ChunkTypeError` naming its index.

    >>> raw = [b"event: delta\\r\\nid: 7\\r\\ndata: a\\r", b"\\ndata: b\\r\\n\\r\\n",
    ...        b"data: [DONE]\\n\\n"]
    >>> list(sse_decode(done="[DONE]")(raw))
    [SSEEvent(data='a\\nb', event='delta', id='7', retry=None)]
    """
    return _operator("sse_decode", False, done, errors)


def sse_json(*, done: str | None = "[DONE]", errors: _Errors = "replace") -> Operator[Any, Any]:
    """Return an operator that decodes SSE bytes into the JSON value of each event's data.

    Made for OpenAI-compatible streams: ``data: [DONE]`` ends the stream by
    default. Piped into text operators, the values (wire-format chunk dicts)
    go through the lenses: ``(sse_json() | redact())(response.aiter_bytes())``.
    Data that is not JSON raises :class:`SSEError` (a ``ValueError``).

    >>> import streamops as so
    >>> raw = [b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\\n\\n',
    ...        b"data: [DONE]\\n\\n"]
    >>> [c["choices"][0]["delta"]["content"] for c in so.sse_json()(raw)]
    ['Hi']
    """
    return _operator("sse_json", True, done, errors)


# --------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------


def _field(name: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"SSE {name} must not contain a line break, got {value!r}")
    return f"{name}: {value}\n"


def sse_format(
    data: str, /, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> str:
    """Return one SSE event as text: each line of ``data`` becomes a ``data:`` line.

    Line breaks in ``data`` (CRLF, CR, LF) all come back as ``\\n`` after
    decoding, which is how SSE carries multi-line data.

    >>> sse_format("two\\nlines", event="note", id="1")
    'event: note\\nid: 1\\ndata: two\\ndata: lines\\n\\n'
    """
    head = ""
    if event is not None:
        head += _field("event", event)
    if id is not None:
        head += _field("id", id)
    if retry is not None:
        value: object = retry  # checked at run time: callers may not type-check
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"retry must be a non-negative int of milliseconds, got {retry!r}")
        head += f"retry: {retry}\n"
    body = "".join(f"data: {line}\n" for line in _LINE_END.split(data))
    return f"{head}{body}\n"


def _default_data(chunk: Any) -> str:
    """The SSE data of one chunk: text as is, models and JSON values as compact JSON."""
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, BaseModel):
        return chunk.model_dump_json(exclude_unset=True)
    if isinstance(chunk, (dict, list, int, float, bool)) or chunk is None:
        return json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)
    raise TypeError(
        f"cannot encode a {type(chunk).__name__} chunk as SSE data; pass data=<chunk -> str>"
    )


class _Encoder:
    """Per-stream state of :func:`to_sse`: formats chunks, tracks usage, builds the tail."""

    __slots__ = ("data", "done", "event", "report", "report_event", "usage")

    def __init__(
        self,
        stream: Any,
        data: Callable[[Any], str] | None,
        event: str | None,
        report_event: str | None,
        done: str | None,
    ) -> None:
        self.data = data or _default_data
        self.event = event
        self.report_event = report_event
        self.done = done
        self.report: StreamReport | None = getattr(stream, "report", None)
        self.usage: dict[str, Any] | None = None

    def chunk(self, chunk: Any) -> bytes:
        if isinstance(chunk, SSEEvent):
            text = sse_format(chunk.data, event=chunk.event, id=chunk.id or None)
        else:
            text = sse_format(self.data(chunk), event=self.event)
        if not isinstance(chunk, str):
            usage = _usage(chunk)
            if usage:
                self.usage = {**(self.usage or {}), **usage}
        return text.encode()

    def tail(self, complete: bool) -> bytes:
        text = ""
        if self.report_event is not None and self.report is not None:
            summary = {**self.report.to_dict(), "usage": self.usage}
            text += sse_format(json.dumps(summary, default=repr), event=self.report_event)
        if complete and self.done is not None:
            text += sse_format(self.done)
        return text.encode()


def to_sse(
    stream: Any,
    /,
    *,
    data: Callable[[Any], str] | None = None,
    event: str | None = None,
    report_event: str | None = "report",
    done: str | None = "[DONE]",
) -> Any:
    """Encode a stream as SSE bytes: one event per chunk, then the report, then ``[DONE]``.

    Returns an async iterator of ``bytes`` for an async stream (give it to
    Starlette's ``StreamingResponse``, or use :func:`sse_response`), a sync
    iterator for a sync one. Each chunk becomes ``data:`` lines: text as is,
    pydantic models (provider chunks) and JSON values as compact JSON,
    :class:`SSEEvent` objects with their own fields; ``data`` overrides that.
    ``event`` names the chunk events. When the stream has a ``report`` (any
    streamops stream), an event ``report_event`` follows, with
    ``report.to_dict()`` and the token ``usage`` the provider chunks reported.
    ``done`` is sent last after a complete stream (OpenAI's ``[DONE]``).

    If the stream raises, the report event (stop reason ``error``) is sent and
    the error re-raised. If the consumer stops (the client disconnected), the
    stream is closed at once, its upstream too.

    >>> import streamops as so
    >>> print(b"".join(to_sse(so.identity()(["Hi", "!"]), report_event=None)).decode())
    data: Hi
    <BLANKLINE>
    data: !
    <BLANKLINE>
    data: [DONE]
    <BLANKLINE>
    <BLANKLINE>
    """
    encoder = _Encoder(stream, data, event, report_event, done)
    if hasattr(stream, "__aiter__"):
        return _to_sse_async(stream, encoder)
    if hasattr(stream, "__iter__") and not isinstance(stream, (str, bytes)):
        return _to_sse_sync(stream, encoder)
    raise TypeError(f"to_sse needs a stream (an iterable of chunks), got {type(stream).__name__}")


def _to_sse_sync(stream: Any, encoder: _Encoder) -> Iterator[bytes]:
    it = iter(stream)
    try:
        for chunk in it:
            yield encoder.chunk(chunk)
    except Exception:
        yield encoder.tail(complete=False)
        raise
    finally:
        close = getattr(it, "close", None) or getattr(stream, "close", None)
        if close is not None:
            close()
    yield encoder.tail(complete=True)


async def _to_sse_async(stream: Any, encoder: _Encoder) -> AsyncIterator[bytes]:
    it = stream.__aiter__()
    try:
        async for chunk in it:
            yield encoder.chunk(chunk)
    except Exception:
        yield encoder.tail(complete=False)
        raise
    finally:
        aclose = getattr(stream, "aclose", None) or getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()
    yield encoder.tail(complete=True)


def sse_response(
    stream: AsyncStream[Any] | SyncStream[Any] | Any,
    /,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **options: Any,
) -> Any:
    """Return a Starlette ``StreamingResponse`` streaming :func:`to_sse` of ``stream``.

    Unlike a bare ``StreamingResponse``, it closes the SSE generator (and so
    the stream and its upstream) as soon as the response ends, also when the
    client disconnects. ``options`` go to :func:`to_sse`. Needs ``starlette``
    (``pip install 'streamops[server]'``).

    >>> import streamops as so
    >>> async def chunks():
    ...     yield "Hi"
    >>> response = sse_response(so.identity()(chunks()))
    >>> response.media_type, response.headers["cache-control"]
    ('text/event-stream', 'no-cache')
    """
    body = to_sse(stream, **options)
    if not hasattr(body, "__aiter__"):
        raise TypeError("sse_response needs an async stream; sync streams would block the loop")
    return _event_stream_response(body, status_code=status_code, headers=headers)


def _event_stream_response(
    body: AsyncIterator[bytes], *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Any:
    """A ``text/event-stream`` ``StreamingResponse`` that always closes ``body`` when done."""
    require("starlette", extra="server", feature="an SSE response")
    from starlette.responses import StreamingResponse
    from starlette.types import Receive, Scope, Send

    class _ClosingResponse(StreamingResponse):
        # Starlette cancels the sender when the client goes away but leaves the
        # body generator suspended until garbage collection; close it now.
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                aclose = getattr(body, "aclose", None)
                if aclose is not None:
                    await aclose()

    return _ClosingResponse(
        body,
        status_code=status_code,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
    )
