"""Collector, stream metrics and event helpers.

:func:`collect` is a pass-through operator that records what went by: the full
text, the chunks, timing and size metrics. Its per-stream result is the
:class:`Collected` section of the stream's report (``report["collect"]``), live
during the stream and final once the stream ended for any reason; it reads the
stop reason, the error and the budget usage from the same report.

:func:`events` turns a stream into one ordered async iterator of its events and
its chunks; :class:`EventLogger` is a ready ``on_event=`` callback for logging.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from pydantic import BaseModel, PrivateAttr, computed_field

from ._budget._tokens import get_encoding
from ._core._driver import AsyncStream, Operator, SyncStream
from ._core._report import ChunkEvent, Event, StopReason, StreamReport, format_event
from ._core._stages import ProcessorStage, _lens_for

__all__ = ("Collected", "EventLogger", "StreamMetrics", "collect", "events")


class _Encoding(Protocol):
    """The part of ``tiktoken.Encoding`` the collector uses."""

    def encode(self, text: str, *, disallowed_special: Any = ...) -> list[int]: ...


class StreamMetrics(BaseModel):
    """Timing and size of one stream, as its collector measured them.

    Times are on the stream's clock (the event loop's clock for async streams,
    so they are deterministic under virtual time). ``duration`` runs from the
    stream start to its end, or to now while it is running; ``tokens_per_second``
    is ``tokens / duration``. Inter-chunk gaps use the nearest-rank percentile;
    they are ``None`` with fewer than two chunks. ``tokens`` is ``None`` unless
    the collector was given an ``encoding``.

    >>> m = StreamMetrics(chunk_count=2, chars=5, gap_max=0.5)
    >>> m.chunk_count, m.gap_max, m.tokens
    (2, 0.5, None)
    """

    started_at: float | None = None
    first_chunk_at: float | None = None
    ended_at: float | None = None
    time_to_first_chunk: float | None = None
    duration: float | None = None
    chunk_count: int = 0
    chars: int = 0
    tokens: int | None = None
    tokens_per_second: float | None = None
    gap_p50: float | None = None
    gap_p95: float | None = None
    gap_max: float | None = None


class Collected(BaseModel):
    """What a collector saw of one stream: its report section (``report["collect"]``).

    Every field is computed when read, so the same object is live during the
    stream and final after it. ``finished`` turns true when the stream ended,
    whatever the reason (complete, budget, timeout, cancelled, error, closed by
    the consumer). ``chunks`` (the chunks themselves) is left out of the JSON
    form, which has the text already. ``usage`` is the ``"budget"`` section of
    the report when a budget operator ran in the same pipeline.

    >>> import streamops as so
    >>> stream = so.collect()(["Hello, ", "world"])
    >>> list(stream)
    ['Hello, ', 'world']
    >>> result = so.Collected.of(stream)
    >>> result.text, result.stop_reason, result.metrics.chunk_count
    ('Hello, world', <StopReason.COMPLETE: 'complete'>, 2)
    """

    _state: _Collector = PrivateAttr()

    @classmethod
    def of(
        cls, stream: SyncStream[Any] | AsyncStream[Any] | StreamReport, name: str = "collect"
    ) -> Collected:
        """Return the result of the collector called ``name`` in ``stream`` (or its report).

        Raises :class:`LookupError` when that stream has no such collector.
        """
        report = stream if isinstance(stream, StreamReport) else stream.report
        section = report.sections.get(name)
        if not isinstance(section, Collected):
            raise LookupError(f"this stream has no collector named {name!r}; add so.collect()")
        return section

    @property
    def chunks(self) -> list[Any]:
        """The chunks the collector saw, in order (a copy)."""
        return list(self._state.chunks)

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented idiom
    @property
    def text(self) -> str:
        """The text of the chunks seen so far (non-text chunks contribute nothing)."""
        return self._state.text()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def finished(self) -> bool:
        """True once the stream has ended (for any reason)."""
        return self._state.ended_at is not None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def stop_reason(self) -> StopReason | None:
        """Why the stream stopped (``None`` while it runs)."""
        return self._state.report.stop_reason

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error(self) -> str | None:
        """``repr`` of the exception that ended the stream, if any."""
        error = self._state.report.error
        return None if error is None else repr(error)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def usage(self) -> dict[str, Any] | None:
        """The budget section of the report (token usage), if a budget ran."""
        budget = self._state.report.sections.get("budget")
        return None if budget is None else budget.model_dump(mode="json")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def metrics(self) -> StreamMetrics:
        """A snapshot of the timing and size metrics (live while streaming)."""
        return self._state.metrics()


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ordered non-empty list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class _Collector:
    """The per-stream processor: passes items through and records them."""

    __slots__ = (
        "chunks",
        "clock",
        "encoding",
        "ended_at",
        "name",
        "on_complete",
        "origin",
        "report",
        "result",
        "started_at",
        "times",
        "tokens_cache",
    )

    done = False

    def __init__(
        self,
        report: StreamReport,
        name: str,
        encoding: _Encoding | None,
        on_complete: Callable[[Collected], object] | None,
        origin: object,
    ) -> None:
        self.report = report
        self.origin = origin  # the collect() operator this collector belongs to
        self.clock = report.clock
        self.name = name
        self.encoding = encoding
        self.on_complete = on_complete
        # The hot path only appends; every metric is derived when read.
        self.chunks: list[Any] = []
        self.times: list[float] = []
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.tokens_cache: tuple[int, int] = (0, 0)  # (chunks counted, tokens)
        previous = report.sections.get(name)
        if isinstance(previous, Collected):
            # Two collect() operators whose streams have not started: most
            # likely both in the pipeline being built now. The same operator
            # again is one more stream of it on a shared report.
            if previous._state.started_at is None and previous._state.origin is not origin:
                raise ValueError(
                    f"two collectors named {name!r} on one report before it started: in one"
                    " pipeline, or in streams built on one shared report=; give each a"
                    " distinct name="
                )
            # Another stream on this report (a new run, a retry attempt, one
            # more stream of this operator): the last one built owns the name.
            report.unsubscribe(previous._state.on_event)
        self.result = Collected()
        self.result._state = self
        report.sections[name] = self.result
        # The driver emits these from its own start and its ``finally``, so the
        # collector learns the end of every stream, even on error or close,
        # without costly per-chunk events.
        report.subscribe(self.on_event, kinds=("stream.start", "stream.end"))

    def feed(self, item: Any, /) -> list[Any]:
        self.times.append(self.clock())
        self.chunks.append(item)
        return [item]

    def feed_one(self, item: Any, /) -> Any:
        self.times.append(self.clock())
        self.chunks.append(item)
        return item

    def close(self) -> list[Any]:
        return []

    def fork(self, kind: str | None = None) -> _Collector:
        """Another content channel of the stream (a second text block): one record."""
        return self

    def on_event(self, event: Event) -> None:
        if event.kind == "stream.start":
            self.started_at = event.time
            self.clock = self.report.clock  # the driver has just set the stream's clock
        elif self.ended_at is None:
            self.ended_at = event.time
            if self.on_complete is not None:
                self.on_complete(self.result)

    def text(self) -> str:
        # Provider chunks (the collector passes any chunk through untouched)
        # contribute the text a registered lens reads from them.
        lens = None
        parts: list[str] = []
        for chunk in self.chunks:
            if type(chunk) is str:
                parts.append(chunk)
                continue
            if lens is None:
                lens = _lens_for(self.report, chunk)
                if lens is None:
                    continue
            try:
                parts.append(lens.unwrap(chunk))
            except (TypeError, ValueError):
                continue  # not text-bearing (e.g. a parsed value): nothing to add
        return "".join(parts)

    def tokens(self) -> int | None:
        if self.encoding is None:
            return None
        counted, tokens = self.tokens_cache
        if counted != len(self.chunks):
            # Exact: encoding the whole text, since tokens can span chunk boundaries.
            tokens = len(self.encoding.encode(self.text(), disallowed_special=()))
            self.tokens_cache = (len(self.chunks), tokens)
        return tokens

    def metrics(self) -> StreamMetrics:
        start = self.started_at
        end = self.ended_at
        duration = None
        if start is not None:
            duration = (end if end is not None else self.report.clock()) - start
        tokens = self.tokens()
        times = self.times
        first = times[0] if times else None
        gaps = sorted(b - a for a, b in itertools.pairwise(times))
        return StreamMetrics(
            started_at=start,
            first_chunk_at=first,
            ended_at=end,
            time_to_first_chunk=None if start is None or first is None else first - start,
            duration=duration,
            chunk_count=len(self.chunks),
            chars=sum(len(c) for c in self.chunks if type(c) is str),
            tokens=tokens,
            tokens_per_second=(tokens / duration if tokens is not None and duration else None),
            gap_p50=_percentile(gaps, 0.50) if gaps else None,
            gap_p95=_percentile(gaps, 0.95) if gaps else None,
            gap_max=gaps[-1] if gaps else None,
        )


def _load_encoding(encoding: str | _Encoding) -> _Encoding:
    """Return the encoding object for ``encoding`` (a name, or an encoding itself)."""
    if not isinstance(encoding, str):
        if not callable(getattr(encoding, "encode", None)):
            raise TypeError(
                f"encoding must be a name or a tiktoken Encoding, got {type(encoding).__name__}"
            )
        return encoding
    return get_encoding(encoding)  # EncodingUnavailableError (a ValueError) says how to fix it


def collect(
    *,
    name: str = "collect",
    encoding: str | _Encoding | None = None,
    on_complete: Callable[[Collected], object] | None = None,
) -> Operator[str, str]:
    """Return a pass-through operator that records the stream it sees.

    The result of each stream is a :class:`Collected` in the stream's report
    under ``name`` (``Collected.of(stream)``): full text, chunks, stop reason,
    error, budget usage and :class:`StreamMetrics`. It is live while the stream
    runs and final when ``finished`` is true. ``on_complete`` is called with it
    once, when the stream ends for any reason (its exceptions propagate). With
    ``encoding`` (a tiktoken encoding name such as ``"cl100k_base"``), token
    counts are exact. Give collectors in one pipeline distinct names. Streams
    built on one shared ``report=`` share its events, so run them one after
    another; the collector of the stream built last owns the name.

    Provider chunks are read through their lens, so the collector sees text.

    >>> import streamops as so
    >>> done = []
    >>> op = so.collect(encoding="cl100k_base", on_complete=done.append)
    >>> "".join(op(["Hello", " world"]))
    'Hello world'
    >>> done[0].text, done[0].metrics.tokens, done[0].finished
    ('Hello world', 2, True)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError("name must not be empty")
    if on_complete is not None and not callable(on_complete):
        raise TypeError(f"on_complete must be callable, got {type(on_complete).__name__}")
    enc = None if encoding is None else _load_encoding(encoding)

    def factory(report: StreamReport) -> _Collector:
        return _Collector(report, name, enc, on_complete, factory)

    return Operator(ProcessorStage(name, factory, accepts=None, produces="same", can_stop=False))


