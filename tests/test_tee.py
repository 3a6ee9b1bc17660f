"""Unit tests of tee: ordering, overflow policies, closing the upstream exactly once."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import streamops as so


class Source:
    """A sync upstream that counts pulls and closes."""

    def __init__(self, items: list[Any], fail_at: int | None = None) -> None:
        self.items = items
        self.fail_at = fail_at
        self.pulls = 0
        self.closes: list[int] = []  # how many items had been pulled when closed

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self.pulls == self.fail_at:
            self.pulls += 1
            raise ConnectionError("upstream broke")
        if self.pulls >= len(self.items):
            raise StopIteration
        self.pulls += 1
        return self.items[self.pulls - 1]

    def close(self) -> None:
        self.closes.append(self.pulls)


class ASource:
    """An async upstream that counts pulls and closes; optional delay per item."""

    def __init__(self, items: list[Any], delay: float = 0.0, fail_at: int | None = None) -> None:
        self.sync = Source(items, fail_at)
        self.delay = delay

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        await asyncio.sleep(self.delay)
        try:
            return next(self.sync)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.sync.close()


async def drain(branch: so.AsyncTeeBranch[Any], delay: float = 0.0) -> list[Any]:
    out = []
    async with branch:
        async for item in branch:
            out.append(item)
            await asyncio.sleep(delay)
    return out


# -- basics -----------------------------------------------------------------------------


def test_sync_branches_see_everything_in_order() -> None:
    src = Source(list(range(5)))
    a, b, c = so.tee(src, 3)
    assert all(isinstance(branch, so.TeeBranch) for branch in (a, b, c))
    assert next(a) == 0
    assert list(b) == [0, 1, 2, 3, 4]
    assert list(a) == [1, 2, 3, 4]
    assert src.closes == []
    assert list(c) == [0, 1, 2, 3, 4]
    assert src.pulls == 5
    assert src.closes == [5]


def test_a_single_branch_yields_every_item() -> None:
    (only,) = so.tee(["x", "y"], 1)
    assert list(only) == ["x", "y"]


async def test_concurrent_async_branches_each_get_every_item_pulled_once() -> None:
    src = ASource(list(range(20)), delay=0.001)
    a, b = so.tee(src, 2)
    assert isinstance(a, so.AsyncTeeBranch)
    got = await asyncio.gather(drain(a), drain(b, delay=0.002))
    assert list(got) == [list(range(20)), list(range(20))]
    assert src.sync.pulls == 20
    assert src.sync.closes == [20]


async def test_tee_of_a_streamops_stream() -> None:
    async def source() -> AsyncIterator[str]:
        for piece in ["He", "llo"]:
            yield piece

    stream = so.collect()(source())
    user, store = so.tee(stream, 2)
    got = await asyncio.gather(drain(user), drain(store))
    assert list(got) == [["He", "llo"], ["He", "llo"]]
    assert so.Collected.of(stream).text == "Hello"
    assert stream.report.stop_reason is so.StopReason.COMPLETE


# -- closing ---------------------------------------------------------------------------


def test_sync_upstream_closed_once_after_last_branch() -> None:
    src = Source(list(range(10)))
    a, b = so.tee(src, 2)
    assert next(a) == 0
    a.close()
    a.close()
    assert src.closes == []
    assert list(b) == list(range(10))  # a closing early does not stop b
    assert src.closes == [10]
    b.close()
    assert src.closes == [10]


def test_sync_unstarted_branch_close_counts() -> None:
    src = Source([1, 2, 3])
    a, b = so.tee(src, 2)
    b.close()
    assert next(a) == 1
    a.close()
    assert src.closes == [1]


def test_sync_dropped_branch_closes_on_garbage_collection() -> None:
    src = Source([1, 2, 3])
    a, b = so.tee(src, 2)
    with b:
        assert next(b) == 1
    del a
    gc.collect()
    assert src.closes == [1]


async def test_async_upstream_closed_once_after_last_branch() -> None:
    src = ASource(list(range(10)))
    a, b = so.tee(src, 2)
    assert await anext(a) == 0
    await a.aclose()
    await a.aclose()
    assert src.sync.closes == []
    assert await drain(b) == list(range(10))
    assert src.sync.closes == [10]


async def test_async_unstarted_branches_close() -> None:
    src = ASource([1, 2])
    branches = so.tee(src, 3)
    for branch in branches:
        await branch.aclose()
    assert src.sync.closes == [0]


async def test_async_generator_upstream_finally_runs_once() -> None:
    finals: list[str] = []

    async def source() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            finals.append("closed")

    a, b = so.tee(source(), 2)
    async with a, b:
        assert [await anext(a) for _ in range(3)] == [0, 1, 2]
        assert await anext(b) == 0
        assert finals == []
    assert finals == ["closed"]


def test_consumer_failing_does_not_break_the_others() -> None:
    src = Source(list(range(4)))
    a, b = so.tee(src, 2)
    assert next(a) == 0
    assert next(a) == 1
    a.close()  # as a failing consumer's ``with`` block or ``for`` loop would
    assert list(b) == [0, 1, 2, 3]
    assert src.closes == [4]


# -- upstream errors -----------------------------------------------------------------------


def test_sync_upstream_error_reaches_every_branch_after_its_items() -> None:
    src = Source([0, 1, 2], fail_at=2)
    a, b = so.tee(src, 2)
    with pytest.raises(ConnectionError, match="upstream broke"):
        list(a)
    assert [next(b), next(b)] == [0, 1]
    with pytest.raises(ConnectionError, match="upstream broke"):
        next(b)
    assert src.pulls == 3
    assert src.closes == [3]


async def test_async_upstream_error_reaches_every_branch() -> None:
    src = ASource([0, 1, 2], fail_at=1)
    a, b = so.tee(src, 2)
    results = await asyncio.gather(drain(a), drain(b), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert src.sync.closes == [2]


async def test_cancelling_the_puller_stops_the_upstream_with_a_clear_error() -> None:
    src = ASource([0, 1], delay=10.0)
    a, b = so.tee(src, 2)
    task = asyncio.create_task(anext(a))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(so.StreamOpsError, match="stopped with CancelledError while branch 0"):
        await anext(b)
    await a.aclose()
    await b.aclose()
    assert src.sync.closes == [0]


# -- overflow policies: slow and fast consumers ------------------------------------------------


def test_sync_wait_raises_in_the_branch_that_would_wait() -> None:
    src = Source(list(range(10)))
    fast, slow = so.tee(src, 2, max_buffer=3)
    assert [next(fast) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(so.TeeOverflowError, match="would wait for branch 1") as info:
        next(fast)
    assert (info.value.branch, info.value.max_buffer) == (0, 3)
    assert src.pulls == 3  # nothing was pulled and lost
    with pytest.raises(so.TeeOverflowError):  # raising again changes nothing
        next(fast)
    assert [next(slow) for _ in range(3)] == [0, 1, 2]  # the slow branch catches up
    # The branch that raised is still alive: it reads on, and the slow one too.
    assert list(zip(fast, slow, strict=True)) == [(i, i) for i in range(3, 10)]
    assert list(fast) == []
    assert list(slow) == []
    assert src.pulls == 10
    assert src.closes == [10]


def test_sync_wait_lets_the_slow_branch_run_ahead_within_the_bound() -> None:
    fast, slow = so.tee(iter(range(6)), 2, max_buffer=2)
    assert [next(fast), next(fast)] == [0, 1]
    with pytest.raises(so.TeeOverflowError, match="branch 0: would wait for branch 1"):
        next(fast)
    assert [next(slow) for _ in range(4)] == [0, 1, 2, 3]  # now fast holds [2, 3]
    with pytest.raises(so.TeeOverflowError, match="branch 1: would wait for branch 0"):
        next(slow)
    assert [next(fast) for _ in range(4)] == [2, 3, 4, 5]
    with pytest.raises(so.TeeOverflowError):  # it cannot know the end without pulling
        next(fast)
    assert list(slow) == [4, 5]
    assert list(fast) == []


def test_default_is_unbounded_like_itertools_tee() -> None:
    n = 5000  # far more than any fixed default bound
    a, b = so.tee(iter(range(n)), 2)
    assert list(a) == list(range(n))
    assert list(b) == list(range(n))


async def test_async_default_is_unbounded_so_sequential_reading_works() -> None:
    a, b = so.tee(ASource(list(range(3000))), 2)
    assert await drain(a) == list(range(3000))  # would wait forever with a bound
    assert await drain(b) == list(range(3000))


@pytest.mark.looptime
async def test_async_wait_applies_backpressure() -> None:
    src = ASource(list(range(12)))
    fast, slow = so.tee(src, 2, max_buffer=2, on_overflow="wait")
    progress = {"fast": 0, "slow": 0}
    lead = []

    async def run(branch: so.AsyncTeeBranch[int], name: str, delay: float) -> list[int]:
        out = []
        async with branch:
            async for item in branch:
                out.append(item)
                progress[name] += 1
                lead.append(progress["fast"] - progress["slow"])
                await asyncio.sleep(delay)
        return out

    got = await asyncio.gather(run(fast, "fast", 0.0), run(slow, "slow", 1.0))
    assert list(got) == [list(range(12)), list(range(12))]
    assert max(lead) == 2  # the fast branch never gets more than max_buffer items ahead
    assert src.sync.pulls == 12
    assert src.sync.closes == [12]


@pytest.mark.looptime
async def test_async_wait_ends_when_the_slow_branch_closes() -> None:
    src = ASource(list(range(10)))
    fast, slow = so.tee(src, 2, max_buffer=2)

    async def slow_reader() -> list[int]:
        out = [await anext(slow)]
        await asyncio.sleep(5)
        await slow.aclose()
        return out

    got = await asyncio.gather(drain(fast), slow_reader())
    assert list(got) == [list(range(10)), [0]]
    assert src.sync.closes == [10]


def test_sync_drop_oldest_keeps_the_newest() -> None:
    src = Source(list(range(10)))
    fast, slow = so.tee(src, 2, max_buffer=3, on_overflow="drop_oldest")
    assert list(fast) == list(range(10))
    assert slow.dropped == 7
    assert list(slow) == [7, 8, 9]
    assert fast.dropped == 0


@pytest.mark.looptime
async def test_async_drop_oldest_with_slow_and_fast() -> None:
    src = ASource(list(range(10)), delay=0.1)
    fast, slow = so.tee(src, 2, max_buffer=2, on_overflow="drop_oldest")
    got_fast, got_slow = await asyncio.gather(drain(fast), drain(slow, delay=0.35))
    assert got_fast == list(range(10))
    assert got_slow[0] == 0
    assert got_slow == sorted(got_slow)
    assert got_slow[-2:] == [8, 9]
    assert len(got_slow) + slow.dropped == 10
    assert slow.dropped > 0
    assert src.sync.closes == [10]


def test_sync_error_policy_cuts_off_the_slow_branch() -> None:
    src = Source(list(range(10)))
    fast, slow = so.tee(src, 2, max_buffer=3, on_overflow="error")
    assert list(fast) == list(range(10))
    assert src.closes == [10]  # the cut-off branch does not hold the upstream open
    with pytest.raises(so.TeeOverflowError, match="tee branch 1: fell 3 items behind"):
        next(slow)
    assert list(slow) == []


@pytest.mark.looptime
async def test_async_error_policy_with_slow_and_fast() -> None:
    src = ASource(list(range(10)), delay=0.1)
    fast, slow = so.tee(src, 2, max_buffer=2, on_overflow="error")
    results: list[object] = list(
        await asyncio.gather(drain(fast), drain(slow, delay=1.0), return_exceptions=True)
    )
    got_fast, got_slow = results
    assert got_fast == list(range(10))
    assert isinstance(got_slow, so.TeeOverflowError)
    assert got_slow.branch == 1
    assert src.sync.closes == [10]


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("text",), {}, TypeError, "got a bare str"),
        ((42,), {}, TypeError, "expected an iterable or async iterable of chunks.*got int"),
        (([], 0), {}, ValueError, r"tee\(n\) must be a positive int, got 0"),
        (([], 2.0), {}, TypeError, r"tee\(n\) must be an int, got float"),
        (([], "2"), {}, TypeError, r"tee\(n\) must be an int, got str"),
        (([], True), {}, TypeError, r"tee\(n\) must be an int, got bool"),
        (([],), {"max_buffer": 0}, ValueError, r"max_buffer=\.\.\.\) must be a positive int"),
        (([],), {"max_buffer": 1.5}, TypeError, r"max_buffer=\.\.\.\) must be an int"),
        (([],), {"on_overflow": "block"}, ValueError, "on_overflow=.... must be one of 'wait'"),
        (([],), {"on_overflow": "wiat"}, ValueError, "did you mean 'wait'"),
    ],
)
def test_bad_arguments_raise_at_construction_naming_the_option(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        so.tee(*args, **kwargs)


# -- abandoned and closed branches never deadlock the others (issue 15) --------------------------

GUARD = 60.0  # virtual seconds: a deadlock fails the test at once instead of hanging it


@pytest.mark.looptime
@pytest.mark.parametrize("started", [False, True])
async def test_async_dropped_branch_does_not_block_the_others(started: bool) -> None:
    src = ASource(list(range(10)))
    a, b = so.tee(src, 2, max_buffer=2)
    if started:
        assert await anext(b) == 0  # then dropped while suspended at a yield
    del b
    gc.collect()
    assert await asyncio.wait_for(drain(a), GUARD) == list(range(10))
    assert src.sync.closes == [10]


@pytest.mark.looptime
async def test_async_branch_dropped_while_the_other_waits_for_it() -> None:
    src = ASource(list(range(6)))
    a, b = so.tee(src, 2, max_buffer=2)
    reader = asyncio.create_task(drain(a))
    await asyncio.sleep(1)  # ``a`` has read 2 items and waits for ``b`` to read
    assert not reader.done()
    del b
    gc.collect()
    assert await asyncio.wait_for(reader, GUARD) == list(range(6))
    assert src.sync.closes == [6]


@pytest.mark.looptime
async def test_async_last_branch_dropped_closes_the_upstream() -> None:
    finals: list[str] = []

    async def source() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            finals.append("closed")

    a, b = so.tee(source(), 2, max_buffer=2)
    async with a:
        assert await anext(a) == 0
    assert finals == []  # ``b`` is still alive: it may read on
    del b
    gc.collect()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert finals == ["closed"]


@pytest.mark.looptime
@pytest.mark.parametrize("started", [False, True])
async def test_async_closing_a_branch_the_others_wait_for_releases_them(started: bool) -> None:
    src = ASource(list(range(8)))
    a, b, c = so.tee(src, 3, max_buffer=1)
    if started:
        assert await anext(c) == 0
    readers = [asyncio.create_task(drain(a)), asyncio.create_task(drain(b, delay=1.0))]
    await asyncio.sleep(3)  # ``c`` holds everyone back
    assert not any(r.done() for r in readers)
    await c.aclose()
    got = await asyncio.wait_for(asyncio.gather(*readers), GUARD)
    assert list(got) == [list(range(8)), list(range(8))]
    assert src.sync.closes == [8]


@pytest.mark.looptime
async def test_async_a_branch_never_read_but_alive_is_a_slow_consumer() -> None:
    # Backpressure cannot tell a branch nobody reads from a slow one: the others wait.
    src = ASource(list(range(6)))
    a, b = so.tee(src, 2, max_buffer=2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(drain(a), 5.0)
    assert src.sync.pulls == 2
    await b.aclose()  # closing it (or dropping it) lets the others go on
    assert src.sync.closes == [2]
