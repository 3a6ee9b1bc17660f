"""Per-chunk cost of a collector and of a 2-way tee, against a plain passthrough async generator.

Targets: the collector pipeline at most 4x the plain passthrough generator
(the driver alone, ``identity()``, is printed for context: about 2.4x; the
collector adds a clock read and two appends per chunk). A 2-way tee at most
8x: both branches read every chunk, so that is at most 4x per branch.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import streamops as so
from benchmarks._common import BenchResult, format_table


async def _source(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def _passthrough(source: AsyncIterator[str]) -> AsyncIterator[str]:
    async for item in source:
        yield item


async def _consume(stream: AsyncIterator[str]) -> int:
    n = 0
    async for _ in stream:
        n += 1
    return n


async def _tee2(items: list[str]) -> None:
    a, b = so.tee(_source(items), 2)
    # Alternating reads: each branch pulls or finds the item in its buffer in turn.
    async with a, b:
        async for _ in a:
            await anext(b)


async def _time_all(
    cases: dict[str, Callable[[], Awaitable[object]]], rounds: int
) -> dict[str, float]:
    """Best time of each case; rounds interleave the cases so load slows them alike.

    Timed inside one event loop, so loop start-up is not part of the cost.
    """
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, make in cases.items():
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                await make()
                best[name] = min(best[name], time.perf_counter() - start)
            finally:
                gc.enable()
    return best


def run(quick: bool = False) -> list[BenchResult]:
    """Time the collector and the tee against a plain passthrough generator."""
    n = 2_000 if quick else 20_000
    rounds = 1 if quick else 15
    items = [f"tok{i % 97} " for i in range(n)]
    collect = so.collect()
    identity = so.identity()
    cases: dict[str, Callable[[], Awaitable[object]]] = {
        "baseline": lambda: _consume(_passthrough(_source(items))),
        "identity": lambda: _consume(identity(_source(items))),
        "collect": lambda: _consume(collect(_source(items))),
        "tee": lambda: _tee2(items),
    }
    best = asyncio.run(_time_all(cases, rounds))
    workload = f"{n} chunks"
    base = "passthrough async gen"
    per_chunk = f"{(best['collect'] - best['baseline']) / n * 1e9:.0f} ns/chunk over the baseline"
    return [
        BenchResult(
            "identity()",
            workload,
            best["identity"],
            best["baseline"],
            base,
            None,
            note="the driver's own floor, for context",
        ),
        BenchResult(
            "collect", workload, best["collect"], best["baseline"], base, 4.0, note=per_chunk
        ),
        BenchResult(
            "tee(n=2)",
            workload,
            best["tee"],
            best["baseline"],
            base,
            8.0,
            note="both branches read every chunk: the ratio counts two consumers",
        ),
    ]


if __name__ == "__main__":
    print(format_table(run()))