async def events(stream: AsyncStream[Any]) -> AsyncIterator[Event]:
    """Yield the events of ``stream`` and its chunks, in the order they happened.

    Each chunk arrives as a :class:`~streamops.ChunkEvent` (``.chunk`` is the
    chunk itself, whatever its type), after the events emitted while it was
    produced; ``stream.start`` comes first and ``stream.end`` last. An error of
    the stream is raised after its pending events (``stream.end`` included)
    were yielded. Closing this iterator closes the stream.

    >>> import asyncio, streamops as so
    >>> async def source():
    ...     yield "a"
    ...     yield "b"
    >>> async def main():
    ...     stream = so.collect()(source())
    ...     return [(e.kind, getattr(e, "chunk", None)) async for e in so.events(stream)]
    >>> asyncio.run(main())
    [('stream.start', None), ('chunk.released', 'a'), ('chunk.released', 'b'), ('stream.end', None)]
    """
    if not isinstance(stream, AsyncStream):
        raise TypeError(
            "events() takes the async stream an operator returned: so.events(op(async_source));"
            " for sync streams pass on_event= to the operator call"
        )
    report = stream.report
    pending: deque[Event] = deque()
    listener = pending.append
    report.subscribe(listener)
    index = 0
    try:
        try:
            async for chunk in stream:
                while pending:
                    yield pending.popleft()
                yield ChunkEvent(index=index, chunk=chunk, time=report.clock())
                index += 1
        except Exception:
            while pending:
                yield pending.popleft()
            raise
        while pending:
            yield pending.popleft()
    finally:
        report.unsubscribe(listener)
        await stream.aclose()


