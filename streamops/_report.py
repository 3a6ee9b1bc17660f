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
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ("Event", "StopReason", "StreamReport")

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
        "_released",
        "chunks_in",
        "chunks_out",
        "clock",
        "counters",
        "error",
        "events",
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
        self.counters: Counter[str] = Counter()
        self.sections: dict[str, BaseModel] = {}
        self.events: list[Event] = []
        self.clock = clock
        self._callbacks: list[EventCallback] = [] if on_event is None else [on_event]
        self._released: list[str] = []

    # -- stop reason -------------------------------------------------------
    def stop(self, reason: StopReason | str, detail: str | None = None) -> bool:
        """Record why the stream stopped; return False if a reason was already set."""
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
    def subscribe(self, callback: EventCallback) -> None:
        """Call ``callback`` with every event emitted from now on."""
        self._callbacks.append(callback)

    @property
    def listening(self) -> bool:
        """True when a callback is subscribed (operators may skip costly events)."""
        return bool(self._callbacks)

    def emit(self, kind: str, *, stage: str | None = None, **data: Any) -> Event:
        """Record an event of ``kind`` stamped with the stream clock."""
        event = Event(kind=kind, time=self.clock(), stage=stage, data=data)
        self.emit_event(event)
        return event

    def emit_event(self, event: Event) -> None:
        """Record a ready-made event (a subclass of :class:`Event`)."""
        self.events.append(event)
        for callback in self._callbacks:
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

    def __repr__(self) -> str:
        return (
            f"StreamReport(stop_reason={self.stop_reason!s}, chunks_in={self.chunks_in},"
            f" chunks_out={self.chunks_out}, sections={sorted(self.sections)})"
        )
