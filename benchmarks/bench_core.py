"""Per-chunk cost of a fused chain of 6 identity operators vs 6 plain async generators.

The fused driver runs all six processors in one loop; the baseline stacks six
``async for x in src: yield x`` generators, the way hand-written (and
aiostream-style) pipelines are built. Target: fused <= 1.0x the baseline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import streamops as so
from streamops._core._stages import _Identity
from streamops.lowlevel import Processor

from ._common import BenchResult, format_table, interleaved

STAGES = 6


def _chunks(n: int) -> list[str]:
    return [f"tok{i % 97} " for i in range(n)]


async def _source(chunks: list[str]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield chunk


async def _passthrough(source: AsyncIterator[str]) -> AsyncIterator[str]:
    async for item in source:
        yield item


async def _per_stage(source: AsyncIterator[str], proc: Processor[str, str]) -> AsyncIterator[str]:
    """One generator per stage running a processor: the design fusion replaces."""
    async for item in source:
        for out in proc.feed(item):
            yield out


def _fused() -> so.Operator[str, str]:
    op = so.identity()
    for _ in range(STAGES - 1):
        op = op | so.identity()
    return op


def run(quick: bool = False) -> list[BenchResult]:
    """Measure the fused chain (sync and async source) against plain generators."""
    n = 2_000 if quick else 200_000
    chunks = _chunks(n)
    op = _fused()

    async def plain() -> None:
        it: AsyncIterator[str] = _source(chunks)
        for _ in range(STAGES):
            it = _passthrough(it)
        async for _ in it:
            pass

    async def stacked() -> None:
        it: AsyncIterator[str] = _source(chunks)
        for _ in range(STAGES):
            it = _per_stage(it, _Identity())
        async for _ in it:
            pass

    async def fused_async() -> None:
        async for _ in op(_source(chunks)):
            pass

    async def source_only() -> None:
        async for _ in _source(chunks):
            pass

    def fused_sync() -> None:
        it: Iterator[str] = op(iter(chunks))
        for _ in it:
            pass

    loop = asyncio.new_event_loop()
    try:
        floor, baseline, per_stage, ours_async, ours_sync = interleaved(
            [
                lambda: loop.run_until_complete(source_only()),
                lambda: loop.run_until_complete(plain()),
                lambda: loop.run_until_complete(stacked()),
                lambda: loop.run_until_complete(fused_async()),
                fused_sync,
            ],
            repeat=2 if quick else 7,
        )
    finally:
        loop.close()
    per = 1e9 / n
    note = (
        f"per chunk: bare async source {floor * per:.0f} ns, 6 passthrough generators "
        f"{baseline * per:.0f} ns, 6 generators each running a processor "
        f"{per_stage * per:.0f} ns, fused async {ours_async * per:.0f} ns, fused sync "
        f"{ours_sync * per:.0f} ns. Each fused identity stage is a real Python call of "
        "its processor (feed_one(): one item in, one out, no list); identity stages are "
        "not optimised away."
    )
    workload = f"{n:,} chunks"
    name = "core: 6 fused identities"
    return [
        BenchResult(
            name,
            f"async, {workload}",
            ours_async,
            baseline,
            "6 passthrough async generators",
            1.0,
            note=note,
        ),
        BenchResult(
            name, f"sync, {workload}", ours_sync, baseline, "6 passthrough async generators", 1.0
        ),
        BenchResult(
            name,
            f"async, {workload}",
            ours_async,
            per_stage,
            "6 generators, one per processor",
            1.0,
        ),
    ]


if __name__ == "__main__":
    print(format_table(run()))