class EventLogger:
    """An ``on_event=`` callback that logs every event on a :mod:`logging` logger.

    Each record's message is one readable line (time, kind, stage, data) and
    its ``streamops_event`` attribute holds the event as a JSON-ready dict, for
    structured log handlers. ``level`` is the default level; ``levels`` maps
    event kinds to their own level (``chunk.released`` logs at DEBUG); a
    ``stream.end`` after an error logs at WARNING.

    >>> import logging, sys, streamops as so
    >>> logger = logging.getLogger("demo")
    >>> handler = logging.StreamHandler(sys.stdout)
    >>> handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    >>> logger.addHandler(handler)
    >>> logger.setLevel(logging.INFO)
    >>> _ = list(so.collect()(["hi"], on_event=so.EventLogger(logger)))  # doctest: +ELLIPSIS
    INFO ... stream.start
    INFO ... stream.end reason="complete"
    """

    __slots__ = ("level", "levels", "logger")

    def __init__(
        self,
        logger: logging.Logger | str | None = None,
        *,
        level: int = logging.INFO,
        levels: Mapping[str, int] | None = None,
    ) -> None:
        if logger is None or isinstance(logger, str):
            logger = logging.getLogger(logger or "streamops.events")
        elif not isinstance(logger, logging.Logger):
            raise TypeError(f"logger must be a Logger or a name, got {type(logger).__name__}")
        self.logger = logger
        self.level = level
        self.levels = {"chunk.released": logging.DEBUG, **(levels or {})}

    def __call__(self, event: Event) -> None:
        """Log ``event``."""
        level = self.levels.get(event.kind, self.level)
        if event.kind == "stream.end" and event.data.get("reason") == StopReason.ERROR:
            level = max(level, logging.WARNING)
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level,
                "%s",
                format_event(event),
                extra={"streamops_event": event.model_dump(mode="json")},
            )
