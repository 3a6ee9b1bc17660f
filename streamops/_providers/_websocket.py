"""WebSocket both ways: serve a wrapped stream to a client, read Live-API messages through a lens.

:func:`to_websocket` sends a stream over a Starlette (or FastAPI) WebSocket:
text frames, or JSON messages (``{"type": "chunk", "data": ...}``), then a
``{"type": "report", ...}`` message and a clean close (1000; 1011 when the
stream failed). While it streams it also listens: a client that disconnects
cancels the send at once and closes the stream, and so its upstream (the
provider stops generating), even while the upstream is silent.

:class:`GeminiLiveLens` reads the server messages of a Live-API style
WebSocket session (google-genai ``LiveServerMessage`` objects from
``client.aio.live.connect(...)``, or their JSON from a raw WebSocket): the
model turn's text parts (thoughts apart), the output audio transcription (a
``"content"`` text), the input audio transcription (what the user said, a
``"tool_output"`` text, as a part's transcription is) and each tool call's
arguments are channels; code parts, grounding, URL context and an interim
input transcription come whole, as in :class:`~streamops.GeminiLens`.
A transcription's ``words`` show what its redacted text shows: each
message's words are mapped onto what its channel released
(:func:`~streamops._providers._gemini.words_onto`), timings kept; a word a
secret begins in shows the placeholder, the words after it that the secret
covered an empty string; text a channel held past its words' message comes
in a word entry of its own (no timings) at the front of the next message's
words, or after the last ones at the turn's end. Words that do not spell
their message's text are replaced by the words of what was released, without
timings. ``turn_complete`` ends a turn's
channels, ``interrupted`` ends them *truncated* (a live partial secret is
masked); setup, usage and other messages pass through. Several turns in one
session are each their own message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from .._core._extras import require
from .._core._report import StopReason, StreamReport
from ..lowlevel import register_lens
from ._camel import field, wire_key
from ._gemini import (
    _mapping,
    _opcodes,
    code_parts,
    metadata,
    whole_transcription,
    word_spans,
)
from ._lenses import _ChannelLens, _replace
from ._usage import record_usage

__all__ = ("GeminiLiveLens", "to_websocket")

# The streamed transcriptions of a Live session: field, channel name, kind of text.
_TRANSCRIPTS = (
    ("output_transcription", "transcript", "content"),
    ("input_transcription", "heard", "tool_output"),
)

# Close codes (RFC 6455): a normal end, and an end by an error on our side.
NORMAL_CLOSURE = 1000
INTERNAL_ERROR = 1011
_CLOSE_DEADLINE = 5.0  # seconds the upstream gets to close after a disconnect


def _data(chunk: Any) -> Any:
    """A chunk as JSON data: text as is, pydantic models dumped, JSON values as they are."""
    if isinstance(chunk, BaseModel):
        return chunk.model_dump(mode="json", exclude_unset=True)
    if isinstance(chunk, (str, dict, list, int, float, bool)) or chunk is None:
        return chunk
    raise TypeError(
        f"cannot send a {type(chunk).__name__} chunk over a WebSocket; pass data=<chunk -> JSON>"
    )


def _summary(report: StreamReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    data = report.to_dict()
    del data["events"]
    return data


async def to_websocket(
    websocket: Any,
    stream: Any,
    /,
    *,
    mode: Literal["text", "json"] = "text",
    data: Callable[[Any], Any] | None = None,
    report: bool = True,
    close: bool = True,
) -> StreamReport | None:
    """Send ``stream`` over a Starlette/FastAPI ``websocket``; return its report.

    ``mode="text"`` sends each chunk as a text frame (``str`` chunks as they
    are, others as compact JSON); ``mode="json"`` sends
    ``{"type": "chunk", "data": ...}`` messages. ``data`` turns a chunk
    into what is sent. Then, with ``report``, a ``{"type": "report",
    "report": {...}}`` message (stop reason, counters, sections) for streams
    that have one, and with ``close`` a close frame: 1000 after a complete
    stream, 1011 if it raised (the error is re-raised after). The socket is
    accepted first if it was not yet.

    A client that disconnects mid-stream cancels the send at once: the
    stream is closed (its upstream too, within a few seconds) and the
    function returns the report, stop reason ``cancelled``, without raising.
    """
    if mode not in ("text", "json"):
        raise ValueError(f'mode must be "text" or "json", got {mode!r}')
    if not hasattr(stream, "__aiter__"):
        raise TypeError(
            f"to_websocket needs an async stream, got {type(stream).__name__}"
            " (a sync stream would block the event loop)"
        )
    require("starlette", extra="websocket", feature="to_websocket")
    from starlette.websockets import WebSocketDisconnect, WebSocketState

    if websocket.client_state == WebSocketState.CONNECTING:
        await websocket.accept()
    convert = data or _data
    stream_report: StreamReport | None = getattr(stream, "report", None)

    async def pump() -> None:
        try:
            async for chunk in stream:
                value = convert(chunk)
                if mode == "json":
                    await websocket.send_json({"type": "chunk", "data": value})
                elif isinstance(value, str):
                    await websocket.send_text(value)
                else:
                    await websocket.send_text(json.dumps(value, separators=(",", ":")))
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                # Shielded with a deadline: a cancelled send still closes the upstream.
                closing = asyncio.ensure_future(aclose())
                await asyncio.wait({closing}, timeout=_CLOSE_DEADLINE)

    async def watch() -> None:
        # A client sends nothing but may leave: its disconnect is what we wait for.
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    sender = asyncio.ensure_future(pump())
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        await asyncio.gather(sender, watcher, return_exceptions=True)
    failed = None if sender.cancelled() else sender.exception()
    if sender.cancelled() or isinstance(failed, WebSocketDisconnect):  # the client left
        if stream_report is not None:
            stream_report.stop(StopReason.CANCELLED, "the client disconnected")
        return stream_report
    if report and stream_report is not None:
        await websocket.send_json({"type": "report", "report": _summary(stream_report)})
    if close:
        await websocket.close(code=NORMAL_CLOSURE if failed is None else INTERNAL_ERROR)
    if failed is not None:
        raise failed
    return stream_report


# --------------------------------------------------------------------------
# Gemini Live API server messages
# --------------------------------------------------------------------------

_LIVE_KEYS = frozenset(
    {
        "setupComplete",
        "serverContent",
        "toolCall",
        "toolCallCancellation",
        "goAway",
        "sessionResumptionUpdate",
        "setup_complete",
        "server_content",
        "tool_call",
    }
)


def _is_live(chunk: Any) -> bool:
    cls = type(chunk)
    if cls.__name__ == "LiveServerMessage" and cls.__module__.startswith("google.genai"):
        return True
    return type(chunk) is dict and not chunk.keys().isdisjoint(_LIVE_KEYS)


class GeminiLiveLens(_ChannelLens):
    """Lens for Live-API server messages (google-genai ``LiveServerMessage`` or their JSON).

    See the module docstring for the channels and turn boundaries.

    >>> import streamops as so
    >>> def text(t, done=False):
    ...     return {"serverContent": {"modelTurn": {"parts": [{"text": t}]}, "turnComplete": done}}
    >>> out = list(so.redact(["email"])([{"setupComplete": {}}, text("ask ann@exa"),
    ...                                  text("mple.com", done=True)]))
    >>> [p["text"] for m in out[1:] for p in m["serverContent"]["modelTurn"]["parts"] if p["text"]]
    ['ask ', '[EMAIL]']
    """

    __slots__ = ("_calls", "_template", "_turn", "_unshown", "_worded")

    _generic = False

    def __init__(self) -> None:
        super().__init__()
        self._turn = 0  # turns completed: channel keys are per turn
        self._calls = 0
        self._template: Any = {}
        self._ended = True  # no turn open yet
        # A transcript channel's key -> the input it holds that no message's words
        # have shown yet (the text its words are aligned against comes after it).
        self._unshown: dict[Any, str] = {}
        self._worded: set[Any] = set()  # transcript channels whose messages had words

    @classmethod
    def match(cls, chunk: Any, /) -> GeminiLiveLens | None:
        """Return a lens for Live-API server messages (objects or dicts), else ``None``."""
        return cls() if _is_live(chunk) else None

    def unwrap(self, chunk: Any, /) -> str:
        """Return the model turn's answer text in ``chunk`` (``""`` if none)."""
        turn = field(field(chunk, "server_content"), "model_turn")
        parts = field(turn, "parts") or () if turn is not None else ()
        return "".join(
            t for p in parts if isinstance(t := field(p, "text"), str) and not field(p, "thought")
        )

    def texts(self, chunk: Any, /) -> list[str]:
        """Return every text of ``chunk``: answer, thoughts, transcript, tool arguments."""
        content = field(chunk, "server_content")
        out: list[str] = []
        turn = field(content, "model_turn")
        for part in (field(turn, "parts") or ()) if turn is not None else ():
            if isinstance(t := field(part, "text"), str) and t:
                out.append(t)
        for name, _, _ in _TRANSCRIPTS:
            transcript = field(field(content, name), "text")
            if isinstance(transcript, str) and transcript:
                out.append(transcript)
        for call in field(field(chunk, "tool_call"), "function_calls") or ():
            if args := field(call, "args"):
                out.append(json.dumps(args))
        return out

    def _process(self, chunk: Any, channels: Any) -> list[Any]:
        record_usage(channels, field(chunk, "usage_metadata"))
        content = field(chunk, "server_content")
        calls = field(field(chunk, "tool_call"), "function_calls")
        if content is None and not calls:
            return [chunk]
        self._template = chunk
        turn = self._turn
        if content is not None:
            self._ended = False
            new_content = content
            model_turn = field(content, "model_turn")
            parts = field(model_turn, "parts") if model_turn is not None else None
            if parts:
                new_parts = []
                changed = False
                for part in parts:
                    fixed = code_parts(self, part, channels)
                    if fixed is not part:
                        part, changed = fixed, True
                    text = field(part, "text")
                    if isinstance(text, str) and text:
                        thought = bool(field(part, "thought"))
                        key = (turn, "thought" if thought else "text")
                        out = channels.feed(key, "reasoning" if thought else "content", text)
                        if out != text:
                            part = _replace(part, text=out)
                            changed = True
                    new_parts.append(part)
                if changed:
                    new_turn = _replace(model_turn, parts=new_parts)
                    turn_key = wire_key(content, "model_turn")
                    new_content = _replace(new_content, **{turn_key: new_turn})
            for name, tag, kind in _TRANSCRIPTS:
                transcription = field(content, name)
                if transcription is not None:
                    new_tr = self._transcript(transcription, (turn, tag), kind, channels)
                    if new_tr is not transcription:
                        new_content = _replace(new_content, **{wire_key(content, name): new_tr})
            interim = field(content, "interim_input_transcription")
            if interim is not None:
                new_tr = whole_transcription(self, interim, channels, "tool_output")
                if new_tr is not interim:
                    interim_key = wire_key(content, "interim_input_transcription")
                    new_content = _replace(new_content, **{interim_key: new_tr})
            meta = metadata(self, content, channels)
            if meta:
                new_content = _replace(new_content, **meta)
            interrupted = bool(field(content, "interrupted"))
            if interrupted or field(content, "turn_complete"):
                held = self._end_turn(channels, forced=interrupted)
                if held:  # after this message's own text, before its end: in it
                    new_content = self._with_held(new_content, held)
            if new_content is not content:
                chunk = _replace(chunk, **{wire_key(chunk, "server_content"): new_content})
        if calls:
            new_calls = []
            for call in calls:
                args = field(call, "args")
                if args:
                    self._calls += 1
                    tool = ("tool", self._calls)
                    text = json.dumps(args, ensure_ascii=False)
                    out = channels.feed(tool, "tool_arguments", text) + channels.end(tool)
                    if out != text:
                        try:
                            value = json.loads(out)
                        except ValueError:
                            value = None
                        call = _replace(call, args=value)
                new_calls.append(call)
            tool_call = field(chunk, "tool_call")
            new_tool = _replace(tool_call, **{wire_key(tool_call, "function_calls"): new_calls})
            chunk = _replace(chunk, **{wire_key(chunk, "tool_call"): new_tool})
        return [chunk]

    def _transcript(self, transcription: Any, key: Any, kind: str, channels: Any) -> Any:
        """A streamed transcription through channel ``key``, its words mapped onto the output."""
        said = field(transcription, "text")
        text = said if isinstance(said, str) else ""
        out = channels.feed(key, kind, text) if text else ""
        changes: dict[str, Any] = {}
        if out != text:
            changes["text"] = out
        pending = self._unshown.get(key, "")
        source = pending + text
        # What the channel released is the redaction of a prefix of ``source``;
        # the rest (a trailing deletion in the alignment) it still holds.
        if out == source:
            ops = [("equal", 0, len(source), 0, len(out))]
        elif not out:
            ops = [("delete", 0, len(source), 0, 0)]
        else:
            ops = _opcodes(source, out)
        hold = ops[-1][1] if ops[-1][0] == "delete" else len(source)
        self._unshown[key] = source[hold:]
        words = field(transcription, "words")
        if words is not None or key in self._worded:  # (a message of a worded turn)
            self._worded.add(key)
            new_words = self._words(transcription, list(words or ()), text, out, pending, ops)
            if new_words is not None:
                changes[wire_key(transcription, "words")] = new_words
        return _replace(transcription, **changes) if changes else transcription

    @staticmethod
    def _words(
        transcription: Any,
        words: list[Any],
        text: str,
        out: str,
        pending: str,
        ops: list[tuple[str, int, int, int, int]],
    ) -> list[Any] | None:
        """One message's word entries showing ``out`` (``None``: unchanged)."""
        said = [w if isinstance(w := field(word, "word"), str) else "" for word in words]
        spans = word_spans(text, said)
        if spans is None:  # not the text's words: the words of what was released
            return [_new_word(transcription, w) for w in out.split()]
        where = _mapping(ops)
        shift = len(pending)
        texts = [out[where(a + shift) : where(b + shift)] for a, b in spans]
        # what came before this message's first word: held text of earlier ones
        late = out[: where(shift + spans[0][0])] if spans else out
        late = late.strip()
        if not late and texts == said:
            return None
        new = [
            w if t == s else _replace(w, word=t) for w, t, s in zip(words, texts, said, strict=True)
        ]
        return [_new_word(transcription, late), *new] if late else new

    def _end_turn(self, channels: Any, *, forced: bool) -> dict[str, str]:
        """End the open turn's channels; return what they held by kind of part."""
        held: dict[str, str] = {}
        for key in channels.open_keys():
            if isinstance(key, tuple) and key[0] == self._turn:
                text = channels.end(key, forced=True) if forced else channels.end(key)
                if text:
                    held[key[1]] = held.get(key[1], "") + text
                    if key in self._worded:
                        held[key[1] + ":words"] = ""
                self._unshown.pop(key, None)
        self._worded = {k for k in self._worded if k[0] != self._turn}
        self._unshown = {k: v for k, v in self._unshown.items() if k[0] != self._turn}
        self._turn += 1
        self._ended = True
        return held

    @staticmethod
    def _with_held(content: Any, held: dict[str, str]) -> Any:
        """``content`` (a server-content message) with a turn's held text added at its end."""
        data = content if type(content) is dict else content.model_dump(exclude_none=True)
        turn_key = wire_key(data, "model_turn")
        turn = dict(data.get(turn_key) or {"role": "model"})
        parts = list(turn.get("parts") or [])
        if held.get("thought"):
            parts.append({"text": held["thought"], "thought": True})
        if held.get("text"):
            parts.append({"text": held["text"]})
        new = dict(data)
        if parts:
            new[turn_key] = {**turn, "parts": parts}
        for name, tag, _ in _TRANSCRIPTS:
            if not held.get(tag):
                continue
            said_key = wire_key(data, name)
            said = dict(data.get(said_key) or {})
            said["text"] = (said.get("text") or "") + held[tag]
            if tag + ":words" in held and held[tag].strip():
                words_key = wire_key(said, "words")
                said[words_key] = [*(said.get(words_key) or ()), {"word": held[tag].strip()}]
            new[said_key] = said
        return new if type(content) is dict else type(content).model_validate(new)

    def _held_message(self, template: Any, held: dict[str, str]) -> Any:
        """A message carrying the held text of a turn the session left open."""
        content = self._with_held({}, held)
        if type(template) is dict:
            return {"serverContent": content}
        return type(template).model_validate({"server_content": content})

    def _flush(self, channels: Any) -> list[Any]:
        if self._ended:
            return []
        held = self._end_turn(channels, forced=True)  # the session ended mid-turn
        return [self._held_message(self._template, held)] if held else []


def _new_word(transcription: Any, word: str) -> Any:
    """A word entry of ``transcription``'s kind carrying ``word`` alone (no timings)."""
    if type(transcription) is dict:
        return {"word": word}
    from google.genai import types

    return types.WordInfo(word=word)


register_lens(GeminiLiveLens.match)
