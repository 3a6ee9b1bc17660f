"""Timeouts and cancellation: first chunk, idle gap, total deadline, stop button.

Both operators here are *shells* (they wrap the async iterator of the stages
before them) built on one per-stream watchdog, :class:`_Run`. The watchdog
never starts a task and never enters a timeout context per chunk: it keeps at
most one ``loop.call_at`` timer handle per stream, and when a limit expires (or
a :class:`CancelToken` is cancelled) while the stream is waiting on its
upstream, it cancels *the task that is awaiting the upstream's* ``__anext__``,
then turns that one cancellation back into a timeout (``Task.uncancel()``),
leaving any cancellation from elsewhere alone.

A token may be cancelled by the very task that is pulling (a callback the
upstream runs while producing a chunk). Cancelling a *running* task only sets
a request that its next ``await`` raises, and on Python 3.11 and 3.12
``uncancel()`` does not withdraw that request: a pull that then returns
without awaiting would leave a stray ``CancelledError`` for the consumer's next
``await``. So that cancellation is deferred to the next loop iteration
(``call_soon``), when the task is suspended, as ``asyncio.timeout`` does; if the
pull ended by then, there is nothing to cancel. Only a cancellation that was
actually delivered is undone, and a pull our cancellation never reached keeps
its own outcome (its end, its error), as on a sync stream.

Why not ``asyncio.timeout()`` around each pull: it costs a new context and a
new timer handle per chunk (about 5x what this costs end to end, see
``benchmarks/bench_timeout.py``), and a scope left open across a ``yield``
would charge the consumer's time to the upstream and cancel the wrong code
(PEP 789). Here the timer is only *live* while a pull is in progress; while the
consumer holds a chunk the handle may still be scheduled, but it finds no pull
to interrupt and does nothing. The handle is re-armed lazily: a pull whose
deadline is later than the scheduled handle leaves it alone, and the handle,
when it fires early, re-arms itself at the current deadline. So a stream with
``idle=10`` schedules about one handle per ten seconds, not one per chunk.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel

from ._core._driver import Operator
from ._core._errors import AsyncioRequiredError, StreamTimeout
from ._core._report import StopReason, StreamReport
from ._core._stages import ShellStage
from ._core._validate import check_choice, check_optional_number

__all__: list[str] = ["CancelToken", "StreamTimeout", "cancellable", "timeout"]

Limit: TypeAlias = Literal["first_chunk", "idle", "total"]
_CANCELLED: Literal["cancelled"] = "cancelled"  # the watchdog's reason for a cancelled token


class CancelToken:
    """A stop button for running streams: :meth:`cancel` stops every stream using it.

    Give it to :func:`cancellable` (``so.cancellable(token) | ...``). A stream
    that is waiting on its upstream when the token is cancelled stops at once
    (the wait is interrupted); a stream whose consumer is busy with a chunk stops
    at the next chunk boundary, before pulling again. Either way the upstream is
    closed, the stream ends quietly (no exception), operators after the stop
    flush what they held, and the report records stop reason ``cancelled``
    (``stop_detail`` is the reason given) with the partial text in
    ``report.released_text``.

    A token stays cancelled: a stream started with a cancelled token ends
    before pulling anything. :meth:`cancel` may be called from any thread (an
    HTTP server's disconnect callback, a GUI's stop button).

    >>> import asyncio, streamops as so
    >>> token = so.CancelToken()
    >>> async def model():
    ...     for piece in ["Hel", "lo", "!"]:
    ...         yield piece
    >>> async def main():
    ...     stream = so.cancellable(token)(model())
    ...     async for piece in stream:
    ...         token.cancel("user pressed stop")   # stops at the next boundary
    ...     return stream.report.released_text, stream.report.stop_detail
    >>> asyncio.run(main())
    ('Hel', 'user pressed stop')
    """

    __slots__ = ("_lock", "_reason", "_runs")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._runs: set[_Run] = set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` has been called."""
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        """The reason given to :meth:`cancel`, or ``None`` while not cancelled."""
        return self._reason

    def cancel(self, reason: str = "cancelled") -> bool:
        """Stop every stream using this token; return False if it was already cancelled."""
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
            runs = list(self._runs)
        for run in runs:
            run.interrupt_threadsafe(_CANCELLED)
        return True

    def _attach(self, run: _Run) -> None:
        with self._lock:
            if self._reason is not None:
                run.fired = _CANCELLED  # stop before the first pull
            else:
                self._runs.add(run)

    def _detach(self, run: _Run) -> None:
        with self._lock:
            self._runs.discard(run)

    def __repr__(self) -> str:
        state = "active" if self._reason is None else f"cancelled: {self._reason}"
        return f"<CancelToken {state}>"


