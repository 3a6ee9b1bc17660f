"""Unit tests of the fused core: composition, driver, closing, errors, report."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import hold_last

import streamops as so
from streamops.lowlevel import Lens, Processor, ProcessorStage, ShellStage, Stage, register_lens


class Upper:
    """Upper-case each chunk."""

    done = False

    def feed(self, item: str, /) -> list[str]:
        return [item.upper()]

    def close(self) -> list[str]:
        return []


class TakeChars:
    """Pass the first ``n`` characters, then say done (like a budget)."""

    def __init__(self, report: so.StreamReport, n: int) -> None:
        self.report = report
        self.left = n
        self.done = False
        self.closed = 0

    def feed(self, item: str, /) -> list[str]:
        if self.done:
            return []
        out = item[: self.left]
        self.left -= len(out)
        if self.left == 0:
            self.done = True
            self.report.stop(so.StopReason.BUDGET)
        return [out] if out else []

    def close(self) -> list[str]:
        self.closed += 1
        return []


class Counter:
    """Number the chunks it sees (per-stream state)."""

    def __init__(self) -> None:
        self.done = False
        self.n = 0

    def feed(self, item: str, /) -> list[str]:
        self.n += 1
        return [f"{self.n}:{item}"]

    def close(self) -> list[str]:
        return []


def upper() -> so.Operator[str, str]:
    return so.Operator.from_processor(lambda report: Upper(), name="upper")


def take(n: int) -> so.Operator[str, str]:
    return so.Operator.from_processor(lambda report: TakeChars(report, n), name="take")


class Tracked:
    """A sync or async upstream that records how far it was pulled and whether it closed."""

    def __init__(self, chunks: list[Any], *, fail_at: int | None = None) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.pulled = 0
        self.finalized = False

    def sync(self) -> Iterator[Any]:
        try:
            for i, chunk in enumerate(self.chunks):
                if i == self.fail_at:
                    raise ConnectionError(f"lost at {i}")
                self.pulled += 1
                yield chunk
        finally:
            self.finalized = True

    async def aio(self) -> AsyncIterator[Any]:
        try:
            for i, chunk in enumerate(self.chunks):
                await asyncio.sleep(0)
                if i == self.fail_at:
                    raise ConnectionError(f"lost at {i}")
                self.pulled += 1
                yield chunk
        finally:
            self.finalized = True


# -- composition -------------------------------------------------------------


def test_pipe_composes_left_to_right() -> None:
    op = hold_last() | upper()
    assert repr(op) == "hold_last | upper"
    assert list(op(["ab", "cd"])) == ["A", "BC", "D"]


def test_pipe_refuses_non_operators() -> None:
    with pytest.raises(TypeError):
        _ = upper() | (lambda s: s)  # type: ignore[operator]


def test_operator_requires_stages() -> None:
    with pytest.raises(TypeError, match="expected Stage objects"):
        so.Operator("upper")  # type: ignore[arg-type]


def test_operator_is_reusable_state_is_per_stream() -> None:
    op = so.Operator.from_processor(lambda report: Counter(), name="count")
    first = op(["a", "b"])
    second = op(["x"])
    assert list(second) == ["1:x"]
    assert list(first) == ["1:a", "2:b"]


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize("bad", ["text", b"bytes", bytearray(b"x")])
def test_bare_text_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="iterable of chunks"):
        upper()(bad)


def test_non_iterable_is_refused() -> None:
    with pytest.raises(TypeError, match="got int"):
        upper()(42)  # type: ignore[call-overload]


def test_wrong_chunk_type_names_index_and_type() -> None:
    up = Tracked(["a", "b", 3, "d"])
    with pytest.raises(so.ChunkTypeError, match="chunk 2 has type int") as info:
        list(upper()(up.sync()))
    assert info.value.index == 2
    assert info.value.chunk_type is int
    assert isinstance(info.value, TypeError)
    assert up.finalized


# -- halting and closing ---------------------------------------------------------


def test_done_processor_stops_pulling_and_closes_upstream() -> None:
    up = Tracked(["abc", "def", "ghi", "jkl"])
    stream = (take(5) | hold_last())(up.sync())
    assert "".join(stream) == "abcde"
    assert up.pulled == 2  # stopped right after the chunk that exhausted it
    assert up.finalized
    assert stream.report.stop_reason == so.StopReason.BUDGET


def test_done_processor_flushes_downstream_and_closes_itself() -> None:
    procs: list[TakeChars] = []

    def factory(report: so.StreamReport) -> TakeChars:
        procs.append(TakeChars(report, 3))
        return procs[-1]

    op = hold_last() | so.Operator.from_processor(factory) | hold_last()
    stream = op(["ab", "cdef"])
    assert list(stream) == ["ab", "c"]
    assert procs[0].closed == 1
    assert stream.report.stop_reason == so.StopReason.BUDGET


def test_sync_consumer_break_closes_upstream() -> None:
    up = Tracked(["a", "b", "c"])
    stream = upper()(up.sync())
    for piece in stream:
        assert piece == "A"
        break
    stream.close()
    assert up.finalized
    assert up.pulled == 1
    assert stream.report.stop_reason == so.StopReason.CLOSED
    stream.close()  # closing twice is harmless


def test_sync_context_manager_closes() -> None:
    up = Tracked(["a", "b"])
    with upper()(up.sync()) as stream:
        assert next(stream) == "A"
    assert up.finalized


def test_upstream_error_passes_through_unwrapped() -> None:
    up = Tracked(["a", "b", "c"], fail_at=2)
    stream = upper()(up.sync())
    with pytest.raises(ConnectionError, match="lost at 2"):
        list(stream)
    assert up.finalized
    assert stream.report.stop_reason == so.StopReason.ERROR
    assert isinstance(stream.report.error, ConnectionError)
    assert stream.report.released_text == "AB"


def test_streamops_errors_carry_released_text() -> None:
    class Boom:
        done = False

        def feed(self, item: str, /) -> list[str]:
            if item == "!":
                raise so.StreamOpsError("policy says no")
            return [item]

        def close(self) -> list[str]:
            return []

    stream = so.Operator.from_processor(lambda r: Boom())(["he", "llo", "!", "x"])
    with pytest.raises(so.StreamOpsError) as info:
        list(stream)
    assert info.value.released == "hello"


async def test_async_in_async_out_and_report() -> None:
    up = Tracked(["ab", "cd"])
    stream = (hold_last() | upper())(up.aio())
    assert isinstance(stream, so.AsyncStream)
    assert [x async for x in stream] == ["A", "BC", "D"]
    report = stream.report
    assert report.stop_reason == so.StopReason.COMPLETE
    assert (report.chunks_in, report.chunks_out) == (2, 3)
    assert report.released_text == "ABCD"
    assert [e.kind for e in report.events] == ["stream.start", "stream.end"]
    assert report.events[-1].data == {"reason": "complete"}
    assert up.finalized


async def test_async_done_closes_upstream() -> None:
    up = Tracked(["abc", "def", "ghi"])
    async with take(4)(up.aio()) as stream:
        assert "".join([x async for x in stream]) == "abcd"
    assert up.pulled == 2
    assert up.finalized


async def test_async_aclose_midway_closes_upstream() -> None:
    up = Tracked(["a", "b", "c"])
    stream = upper()(up.aio())
    assert await stream.__anext__() == "A"
    await stream.aclose()
    assert up.finalized
    assert stream.report.stop_reason == so.StopReason.CLOSED
    await stream.aclose()


async def test_async_task_cancel_closes_upstream() -> None:
    started = asyncio.Event()
    finalized = False

    async def slow() -> AsyncIterator[str]:
        nonlocal finalized
        try:
            yield "a"
            started.set()
            await asyncio.sleep(3600)
            yield "b"
        finally:
            finalized = True

    stream = upper()(slow())

    async def consume() -> list[str]:
        async with stream:
            return [x async for x in stream]

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finalized
    assert stream.report.stop_reason == so.StopReason.CANCELLED


async def test_async_text_helper() -> None:
    assert await upper()(Tracked(["a", "b"]).aio()).text() == "AB"


def test_sync_text_helper() -> None:
    assert upper()(["a", "b"]).text() == "AB"


# -- shells ---------------------------------------------------------------------


class Tag(ShellStage):
    """A shell that tags every item (to see where shells sit in the chain)."""

    def wrap_async(self, source: AsyncIterator[Any], report: so.StreamReport) -> AsyncIterator[Any]:
        async def gen() -> AsyncIterator[Any]:
            try:
                async for item in source:
                    yield f"<{item}>"
            finally:
                await source.aclose()  # type: ignore[attr-defined]

        return gen()


async def test_shell_between_fused_groups() -> None:
    op = hold_last() | so.Operator[str, str](Tag("tag")) | upper()
    assert repr(op) == "hold_last | tag | upper"
    up = Tracked(["ab", "c"])
    stream = op(up.aio())
    assert [x async for x in stream] == ["<A>", "<B>", "<C>"]
    assert stream.report.stop_reason == so.StopReason.COMPLETE
    assert up.finalized


def test_shell_refuses_sync_sources_clearly() -> None:
    with pytest.raises(TypeError, match="async streams only"):
        so.Operator(Tag("tag"))(["a"])


# -- events ---------------------------------------------------------------------


def test_on_event_callback_receives_events_in_order() -> None:
    seen: list[str] = []
    stream = upper()(["a"], on_event=lambda e: seen.append(e.kind))
    list(stream)
    assert seen == ["stream.start", "stream.end"]


def test_report_is_json_serialisable() -> None:
    stream = take(1)(["ab"])
    list(stream)
    data = stream.report.to_dict()
    assert data["stop_reason"] == "budget"
    assert '"stop_reason": "budget"' in stream.report.to_json()


# -- lenses -----------------------------------------------------------------------


class Box:
    def __init__(self, text: str, meta: int) -> None:
        self.text = text
        self.meta = meta


class BoxLens:
    def unwrap(self, chunk: Any, /) -> str:
        if not isinstance(chunk, Box):
            raise TypeError("not a Box")
        return chunk.text

    def wrap(self, chunk: Any, texts: list[str], /) -> list[Any]:
        return [Box("".join(texts), chunk.meta)]

    def finish(self, texts: list[str], /) -> list[Any]:
        return [Box("".join(texts), -1)] if texts else []


def test_public_protocols_and_stage_types() -> None:
    assert isinstance(Upper(), Processor)
    assert not isinstance(object(), Processor)
    lens: Lens = BoxLens()
    assert lens.unwrap(Box("t", 0)) == "t"
    stages = (hold_last() | so.Operator[str, str](Tag("tag"))).stages
    assert all(isinstance(stage, Stage) for stage in stages)
    assert [type(stage) for stage in stages] == [ProcessorStage, Tag]
    assert isinstance(stages[1], ShellStage)


def test_registered_lens_keeps_chunk_type_and_metadata() -> None:
    register_lens(lambda chunk: BoxLens() if isinstance(chunk, Box) else None)
    out = list((hold_last() | upper())([Box("ab", 1), Box("cd", 2)]))
    assert [(b.text, b.meta) for b in out] == [("A", 1), ("BC", 2), ("D", -1)]


def test_released_text_excludes_what_the_consumer_never_received() -> None:
    class Split:
        done = False

        def feed(self, item: str, /) -> list[str]:
            return list(item)  # one chunk in, several out

        def close(self) -> list[str]:
            return []

    stream = so.Operator.from_processor(lambda r: Split())(["abc", "def"])
    assert next(stream) == "a"
    assert next(stream) == "b"
    stream.close()
    assert stream.report.released_text == "ab"
    assert stream.report.chunks_out == 2


async def test_async_released_text_excludes_undelivered() -> None:
    class Split:
        done = False

        def feed(self, item: str, /) -> list[str]:
            return list(item)

        def close(self) -> list[str]:
            return []

    stream = so.Operator.from_processor(lambda r: Split())(Tracked(["abc", "def"]).aio())
    assert [await stream.__anext__() for _ in range(4)] == ["a", "b", "c", "d"]
    await stream.aclose()
    assert stream.report.released_text == "abcd"
    assert stream.report.chunks_out == 4


def test_explicit_lens_overrides_the_registry() -> None:
    class Raw:
        def __init__(self, text: str) -> None:
            self.text = text

    class RawLens(BoxLens):
        def unwrap(self, chunk: Any, /) -> str:
            return str(chunk.text)

        def wrap(self, chunk: Any, texts: list[str], /) -> list[Any]:
            return [Raw("".join(texts))]

    with pytest.raises(so.ChunkTypeError, match="chunk 0 has type Raw"):
        list(upper()([Raw("ab")]))
    out = list(upper()([Raw("ab"), Raw("c")], lens=lambda chunk: RawLens()))
    assert [r.text for r in out] == ["AB", "C"]
    refused = upper()([Raw("ab")], lens=lambda chunk: None)
    with pytest.raises(so.ChunkTypeError):
        list(refused)


def test_upstream_is_closed_before_the_last_chunk_of_a_halt_is_delivered() -> None:
    up = Tracked(["abc", "def", "ghi"])
    stream = take(4)(up.sync())
    assert next(stream) == "abc"
    assert not up.finalized
    assert next(stream) == "d"  # the halting chunk: the upstream is already closed
    assert up.finalized


async def test_async_upstream_is_closed_before_the_last_chunk_of_a_halt() -> None:
    up = Tracked(["abc", "def", "ghi"])
    stream = take(4)(up.aio())
    assert await stream.__anext__() == "abc"
    assert await stream.__anext__() == "d"
    assert up.finalized
    await stream.aclose()


class Aborting:
    """Record whether the stream closed or aborted this processor."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.done = False

    def feed(self, item: str, /) -> list[str]:
        return [item]

    def close(self) -> list[str]:
        self.log.append("close")
        return []

    def abort(self) -> None:
        self.log.append("abort")


