"""Retry a stream while nothing has escaped; run side effects once, after a natural end.

``retry(factory)`` calls ``factory()`` for a fresh upstream on every attempt.
The *commit point* is the first text handed to the consumer: before it, a
failure is retried (after a backoff); after it, a failure that would have been
retried raises :class:`StreamInterruptedError` carrying the released text, on every
attempt alike, never a silent restart that would send the consumer the same
text twice. Chunks that carry no text (an OpenAI role chunk, Anthropic's
``message_start``) are held until the first text and released with it, so a
retry never repeats provider framing. ``mode="buffered"`` moves the commit
point to the end of each attempt. ``on_success`` callbacks run once, after the
consumer received everything of an upstream that ended naturally (a streamops
upstream whose report says ``complete``: not a budget cut, a quiet timeout, a
stop button or a block; a raw provider stream whose chunks end with its end
event and no ``length`` finish); async ones run shielded from cancellation, up
to ``side_effect_timeout``. A provider stream that ended without its end event
before the commit point lost its connection: the attempt failed, and is retried.

The decisions (retry or not, how long to wait, which factory is next, what is
held, what was released, whether side effects run) live in
:class:`_RetryState`, a sans-I/O object shared by the sync and the async loop;
the loops only pull, yield, close and sleep. Each loop is the stream's one
generator: it also keeps the stream's report (start/end events, stop reason,
chunk counts, released text) with the core's helpers, rather than running
under an identity driver that would add a generator layer per chunk.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import math
import random
import sys
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field

from ._core._driver import (
    _NO_END,
    AsyncStream,
    SyncStream,
    _end,
    _EndReader,
    _on_error,
    _provider_stream,
    _start,
    _start_async,
)
from ._core._errors import (
    SideEffectError,
    StreamInterruptedError,
    StreamOpsError,
    require_asyncio,
)
from ._core._report import EventCallback, StopReason, StreamReport, _report_for
from ._core._sources import _aclose_all, _close_all
from ._core._stages import ChannelLens, Lens, _lens_for

_Reader = Lens | ChannelLens  # what reads the text of provider chunks

__all__: list[str] = [
    "Backoff",
    "RetryAttempt",
    "RetryReport",
    "SideEffectError",
    "StreamInterruptedError",
    "is_retryable",
    "retry",
]

T = TypeVar("T")

Mode = Literal["before_first_chunk", "buffered"]
RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
SuccessCallback = Callable[[str, StreamReport], object]

_MAX_MESSAGE = 500  # error messages in the report are truncated: reports get logged


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


class _EndMissingError(StreamOpsError, ConnectionError):
    """An attempt's upstream ended without its end event before the commit point.

    A provider stream that simply stops (no finish reason, no
    ``message_stop``, no ``response.completed``) lost its connection: nothing
    was released yet, so :func:`retry` treats the attempt as a failure and
    makes another (a ``ConnectionError``, retried by default). Raised by the
    stream when the attempts run out. After the commit point the attempt ends
    instead, with stop reason ``truncated`` and no side effects.
    """


# --------------------------------------------------------------------------
# which errors are retried
# --------------------------------------------------------------------------

_CONNECTION_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "EPIPE",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "EHOSTDOWN",
    )
    if hasattr(errno, name)
)
# Anthropic reports overload/rate limits that happen mid-stream as an SSE error
# event on a 200 response: the status code says nothing, the body's type does.
_RETRYABLE_BODY_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error"})


def _status_retryable(status: object) -> bool:
    return isinstance(status, int) and (status in (408, 409, 429) or status >= 500)


def _body_error_type(body: object) -> object:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("type")
    return None


def _sdk_retryable(exc: Exception) -> bool:
    # Look the SDKs up in sys.modules instead of importing them: if one was
    # never imported, ``exc`` cannot be one of its errors, and importing a
    # heavy SDK just to say "no" would slow every failure down.
    for name in ("openai", "anthropic"):
        sdk = sys.modules.get(name)
        if sdk is None:
            continue
        if isinstance(exc, sdk.APIConnectionError):  # includes APITimeoutError
            return True
        if isinstance(exc, sdk.APIStatusError):
            return _status_retryable(exc.status_code) or (
                _body_error_type(exc.body) in _RETRYABLE_BODY_TYPES
            )
    for name in ("httpx", "httpx2"):
        http = sys.modules.get(name)
        if http is None:
            continue
        transient = (http.TimeoutException, http.NetworkError, http.RemoteProtocolError)
        if isinstance(exc, transient):
            return True
        if isinstance(exc, http.HTTPStatusError):
            return _status_retryable(exc.response.status_code)
    return False


def is_retryable(exc: BaseException) -> bool:
    """Return True if :func:`retry` retries ``exc`` by default.

    Retried: timeouts (``TimeoutError``, so :class:`~streamops.StreamTimeout`
    too), connection errors (``ConnectionError`` and ``OSError`` with a
    connection errno), and, when those SDKs are in use, the OpenAI/Anthropic
    connection, timeout, 408/409/429 and 5xx errors (``RateLimitError``,
    ``InternalServerError``, Anthropic's ``OverloadedError``) and the transient
    ``httpx`` errors. Never retried: anything that is not an ``Exception``
    (``CancelledError``, ``KeyboardInterrupt``), and any error whose class sets
    ``retryable = False`` (the convention for streamops policy decisions such as
    a budget or a content block); ``retryable = True`` makes any error
    retryable. Without that attribute the type decides, for
    :class:`~streamops.StreamOpsError` subclasses too.

    >>> is_retryable(ConnectionResetError()), is_retryable(TimeoutError())
    (True, True)
    >>> is_retryable(ValueError("bad prompt")), is_retryable(KeyboardInterrupt())
    (False, False)
    """
    if not isinstance(exc, Exception):
        return False
    declared = getattr(exc, "retryable", None)
    if isinstance(declared, bool):
        return declared
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _CONNECTION_ERRNOS
    return _sdk_retryable(exc)


def _predicate(retry_on: object) -> Callable[[BaseException], bool]:
    """Turn ``retry_on`` into a predicate (validating it), keeping the hard rules."""
    if retry_on is None:
        return is_retryable
    match: Callable[[BaseException], object]
    if isinstance(retry_on, (type, tuple)):
        types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
        for t in types:
            if not (isinstance(t, type) and issubclass(t, BaseException)):
                raise TypeError(f"retry_on: expected exception types, got {t!r}")

        def match(exc: BaseException) -> bool:
            return isinstance(exc, types)

    elif callable(retry_on):
        match = retry_on
    else:
        raise TypeError(
            f"retry_on: expected exception types or a predicate, got {type(retry_on).__name__}"
        )

    def check(exc: BaseException) -> bool:
        # Cancellation, interrupts and declared policy decisions are final,
        # whatever the caller's types or predicate say.
        if not isinstance(exc, Exception) or getattr(exc, "retryable", None) is False:
            return False
        return bool(match(exc))

    return check


# --------------------------------------------------------------------------
# configuration and report
# --------------------------------------------------------------------------


class Backoff(BaseModel):
    """How long :func:`retry` waits between attempts of the same factory.

    The wait before retry ``n`` (1 for the first retry) is
    ``min(max_delay, initial * multiplier ** (n - 1) + uniform(0, jitter))``.
    Jitter comes from ``random.Random(seed)``, one per stream, so a seed makes
    the waits reproducible. ``deadline`` bounds the whole run, counted from the
    start of the first attempt: a retry whose wait would end past it is not
    made (the last error is raised). Moving to a fallback does not wait.

    >>> import random
    >>> b = Backoff(initial=1.0, multiplier=2.0, max_delay=5.0, jitter=0.0)
    >>> [b.delay(n, random.Random(0)) for n in (1, 2, 3, 4)]
    [1.0, 2.0, 4.0, 5.0]
    >>> Backoff(initial=-1)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for Backoff
    ...
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial: float = Field(default=0.5, ge=0, allow_inf_nan=False)
    """Wait before the first retry, in seconds."""
    multiplier: float = Field(default=2.0, ge=1, allow_inf_nan=False)
    """Factor applied to the wait for each further retry."""
    max_delay: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    """Cap on any single wait (jitter included)."""
    jitter: float = Field(default=0.5, ge=0, allow_inf_nan=False)
    """Up to this many seconds, drawn uniformly, are added to each wait."""
    deadline: float | None = Field(default=None, gt=0)
    """Give up when the next attempt would start this many seconds after the first."""
    seed: int | None = None
    """Seed of the per-stream jitter generator (``None``: unpredictable)."""

    def delay(self, n: int, rng: random.Random) -> float:
        """Return the wait before retry ``n`` (1-based), drawing jitter from ``rng``."""
        try:
            base = self.initial * self.multiplier ** (n - 1)
        except OverflowError:  # huge retry counts: the cap applies anyway
            base = math.inf
        if self.jitter:
            base += rng.uniform(0.0, self.jitter)
        return min(self.max_delay, base)


class RetryAttempt(BaseModel):
    """One attempt in the ``"retry"`` report section.

    ``factory`` is 0 for the primary factory and ``i`` for ``fallbacks[i - 1]``;
    ``outcome`` is ``"running"`` until the attempt ends, then ``"success"``
    (its upstream ended naturally), ``"ended"`` (its upstream, a streamops
    pipeline, ended early without an error: a budget cut, a quiet timeout, a
    stop button, a redaction block; or the provider cut the message,
    ``truncated``; ``stop_reason`` says which), ``"failed"``
    or ``"stopped"`` (the consumer closed or cancelled the stream).

    >>> RetryAttempt(number=1, factory=0, started=0.0).outcome
    'running'
    """

    number: int
    factory: int
    started: float
    ended: float | None = None
    outcome: Literal["running", "success", "ended", "failed", "stopped"] = "running"
    chunks: int = 0
    error_type: str | None = None
    error: str | None = None
    backoff: float = 0.0
    """Seconds waited after this attempt before the next one."""
    stop_reason: str | None = None
    """The upstream's own stop reason, when it is a streamops stream that ended."""


class RetryReport(BaseModel):
    """The ``"retry"`` section of a retried stream's report.

    >>> import streamops as so
    >>> s = so.retry(lambda: iter(["ok"]))
    >>> list(s)
    ['ok']
    >>> section = s.report["retry"]
    >>> len(section.attempts), section.factory, section.backoff_total
    (1, 0, 0.0)
    """

    mode: str = "before_first_chunk"
    attempts: list[RetryAttempt] = Field(default_factory=list)
    backoff_total: float = 0.0
    """Seconds spent waiting between attempts."""
    factory: int | None = None
    """Which factory delivered the output: 0 the primary, ``i`` is ``fallbacks[i - 1]``."""
    committed: bool = False
    """True once text reached the consumer (no retry is possible after)."""
    side_effects_run: int = 0
    """How many ``on_success`` callbacks ran to their end."""
    side_effect_error: str | None = None
    """Why a callback failed or was interrupted (``"TimeoutError: ..."`` at the deadline)."""
    side_effects_skipped: str | None = None
    """The upstream's stop reason when it ended early without error, so none ran."""
    side_effects_cancelled: bool = False
    """The consumer was cancelled while the side effects ran (they went on, shielded)."""
    side_effects_interrupted: bool = False
    """A callback was cut short at ``side_effect_timeout``: it may have half-run."""


# --------------------------------------------------------------------------
# the commit point: which chunks carry output
# --------------------------------------------------------------------------

_BINARY = (bytes, bytearray, memoryview)


# Provider events that frame a message but carry none of its output (a role
# chunk, Anthropic's message_start, a tool call's header) are held before the
# first text and released with it, so a retry never sends a second one.
def _carries_output(chunk: Any, lens: _Reader | None) -> bool:
    """Whether handing ``chunk`` to the consumer commits the stream.

    ``str`` and bytes chunks carry text when non-empty. Provider chunks carry
    output when their lens reads text from any of their channels (answer,
    refusal, reasoning, tool-call arguments: ``texts()``). A chunk no lens
    knows counts as output: a duplicate is worse than a retry not made.
    """
    if isinstance(chunk, str):
        return chunk != ""
    if isinstance(chunk, _BINARY):
        return len(chunk) > 0
    if lens is None:
        return True
    try:
        texts = getattr(lens, "texts", None)
        return any(texts(chunk)) if texts is not None else bool(lens.unwrap(chunk))
    except Exception:
        return True


# --------------------------------------------------------------------------
# the sans-I/O state shared by the two loops
# --------------------------------------------------------------------------


class _Pending:
    """The first upstream, made eagerly by :func:`retry` to learn the stream's kind."""

    __slots__ = ("error", "value")

    def __init__(self, value: object = None, error: Exception | None = None) -> None:
        self.value = value
        self.error = error


class _RetryState:
    """Every decision of one retried stream; the loops only pull, yield, close and wait.

    Per attempt: :meth:`open` makes the upstream (or says why it could not),
    :meth:`take` says what to hand out for each chunk pulled (held framing
    before the commit point, the chunk itself after it), then
    :meth:`succeeded` (the items still held, and whether the end was natural)
    or :meth:`failed` (the wait before the next attempt, or it raises);
    :meth:`stopped` closes the books however the stream ends.
    """

    def __init__(
        self,
        factories: Sequence[Callable[[], object]],
        *,
        attempts: int,
        backoff: Backoff,
        retryable: Callable[[BaseException], bool],
        buffered: bool,
        callbacks: Sequence[SuccessCallback],
        side_effect_timeout: float,
        report: StreamReport,
        pending: _Pending | None,
    ) -> None:
        self.factories = factories
        self.callbacks = callbacks
        self.side_effect_timeout = side_effect_timeout
        self.attempts = attempts
        self.backoff = backoff
        self.retryable = retryable
        self.buffered = buffered
        self.report = report
        self.pending = pending
        self.rng = random.Random(backoff.seed)
        self.section = report.section("retry", RetryReport)
        self.section.mode = "buffered" if buffered else "before_first_chunk"
        self.index = 0  # which factory
        self.tries = 0  # attempts made with that factory
        self.start: float | None = None
        self.current: RetryAttempt | None = None
        self.inner: StreamReport | None = None
        self.held: list[Any] = []  # buffered mode: the attempt; else text-free chunks so far
        self.probe: _Reader | None = None  # reads this attempt's chunks before the commit point
        # Reads whether this attempt's provider message ended, and how (None: not
        # looked for yet; False: none, e.g. a streamops upstream, which reads it).
        self.ends: _EndReader | Literal[False] | None = None
        self.end: tuple[StopReason | None, str | None] = (None, None)  # (reason, detail)
        self.sdk = False  # this attempt's upstream is an OpenAI/Anthropic SDK stream
        self.texts: list[str] = []
        self._append_text = self.texts.append
        # The report's released list itself (as the core's fused loop does):
        # record_released() would cost a Python call per chunk.
        self._append_released = report._released.append
        self.lens: _Reader | None = None  # reads the released chunks
        self.committed = False
        self.running: SuccessCallback | None = None  # the side effect in progress

    @property
    def text(self) -> str:
        """The text released to the consumer so far."""
        return "".join(self.texts)

    # -- one attempt ---------------------------------------------------------
    def open(self) -> tuple[object, Exception | None]:
        """Start an attempt; return what its factory made, or the error it raised."""
        now = self.report.clock()
        if self.start is None:
            self.start = now
        self.tries += 1
        self.held = []
        self.probe = None
        self.ends = None
        self.end = (None, None)
        number = len(self.section.attempts) + 1
        self.current = RetryAttempt(number=number, factory=self.index, started=now)
        self.section.attempts.append(self.current)
        self.report.emit("retry.attempt", stage="retry", attempt=number, factory=self.index)
        pending, self.pending = self.pending, None
        if pending is not None:
            return pending.value, pending.error
        try:
            return self.factories[self.index](), None
        except Exception as exc:
            return None, exc

    def adopt(self, upstream: object) -> object:
        """Keep the report of an upstream that is a streamops stream; forward its events."""
        inner = getattr(upstream, "report", None)
        self.inner = inner if isinstance(inner, StreamReport) else None
        self.sdk = self.inner is None and _provider_stream(upstream)
        if self.inner is not None:
            self.ends = False  # its own pipeline reads the provider's end, into its report
            outer = self.report

            def forward(event: Any) -> None:
                if not event.kind.startswith("stream."):  # the outer stream has its own
                    outer.emit_event(event)

            self.inner.subscribe(forward)
        return upstream

    def take(self, item: Any) -> Sequence[Any]:
        """Return what to hand out now for ``item``; text-free chunks wait for the first text.

        Before the commit point a chunk that carries no output (an OpenAI role
        chunk, Anthropic's ``message_start``) is held: it is released with the
        first chunk that does, or at the end, and dropped if the attempt fails,
        so the consumer never gets one attempt's framing and another's text.
        """
        if self.committed:
            if type(item) is str:  # the hot path: release() inlined, C calls only
                self._append_text(item)
                self._append_released(item)
                return (item,)
            if self.ends is not False:
                self.read_end(item)
            self.release(item)
            return [item]
        held = self.held
        held.append(item)
        chunk = not isinstance(item, (str, *_BINARY))
        if chunk and self.ends is not False:
            self.read_end(item)
        if self.buffered:
            return []
        if self.probe is None and chunk:
            self.probe = _lens_for(self.report, item)
        if not _carries_output(item, self.probe):
            return []
        self.held = []
        for out in held:
            self.release(out)
        return held

    def read_end(self, item: Any) -> None:
        """Read whether the provider's message ended from a chunk of a raw provider stream."""
        ends = self.ends
        if ends is None:
            if isinstance(item, (str, *_BINARY)):
                return
            report = self.report
            ends = self.ends = _EndReader.of(lambda c: _lens_for(report, c), item) or False
        if ends:
            ends.read(item)

    def exhausted(self) -> Exception | None:
        """The attempt's upstream ended without error: say how; an error to retry it.

        A streamops upstream's report says how it ended; a raw provider stream's
        chunks do (its end event, or a cut finish). An attempt whose message
        ended without its end event before the commit point lost its
        connection: it is a failure (:class:`_EndMissingError`), retried.
        """
        inner = self.inner
        if inner is not None:
            self.end = (inner.stop_reason, inner.stop_detail)
        elif self.ends:
            cut = self.ends.cut()
            self.end = (None, None) if cut is None else (StopReason.TRUNCATED, cut)
        elif self.ends is None and self.sdk:  # not one chunk: no end event either
            self.end = (StopReason.TRUNCATED, _NO_END)
        reason, detail = self.end
        if reason == StopReason.TRUNCATED and detail == _NO_END and not self.committed:
            return _EndMissingError(
                f"retry: attempt {len(self.section.attempts)}'s upstream ended without its"
                " end event before any text was released (a dropped connection?)"
            )
        return None

    def release(self, item: Any) -> None:
        """Record ``item`` as handed to the consumer (:meth:`take` inlines it for ``str``)."""
        if not self.committed:
            self.committed = self.section.committed = True
        if isinstance(item, str):
            self.texts.append(item)
            self.report.record_released([item])
            return
        if self.lens is None:
            self.lens = _lens_for(self.report, item)
        if self.lens is not None:
            self.texts.append(self.lens.unwrap(item))

    def _end(
        self, outcome: Literal["success", "ended", "failed", "stopped"], chunks: int
    ) -> RetryAttempt:
        attempt = self.current
        assert attempt is not None
        attempt.outcome = outcome
        attempt.ended = self.report.clock()
        attempt.chunks = chunks
        self.current = None
        return attempt

    def succeeded(self, chunks: int) -> list[Any]:
        """End the attempt (``chunks`` pulled) without error; return the items still held.

        It ended naturally unless :meth:`exhausted` found it was stopped or cut.
        """
        inner = self.inner
        reason, detail = self.end
        natural = reason == StopReason.COMPLETE if inner is not None else reason is None
        attempt = self._end("success" if natural else "ended", chunks)
        attempt.stop_reason = None if reason is None else str(reason)
        self.section.factory = attempt.factory
        out, self.held = self.held, []
        for item in out:
            self.release(item)
        if inner is not None:
            # The consumer got this attempt's output: its report describes it.
            for name, section in inner.sections.items():
                self.report.sections.setdefault(name, section)
            self.report.counters.update(inner.counters)
        if not natural and reason is not None:
            self.report.stop(reason, detail)
        kind = "retry.success" if natural else "retry.ended"
        data: dict[str, Any] = {} if natural else {"reason": attempt.stop_reason}
        self.report.emit(
            kind, stage="retry", attempt=attempt.number, factory=attempt.factory, **data
        )
        return out

    def stopped(self, chunks: int, n_out: int) -> None:
        """Count the chunks handed out; mark an attempt the consumer abandoned (close, break...)."""
        self.report.chunks_in = self.report.chunks_out = n_out
        if self.current is not None:
            self._end("stopped", chunks)

    def failed(self, exc: Exception, chunks: int) -> float:
        """End the attempt as a failure: return the wait before the next, or raise."""
        attempt = self._end("failed", chunks)
        attempt.error_type = type(exc).__name__
        attempt.error = str(exc)[:_MAX_MESSAGE]
        self.held = []
        outcome = self._decide(exc)
        self.report.emit(
            "retry.failure",
            stage="retry",
            attempt=attempt.number,
            factory=attempt.factory,
            error_type=attempt.error_type,
            error=attempt.error,
            retrying=not isinstance(outcome, BaseException),
        )
        if outcome is exc:
            raise exc  # the upstream's own error, unwrapped (its cause kept)
        if isinstance(outcome, BaseException):
            raise outcome from exc
        attempt.backoff = outcome
        self.section.backoff_total += outcome
        if outcome:
            self.report.emit("retry.backoff", stage="retry", delay=outcome)
        return outcome

    def _decide(self, exc: Exception) -> float | BaseException:
        # An error that would not be retried anyway passes through unwrapped
        # (callers' ``except`` keep working). One that would, after text was
        # released, is always StreamInterruptedError: whether attempts were left
        # does not change what the consumer has to handle.
        n = len(self.section.attempts)
        if not self.retryable(exc):
            return exc
        if self.committed:
            return StreamInterruptedError(
                f"attempt {n} failed after {len(self.text)} characters were released"
                f" ({type(exc).__name__}: {exc}); not retried, it would repeat them",
                released=self.text,
                attempt=n,
            )
        fallback = self.tries >= self.attempts
        if not fallback:
            delay = self.backoff.delay(self.tries, self.rng)
        elif self.index + 1 < len(self.factories):
            delay = 0.0
        else:
            exc.add_note(f"streamops.retry: gave up after {n} attempts")
            return exc
        deadline = self.backoff.deadline
        assert self.start is not None
        if deadline is not None and self.report.clock() + delay - self.start > deadline:
            exc.add_note(f"streamops.retry: gave up after {n} attempts ({deadline}s deadline)")
            return exc
        if fallback:
            self.index += 1
            self.tries = 0
            self.report.emit("retry.fallback", stage="retry", factory=self.index)
        return delay

    def discard(self) -> object:
        """Forget the eagerly made upstream if no attempt used it; return it to close."""
        pending, self.pending = self.pending, None
        return None if pending is None else pending.value

    # -- side effects --------------------------------------------------------
    def completed(self) -> bool:
        """Record that the consumer pulled past the last chunk; say if side effects run.

        The stop reason ``complete`` is recorded before the side effects run,
        so that one failing leaves it (the report's ``error`` tells the rest).
        They run only after a natural end: not when the upstream pipeline
        stopped early (budget, quiet timeout, stop button, block).
        """
        self.report.stop(StopReason.COMPLETE)
        attempt = self.section.attempts[-1]
        if attempt.outcome == "success":
            return bool(self.callbacks)
        reason = attempt.stop_reason or "unknown"
        self.section.side_effects_skipped = reason
        if self.callbacks:
            self.report.emit("retry.side_effects_skipped", stage="retry", reason=reason)
        return False

    def call(self, callback: SuccessCallback) -> object:
        """Run one ``on_success`` callback; a failure becomes :class:`SideEffectError`."""
        self.running = callback
        try:
            return callback(self.text, self.report)
        except Exception as exc:
            raise self.side_effect_failed(callback, exc) from exc

    def side_effect_failed(self, callback: SuccessCallback, exc: Exception) -> SideEffectError:
        name = _name(callback)
        self.section.side_effect_error = f"{type(exc).__name__}: {exc}"[:_MAX_MESSAGE]
        self.report.emit(
            "retry.side_effect_failed", stage="retry", callback=name, error_type=type(exc).__name__
        )
        return SideEffectError(
            f"on_success callback {name} failed ({type(exc).__name__}: {exc});"
            " the stream completed and is not retried",
            released=self.text,
            callback=callback,
        )

    def side_effect_done(self, callback: SuccessCallback) -> None:
        self.running = None
        self.section.side_effects_run += 1
        self.report.emit("retry.side_effect", stage="retry", callback=_name(callback))

    def side_effects_sync(self) -> None:
        """Run the callbacks of a sync stream, in order (nothing can interrupt them)."""
        for callback in self.callbacks:
            if inspect.isawaitable(result := self.call(callback)):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited: close it rather than leak a warning
                raise TypeError(
                    "retry: on_success callback returned an awaitable on a sync stream;"
                    " use a sync callback or an async upstream"
                )
            self.side_effect_done(callback)

    async def side_effects_async(self) -> None:
        """Run the callbacks of an async stream, in order (in the shielded task)."""
        for callback in self.callbacks:
            if inspect.isawaitable(result := self.call(callback)):
                try:
                    await result
                except Exception as exc:
                    raise self.side_effect_failed(callback, exc) from exc
            self.side_effect_done(callback)

    def cancelled_during_side_effects(self) -> None:
        if not self.section.side_effects_cancelled:
            self.section.side_effects_cancelled = True
            self.report.emit(
                "retry.side_effects_shielded", stage="retry", timeout=self.side_effect_timeout
            )

    def side_effects_timed_out(self) -> SideEffectError:
        """Record the callback cut short at the deadline; return the error that says so."""
        callback = self.running or self.callbacks[0]
        name = _name(callback)
        cause = TimeoutError(
            f"on_success callback {name} did not finish within {self.side_effect_timeout} s"
        )
        self.section.side_effects_interrupted = True
        self.section.side_effect_error = f"TimeoutError: {cause}"[:_MAX_MESSAGE]
        self.report.emit("retry.side_effect_interrupted", stage="retry", callback=name)
        err = SideEffectError(
            f"{cause} (side_effect_timeout) and was cancelled: it may have half-run;"
            " the stream completed and is not retried",
            released=self.text,
            callback=callback,
        )
        err.__cause__ = cause
        self.report.error = err
        return err


def _name(callback: Callable[..., object]) -> str:
    return getattr(callback, "__qualname__", repr(callback))


# --------------------------------------------------------------------------
# the loops: pull, yield, close, wait; every decision is the state's
# --------------------------------------------------------------------------


def _not_a_stream(made: object, kind: str, hint: str = "") -> TypeError:
    return TypeError(
        f"retry: the factory must return {kind} iterable of chunks for this stream,"
        f" got {type(made).__name__}{hint}"
    )


_KIND_HINT = " (the stream's kind was decided when retry() was called: pass kind= to choose it)"


def _sync_iter(made: object) -> Iterator[Any]:
    if isinstance(made, (str, bytes)) or not hasattr(made, "__iter__"):
        raise _not_a_stream(made, "a sync", _KIND_HINT)
    return iter(made)


def _async_iter(made: object) -> AsyncIterator[Any]:
    if not hasattr(made, "__aiter__"):
        raise _not_a_stream(made, "an async", _KIND_HINT)
    return made.__aiter__()  # type: ignore[no-any-return]


# The two loops below are the stream's generator, one per kind of upstream.
# They differ only where one awaits: opening (an awaitable upstream), pulling,
# closing, waiting and running the side effects; what to hand out, when to
# retry and what the report says come from _RetryState.


def _sync_attempts(
    state: _RetryState, sleep: Callable[[float], object]
) -> Generator[Any, None, None]:
    take = state.take
    made: object = None
    it: Iterator[Any] | None = None
    n_out = chunks = 0
    _start(state.report)
    try:
        while True:
            made, error = state.open()
            chunks = 0
            if error is None:
                pull = (it := _sync_iter(state.adopt(made))).__next__
                while True:
                    try:
                        item = pull()
                    except StopIteration:
                        break
                    except Exception as exc:
                        error = exc
                        break
                    chunks += 1
                    for out in take(item):
                        n_out += 1  # counted before the yield: a consumer that leaves has it
                        yield out
                if error is None:
                    error = state.exhausted()
            _close_all(it, made)  # before any wait: the next attempt starts clean
            made = it = None
            if error is None:
                break
            sleep(state.failed(error, chunks))
        for out in state.succeeded(chunks):
            n_out += 1
            yield out
        if state.completed():  # only reached when the consumer pulled past the end
            state.side_effects_sync()
    except BaseException as exc:
        _on_error(state.report, exc)
        raise
    finally:
        state.stopped(chunks, n_out)
        _close_all(it, made)
        _end(state.report)


async def _async_attempts(
    state: _RetryState, sleep: Callable[[float], Awaitable[object]]
) -> AsyncGenerator[Any, None]:
    take = state.take
    made: object = None
    it: AsyncIterator[Any] | None = None
    n_out = chunks = 0
    _start_async(state.report)
    try:
        require_asyncio("retry")  # backoff sleeps and shielded side effects
        while True:
            made, error = state.open()
            chunks = 0
            if error is None and inspect.isawaitable(made):
                try:
                    made = await made
                except Exception as exc:
                    error = exc
            if error is None:
                pull = (it := _async_iter(state.adopt(made))).__anext__
                while True:
                    try:
                        item = await pull()
                    except StopAsyncIteration:
                        break
                    except Exception as exc:
                        error = exc
                        break
                    chunks += 1
                    for out in take(item):
                        n_out += 1  # (see _sync_attempts)
                        yield out
                if error is None:
                    error = state.exhausted()
            await _aclose_all(it, made)
            made = it = None
            if error is None:
                break
            await sleep(state.failed(error, chunks))
        for out in state.succeeded(chunks):
            n_out += 1
            yield out
        if state.completed():
            await _shielded_side_effects(state)
    except BaseException as exc:
        _on_error(state.report, exc)
        raise
    finally:
        state.stopped(chunks, n_out)
        await _aclose_all(it, made)
        _end(state.report)


async def _shielded_side_effects(state: _RetryState) -> None:
    """Run the side effects in their own task, shielded from cancellation, up to a deadline.

    A consumer cancelled meanwhile does not cut a callback in half: the
    callbacks go on until they end or ``side_effect_timeout`` passes, then the
    cancellation goes on. At the deadline the running callback is cancelled
    (and awaited while it unwinds) and the interruption recorded.
    """
    loop = asyncio.get_running_loop()
    task = loop.create_task(state.side_effects_async())
    deadline = loop.time() + state.side_effect_timeout
    cancelled: BaseException | None = None
    while not task.done() and (left := deadline - loop.time()) > 0:
        try:
            await asyncio.wait((task,), timeout=left)  # asyncio.wait never cancels the task
        except asyncio.CancelledError as exc:
            cancelled = exc
            state.cancelled_during_side_effects()
    timed_out = None
    if not task.done():
        task.cancel()
        timed_out = state.side_effects_timed_out()
    while not task.done():  # the callback unwinds from its cancellation
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError as exc:
            cancelled = exc
    error = None if task.cancelled() else task.exception()
    if cancelled is not None:
        if error is not None:
            state.report.error = error
        raise cancelled
    if timed_out is not None:
        raise timed_out from timed_out.__cause__
    if error is not None:
        raise error


class _RetrySyncStream(SyncStream[T]):
    """A :class:`SyncStream` whose ``close()`` also closes an upstream made but never pulled."""

    __slots__ = ("_state",)

    def __init__(self, it: Generator[T, None, None], state: _RetryState) -> None:
        super().__init__(it, state.report)
        self._state = state

    def close(self) -> None:
        """Stop the stream and close the upstream; harmless if already closed."""
        super().close()
        _close_all(self._state.discard())


class _RetryAsyncStream(AsyncStream[T]):
    """An :class:`AsyncStream` whose ``aclose()`` also closes an upstream made but never pulled."""

    __slots__ = ("_state",)

    def __init__(self, it: AsyncGenerator[T, None], state: _RetryState) -> None:
        super().__init__(it, state.report)
        self._state = state

    async def aclose(self) -> None:
        """Stop the stream and close the upstream; harmless if already closed."""
        await super().aclose()
        await _aclose_all(self._state.discard())


# --------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------


def _make_first(factory: Callable[[], object]) -> tuple[Literal["sync", "async"], _Pending | None]:
    """Learn the kind of stream ``factory`` makes; keep what it made, if it had to be called."""
    # A generator or async function says what it makes without being called.
    if inspect.iscoroutinefunction(factory) or inspect.isasyncgenfunction(factory):
        return "async", None
    if inspect.isgeneratorfunction(factory):
        return "sync", None
    try:
        made = factory()
    except Exception as exc:
        # Most likely a sync client connecting in create() (an async one
        # defers its I/O to the awaitable it returns), so the failure counts
        # as attempt 1 of a sync stream; say so in case that guess is wrong.
        exc.add_note(
            "streamops.retry: the factory raised when first called, so the stream was"
            " taken to be sync; pass kind='async' if it makes an async stream"
        )
        return "sync", _Pending(error=exc)
    if hasattr(made, "__aiter__"):
        return "async", _Pending(made)
    if inspect.iscoroutine(made):
        made.close()  # made again on the first attempt: a coroutine never awaited warns
        return "async", None
    if inspect.isawaitable(made):
        return "async", _Pending(made)
    if isinstance(made, (str, bytes)) or not hasattr(made, "__iter__"):
        raise _not_a_stream(made, "a sync or async")
    return "sync", _Pending(made)


@overload
def retry(
    factory: Callable[[], AsyncIterable[T]] | Callable[[], Awaitable[AsyncIterable[T]]],
    /,
    *,
    attempts: int = ...,
    backoff: Backoff | None = ...,
    retry_on: RetryOn | None = ...,
    mode: Mode = ...,
    fallbacks: Sequence[Callable[[], object]] = ...,
    on_success: SuccessCallback | Sequence[SuccessCallback] = ...,
    side_effect_timeout: float = ...,
    kind: Literal["sync", "async"] | None = ...,
    sleep: Callable[[float], object] | None = ...,
    on_event: EventCallback | None = ...,
    report: StreamReport | None = ...,
    lens: Callable[[Any], Any] | None = ...,
) -> AsyncStream[T]: ...


@overload
def retry(
    factory: Callable[[], Iterable[T]],
    /,
    *,
    attempts: int = ...,
    backoff: Backoff | None = ...,
    retry_on: RetryOn | None = ...,
    mode: Mode = ...,
    fallbacks: Sequence[Callable[[], object]] = ...,
    on_success: SuccessCallback | Sequence[SuccessCallback] = ...,
    side_effect_timeout: float = ...,
    kind: Literal["sync", "async"] | None = ...,
    sleep: Callable[[float], object] | None = ...,
    on_event: EventCallback | None = ...,
    report: StreamReport | None = ...,
    lens: Callable[[Any], Any] | None = ...,
) -> SyncStream[T]: ...


def retry(
    factory: Callable[[], object],
    /,
    *,
    attempts: int = 3,
    backoff: Backoff | None = None,
    retry_on: RetryOn | None = None,
    mode: Mode = "before_first_chunk",
    fallbacks: Sequence[Callable[[], object]] = (),
    on_success: SuccessCallback | Sequence[SuccessCallback] = (),
    side_effect_timeout: float = 30.0,
    kind: Literal["sync", "async"] | None = None,
    sleep: Callable[[float], object] | None = None,
    on_event: EventCallback | None = None,
    report: StreamReport | None = None,
    lens: Callable[[Any], Any] | None = None,
) -> Any:
    """Stream from ``factory()``, retrying failures that happen before anything escaped.

    ``factory`` is called for each attempt and returns a fresh upstream: an
    iterable, an async iterable, or an awaitable of one (``async def``
    factories, ``AsyncOpenAI().chat.completions.create(stream=True, ...)``).
    The result is a :class:`~streamops.SyncStream` or
    :class:`~streamops.AsyncStream` like the upstream, with a ``report`` whose
    ``"retry"`` section (:class:`RetryReport`) lists every attempt. The kind
    of an ``async def``, async generator or generator function is known
    without calling it; any other callable (a ``lambda``, a method) is called
    once right away to learn it (a coroutine it returns is discarded and made
    again). If that first call raises, the stream is taken to be sync (the
    likely case: a sync client connecting in ``create()``) and the failure is
    attempt 1; pass ``kind="async"`` for a callable that makes an async stream
    yet may raise when called, and ``kind=`` to skip the call altogether.

    - ``mode="before_first_chunk"``: chunks stream through as they come; a
      failure before the first text is retried. Chunks without text that come
      before it (an OpenAI role chunk, Anthropic's ``message_start`` and
      ``content_block_start``) are held and released with the first text, or
      at the end; a failed attempt's are dropped. A chunk carrying another
      channel (refusal, reasoning, a tool call) counts as text. A failure after
      the first text that ``retry_on`` retries raises :class:`StreamInterruptedError`
      (with the released text, ``from`` the cause) on every attempt, the last
      included; an error ``retry_on`` does not retry is raised unchanged.
    - ``mode="buffered"``: each attempt's output is held until the attempt
      completes, then released; any failure is retryable. For JSON or tool
      calls, where half an answer is useless.
    - ``attempts`` (per factory) and ``backoff`` (:class:`Backoff`): the
      primary factory gets up to ``attempts`` attempts with waits between them,
      then each of ``fallbacks`` in order gets up to ``attempts`` attempts (no
      wait when moving to the next factory); ``backoff.deadline`` bounds it all.
    - ``retry_on``: exception types or a predicate; default
      :func:`is_retryable`. Anything that is not an ``Exception`` and errors
      declaring ``retryable = False`` are never retried. A non-retryable error
      is raised at once, without trying the fallbacks; when attempts run out
      the last error is raised unchanged (with a note).
    - ``on_success``: callbacks ``(text, report)``, sync or async (async ones
      only on async streams), run once, in order, when the consumer pulls past
      the last item of an upstream that ended naturally; never after a
      failure, a cancellation or an early ``break``, nor when the upstream is a
      streamops pipeline whose report gives another stop reason than
      ``complete`` (a budget cut, ``on_timeout="end"``, a stop button, a
      redaction ``block``: ``report["retry"].side_effects_skipped`` says which),
      nor when the provider cut the message of a raw SDK stream (a ``length``
      finish, no end event: ``truncated``). A provider stream that ended
      without its end event before any text is a failed attempt, retried.
      If one raises, the stream raises :class:`SideEffectError`; nothing is
      retried, the stop reason stays ``complete`` and ``report.error`` is that
      error.
    - ``side_effect_timeout`` (seconds, default 30): on async streams the
      callbacks run in a task shielded from the consumer's cancellation, for
      at most this long. A consumer cancelled meanwhile waits for them (the
      cancellation is re-raised after); a callback still running at the
      deadline is cancelled, recorded (``side_effects_interrupted``) and
      :class:`SideEffectError` raised (or the cancellation, if there was one).
    - ``lens``: how to read provider chunks this stream cannot recognise (a
      lens factory, as ``op(source, lens=...)`` takes): the commit point and
      the released text read them through it.
    - ``sleep``: the wait function, ``asyncio.sleep`` for async streams (so
      virtual time such as ``looptime`` makes it instant) and ``time.sleep``
      (blocking) for sync ones; inject one to test.

    Every failed attempt's upstream is closed (``close()``/``aclose()``)
    before the wait and the next attempt. Cancelling during a wait starts no
    further attempt. When an upstream is itself a streamops stream, its events
    are forwarded and the successful attempt's report sections are copied.

    Wrap the whole pipeline, not its output: in
    ``retry(lambda: (so.redact() | so.budget(max_tokens=500))(model.astream(p)))``
    text the pipeline still holds back has not been released, so a failure
    then is still retried.

    >>> def flaky():
    ...     flaky.calls = getattr(flaky, "calls", 0) + 1
    ...     if flaky.calls == 1:
    ...         raise ConnectionResetError("dropped")
    ...     yield from ["Hel", "lo"]
    >>> s = retry(flaky, backoff=Backoff(initial=0, jitter=0), on_success=lambda t, r: print(t))
    >>> list(s)
    Hello
    ['Hel', 'lo']
    >>> [a.outcome for a in s.report["retry"].attempts]
    ['failed', 'success']
    """
    factories: list[Callable[[], object]] = [factory, *fallbacks]
    candidates: list[object] = list(factories)
    for i, f in enumerate(candidates):
        if not callable(f):
            where = "factory" if i == 0 else f"fallbacks[{i - 1}]"
            raise TypeError(f"retry: {where} must be callable, got {type(f).__name__}")
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise TypeError(f"retry: attempts must be an int, got {type(attempts).__name__}")
    if attempts < 1:
        raise ValueError(f"retry: attempts must be at least 1, got {attempts}")
    if mode not in ("before_first_chunk", "buffered"):
        raise ValueError(f"retry: mode must be 'before_first_chunk' or 'buffered', got {mode!r}")
    if backoff is None:
        backoff = Backoff()
    elif not isinstance(backoff, Backoff):
        raise TypeError(f"retry: backoff must be a Backoff, got {type(backoff).__name__}")
    if kind not in (None, "sync", "async"):
        raise ValueError(f"retry: kind must be 'sync', 'async' or None, got {kind!r}")
    given: object = on_success  # (checked as any object: it comes from the caller)
    if not callable(given) and (isinstance(given, str | bytes) or not isinstance(given, Iterable)):
        raise TypeError(
            "retry: on_success must be a callable or a list of callables,"
            f" got {type(given).__name__}"
        )
    callbacks = [on_success] if callable(on_success) else list(on_success)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"retry: on_success callbacks must be callable, got {cb!r}")
    if isinstance(side_effect_timeout, bool) or not isinstance(side_effect_timeout, (int, float)):
        raise TypeError(
            "retry: side_effect_timeout must be a number of seconds,"
            f" got {type(side_effect_timeout).__name__}"
        )
    if not 0 < side_effect_timeout < math.inf:  # also refuses NaN: never an unbounded shield
        raise ValueError(
            f"retry: side_effect_timeout must be positive and finite, got {side_effect_timeout}"
        )
    if sleep is not None and not callable(sleep):
        raise TypeError(f"retry: sleep must be callable, got {type(sleep).__name__}")
    retryable = _predicate(retry_on)

    pending = None
    if kind is None:
        kind, pending = _make_first(factory)
    if kind == "sync":
        for cb in callbacks:
            if inspect.iscoroutinefunction(cb):
                if pending is not None:
                    _close_all(pending.value)
                raise TypeError(
                    f"retry: on_success callback {cb.__qualname__} is async but the stream is sync"
                )
    report = _report_for(report, on_event, lens)
    state = _RetryState(
        factories,
        attempts=attempts,
        backoff=backoff,
        retryable=retryable,
        buffered=mode == "buffered",
        callbacks=callbacks,
        side_effect_timeout=float(side_effect_timeout),
        report=report,
        pending=pending,
    )
    if kind == "async":
        async_sleep: Any = asyncio.sleep if sleep is None else sleep
        return _RetryAsyncStream(_async_attempts(state, async_sleep), state)
    return _RetrySyncStream(_sync_attempts(state, time.sleep if sleep is None else sleep), state)
