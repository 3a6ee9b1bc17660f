"""Tests for streamops.testing (virtual time, assert_closed) and the pytest plugin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import looptime
import pytest

import streamops as so
from streamops import testing
from streamops.testing import VirtualClock, assert_closed, run, virtual_time


def test_testing_reexports_the_fake_model() -> None:
    assert testing.FakeStreamingModel is so.FakeStreamingModel
    assert set(testing.__all__) >= {"FakeStreamingModel", "run", "virtual_time", "assert_closed"}
    assert all(hasattr(testing, name) for name in testing.__all__)


# -- run --------------------------------------------------------------------


def test_run_starts_at_zero_and_fast_forwards() -> None:
    async def main() -> tuple[float, float, bool]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(86_400)
        return start, loop.time(), VirtualClock().enabled

    wall = time.perf_counter()
    assert run(main()) == (0.0, 86_400.0, True)
    assert time.perf_counter() - wall < 60.0  # a real day would never finish


def test_run_fires_timeouts_at_the_virtual_deadline() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(asyncio.sleep(100), timeout=7.5)
        except TimeoutError:
            return loop.time()
        raise AssertionError("the timeout did not fire")

    assert run(main()) == 7.5


def test_run_propagates_exceptions() -> None:
    async def main() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        run(main())


def test_clock_run_is_run() -> None:
    async def main() -> float:
        await asyncio.sleep(2)
        return VirtualClock().time()

    assert VirtualClock.run(main()) == 2.0


# -- virtual_time -----------------------------------------------------------


def test_virtual_time_on_a_plain_asyncio_loop() -> None:
    async def main() -> tuple[float, bool, bool]:
        with virtual_time() as clock:
            start = clock.time()
            await asyncio.sleep(1000)
            inside = clock.enabled
            elapsed = round(clock.time() - start, 6)
        return elapsed, inside, clock.enabled

    wall = time.perf_counter()
    assert asyncio.run(main()) == (1000.0, True, False)
    assert time.perf_counter() - wall < 60.0


def test_virtual_time_can_be_entered_again_and_nested() -> None:
    async def main() -> list[float]:
        elapsed = []
        for _ in range(2):
            with virtual_time() as clock:
                start = clock.time()
                with virtual_time():  # already virtual: left as it is
                    await asyncio.sleep(50)
                elapsed.append(round(clock.time() - start, 6))
        return elapsed

    assert asyncio.run(main()) == [50.0, 50.0]


def test_time_never_goes_back_after_a_virtual_time_block() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        seen = [loop.time()]
        for _ in range(2):  # the second block goes on from after the first
            with virtual_time():
                await asyncio.sleep(1000)
                seen.append(loop.time())
            seen.append(loop.time())
            await asyncio.sleep(0.01)  # real time, at the real pace
            seen.append(loop.time())
        return seen

    seen = asyncio.run(main())
    assert seen == sorted(seen)
    assert seen[-1] - seen[0] >= 2000.0


async def test_report_times_stay_ordered_across_a_virtual_time_block() -> None:
    async def source() -> AsyncIterator[str]:
        for piece, delay in [("a", 100.0), ("b", 100.0), ("c", 0.001)]:
            await asyncio.sleep(delay)  # the last one after the block, in real time
            yield piece

    with virtual_time():
        stream = so.collect()(source())
        assert [await anext(stream), await anext(stream)] == ["a", "b"]
    assert [piece async for piece in stream] == ["c"]  # after the block: real time
    times = [e.time for e in stream.report.events]
    assert times == sorted(times)
    metrics = so.Collected.of(stream).metrics
    assert metrics.duration is not None
    assert metrics.duration >= 200.0
    assert metrics.gap_p50 is not None
    assert metrics.gap_p50 >= 0.0


async def test_a_clock_captured_before_the_first_block_is_not_shifted() -> None:
    # The documented exception: a bound ``loop.time`` taken before the loop's
    # first virtual_time() block reads the real clock, unshifted, after it.
    loop = asyncio.get_running_loop()
    captured = loop.time
    with virtual_time():
        await asyncio.sleep(100)
        inside = loop.time()
    assert loop.time() >= inside
    assert captured() < inside


def test_virtual_time_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"), virtual_time():
        pass  # pragma: no cover - never reached


@pytest.mark.asyncio
async def test_virtual_time_on_a_loop_pre_patched_by_looptime() -> None:
    # looptime's pytest plugin patches pytest-asyncio loops (switched off).
    loop = asyncio.get_running_loop()
    assert isinstance(loop, looptime.LoopTimeEventLoop)
    before = loop.time()
    with virtual_time() as clock:
        start = clock.time()
        assert start >= before  # time never goes back when switching on
        await asyncio.sleep(600)
        assert round(clock.time() - start, 6) == 600.0
        inside = clock.time()
    assert loop.time() >= inside  # nor when switching off


# -- the pytest fixtures ----------------------------------------------------


@pytest.mark.asyncio
async def test_virtual_clock_fixture(virtual_clock: VirtualClock) -> None:
    assert virtual_clock.enabled
    start = virtual_clock.time()
    await asyncio.sleep(3600)
    assert round(virtual_clock.time() - start, 6) == 3600.0


@pytest.mark.asyncio
async def test_fixtures_time_out_a_stalled_model_in_virtual_time_and_close_it(
    fake_model: type[so.FakeStreamingModel],
    virtual_clock: VirtualClock,
    assert_closed: Callable[..., None],
) -> None:
    model = fake_model("never arrives", first_chunk_delay=60.0)
    stream = model.astream("hi")
    start = virtual_clock.time()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(5):
            await anext(stream)
    await stream.aclose()
    assert round(virtual_clock.time() - start, 6) == 5.0
    assert_closed(model, early=True)


def test_virtual_clock_runs_a_coroutine_from_a_sync_test_in_virtual_time(
    virtual_clock: VirtualClock,
) -> None:
    async def main() -> float:
        await asyncio.sleep(12)
        return virtual_clock.time()

    assert virtual_clock.run(main()) == 12.0


def test_fake_model_fixture_is_the_class(fake_model: type[so.FakeStreamingModel]) -> None:
    assert fake_model is so.FakeStreamingModel


# -- assert_closed ----------------------------------------------------------


def test_assert_closed_fails_while_a_stream_is_open() -> None:
    model = so.FakeStreamingModel("a b c")
    stream = model.stream("q")
    next(stream)
    with pytest.raises(AssertionError, match=r"call 0 \(stream, prompt='q'\): pulled 1 of 3"):
        assert_closed(model)
    stream.close()
    assert_closed(model)
    assert_closed(model.calls[0], early=True)


def test_assert_closed_checks_early() -> None:
    model = so.FakeStreamingModel("a b")
    assert list(model.stream()) == ["a", " b"]
    assert_closed(model, early=False)
    with pytest.raises(AssertionError, match="expected every stream closed early"):
        assert_closed(model, early=True)
    stream = model.stream()
    next(stream)
    stream.close()
    with pytest.raises(AssertionError, match="run to its end"):
        assert_closed(model, early=False)


def test_assert_closed_accepts_never_started_streams() -> None:
    model = so.FakeStreamingModel("a")
    model.astream()
    assert_closed(model)


def test_assert_closed_rejects_a_model_never_called() -> None:
    with pytest.raises(AssertionError, match="was never called"):
        assert_closed(so.FakeStreamingModel("a"))


def test_assert_closed_rejects_bad_targets() -> None:
    with pytest.raises(TypeError, match="got str"):
        assert_closed("model")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at least one"):
        assert_closed()


def test_assert_closed_finds_a_stream_left_to_the_garbage_collector() -> None:
    model = so.FakeStreamingModel("a b c")

    async def main() -> None:
        stream = model.astream()
        async for _ in stream:
            break  # no aclose(): the generator's finally has not run yet
        with pytest.raises(AssertionError, match="stream not closed"):
            assert_closed(model, tasks=False)
        await stream.aclose()
        assert_closed(model)

    run(main())


def test_assert_closed_finds_a_task_left_running() -> None:
    model = so.FakeStreamingModel("a")

    async def main() -> None:
        model.invoke()
        leftover = asyncio.create_task(asyncio.sleep(10), name="leftover-watcher")
        await asyncio.sleep(0)
        with pytest.raises(AssertionError, match=r"1 task.* left running: leftover-watcher"):
            assert_closed(model)
        assert_closed(model, tasks=False)
        leftover.cancel()
        await asyncio.gather(leftover, return_exceptions=True)
        assert_closed(model)

    run(main())