def test_abort_is_called_when_the_consumer_leaves() -> None:
    log: list[str] = []
    op = so.Operator.from_processor(lambda r: Aborting(log))
    stream = op(["a", "b"])
    next(stream)
    stream.close()
    assert log == ["abort"]
    assert list(op(["a"])) == ["a"]
    assert log == ["abort", "close"]


def test_abort_is_called_on_processors_before_a_halt() -> None:
    log: list[str] = []
    op = so.Operator.from_processor(lambda r: Aborting(log)) | take(2)
    assert "".join(op(["abc", "d"])) == "ab"
    assert log == ["abort"]


async def test_async_abort_on_error() -> None:
    log: list[str] = []
    op = so.Operator.from_processor(lambda r: Aborting(log))
    with pytest.raises(ConnectionError):
        async for _ in op(Tracked(["a", "b"], fail_at=1).aio()):
            pass
    assert log == ["abort"]


def test_value_operators_only_read_text_through_a_lens() -> None:
    register_lens(lambda chunk: BoxLens() if isinstance(chunk, Box) else None)
    values = so.Operator.from_processor(lambda r: Counter(), name="count", produces=None)(
        [Box("a", 1), Box("b", 2)]
    )
    assert list(values) == ["1:a", "2:b"]  # values, not Boxes: nothing to rebuild
