"""What a pipeline learnt about one run: stop reason, counters, sections, events.

The report is the single place operators write to. The driver only knows the
generic parts (stop reason, chunk counts, released text, start/end events);
each operator adds a *section* (a pydantic model under its own name, e.g.
``report["budget"]``), bumps *counters*, and *emits* events. New operators plug
in without the driver knowing about them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, field_serializer

__all__ = ("ChunkEvent", "Event", "StopReason", "StreamReport")

_M = TypeVar("_M", bound=BaseModel)


class StopReason(StrEnum):
    """Why a stream ended. Compares equal to its string value.

    >>> StopReason.BUDGET == "budget"
    True
    """

    COMPLETE = "complete"
    """The upstream was exhausted and every operator flushed."""
    BUDGET = "budget"
    """A token or cost budget ran out; the upstream was closed early."""
    TIMEOUT = "timeout"
    """A first-chunk, idle or total time limit fired."""
    CANCELLED = "cancelled"
    """A cancellation handle or task cancellation stopped the stream."""
    BLOCKED = "blocked"
    """A content policy blocked the rest of the stream."""
    ERROR = "error"
    """An exception (from upstream or an operator) ended the stream."""
    CLOSED = "closed"
    """The consumer stopped iterating (``break``, ``close()``/``aclose()``)."""
    TRUNCATED = "truncated"
    """The provider cut the message: a ``length``/``content_filter``/``max_tokens``
    finish, an incomplete response, an error event, or no end event at all.
    Text the operators held was truncated, not released as if complete, and
    side effects (``retry(on_success=...)``) do not run."""


class Event(BaseModel):
    """A structured, JSON-serialisable record of something that happened.

    Subclasses set ``kind`` (dotted, e.g. ``"redaction.applied"``) and add
    fields. ``time`` is the clock of the stream (the event loop's clock for
    async streams, so it is deterministic under virtual time).

    >>> Event(kind="stream.start", time=0.0).model_dump()
    {'kind': 'stream.start', 'time': 0.0, 'stage': None, 'data': {}}
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    time: float = 0.0
    stage: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ChunkEvent(Event):
    """A chunk handed to the consumer (``kind="chunk.released"``).

    One per chunk, so it is opt-in: :func:`streamops.events` yields it between
    the other events; the report neither emits nor keeps it. ``index`` counts
    the released chunks from 0. A chunk that is not JSON-serialisable (e.g. a
    provider object) is serialised as its ``repr``.

    >>> ChunkEvent(index=0, chunk="Hi", time=1.5).model_dump(mode="json")
    {'kind': 'chunk.released', 'time': 1.5, 'stage': None, 'data': {}, 'index': 0, 'chunk': 'Hi'}
    """

    kind: str = "chunk.released"
    index: int
    chunk: Any

    @field_serializer("chunk", when_used="json")
    def _chunk_json(self, chunk: Any) -> Any:
        if chunk is None or isinstance(chunk, (str, int, float, bool, list, dict)):
            return chunk
        if isinstance(chunk, BaseModel):
            return chunk.model_dump(mode="json")
        return repr(chunk)


EventCallback = Callable[[Event], object]


