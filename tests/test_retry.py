"""Tests for so.retry: commit point, modes, backoff, fallbacks, side effects, errors."""

from __future__ import annotations

import asyncio
import errno
import gc
import inspect
import random
import warnings
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Literal

import anthropic
import httpx
import httpx2
import openai
import pytest

import streamops as so
from streamops.testing import FakeReply, FakeStreamingModel, FakeUpstreamError, Fault, run

NO_WAIT = so.Backoff(initial=0.0, jitter=0.0)


def fail_at(index: int, error: BaseException | type[BaseException] | None = None) -> list[Fault]:
    return [Fault.raise_at(index, error)]


def drain(stream: Iterator[str], got: list[str]) -> None:
    """Consume ``stream`` into ``got`` (so a test can see what came before an error)."""
    for piece in stream:
        got.append(piece)


async def adrain(stream: AsyncIterator[str], got: list[str]) -> None:
    async for piece in stream:
        got.append(piece)


class Sleeps:
    """An injected sync sleep that records the waits instead of blocking."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class PolicyError(so.StreamOpsError, ConnectionError):
    """Stands for a policy decision (budget, block): declared non-retryable."""

    retryable = False


# --------------------------------------------------------------------------
# mode="before_first_chunk"
# --------------------------------------------------------------------------


def test_success_first_time_runs_one_attempt() -> None:
    model = FakeStreamingModel("Hello there")
    seen: list[tuple[str, so.StreamReport]] = []
    s = so.retry(model.stream, on_success=lambda text, report: seen.append((text, report)))
    assert isinstance(s, so.SyncStream)
    assert list(s) == ["Hello", " there"]
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert [a.outcome for a in section.attempts] == ["success"]
    assert all(isinstance(a, so.RetryAttempt) for a in section.attempts)
    assert section.factory == 0
    assert section.committed is True
    assert seen == [("Hello there", s.report)]
    assert s.report.stop_reason == so.StopReason.COMPLETE
    assert s.report.released_text == "Hello there"


def test_failure_before_first_chunk_is_retried_without_duplicates() -> None:
    model = FakeStreamingModel(
        [FakeReply("a b c", faults=fail_at(0)), FakeReply("x y")], cycle=False
    )
    sleeps = Sleeps()
    s = so.retry(model.stream, backoff=so.Backoff(seed=1), sleep=sleeps)
    assert list(s) == ["x", " y"]
    assert len(model.calls) == 2
    assert all(call.finalized for call in model.calls)
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    first, second = section.attempts
    assert (first.outcome, first.error_type, first.chunks) == ("failed", "FakeUpstreamError", 0)
    assert first.error == "fake upstream error at chunk 0"
    assert (second.outcome, second.number, second.factory) == ("success", 2, 0)
    expected_wait = 0.5 + random.Random(1).uniform(0, 0.5)
    assert sleeps.waits == [expected_wait]
    assert section.backoff_total == expected_wait
    assert first.backoff == expected_wait


def test_failure_after_first_chunk_raises_stream_interrupted() -> None:
    model = FakeStreamingModel("one two three", faults=fail_at(2))
    ran: list[str] = []
    s = so.retry(model.stream, backoff=NO_WAIT, on_success=lambda t, r: ran.append(t))
    got: list[str] = []
    with pytest.raises(so.StreamInterruptedError) as info:
        drain(s, got)
    err = info.value
    assert got == ["one", " two"]
    assert err.released == "one two"
    assert err.attempt == 1
    assert isinstance(err.__cause__, FakeUpstreamError)
    assert "not retried" in str(err)
    assert len(model.calls) == 1  # never restarted
    assert model.calls[0].finalized
    assert ran == []
    assert s.report.stop_reason == so.StopReason.ERROR
    assert s.report.error is err


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        so.JSONStreamError("invalid JSON at offset 7", offset=7, expected="','", got="x"),
        PolicyError("over budget"),
    ],
)
def test_error_never_retried_passes_through_after_the_first_chunk(error: Exception) -> None:
    model = FakeStreamingModel("one two three", faults=fail_at(2, error))
    s = so.retry(model.stream, backoff=NO_WAIT)
    got: list[str] = []
    with pytest.raises(type(error)) as info:
        drain(s, got)
    assert got == ["one", " two"]
    assert type(info.value) is type(error)  # not wrapped in StreamInterruptedError
    assert len(model.calls) == 1
    assert s.report.error is info.value
    failure = next(e for e in s.report.events if e.kind == "retry.failure")
    assert failure.data["retrying"] is False


def test_timeout_excluded_by_retry_on_passes_through_after_the_first_chunk() -> None:
    model = FakeStreamingModel("one two three", delay=1.0, faults=[Fault.stall_at(2, 60.0)])

    async def main() -> list[str]:
        s = so.retry(
            lambda: so.timeout(idle=5.0)(model.astream()),
            retry_on=ConnectionError,
            backoff=NO_WAIT,
        )
        got: list[str] = []
        with pytest.raises(so.StreamTimeout):  # a user's ``except TimeoutError`` still works
            await adrain(s, got)
        return got

    assert run(main()) == ["one", " two"]
    assert len(model.calls) == 1


def test_mid_stream_timeout_with_the_default_retry_on_is_interrupted() -> None:
    model = FakeStreamingModel("one two three", delay=1.0, faults=[Fault.stall_at(2, 60.0)])

    async def main() -> list[str]:
        s = so.retry(lambda: so.timeout(idle=5.0)(model.astream()), backoff=NO_WAIT)
        got: list[str] = []
        with pytest.raises(so.StreamInterruptedError) as info:
            await adrain(s, got)
        assert isinstance(info.value.__cause__, so.StreamTimeout)  # the cause is kept
        assert info.value.released == "one two"
        return got

    assert run(main()) == ["one", " two"]
    assert len(model.calls) == 1


def test_last_attempt_failing_after_the_first_chunk_is_interrupted_too() -> None:
    model = FakeStreamingModel(
        [FakeReply("a", faults=fail_at(0)), FakeReply("one two", faults=fail_at(1))], cycle=False
    )
    s = so.retry(model.stream, attempts=2, backoff=NO_WAIT)
    got: list[str] = []
    with pytest.raises(so.StreamInterruptedError) as info:  # the same type as on attempt 1
        drain(s, got)
    assert got == ["one"]
    assert info.value.released == "one"
    assert info.value.attempt == 2
    assert isinstance(info.value.__cause__, FakeUpstreamError)
    assert len(model.calls) == 2


def test_attempts_exhausted_raises_last_error_with_note() -> None:
    model = FakeStreamingModel("a", faults=fail_at(0))
    sleeps = Sleeps()
    s = so.retry(model.stream, attempts=4, backoff=so.Backoff(jitter=0), sleep=sleeps)
    with pytest.raises(FakeUpstreamError) as info:
        list(s)
    assert len(model.calls) == 4
    assert all(call.finalized for call in model.calls)
    assert sleeps.waits == [0.5, 1.0, 2.0]
    assert "streamops.retry: gave up after 4 attempts" in (info.value.__notes__ or [])
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.factory is None
    assert section.attempts[-1].backoff == 0.0
    assert section.backoff_total == 3.5


# --------------------------------------------------------------------------
# mode="buffered"
# --------------------------------------------------------------------------


def test_buffered_retries_a_failure_mid_stream_and_releases_one_attempt() -> None:
    model = FakeStreamingModel(
        [FakeReply('{"a": 1, "b"', faults=fail_at(2)), FakeReply('{"a": 2}')],
        cycle=False,
        chunking=3,
    )
    s = so.retry(model.stream, mode="buffered", backoff=NO_WAIT)
    assert "".join(s) == '{"a": 2}'
    assert len(model.calls) == 2
    assert model.calls[0].pulled == 2  # pulled, then discarded: never released
    assert all(call.finalized for call in model.calls)
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.mode == "buffered"
    assert [a.chunks for a in section.attempts] == [2, 3]


def test_buffered_holds_everything_until_the_attempt_completes() -> None:
    def upstream() -> Iterator[str]:
        yield "a"
        yield "b"

    s = so.retry(upstream, mode="buffered")
    assert next(s) == "a"
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.attempts[0].outcome == "success"  # the attempt ended before "a" came out
    assert list(s) == ["b"]


def test_buffered_failure_when_attempts_run_out_releases_nothing() -> None:
    model = FakeStreamingModel("a b c", faults=fail_at(2))
    ran: list[str] = []
    s = so.retry(
        model.stream,
        mode="buffered",
        attempts=2,
        backoff=NO_WAIT,
        on_success=lambda t, r: ran.append(t),
    )
    got: list[str] = []
    with pytest.raises(FakeUpstreamError):
        drain(s, got)
    assert got == []
    assert len(model.calls) == 2
    assert ran == []


# --------------------------------------------------------------------------
# what is retried
# --------------------------------------------------------------------------


def test_non_retryable_error_is_raised_at_once() -> None:
    model = FakeStreamingModel("a b", faults=fail_at(0, ValueError))
    s = so.retry(model.stream, backoff=NO_WAIT, fallbacks=[FakeStreamingModel("z").stream])
    with pytest.raises(ValueError, match="fake upstream error at chunk 0"):
        list(s)
    assert len(model.calls) == 1  # and no fallback either
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert len(section.attempts) == 1


def test_policy_errors_are_never_retried_even_if_retry_on_matches() -> None:
    model = FakeStreamingModel("a b", faults=fail_at(0, PolicyError))
    s = so.retry(model.stream, retry_on=Exception, backoff=NO_WAIT)
    with pytest.raises(PolicyError):
        list(s)
    assert len(model.calls) == 1


def test_keyboard_interrupt_is_never_retried_and_the_upstream_is_closed() -> None:
    model = FakeStreamingModel("a b", faults=fail_at(1, KeyboardInterrupt))
    s = so.retry(model.stream, retry_on=lambda exc: True, mode="buffered", backoff=NO_WAIT)
    with pytest.raises(KeyboardInterrupt):
        list(s)
    assert len(model.calls) == 1
    assert model.calls[0].finalized


def test_retry_on_types_narrow_the_default() -> None:
    model = FakeStreamingModel(
        [FakeReply("a", faults=fail_at(0, KeyError)), "ok"], cycle=False, chunking="char"
    )
    assert list(so.retry(model.stream, retry_on=(KeyError,), backoff=NO_WAIT)) == ["o", "k"]
    timeouts = FakeStreamingModel("a", faults=fail_at(0, TimeoutError))
    with pytest.raises(TimeoutError):
        list(so.retry(timeouts.stream, retry_on=KeyError, backoff=NO_WAIT))
    assert len(timeouts.calls) == 1


def test_retry_on_predicate() -> None:
    model = FakeStreamingModel(
        [RuntimeError("try again"), RuntimeError("fatal"), "never"], cycle=False
    )
    s = so.retry(model.stream, retry_on=lambda exc: "again" in str(exc), backoff=NO_WAIT)
    with pytest.raises(RuntimeError, match="fatal"):
        list(s)
    assert len(model.calls) == 2


def test_factory_that_fails_when_called_is_retried_as_a_sync_stream() -> None:
    calls: list[int] = []

    def create() -> list[str]:  # like a sync SDK client that connects in create()
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        return ["up"]

    s = so.retry(create, backoff=NO_WAIT)
    assert isinstance(s, so.SyncStream)
    assert list(s) == ["up"]
    assert len(calls) == 3


# --------------------------------------------------------------------------
# is_retryable: the default predicate, with the real SDK exception types
# --------------------------------------------------------------------------


def _openai_status(status: int, cls: type[openai.APIStatusError]) -> openai.APIStatusError:
    request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")
    return cls("boom", response=httpx2.Response(status, request=request), body=None)


def _anthropic_status(
    status: int, cls: type[anthropic.APIStatusError], body: object = None
) -> anthropic.APIStatusError:
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    return cls("boom", response=httpx2.Response(status, request=request), body=body)


def test_is_retryable_builtins() -> None:
    assert so.is_retryable(ConnectionResetError())
    assert so.is_retryable(TimeoutError())
    assert so.is_retryable(OSError(errno.ENETUNREACH, "unreachable"))
    assert not so.is_retryable(OSError(errno.ENOENT, "no such file"))
    assert not so.is_retryable(FileNotFoundError())
    assert not so.is_retryable(ValueError())
    assert not so.is_retryable(asyncio.CancelledError())
    assert not so.is_retryable(KeyboardInterrupt())
    assert not so.is_retryable(GeneratorExit())


def test_is_retryable_streamops_errors() -> None:
    assert so.is_retryable(so.StreamTimeout("idle", 10.0, 10.0, chunks=0, released=""))
    assert so.is_retryable(FakeUpstreamError("x"))
    assert not so.is_retryable(PolicyError("budget exhausted"))
    assert not so.is_retryable(so.StreamInterruptedError("x", released="", attempt=1))
    assert not so.is_retryable(so.SideEffectError("x", released="", callback=print))
    assert not so.is_retryable(so.StreamOpsError("generic"))


def test_is_retryable_openai_errors() -> None:
    request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")
    assert so.is_retryable(openai.APIConnectionError(request=request))
    assert so.is_retryable(openai.APITimeoutError(request=request))
    assert so.is_retryable(_openai_status(429, openai.RateLimitError))
    assert so.is_retryable(_openai_status(500, openai.InternalServerError))
    assert so.is_retryable(_openai_status(503, openai.APIStatusError))
    assert not so.is_retryable(_openai_status(400, openai.BadRequestError))
    assert not so.is_retryable(_openai_status(401, openai.AuthenticationError))


def test_is_retryable_anthropic_errors() -> None:
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    assert so.is_retryable(anthropic.APIConnectionError(request=request))
    assert so.is_retryable(anthropic.APITimeoutError(request=request))
    assert so.is_retryable(_anthropic_status(429, anthropic.RateLimitError))
    assert so.is_retryable(_anthropic_status(529, anthropic.OverloadedError))
    assert not so.is_retryable(_anthropic_status(400, anthropic.BadRequestError))
    # An overload reported mid-stream arrives as an SSE error on a 200 response.
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert so.is_retryable(_anthropic_status(200, anthropic.APIStatusError, overloaded))
    invalid = {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}
    assert not so.is_retryable(_anthropic_status(200, anthropic.APIStatusError, invalid))


def test_is_retryable_httpx_errors() -> None:
    request = httpx.Request("GET", "https://example.invalid/sse")
    assert so.is_retryable(httpx.ReadTimeout("slow", request=request))
    assert so.is_retryable(httpx.RemoteProtocolError("peer closed", request=request))
    assert so.is_retryable(httpx.ConnectError("refused", request=request))
    for status, expected in ((429, True), (502, True), (404, False)):
        response = httpx.Response(status, request=request)
        err = httpx.HTTPStatusError("status", request=request, response=response)
        assert so.is_retryable(err) is expected


def test_openai_rate_limit_from_upstream_is_retried() -> None:
    # A local generator: the fake model copies the exception it raises, and the
    # SDK errors cannot be copied (keyword-only constructor arguments).
    calls: list[int] = []

    def upstream() -> Iterator[str]:
        calls.append(1)
        if len(calls) == 1:
            raise _openai_status(429, openai.RateLimitError)
        yield "fine"

    assert list(so.retry(upstream, backoff=NO_WAIT)) == ["fine"]
    assert len(calls) == 2


# --------------------------------------------------------------------------
# fallbacks
# --------------------------------------------------------------------------


def test_fallbacks_run_in_order_after_the_primary_attempts() -> None:
    primary = FakeStreamingModel("p", faults=fail_at(0))
    second = FakeStreamingModel("s", faults=fail_at(0))
    third = FakeStreamingModel("third ok")
    sleeps = Sleeps()
    s = so.retry(
        primary.stream,
        attempts=2,
        fallbacks=[second.stream, third.stream],
        backoff=so.Backoff(initial=1.0, jitter=0.0),
        sleep=sleeps,
    )
    assert "".join(s) == "third ok"
    assert (len(primary.calls), len(second.calls), len(third.calls)) == (2, 2, 1)
    # a wait between attempts of one factory, none when moving to the next
    assert sleeps.waits == [1.0, 0.0, 1.0, 0.0]
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert [a.factory for a in section.attempts] == [0, 0, 1, 1, 2]
    assert section.factory == 2
    kinds = [e.kind for e in s.report.events if e.kind == "retry.fallback"]
    assert kinds == ["retry.fallback", "retry.fallback"]


def test_fallback_of_another_kind_is_a_clear_error() -> None:
    async def agen() -> AsyncIterator[str]:
        yield "x"

    s = so.retry(FakeStreamingModel("a", faults=fail_at(0)).stream, attempts=1, fallbacks=[agen])
    with pytest.raises(TypeError, match="must return a sync iterable"):
        list(s)


# --------------------------------------------------------------------------
# side effects
# --------------------------------------------------------------------------


def test_side_effects_run_once_after_the_consumer_pulled_past_the_end() -> None:
    ran: list[str] = []
    s = so.retry(
        lambda: iter(["a", "b"]),
        on_success=[lambda t, r: ran.append("1" + t), lambda t, r: ran.append(t)],
    )
    assert next(s) == "a"
    assert next(s) == "b"
    assert ran == []  # the consumer has not asked for more yet
    with pytest.raises(StopIteration):
        next(s)
    assert ran == ["1ab", "ab"]
    assert s.report["retry"].side_effects_run == 2  # type: ignore[attr-defined]


def test_side_effects_skipped_on_early_break() -> None:
    ran: list[str] = []
    model = FakeStreamingModel("a b c")
    with so.retry(model.stream, on_success=lambda t, r: ran.append(t)) as s:
        assert next(s) == "a"
    assert ran == []
    assert model.calls[0].finalized
    assert model.calls[0].closed_early
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.attempts[0].outcome == "stopped"
    assert s.report.stop_reason == so.StopReason.CLOSED


def test_side_effect_failure_raises_distinct_error_and_does_not_retry() -> None:
    model = FakeStreamingModel("done")
    later: list[str] = []

    def save(text: str, report: so.StreamReport) -> None:
        raise OSError(errno.ECONNRESET, "db connection reset")  # retryable, yet not retried

    s = so.retry(model.stream, on_success=[save, lambda t, r: later.append(t)])
    got: list[str] = []
    with pytest.raises(so.SideEffectError, match="save failed") as info:
        drain(s, got)
    assert got == ["done"]
    assert info.value.released == "done"
    assert info.value.callback is save
    assert isinstance(info.value.__cause__, OSError)
    assert len(model.calls) == 1
    assert later == []
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.side_effect_error == "ConnectionResetError: [Errno 104] db connection reset"
    assert s.report.stop_reason == so.StopReason.COMPLETE  # the generation did complete
    assert s.report.error is info.value  # and the report says what the caller got
    kinds = [e.kind for e in s.report.events]
    assert kinds.index("retry.side_effect_failed") < kinds.index("stream.end")
    assert kinds[-1] == "stream.end"
    end = s.report.events[-1]
    assert end.data["reason"] == so.StopReason.COMPLETE


def test_async_side_effect_failure_is_recorded_before_the_stream_ends() -> None:
    ran: list[str] = []

    async def notify(text: str, report: so.StreamReport) -> None:
        ran.append(text)

    async def save(text: str, report: so.StreamReport) -> None:
        raise RuntimeError("disk full")

    async def main() -> so.StreamReport:
        s = so.retry(FakeStreamingModel("hi there").astream, on_success=[notify, save])
        with pytest.raises(so.SideEffectError, match="save failed") as info:
            await s.text()
        assert s.report.error is info.value
        return s.report

    report = run(main())
    assert ran == ["hi there"]
    assert report.stop_reason == so.StopReason.COMPLETE
    kinds = [e.kind for e in report.events]
    assert kinds[-3:] == ["retry.side_effect", "retry.side_effect_failed", "stream.end"]
    failed = report.events[-2]
    assert failed.data["callback"].endswith("<locals>.save")
    assert failed.data["error_type"] == "RuntimeError"


def test_async_callback_on_sync_stream_is_refused_at_build() -> None:
    async def notify(text: str, report: so.StreamReport) -> None: ...

    with pytest.raises(TypeError, match="async but the stream is sync"):
        so.retry(lambda: iter(["a"]), on_success=notify)


def test_sync_callback_returning_an_awaitable_on_a_sync_stream_is_an_error() -> None:
    async def notify() -> None: ...

    s = so.retry(lambda: iter(["a"]), on_success=lambda t, r: notify())
    with pytest.raises(TypeError, match="returned an awaitable"):
        list(s)


# --------------------------------------------------------------------------
# async streams under virtual time
# --------------------------------------------------------------------------


def test_async_retry_sleeps_on_the_loop() -> None:
    model = FakeStreamingModel(
        [FakeReply("a", faults=fail_at(0)), FakeReply("a", faults=fail_at(0)), "b c"],
        cycle=False,
    )
    ran: list[str] = []

    async def record(text: str, report: so.StreamReport) -> None:
        await asyncio.sleep(1)
        ran.append(text)

    async def main() -> tuple[list[str], float, so.StreamReport]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        s = so.retry(model.astream, backoff=so.Backoff(initial=2.0, jitter=0.0), on_success=record)
        assert isinstance(s, so.AsyncStream)
        async with s:
            got = [x async for x in s]
        return got, loop.time() - start, s.report

    got, elapsed, report = run(main())
    assert got == ["b", " c"]
    assert elapsed == pytest.approx(2.0 + 4.0 + 1.0)
    assert ran == ["b c"]
    section = report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.backoff_total == 6.0
    assert [a.started for a in section.attempts] == pytest.approx(
        [section.attempts[0].started + d for d in (0.0, 2.0, 6.0)]
    )
    assert all(call.finalized for call in model.calls)


def test_async_stream_interrupted_after_first_chunk() -> None:
    model = FakeStreamingModel("x y z", faults=fail_at(1), delay=1.0)

    async def main() -> tuple[list[str], so.StreamInterruptedError]:
        got: list[str] = []
        s = so.retry(model.astream, backoff=NO_WAIT)
        with pytest.raises(so.StreamInterruptedError) as info:
            await adrain(s, got)
        return got, info.value

    got, err = run(main())
    assert got == ["x"]
    assert err.released == "x"
    assert len(model.calls) == 1
    assert model.calls[0].finalized


def test_async_deadline_stops_retrying() -> None:
    model = FakeStreamingModel("a", faults=fail_at(0), first_chunk_delay=3.0)
    backoff = so.Backoff(initial=1.0, jitter=0.0, deadline=10.0)

    async def main() -> BaseException:
        s = so.retry(model.astream, attempts=10, backoff=backoff)
        with pytest.raises(FakeUpstreamError) as info:
            await s.text()
        return info.value

    err = run(main())
    # attempt 1 at t=0 fails at 3, wait 1; attempt 2 at 4 fails at 7, wait 2 would start
    # attempt 3 at 9; fails at 12: the next start (12 + 4) is past the deadline.
    assert len(model.calls) == 3
    assert "streamops.retry: gave up after 3 attempts (10.0s deadline)" in (err.__notes__ or [])


def test_cancellation_during_backoff_starts_no_further_attempt() -> None:
    model = FakeStreamingModel("a b", faults=fail_at(0))
    ran: list[str] = []

    async def main() -> so.StreamReport:
        s = so.retry(
            model.astream,
            backoff=so.Backoff(initial=60.0, jitter=0.0),
            on_success=lambda t, r: ran.append(t),
        )

        async def consume() -> None:
            async with s:
                async for _ in s:
                    pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(30)  # attempt 1 failed at once; now in its 60 s wait
        assert len(model.calls) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(120)  # long past the wait: still no attempt 2
        return s.report

    report = run(main())
    assert len(model.calls) == 1
    assert model.calls[0].finalized
    assert ran == []
    assert report.stop_reason == so.StopReason.CANCELLED
    section = report["retry"]
    assert isinstance(section, so.RetryReport)
    assert [a.outcome for a in section.attempts] == ["failed"]


def test_cancellation_mid_attempt_closes_the_upstream() -> None:
    model = FakeStreamingModel("a b c", delay=10.0)

    async def main() -> so.StreamReport:
        s = so.retry(model.astream)

        async def consume() -> None:
            async with s:
                async for _ in s:
                    pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(15)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return s.report

    report = run(main())
    assert model.calls[0].finalized
    assert model.calls[0].closed_early
    section = report["retry"]
    assert isinstance(section, so.RetryReport)
    assert [a.outcome for a in section.attempts] == ["stopped"]


def test_async_factory_returning_a_coroutine() -> None:
    calls: list[int] = []

    async def connect() -> AsyncIterator[str]:  # like AsyncOpenAI().chat.completions.create
        calls.append(1)
        if len(calls) == 1:  # (the coroutine retry() made to learn the kind never ran)
            raise openai.APIConnectionError(request=httpx2.Request("POST", "https://x.invalid"))
        return FakeStreamingModel("hi there").astream()

    async def main() -> str:
        s = so.retry(connect, backoff=NO_WAIT)
        assert isinstance(s, so.AsyncStream)
        return await s.text()

    assert run(main()) == "hi there"
    assert len(calls) == 2


def test_never_iterated_async_retry_leaves_no_warning() -> None:
    made: list[Coroutine[Any, Any, AsyncIterator[str]]] = []

    async def connect() -> AsyncIterator[str]:
        return FakeStreamingModel("x").astream()

    def factory() -> Coroutine[Any, Any, AsyncIterator[str]]:  # a lambda-like factory
        made.append(connect())
        return made[-1]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = so.retry(factory)  # called once to learn the kind
        assert isinstance(s, so.AsyncStream)
        del s
        gc.collect()
    assert len(made) == 1
    assert inspect.getcoroutinestate(made[0]) == inspect.CORO_CLOSED
    assert [w.message for w in caught] == []  # no "coroutine was never awaited"


def test_async_functions_are_known_async_without_a_call() -> None:
    calls: list[int] = []

    async def connect() -> AsyncIterator[str]:
        calls.append(1)
        return FakeStreamingModel("x").astream()

    async def generate() -> AsyncIterator[str]:
        calls.append(1)
        yield "y"

    assert isinstance(so.retry(connect), so.AsyncStream)
    assert isinstance(so.retry(generate), so.AsyncStream)
    assert calls == []


def test_plain_factory_of_an_async_stream_that_raises_when_called() -> None:
    model = FakeStreamingModel("hi")
    calls: list[int] = []

    def connect() -> AsyncIterator[str]:  # sync work before returning an async stream
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("dropped")
        return model.astream()

    guessed: Any = so.retry(connect, backoff=NO_WAIT)  # typed as async: it is not
    assert isinstance(guessed, so.SyncStream)  # the kind could not be learnt
    with pytest.raises(TypeError, match="pass kind= to choose it"):
        list(guessed)

    calls.clear()

    async def main() -> str:
        return await so.retry(connect, kind="async", backoff=NO_WAIT).text()

    assert run(main()) == "hi"
    assert len(calls) == 2


def test_a_failing_first_call_says_the_kind_was_guessed() -> None:
    def connect() -> AsyncIterator[str]:
        raise ValueError("bad model name")

    stream: Any = so.retry(connect)
    with pytest.raises(ValueError, match="bad model name") as info:
        list(stream)
    assert any("pass kind='async'" in note for note in info.value.__notes__)


def test_timeout_inside_the_factory_is_retried() -> None:
    model = FakeStreamingModel(
        [FakeReply("slow", faults=[Fault.stall_at(0, 30.0)]), "fast"], cycle=False
    )

    async def main() -> tuple[str, so.StreamReport]:
        s = so.retry(lambda: so.timeout(first_chunk=5.0)(model.astream()), backoff=NO_WAIT)
        return await s.text(), s.report

    text, report = run(main())
    assert text == "fast"
    section = report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.attempts[0].error_type == "StreamTimeout"


# --------------------------------------------------------------------------
# the stream's own report: start/end events, counts, released text, stop reason
# --------------------------------------------------------------------------


def _consume(
    s: Any, is_async: bool, take: int | None = None, into: list[Any] | None = None
) -> list[Any]:
    """Read ``s`` (sync or async) to the end, or ``take`` items and close it."""
    got: list[Any] = [] if into is None else into

    async def main() -> None:
        async with s:
            async for x in s:
                got.append(x)
                if len(got) == take:
                    break

    if is_async:
        run(main())
    else:
        with s:
            for x in s:
                got.append(x)
                if len(got) == take:
                    break
    return got


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("mode", ["before_first_chunk", "buffered"])
def test_report_counts_and_text_cover_only_what_the_consumer_got(
    is_async: bool, mode: Literal["before_first_chunk", "buffered"]
) -> None:
    replies: list[FakeReply | str] = [
        FakeReply("x y z", faults=fail_at(2 if mode == "buffered" else 0)),
        "a b c",
    ]
    model = FakeStreamingModel(replies, cycle=False)
    source = model.astream if is_async else model.stream
    s = so.retry(source, mode=mode, backoff=NO_WAIT)
    assert _consume(s, is_async) == ["a", " b", " c"]
    report = s.report
    assert (report.chunks_in, report.chunks_out) == (3, 3)
    assert report.released_text == "a b c"
    assert report.stop_reason == so.StopReason.COMPLETE
    assert report.error is None
    kinds = [e.kind for e in report.events]
    assert kinds == [
        "stream.start",
        "retry.attempt",
        "retry.failure",
        "retry.attempt",
        "retry.success",
        "stream.end",
    ]
    assert report.events[-1].data == {"reason": "complete"}
    section = report["retry"]
    assert isinstance(section, so.RetryReport)
    assert [a.chunks for a in section.attempts] == [2 if mode == "buffered" else 0, 3]


@pytest.mark.parametrize("is_async", [False, True])
def test_report_of_a_stream_closed_early(is_async: bool) -> None:
    model = FakeStreamingModel("a b c d")
    s = so.retry(model.astream if is_async else model.stream, backoff=NO_WAIT)
    assert _consume(s, is_async, take=2) == ["a", " b"]
    report = s.report
    assert (report.chunks_in, report.chunks_out) == (2, 2)
    assert report.released_text == "a b"
    assert report.stop_reason == so.StopReason.CLOSED
    assert [e.kind for e in report.events][-1] == "stream.end"
    assert model.calls[0].closed_early
    section = report["retry"]
    assert isinstance(section, so.RetryReport)
    assert [(a.outcome, a.chunks) for a in section.attempts] == [("stopped", 2)]


@pytest.mark.parametrize("is_async", [False, True])
def test_report_of_an_error_that_is_not_retried(is_async: bool) -> None:
    model = FakeStreamingModel("a b c", faults=fail_at(1, ValueError("bad")))
    s = so.retry(model.astream if is_async else model.stream, backoff=NO_WAIT)
    with pytest.raises(ValueError, match="bad") as info:
        _consume(s, is_async)
    report = s.report
    assert report.error is info.value
    assert (report.stop_reason, report.stop_detail) == (so.StopReason.ERROR, "ValueError")
    assert (report.chunks_in, report.released_text) == (1, "a")
    assert [e.kind for e in report.events][-1] == "stream.end"
    assert model.calls[0].finalized


# --------------------------------------------------------------------------
# the recommended shape: retry around the whole pipeline
# --------------------------------------------------------------------------


class _HoldAll:
    """A processor that releases nothing until the end (like a redactor holding a prefix)."""

    def __init__(self, report: so.StreamReport) -> None:
        self.held: list[str] = []
        self.report = report
        self.done = False

    def feed(self, item: str) -> list[str]:
        self.held.append(item)
        self.report.emit("hold.fed", stage="hold", size=len(item))
        return []

    def close(self) -> list[str]:
        self.report.counters["hold.flushes"] += 1
        return ["".join(self.held)]


def test_text_held_back_by_the_pipeline_is_still_retryable() -> None:
    hold = so.Operator.from_processor(_HoldAll, name="hold")
    model = FakeStreamingModel([FakeReply("sec ret", faults=fail_at(1)), "all good"], cycle=False)
    s = so.retry(lambda: hold(model.stream()), backoff=NO_WAIT)
    assert list(s) == ["all good"]
    assert len(model.calls) == 2
    # the successful attempt's counters and events reach the retry stream's report
    assert s.report.counters["hold.flushes"] == 1
    fed = [e for e in s.report.events if e.kind == "hold.fed"]
    assert len(fed) == 1 + 2  # one from the failed attempt, two from the good one
    assert [e.kind for e in s.report.events if not e.kind.startswith("hold.")] == [
        "stream.start",
        "retry.attempt",
        "retry.failure",
        "retry.attempt",
        "retry.success",
        "stream.end",
    ]


# --------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attempts": 0}, ValueError, "attempts must be at least 1"),
        ({"attempts": "3"}, TypeError, "attempts must be an int"),
        ({"attempts": True}, TypeError, "attempts must be an int"),
        ({"mode": "eager"}, ValueError, "mode must be"),
        ({"backoff": 1.0}, TypeError, "backoff must be a Backoff"),
        ({"retry_on": (ValueError, "x")}, TypeError, "expected exception types"),
        ({"retry_on": 3}, TypeError, "expected exception types or a predicate"),
        ({"fallbacks": ["model"]}, TypeError, r"fallbacks\[0\] must be callable"),
        ({"on_success": [None]}, TypeError, "callbacks must be callable"),
        ({"on_success": 5}, TypeError, "on_success must be a callable or a list of callables"),
        ({"on_success": "save"}, TypeError, "on_success must be a callable or a list"),
        ({"kind": "both"}, ValueError, "kind must be"),
        ({"sleep": 0.5}, TypeError, "sleep must be callable"),
    ],
)
def test_bad_arguments_fail_at_build(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        so.retry(lambda: iter(["a"]), **kwargs)


def test_factory_must_be_callable() -> None:
    with pytest.raises(TypeError, match="factory must be callable"):
        so.retry(["a"])  # type: ignore[call-overload]


@pytest.mark.parametrize("made", ["text", 42])
def test_factory_must_return_a_stream(made: object) -> None:
    with pytest.raises(TypeError, match="must return a sync or async iterable"):
        so.retry(lambda: made)  # type: ignore[arg-type]


def test_backoff_validation_and_cap() -> None:
    with pytest.raises(ValueError, match="multiplier"):
        so.Backoff(multiplier=0.5)
    with pytest.raises(ValueError, match="deadline"):
        so.Backoff(deadline=0)
    b = so.Backoff(initial=1.0, multiplier=10.0, max_delay=7.0, jitter=3.0)
    rng = random.Random(5)
    assert all(b.delay(n, rng) <= 7.0 for n in range(1, 2000))
    assert so.Backoff(jitter=0).delay(1, rng) == 0.5


def test_backoff_jitter_is_seeded() -> None:
    def waits(seed: int) -> list[float]:
        sleeps = Sleeps()
        model = FakeStreamingModel("a", faults=fail_at(0))
        with pytest.raises(FakeUpstreamError):
            list(so.retry(model.stream, attempts=4, backoff=so.Backoff(seed=seed), sleep=sleeps))
        return sleeps.waits

    assert waits(7) == waits(7)
    assert waits(7) != waits(8)


def test_kind_given_skips_the_eager_call() -> None:
    calls: list[int] = []

    def make() -> list[str]:
        calls.append(1)
        return ["a"]

    s = so.retry(make, kind="sync")
    assert calls == []
    assert list(s) == ["a"]
    assert calls == [1]


# --------------------------------------------------------------------------
# side effects only after a natural, complete end (issue 15)
# --------------------------------------------------------------------------


def _stopped_by_token(model: FakeStreamingModel, is_async: bool) -> Any:
    """An upstream pipeline whose stop button is pressed at its second chunk."""
    token = so.CancelToken()
    op = so.identity() | so.cancellable(token)
    source: Any = model.astream() if is_async else model.stream()

    def press(chunk: str) -> str:
        if "two" in chunk:
            token.cancel()
        return chunk

    if is_async:

        async def pressing() -> AsyncIterator[str]:
            async for chunk in source:
                yield press(chunk)

        return op(pressing())

    return op(press(chunk) for chunk in source)


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda m, a: _stopped_by_token(m, a), so.StopReason.CANCELLED),
        (
            lambda m, a: so.redact([r"B\w+"], action="block")(m.astream() if a else m.stream()),
            so.StopReason.BLOCKED,
        ),
        (
            lambda m, a: so.budget(max_tokens=2)(m.astream() if a else m.stream()),
            so.StopReason.BUDGET,
        ),
    ],
    ids=["stop-button", "redaction-block", "budget-cut"],
)
def test_no_side_effects_after_an_upstream_that_ended_early(
    make: Any, reason: so.StopReason, is_async: bool
) -> None:
    model = FakeStreamingModel("one two Boom three four five")
    ran: list[str] = []

    def save(text: str, report: so.StreamReport) -> None:
        ran.append(text)

    s = so.retry(lambda: make(model, is_async), on_success=save, backoff=NO_WAIT, kind=None)
    got = _consume(s, is_async)
    text = "".join(got)
    assert text
    assert "three" not in text
    assert ran == []  # ... and no side effect ran on it
    assert len(model.calls) == 1  # a policy stop is not retried either
    assert s.report.stop_reason == reason
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.side_effects_run == 0
    assert section.side_effects_skipped == str(reason)
    attempt = section.attempts[-1]
    assert (attempt.outcome, attempt.stop_reason) == ("ended", str(reason))
    skipped = [e for e in s.report.events if e.kind == "retry.side_effects_skipped"]
    assert [e.data["reason"] for e in skipped] == [str(reason)]


def test_no_side_effects_after_a_quiet_timeout() -> None:
    model = FakeStreamingModel("one two three", delay=1.0, faults=[Fault.stall_at(2, 60.0)])
    ran: list[str] = []

    async def main() -> tuple[str, so.StreamReport]:
        s = so.retry(
            lambda: so.timeout(idle=5.0, on_timeout="end")(model.astream()),
            on_success=lambda t, r: ran.append(t),
        )
        return await s.text(), s.report

    text, report = run(main())
    assert text == "one two"
    assert ran == []
    assert report.stop_reason == so.StopReason.TIMEOUT
    section = report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.side_effects_skipped == "timeout"


def test_side_effects_still_run_after_a_complete_pipeline() -> None:
    model = FakeStreamingModel("one two three")
    ran: list[str] = []
    op = so.redact([r"B\w+"], action="block") | so.identity()
    s = so.retry(lambda: op(model.stream()), on_success=lambda t, r: ran.append(t))
    assert "".join(s) == "one two three"
    assert ran == ["one two three"]
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.side_effects_skipped is None
    assert section.attempts[0].stop_reason == "complete"


# --------------------------------------------------------------------------
# async side effects: shielded, with a deadline (issue 15)
# --------------------------------------------------------------------------


def test_cancelled_consumer_lets_a_running_side_effect_finish() -> None:
    saved: list[str] = []

    async def main() -> so.StreamReport:
        started = asyncio.Event()

        async def save(text: str, report: so.StreamReport) -> None:
            started.set()
            await asyncio.sleep(5)  # the write in flight when the consumer goes away
            saved.append(text)

        s = so.retry(FakeStreamingModel("hi there").astream, on_success=save)

        async def consume() -> None:
            async with s:
                async for _ in s:
                    pass

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return s.report

    report = run(main())
    assert saved == ["hi there"]  # not half-run
    section = report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.side_effects_run == 1
    assert section.side_effects_cancelled is True
    assert section.side_effects_interrupted is False
    assert report.error is None
    kinds = [e.kind for e in report.events]
    assert "retry.side_effects_shielded" in kinds
    assert kinds[-1] == "stream.end"


def test_side_effect_past_its_deadline_is_interrupted_and_recorded() -> None:
    saved: list[str] = []
    unwound: list[bool] = []

    async def save(text: str, report: so.StreamReport) -> None:
        try:
            await asyncio.sleep(3600)
            saved.append(text)
        except asyncio.CancelledError:
            unwound.append(True)
            raise

    async def main() -> tuple[float, so.StreamReport]:
        loop = asyncio.get_running_loop()
        s = so.retry(FakeStreamingModel("hi").astream, on_success=save, side_effect_timeout=10.0)
        start = loop.time()
        with pytest.raises(so.SideEffectError, match=r"did not finish within 10\.0 s") as info:
            await s.text()
        assert isinstance(info.value.__cause__, TimeoutError)
        assert s.report.error is info.value
        return loop.time() - start, s.report

    elapsed, report = run(main())
    assert elapsed == pytest.approx(10.0)
    assert saved == []
    assert unwound == [True]
    section = report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.side_effects_interrupted is True
    assert section.side_effects_run == 0
    assert section.side_effect_error is not None
    assert "TimeoutError" in section.side_effect_error
    interrupted = [e for e in report.events if e.kind == "retry.side_effect_interrupted"]
    assert len(interrupted) == 1
    assert interrupted[0].data["callback"].endswith("save")


def test_cancelled_consumer_and_a_hung_side_effect_is_bounded_and_recorded() -> None:
    async def save(text: str, report: so.StreamReport) -> None:
        await asyncio.sleep(3600)

    async def main() -> tuple[float, so.StreamReport]:
        loop = asyncio.get_running_loop()
        s = so.retry(FakeStreamingModel("hi").astream, on_success=save, side_effect_timeout=7.0)
        task = asyncio.create_task(s.text())
        await asyncio.sleep(1)
        start = loop.time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return loop.time() - start, s.report

    elapsed, report = run(main())
    assert elapsed == pytest.approx(6.0)  # the shield ends at the deadline, not later
    section = report["retry"]
    assert isinstance(section, so.RetryReport)
    assert (section.side_effects_cancelled, section.side_effects_interrupted) == (True, True)
    assert isinstance(report.error, so.SideEffectError)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), None, "5"])
def test_side_effect_timeout_is_validated(bad: object) -> None:
    options: Any = {"side_effect_timeout": bad}
    with pytest.raises((TypeError, ValueError), match="side_effect_timeout"):
        so.retry(lambda: iter(["a"]), **options)


# --------------------------------------------------------------------------
# policy decisions are never retried, nor handed to a fallback (issue 15)
# --------------------------------------------------------------------------


def _policy_upstream(which: str, calls: list[str], name: str) -> Any:
    calls.append(name)
    model = FakeStreamingModel("hello world and more words")
    if which == "budget":
        return so.budget(max_tokens=2, on_exhausted="raise")(model.astream())
    if which == "redact_timeout":

        async def slow() -> AsyncIterator[str]:
            yield "a" * 60  # catastrophic backtracking for the pattern below

        return so.redact([r"(a|aa)+b"], timeout=0.01)(slow())
    ledger = so.RedisLedger.from_url("redis://127.0.0.1:1", limit=1000)  # nothing listens
    return so.budget(max_tokens=100, ledger=ledger, key="k")(model.astream())


@pytest.mark.parametrize(
    ("which", "error"),
    [
        ("budget", so.BudgetExceededError),
        ("redact_timeout", so.RedactTimeoutError),
        ("ledger", so.LedgerUnavailableError),
    ],
)
@pytest.mark.parametrize(
    "retry_on",
    [None, Exception, (TimeoutError, ConnectionError, so.StreamOpsError), lambda exc: True],
    ids=["default", "Exception", "types", "predicate"],
)
@pytest.mark.parametrize("mode", ["before_first_chunk", "buffered"])
def test_policy_decisions_are_never_retried_nor_sent_to_fallbacks(
    which: str,
    error: type[Exception],
    retry_on: Any,
    mode: Literal["before_first_chunk", "buffered"],
) -> None:
    assert error.retryable is False  # type: ignore[attr-defined]
    calls: list[str] = []

    async def main() -> BaseException:
        s = so.retry(
            lambda: _policy_upstream(which, calls, "primary"),
            fallbacks=[lambda: _policy_upstream(which, calls, "fallback")],
            attempts=3,
            retry_on=retry_on,
            mode=mode,
            backoff=NO_WAIT,
            kind="async",
        )
        with pytest.raises(error) as info:
            await s.text()
        return info.value

    err = run(main())
    assert type(err) is error  # unchanged, never StreamInterruptedError
    assert calls == ["primary"]


# --------------------------------------------------------------------------
# the commit point is the first text (issue 15)
# --------------------------------------------------------------------------


ROLE_DICT = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}


def _then_fail(head: list[Any], error: BaseException) -> Iterator[Any]:
    yield from head
    raise error


def _provider_chunks(fmt: Any, text: str) -> list[Any]:
    return list(FakeStreamingModel(text, format=fmt).stream())


@pytest.mark.parametrize("is_async", [False, True])
def test_openai_role_chunk_does_not_commit(is_async: bool) -> None:
    role = _provider_chunks("openai", "x")[0]
    assert isinstance(role, openai.types.chat.ChatCompletionChunk)
    assert role.choices[0].delta.content in ("", None)
    good = _provider_chunks("openai", "Hello there")
    made: list[int] = []

    def factory() -> Any:
        made.append(1)
        chunks = _then_fail([role], ConnectionResetError("dropped")) if len(made) == 1 else good
        if not is_async:
            return iter(chunks)

        async def agen() -> AsyncIterator[Any]:
            for c in chunks:
                yield c

        return agen()

    s = so.retry(factory, backoff=NO_WAIT, kind="async" if is_async else "sync")
    got = _consume(s, is_async)
    assert got == good  # one role chunk, the successful attempt's
    assert len(made) == 2
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert [a.outcome for a in section.attempts] == ["failed", "success"]


def test_openai_dict_role_chunk_is_held_until_the_first_text() -> None:
    pulled: list[str] = []

    def upstream() -> Iterator[Any]:
        pulled.append("role")
        yield ROLE_DICT
        pulled.append("text")
        yield {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}

    s = so.retry(upstream)
    first = next(s)
    assert first == ROLE_DICT
    assert pulled == ["role", "text"]  # released with the first text, not before
    section = s.report["retry"]
    assert isinstance(section, so.RetryReport)
    assert section.committed is True
    assert list(s) == [{"choices": [{"index": 0, "delta": {"content": "Hi"}}]}]


@pytest.mark.parametrize("fmt", ["anthropic", "anthropic-dict"])
def test_anthropic_framing_is_never_sent_twice(fmt: str) -> None:
    failed = _provider_chunks(fmt, "lost reply")
    good = _provider_chunks(fmt, "Hello there")
    framing = 2  # message_start, content_block_start
    made: list[int] = []

    def factory() -> Iterator[Any]:
        made.append(1)
        if len(made) == 1:
            return _then_fail(failed[:framing], ConnectionResetError("dropped"))
        return iter(good)

    s = so.retry(factory, backoff=NO_WAIT, kind="sync")
    got = list(s)
    assert got == good

    def kind(c: Any) -> str:
        return str(c["type"] if isinstance(c, dict) else c.type)

    assert [kind(c) for c in got].count("message_start") == 1
    assert len(made) == 2
    assert s.report["retry"].committed is True  # type: ignore[attr-defined]


def test_tool_call_and_reasoning_chunks_commit_at_once() -> None:
    """Side channels carry output: their text is released at once and commits the stream.

    (A tool call's header alone, a name and no arguments yet, is framing: it is
    held like a role chunk, so a failure right after it is still retried.)
    """
    tool = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a'}}
                    ]
                },
            }
        ]
    }
    reasoning = {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}
    for chunk in (tool, reasoning):

        def upstream(c: Any = chunk) -> Iterator[Any]:
            return _then_fail([ROLE_DICT, c], ConnectionResetError("x"))

        s = so.retry(upstream, backoff=NO_WAIT)
        got: list[Any] = []
        with pytest.raises(so.StreamInterruptedError):
            drain(s, got)
        assert got == [ROLE_DICT, chunk]


def test_a_stream_without_text_releases_its_framing_at_the_end() -> None:
    ran: list[str] = []
    empty = _provider_chunks("openai-dict", "")
    s = so.retry(lambda: iter(empty), on_success=lambda t, r: ran.append(t))
    assert list(s) == empty
    assert ran == [""]


@pytest.mark.parametrize(
    ("head", "commits"),
    [(["", ""], False), ([b""], False), (["x"], True), ([b"x"], True), ([object()], True)],
)
def test_what_commits_among_plain_chunks(head: list[Any], commits: bool) -> None:
    made: list[int] = []

    def factory() -> Iterator[Any]:
        made.append(1)
        if len(made) == 1:
            return _then_fail(head, ConnectionResetError("x"))
        return iter(["ok"])

    s = so.retry(factory, backoff=NO_WAIT, kind="sync")
    if commits:
        with pytest.raises(so.StreamInterruptedError):
            list(s)
        assert len(made) == 1
    else:
        assert list(s) == ["ok"]
        assert len(made) == 2


# --------------------------------------------------------------------------
# one error type after the commit point, whatever the attempt (issue 15)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("attempts", [1, 2, 3])
def test_a_mid_stream_failure_is_stream_interrupted_on_every_attempt(
    attempts: int, is_async: bool
) -> None:
    # Every attempt before the last fails before any text; the last fails mid-stream.
    replies = [FakeReply("a", faults=fail_at(0))] * (attempts - 1)
    model = FakeStreamingModel([*replies, FakeReply("one two", faults=fail_at(1))], cycle=False)
    s = so.retry(
        model.astream if is_async else model.stream,
        attempts=attempts,
        backoff=NO_WAIT,
        kind="async" if is_async else "sync",
    )
    got: list[str] = []
    with pytest.raises(so.StreamInterruptedError) as info:
        _consume(s, is_async, into=got)
    assert got == ["one"]
    assert info.value.released == "one"
    assert info.value.attempt == attempts
    assert isinstance(info.value.__cause__, FakeUpstreamError)
    assert len(model.calls) == attempts
    assert s.report.error is info.value
