"""Per-chunk cost of ``so.timeout(idle=..., total=...)`` next to the per-item wrappers.

The usual way to put an idle timeout on a stream (aiostream's ``timeout``, most
hand-written code) wraps each ``__anext__`` in ``asyncio.timeout()`` or
``asyncio.wait_for()``: a new timeout context and timer handle (and for
``wait_for`` on Python 3.11, a task) per chunk. ``so.timeout`` keeps one timer
handle per stream and re-arms it lazily. All variants iterate the same
in-memory source in the same event loop, interleaved round by round; the
ratio is ``so.timeout`` end to end (the core driver included) over the
``asyncio.timeout`` wrapper, target <= 1/4.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import streamops as so

from ._common import BenchResult, format_table, interleaved

IDLE = 30.0
TOTAL = 600.0


async def _source(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield "tok "


async def _per_item_timeout(source: AsyncIterator[str]) -> AsyncIterator[str]:
    while True:
        try:
            async with asyncio.timeout(IDLE):
                item = await anext(source)
        except StopAsyncIteration:
            return
        yield item


async def _per_item_wait_for(source: AsyncIterator[str]) -> AsyncIterator[str]:
    while True:
        try:
            item = await asyncio.wait_for(anext(source), IDLE)
        except StopAsyncIteration:
            return
        yield item


async def _consume(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        pass


def run(quick: bool = False) -> list[BenchResult]:
    """Time every variant on ``n`` chunks; return the ratio rows."""
    n = 2_000 if quick else 100_000
    rounds = 2 if quick else 7
    op = so.timeout(idle=IDLE, total=TOTAL)
    plain = so.identity()
    variants: dict[str, Callable[[], AsyncIterator[Any]]] = {
        "floor": lambda: _source(n),
        "so.identity": lambda: plain(_source(n)),
        "so.timeout": lambda: op(_source(n)),
        "asyncio.timeout": lambda: _per_item_timeout(_source(n)),
        "asyncio.wait_for": lambda: _per_item_wait_for(_source(n)),
    }
    loop = asyncio.new_event_loop()

    def timed(make: Callable[[], AsyncIterator[Any]]) -> Callable[[], object]:
        return lambda: loop.run_until_complete(_consume(make()))

    try:
        # interleaved, so that load changes hit every variant alike
        times = interleaved([timed(make) for make in variants.values()], repeat=rounds)
    finally:
        loop.close()
    best = dict(zip(variants, times, strict=True))
    us = {name: t / n * 1e6 for name, t in best.items()}
    per_chunk = ", ".join(f"{name} {v:.2f} us" for name, v in us.items())
    shell = us["so.timeout"] - us["so.identity"]
    workload = f"{n} chunks, idle+total"
    return [
        BenchResult(
            "timeout",
            workload,
            best["so.timeout"],
            best["asyncio.timeout"],
            "asyncio.timeout per item",
            0.25,
            note=f"per chunk: {per_chunk}; the timeout shell alone (over so.identity)"
            f" {shell:.2f} us",
        ),
        BenchResult(
            "timeout",
            workload,
            best["so.timeout"],
            best["asyncio.wait_for"],
            "asyncio.wait_for per item",
            None,
        ),
    ]


if __name__ == "__main__":
    print(format_table(run()))