class StreamReport:
    """Per-stream record shared by every stage of one pipeline run.

    >>> report = StreamReport()
    >>> report.stop(StopReason.BUDGET)
    True
    >>> report.stop(StopReason.COMPLETE)  # the first reason wins
    False
    >>> report.stop_reason
    <StopReason.BUDGET: 'budget'>
    """

    __slots__ = (
        "_callbacks",
        "_events",
        "_lazy",
        "_released",
        "chunks_in",
        "chunks_out",
        "clock",
        "counters",
        "cuts",
        "error",
        "lens_factory",
        "sections",
        "stop_detail",
        "stop_reason",
    )

    def __init__(
        self,
        *,
        on_event: EventCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stop_reason: StopReason | None = None
        self.stop_detail: str | None = None
        self.error: BaseException | None = None
        self.chunks_in = 0
        self.chunks_out = 0
        # How many times a stream of this report was stopped before its end (a
        # budget, a quiet timeout, a block...): the driver compares it with its
        # value when the stream started to tell a cut from a natural end.
        self.cuts = 0
        self.counters: Counter[str] = Counter()
        self.sections: dict[str, BaseModel] = {}
        # The events in order; one recorded while nobody listened (record) is kept as
        # its fields and built when the list is read (events): most never are.
        self._events: list[Event | tuple[str, float, str | None, dict[str, Any]]] = []
        self._lazy = -1  # the index of the first event kept as its fields, or -1
        self.clock = clock
        # The stream's own lens lookup (``op(source, lens=...)``), for stages
        # that read provider chunks themselves (collect, a ledger budget, retry).
        self.lens_factory: Callable[[Any], Any] | None = None
        # (callback, kinds) pairs; kinds None means every event.
        self._callbacks: list[tuple[EventCallback, frozenset[str] | None]] = []
        self._released: list[str] = []
        if on_event is not None:
            self.subscribe(on_event)

    # -- stop reason -------------------------------------------------------
    def stop(self, reason: StopReason | str, detail: str | None = None) -> bool:
        """Record why the stream stopped; return False if a reason was already set.

        Every stop but ``complete`` also counts in :attr:`cuts`, even when a
        reason was already set (a report shared by several streams).
        """
        if reason != StopReason.COMPLETE:
            self.cuts += 1
        if self.stop_reason is not None:
            return False
        self.stop_reason = StopReason(reason)
        self.stop_detail = detail
        return True

    @property
    def finished(self) -> bool:
        """True once a stop reason has been recorded."""
        return self.stop_reason is not None

    # -- released text -----------------------------------------------------
    @property
    def released_text(self) -> str:
        """The text the consumer has received so far (text streams only)."""
        if len(self._released) > 1:
            self._released[:] = ["".join(self._released)]
        return self._released[0] if self._released else ""

    def record_released(self, texts: list[str]) -> None:
        """Append texts handed to the consumer (called by the outermost driver)."""
        self._released += texts

    def retract_released(self, text: str) -> None:
        """Take back ``text`` from the end: recorded, but the consumer left before it.

        >>> r = StreamReport()
        >>> r.record_released(["ab", "cd"])
        >>> r.retract_released("cd")
        >>> r.released_text
        'ab'
        """
        if not text:
            return
        released = self.released_text
        if not released.endswith(text):
            raise ValueError("can only retract the end of the released text")
        self._released[:] = [released[: len(released) - len(text)]]

    # -- sections ----------------------------------------------------------
    def section(self, name: str, factory: Callable[[], _M]) -> _M:
        """Return the section ``name``, creating it with ``factory`` if absent.

        >>> from pydantic import BaseModel
        >>> class Usage(BaseModel):
        ...     tokens: int = 0
        >>> r = StreamReport()
        >>> r.section("usage", Usage).tokens += 3
        >>> r["usage"]
        Usage(tokens=3)
        """
        existing = self.sections.get(name)
        if existing is None:
            created = factory()
            self.sections[name] = created
            return created
        return existing  # type: ignore[return-value]  # same name, same factory

    def __getitem__(self, name: str) -> BaseModel:
        return self.sections[name]

    def __contains__(self, name: object) -> bool:
        return name in self.sections

    # -- events ------------------------------------------------------------
    def subscribe(self, callback: EventCallback, *, kinds: Iterable[str] | None = None) -> None:
        """Call ``callback`` with every event emitted from now on.

        With ``kinds``, only events of those kinds (such a subscriber does not
        count as :attr:`listening`).

        >>> r = StreamReport()
        >>> r.subscribe(lambda e: print("end at", e.time), kinds=["stream.end"])
        >>> _ = r.emit("stream.start")
        >>> _ = r.emit("stream.end")  # doctest: +ELLIPSIS
        end at ...
        """
        if kinds is None:
            self._callbacks.append((callback, None))
            return
        wanted = frozenset(kinds)
        if isinstance(kinds, str) or not all(isinstance(k, str) for k in wanted):
            raise TypeError("kinds must be an iterable of event kind strings, e.g. ['stream.end']")
        self._callbacks.append((callback, wanted))

    def unsubscribe(self, callback: EventCallback) -> None:
        """Stop calling ``callback``; harmless if it was not subscribed."""
        self._callbacks = [(cb, k) for cb, k in self._callbacks if cb is not callback]

    @property
    def listening(self) -> bool:
        """True when a callback takes every event (operators may skip costly events)."""
        return any(kinds is None for _, kinds in self._callbacks)

    def wants(self, kind: str) -> bool:
        """Return True when an event of ``kind`` would reach a subscriber."""
        return any(kinds is None or kind in kinds for _, kinds in self._callbacks)

    @property
    def events(self) -> list[Event]:
        """Every event emitted so far, in order (the list itself: a caller may edit it).

        >>> r = StreamReport(clock=lambda: 2)
        >>> r.record("redact.redact", stage="redact", pattern="email")
        >>> r.events
        [Event(kind='redact.redact', time=2.0, stage='redact', data={'pattern': 'email'})]
        """
        events = self._events
        if self._lazy >= 0:
            for i in range(self._lazy, len(events)):
                fields = events[i]
                if isinstance(fields, tuple):
                    kind, at, stage, data = fields
                    events[i] = Event(kind=kind, time=at, stage=stage, data=data)
            self._lazy = -1
        return cast("list[Event]", events)

    def emit(self, kind: str, *, stage: str | None = None, **data: Any) -> Event:
        """Record an event of ``kind`` stamped with the stream clock."""
        event = Event(kind=kind, time=self.clock(), stage=stage, data=data)
        self.emit_event(event)
        return event

    def record(self, kind: str, *, stage: str | None = None, **data: Any) -> None:
        """:meth:`emit` for frequent events (one per redaction): the same event, built
        only when a subscriber takes it or :attr:`events` is read. ``stage`` and ``data``
        must be valid for :class:`Event` (checked when it is built).

        A subscriber to other kinds only (a collector's ``stream.start``/``stream.end``)
        does not make it built at once.

        >>> r = StreamReport(clock=lambda: 1)
        >>> r.subscribe(print, kinds=["stream.end"])
        >>> r.record("redact.redact", pattern="email")  # not taken: kept as its fields
        >>> _ = r.emit("stream.end")
        kind='stream.end' time=1.0 stage=None data={}
        >>> [e.kind for e in r.events]
        ['redact.redact', 'stream.end']
        """
        for _, kinds in self._callbacks:
            if kinds is None or kind in kinds:
                self.emit(kind, stage=stage, **data)
                return
        if self._lazy < 0:
            self._lazy = len(self._events)
        self._events.append((kind, self.clock(), stage, data))

    def emit_event(self, event: Event) -> None:
        """Record a ready-made event (a subclass of :class:`Event`)."""
        self._events.append(event)
        kind = event.kind
        for callback, kinds in self._callbacks:
            if kinds is None or kind in kinds:
                callback(event)

    # -- output ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary."""
        return {
            "stop_reason": None if self.stop_reason is None else str(self.stop_reason),
            "stop_detail": self.stop_detail,
            "error": None if self.error is None else repr(self.error),
            "chunks_in": self.chunks_in,
            "chunks_out": self.chunks_out,
            "counters": dict(self.counters),
            "sections": {k: v.model_dump(mode="json") for k, v in self.sections.items()},
            "events": [e.model_dump(mode="json") for e in self.events],
        }

    def to_json(self, **kwargs: Any) -> str:
        """Return :meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> str:
        """Return a readable multi-line summary (also what ``str(report)`` gives).

        >>> r = StreamReport(clock=lambda: 0.25)
        >>> r.counters["redact.applied"] += 2
        >>> _ = r.emit("redaction.applied", stage="redact", pattern="email", offset=4)
        >>> _ = r.stop(StopReason.COMPLETE)
        >>> print(r)
        stream report: complete
          chunks: 0 in, 0 out; released 0 chars
          counters: redact.applied=2
          events:
            0.250 redaction.applied [redact] pattern="email" offset=4
        """
        reason = "running" if self.stop_reason is None else str(self.stop_reason)
        if self.stop_detail:
            reason += f" ({self.stop_detail})"
        lines = [
            f"stream report: {reason}",
            f"  chunks: {self.chunks_in} in, {self.chunks_out} out;"
            f" released {len(self.released_text)} chars",
        ]
        if self.error is not None:
            lines.append(f"  error: {self.error!r}")
        if self.counters:
            lines.append("  counters: " + _pairs(dict(sorted(self.counters.items()))))
        for name, section in self.sections.items():
            lines.append(f"  {name}: " + _pairs(section.model_dump(mode="json")))
        if self.events:
            lines.append("  events:")
            lines += [f"    {format_event(e)}" for e in self.events]
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self) -> str:
        return (
            f"StreamReport(stop_reason={self.stop_reason!s}, chunks_in={self.chunks_in},"
            f" chunks_out={self.chunks_out}, sections={sorted(self.sections)})"
        )


def format_event(event: Event) -> str:
    """Return one readable line for ``event``: time, kind, [stage], data."""
    stage = f" [{event.stage}]" if event.stage else ""
    data = " " + _pairs(event.data, sep=" ") if event.data else ""
    return f"{event.time:.3f} {event.kind}{stage}{data}"


def _pairs(data: dict[str, Any], *, sep: str = ", ", width: int = 60) -> str:
    """Format ``data`` as ``key=value`` pairs, long values shortened."""
    parts = []
    for key, value in data.items():
        text = json.dumps(value, default=repr, ensure_ascii=False)
        if len(text) > width:
            text = text[: width - 3] + "..."
        parts.append(f"{key}={text}")
    return sep.join(parts)


def _report_for(
    report: StreamReport | None,
    on_event: EventCallback | None,
    lens: Callable[[Any], Any] | None,
) -> StreamReport:
    """Return the report a new stream writes: ``report`` (shared) or a fresh one.

    ``on_event`` subscribes to it; ``lens`` becomes its lens lookup.

    >>> shared = StreamReport()
    >>> _report_for(shared, None, None) is shared, _report_for(None, None, None) is shared
    (True, False)
    """
    if report is None:
        report = StreamReport(on_event=on_event)
    elif on_event is not None:
        report.subscribe(on_event)
    if lens is not None:
        report.lens_factory = lens
    return report
