"""Virtual time for asyncio, on top of ``looptime``.

``looptime`` makes an asyncio loop fast-forward its clock to the next timer
whenever nothing is ready to run: ``asyncio.sleep(60)`` returns at once, yet
``loop.time()`` says 60 seconds passed, exactly (its clock counts whole
microseconds). Timeouts (``asyncio.timeout``, ``wait_for``) fire at the same
virtual instants. These helpers wrap it so a test needs one call:
:func:`run` for sync code, :func:`virtual_time` inside a running loop, or the
``virtual_clock`` pytest fixture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from .._core._extras import require

if TYPE_CHECKING:
    from looptime import LoopTimeEventLoop

if TYPE_CHECKING:
    pass

__all__ = ("VirtualClock", "run", "virtual_time")


def _looptime() -> Any:
    """The ``looptime`` module (extra ``testing``): imported when virtual time is first used."""
    return require("looptime", extra="testing", feature="virtual time")


T = TypeVar("T")


class VirtualClock:
    """Read the virtual clock of the running event loop.

    Returned by :func:`virtual_time` and by the ``virtual_clock`` fixture.

    >>> async def main():
    ...     clock = VirtualClock()
    ...     start = clock.time()
    ...     await asyncio.sleep(3600)
    ...     return clock.time() - start, clock.enabled
    >>> run(main())
    (3600.0, True)
    """

    __slots__ = ()

    def time(self) -> float:
        """Return the running loop's time (virtual seconds under virtual time)."""
        return asyncio.get_running_loop().time()

    @property
    def enabled(self) -> bool:
        """True when the running loop's clock is virtual right now."""
        loop = asyncio.get_running_loop()
        return isinstance(loop, _looptime().LoopTimeEventLoop) and loop.looptime_on

    @staticmethod
    def run(main: Coroutine[Any, Any, T], /) -> T:
        """Run ``main`` under virtual time (same as :func:`run`)."""
        return run(main)


def run(main: Coroutine[Any, Any, T], /, *, debug: bool | None = None) -> T:
    """Run ``main`` like ``asyncio.run``, on a fresh loop whose clock is virtual.

    The clock starts at ``0.0``, so ``loop.time()`` is the virtual time elapsed.

    >>> async def main():
    ...     await asyncio.sleep(1.5)
    ...     return asyncio.get_running_loop().time()
    >>> run(main())
    1.5
    """
    with asyncio.Runner(loop_factory=_looptime().new_event_loop, debug=debug) as runner:
        return runner.run(main)


@contextmanager
def virtual_time() -> Iterator[VirtualClock]:
    """Make the running loop's clock virtual inside the ``with`` block.

    Use it from a coroutine (``with virtual_time():``, not ``async with``).
    The clock goes on from the loop's current time, and after the block it
    goes on from where the virtual clock stopped, at the real pace: time never
    goes backwards, so timestamps taken before, inside and after the block
    stay ordered (afterwards ``loop.time()`` is ahead of ``time.monotonic()``
    by the virtual time that passed). One exception: a ``loop.time`` method
    captured before the loop's first ``virtual_time()`` block (a stream that
    started before it, say) still reads the unshifted real clock afterwards,
    so enter the block before starting the streams it is meant for. Timers
    created inside the block should also end inside it, since real time
    resumes afterwards. A loop that is already virtual (``run``, the fixture)
    is left as it is.

    >>> async def main():
    ...     loop = asyncio.get_running_loop()
    ...     with virtual_time() as clock:
    ...         start = clock.time()
    ...         try:
    ...             async with asyncio.timeout(10):
    ...                 await asyncio.sleep(3600)
    ...         except TimeoutError:
    ...             waited = round(clock.time() - start, 6)
    ...     return waited, loop.time() - start >= 10
    >>> asyncio.run(main())
    (10.0, True)
    """
    running = asyncio.get_running_loop()
    clock = VirtualClock()
    if isinstance(running, _looptime().LoopTimeEventLoop):
        loop = running
    elif isinstance(running, asyncio.BaseEventLoop):
        loop = _looptime().patch_event_loop(running, _enabled=False)
    else:
        raise TypeError(
            f"virtual time needs an asyncio event loop; {type(running).__name__} is not one"
        )
    if loop.looptime_on:
        yield clock
        return
    shifted = _ShiftedClock.install(loop)
    # While off, a patched loop keeps its own clock apart from the real one (it
    # starts at 0 when looptime's pytest plugin patches it): move it forward to
    # now, so that time never goes back and earlier timers keep their meaning.
    with loop.looptime_enabled():
        virtual_now = loop.time()
    if loop.time() > virtual_now:
        loop.setup_looptime(start=loop.time())
    try:
        with loop.looptime_enabled():
            yield clock
    finally:
        with loop.looptime_enabled():
            virtual_end = loop.time()
        shifted.resume_from(virtual_end)


class _ShiftedClock:
    """A loop's ``time``: looptime's virtual clock when on, the real one shifted when off.

    looptime's switched-off clock is the real monotonic clock, which is behind
    by the virtual time that passed: unshifted, time would jump back by that
    much after a block. asyncio reads the time through ``self.time()``, so an
    instance attribute covers the loop itself and every later ``loop.time``
    lookup; it is installed when the first block starts so that streams
    started inside or after it use it too.
    """

    __slots__ = ("clock", "loop", "offset")

    def __init__(self, loop: LoopTimeEventLoop) -> None:
        self.loop = loop
        self.clock = type(loop).time
        self.offset = 0.0

    @classmethod
    def install(cls, loop: LoopTimeEventLoop) -> _ShiftedClock:
        shifted = vars(loop).get("time")
        if not isinstance(shifted, cls):
            shifted = cls(loop)
            loop.time = shifted  # type: ignore[method-assign]
        return shifted

    def resume_from(self, at: float) -> None:
        """Make the real clock go on from ``at``; call it with looptime switched off."""
        self.offset = at - self.clock(self.loop)

    def __call__(self) -> float:
        now = self.clock(self.loop)
        return now if self.loop.looptime_on else now + self.offset