class _TimeoutSection(BaseModel):
    """The ``report["timeout"]`` section: what the timeout stage measured."""

    fired: Limit | None = None
    """Which limit fired, if one did."""
    after: float | None = None
    """Seconds waited on the upstream for the limit that fired."""
    first_chunk_after: float | None = None
    """Seconds waited on the upstream for the first chunk (time to first token)."""
    waited: float | None = None
    """Total seconds spent waiting on the upstream, the consumer's time excluded.

    Measured only when ``total`` is set (it costs a clock read per chunk)."""
    chunks: int = 0
    """Chunks the upstream delivered."""


class _Run:
    """One stream's watchdog: the state its timer and its token share with the pull loop.

    ``task`` is the task awaiting the upstream's ``__anext__`` right now, or
    ``None`` while the consumer holds a chunk. ``fired`` is the first stop
    reason (a :data:`Limit` or ``"cancelled"``); once set, the loop pulls no more.
    ``cancelled`` says that the stop did cancel ``task`` (so the loop must
    ``uncancel()`` it once); ``deferred`` holds that cancellation while it waits
    for the task to be suspended (a stop from inside the pull).
    """

    __slots__ = (
        "armed",
        "cancelled",
        "deadline",
        "deferred",
        "fired",
        "handle",
        "limit",
        "loop",
        "task",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.task: asyncio.Task[Any] | None = None
        self.fired: Limit | Literal["cancelled"] | None = None
        self.handle: asyncio.TimerHandle | None = None
        self.armed = math.inf  # when ``handle`` fires (inf: no handle)
        self.deadline = math.inf  # the deadline of the current pull
        self.limit: Limit = "idle"  # the limit that deadline stands for
        self.cancelled = False  # True once we cancelled ``task`` (one pull, then the loop stops)
        self.deferred: asyncio.Handle | None = None  # a cancel waiting for the task to suspend

    def rearm(self, deadline: float) -> None:
        """Schedule the handle at ``deadline`` (the current one fires too late)."""
        if self.handle is not None:
            self.handle.cancel()
        self.handle = self.loop.call_at(deadline, self._expire)
        self.armed = deadline

    def disarm(self) -> None:
        """Drop the timer: no deadline applies any more."""
        self.deadline = self.armed = math.inf
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _expire(self) -> None:
        armed = self.armed
        self.handle = None
        self.armed = math.inf
        if self.task is None:
            return  # the consumer holds a chunk: its time does not count; the next pull re-arms
        if self.deadline > armed:
            self.rearm(self.deadline)  # pulls since arming moved the deadline later
            return
        self.interrupt(self.limit)

    def interrupt(self, reason: Limit | Literal["cancelled"]) -> None:
        """Stop the stream: cancel the pull in progress, or stop before the next one."""
        if self.fired is not None:
            return
        self.fired = reason
        task = self.task
        if task is None:
            return
        if task is asyncio.current_task(self.loop):
            # Called from inside the pull: see the module docstring (a stray cancel request).
            self.deferred = self.loop.call_soon(self._cancel_pull, task)
        else:
            self._cancel_pull(task)

    def _cancel_pull(self, task: asyncio.Task[Any]) -> None:
        self.deferred = None
        if self.task is task:  # still in the pull that was stopped (``fired`` allows no other)
            self.cancelled = True
            task.cancel(f"streamops: {self.fired}")

    def interrupt_threadsafe(self, reason: Limit | Literal["cancelled"]) -> None:
        """Call :meth:`interrupt` in the loop's thread, from any thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.interrupt(reason)
            return
        try:
            self.loop.call_soon_threadsafe(self.interrupt, reason)
        except RuntimeError:  # the loop is closed: the stream is gone already
            pass


class _Watch(ShellStage):
    """The shell of :func:`timeout` and :func:`cancellable`."""

    __slots__ = ("first_chunk", "idle", "on_timeout", "token", "total")

    def __init__(
        self,
        name: str,
        *,
        first_chunk: float | None = None,
        idle: float | None = None,
        total: float | None = None,
        on_timeout: Literal["raise", "end"] = "raise",
        token: CancelToken | None = None,
    ) -> None:
        super().__init__(name)
        self.first_chunk = first_chunk
        self.idle = idle
        self.total = total
        self.on_timeout = on_timeout
        self.token = token

    @property
    def timed(self) -> bool:
        return not (self.first_chunk is None and self.idle is None and self.total is None)

    def wrap_async(self, source: AsyncIterator[Any], report: StreamReport) -> AsyncIterator[Any]:
        return self._watch(source, report)

    def wrap_sync(self, source: Iterator[Any], report: StreamReport) -> Iterator[Any]:
        if self.timed or self.token is None:
            raise TypeError(
                f"{self.name} works on async streams only: a blocked next() cannot be"
                " interrupted in the same thread, so a time limit on a sync stream could"
                " not stop a stalled upstream; pass an async iterable (e.g. the provider's"
                " async client)"
            )
        return self._watch_sync(self.token, source, report)

    async def _watch(
        self, source: AsyncIterator[Any], report: StreamReport
    ) -> AsyncGenerator[Any, None]:
        # The hot loop is inlined by hand: it runs once per chunk and its cost is the product.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not under asyncio (trio, or no loop): say so, not "no running loop"
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
            raise AsyncioRequiredError(self.name) from None
        clock = loop.time  # never time.monotonic(): virtual-time loops override loop.time
        current_task = asyncio.current_task
        run = _Run(loop)
        token = self.token
        if token is not None:
            token._attach(run)
        first, idle, total = self.first_chunk, self.idle, self.total
        timed = self.timed
        pull = source.__anext__
        chunks = 0
        waited = 0.0  # upstream time only (measured when ``total`` is set)
        first_after: float | None = None
        now = elapsed = 0.0
        interrupted = False  # True when ``fired`` cancelled a pull in progress
        failure: BaseException | None = None
        task: asyncio.Task[Any] | None = None
        base = 0
        # The per-pull limit: idle also bounds the first chunk when first_chunk is unset.
        limit: Limit = "idle" if first is None else "first_chunk"
        allowed = idle if first is None else first
        try:
            while True:
                stop = run.fired  # a local, so that type narrowing does not outlive the await
                if stop is not None:
                    break
                if timed:
                    now = clock()
                    pull_limit, wait = limit, allowed
                    if total is not None and (wait is None or total - waited < wait):
                        pull_limit, wait = "total", total - waited
                    if wait is None:
                        run.disarm()
                    elif wait <= 0:  # the total was used up by an upstream that never yielded
                        run.fired = pull_limit
                        break
                    else:
                        deadline = now + wait
                        run.deadline = deadline
                        run.limit = pull_limit
                        if run.armed > deadline:
                            run.rearm(deadline)
                task = current_task(loop)
                if task is None:
                    raise AsyncioRequiredError(self.name)
                base = task.cancelling()
                run.task = task
                try:
                    item = await pull()
                except BaseException as exc:
                    run.task = None
                    if timed:
                        elapsed = clock() - now
                        waited += elapsed
                    if not run.cancelled:  # our cancellation never reached this pull
                        if isinstance(exc, StopAsyncIteration):
                            return
                        raise
                    interrupted = True
                    failure = exc
                    break
                run.task = None
                if total is not None or chunks == 0 or run.fired is not None:
                    elapsed = clock() - now if timed else 0.0
                    waited += elapsed
                    if run.fired is not None:  # the chunk came after the stop (or despite it)
                        interrupted = True
                        break
                    if chunks == 0:
                        first_after = elapsed
                        limit, allowed = "idle", idle
                        if idle is None and total is None and timed:
                            timed = False  # only first_chunk was set: nothing left to time
                            run.disarm()
                chunks += 1
                yield item
            # Only ``fired`` ends the loop: a limit expired or the token was cancelled.
            if interrupted:
                assert task is not None
                if run.cancelled:
                    task.uncancel()
                if task.cancelling() > base:  # cancelled from outside as well: that wins
                    run.fired = None
                    raise failure or asyncio.CancelledError()
            reason = run.fired
            assert reason is not None  # only a set ``fired`` ends the loop
            if reason == _CANCELLED:
                assert token is not None
                self._cancelled(report, token, chunks, while_waiting=interrupted)
                return
            limit = reason
            after = waited if limit == "total" else elapsed
            configured = {"first_chunk": self.first_chunk, "idle": self.idle, "total": self.total}[
                limit
            ]
            assert configured is not None  # only a configured limit can fire
            report.stop(StopReason.TIMEOUT, limit)
            report.emit(
                "timeout.expired",
                stage=self.name,
                limit=limit,
                after=after,
                allowed=configured,
                chunks=chunks,
            )
            section = report.section("timeout", _TimeoutSection)
            section.fired, section.after = limit, after
            if self.on_timeout == "raise":
                raise StreamTimeout(
                    limit, after, configured, chunks=chunks, released=report.released_text
                ) from failure
        finally:
            run.task = None
            run.disarm()
            if run.deferred is not None:
                run.deferred.cancel()
                run.deferred = None
            if token is not None:
                token._detach(run)
            if self.timed:  # with several timeout stages, the outermost writes last
                section = report.section("timeout", _TimeoutSection)
                section.first_chunk_after = first_after
                section.waited = waited if total is not None else None
                section.chunks = chunks
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    def _cancelled(
        self, report: StreamReport, token: CancelToken, chunks: int, *, while_waiting: bool
    ) -> None:
        """Record a stop by ``token`` after ``chunks`` chunks (and whether it came mid-wait)."""
        report.stop(StopReason.CANCELLED, token.reason)
        report.emit(
            "timeout.cancelled",
            stage=self.name,
            reason=token.reason,
            chunks=chunks,
            while_waiting=while_waiting,
        )

    def _watch_sync(
        self, token: CancelToken, source: Iterator[Any], report: StreamReport
    ) -> Generator[Any, None, None]:
        # A blocked next() cannot be interrupted here: sync streams stop at chunk boundaries.
        # A pull during which the token was cancelled keeps its own end or error, and its
        # chunk is dropped: what the async shell does when the stop comes from inside the pull.
        chunks = 0
        during = False  # the token was cancelled while next() ran
        try:
            while not token.cancelled:
                try:
                    item = next(source)
                except StopIteration:
                    return
                if token.reason is not None:
                    during = True
                    break  # arrived after the stop: not delivered
                chunks += 1
                yield item
            self._cancelled(report, token, chunks, while_waiting=during)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()


def _seconds(name: str, value: float | None) -> float | None:
    seconds = check_optional_number(f"timeout({name}=...) in seconds", value, positive=True)
    return None if seconds is None else float(seconds)


def timeout(
    *,
    first_chunk: float | None = None,
    idle: float | None = None,
    total: float | None = None,
    on_timeout: Literal["raise", "end"] = "raise",
) -> Operator[Any, Any]:
    """Return an operator that bounds how long a stream may wait on its upstream.

    - ``first_chunk``: seconds allowed until the first chunk (time to first token);
    - ``idle``: seconds allowed between consecutive chunks (and until the end of
      the stream after the last one); it also bounds the first chunk when
      ``first_chunk`` is not given;
    - ``total``: seconds allowed for the whole stream.

    ``None`` means no limit. Only *upstream* waiting counts: each limit is
    measured while the stream is pulling from the stages before it, and the
    time the consumer spends with a chunk between pulls is not charged (a slow
    consumer never times out a fast model; ``total`` is the sum of the waits).
    A chunk must arrive *before* its limit: one that arrives exactly at it is
    late, as with ``asyncio.timeout``. For a wall-clock deadline on your own
    processing too, wrap your consuming loop in ``asyncio.timeout()``.

    When a limit expires, the pull in progress is cancelled, the upstream is
    closed (its ``finally`` runs), the report records stop reason
    ``timeout`` (``stop_detail`` is the limit) and a ``timeout.expired`` event,
    and then :class:`StreamTimeout` is raised, or with ``on_timeout="end"`` the
    stream ends quietly (operators after it flush what they held). A
    cancellation from elsewhere (the consumer's task cancelled) is never turned
    into a timeout.

    Async streams only: a blocked ``next()`` cannot be interrupted in the same
    thread, so calling it on a sync iterable raises ``TypeError``. Runs on
    asyncio only: pulled with no asyncio loop running (e.g. under trio), it
    closes the upstream and raises :class:`AsyncioRequiredError`. Validates its
    arguments when built.

    >>> import asyncio, streamops as so
    >>> async def model():
    ...     yield "Hel"
    ...     await asyncio.sleep(3600)  # stalls
    ...     yield "lo"
    >>> async def main():
    ...     try:
    ...         async for piece in so.timeout(idle=0.01)(model()):
    ...             pass
    ...     except so.StreamTimeout as exc:
    ...         return exc.limit, exc.released
    >>> asyncio.run(main())
    ('idle', 'Hel')
    >>> so.timeout(idle=0)
    Traceback (most recent call last):
    ...
    ValueError: timeout(idle=...) in seconds must be a positive number, got 0
    """
    check_choice("timeout(on_timeout=...)", on_timeout, ("raise", "end"))
    stage = _Watch(
        "timeout",
        first_chunk=_seconds("first_chunk", first_chunk),
        idle=_seconds("idle", idle),
        total=_seconds("total", total),
        on_timeout=on_timeout,
    )
    return Operator(stage)


def cancellable(token: CancelToken, /) -> Operator[Any, Any]:
    """Return an operator that stops the stream when ``token`` is cancelled.

    See :class:`CancelToken`: a stop while the stream waits on its upstream
    interrupts the wait; otherwise the stream stops at the next chunk boundary.
    Either way the upstream is closed and the stream ends quietly with stop
    reason ``cancelled`` and a ``timeout.cancelled`` event. The token may be
    cancelled from inside the pull (a callback of the upstream, in the
    consuming task): no cancellation is left behind in that task. On sync
    streams it stops at chunk boundaries only (a blocked ``next()`` cannot be
    interrupted; a chunk that arrives after the stop is not delivered).

    >>> import streamops as so
    >>> token = so.CancelToken()
    >>> stream = so.cancellable(token)(["a", "b", "c"])
    >>> next(stream)
    'a'
    >>> token.cancel()
    True
    >>> list(stream), stream.report.stop_reason
    ([], <StopReason.CANCELLED: 'cancelled'>)
    """
    if not isinstance(token, CancelToken):
        raise TypeError(f"cancellable() takes a CancelToken, got {type(token).__name__}")
    return Operator(_Watch("cancellable", token=token))
