"""Per-chunk cost of so.retry on the success path, against a plain passthrough async generator.

Target: at most 3x the passthrough. On the success path retry is one
generator over the attempt's iterator, like the passthrough, plus its
per-chunk bookkeeping: the commit point, the attempt's chunk count, the text
released (for ``StreamInterruptedError`` and ``on_success``) and the report's counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import streamops as so
from benchmarks._common import BenchResult, best_of, format_table


async def _source(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def _passthrough(source: AsyncIterator[str]) -> AsyncIterator[str]:
    async for item in source:
        yield item


def run(quick: bool = False) -> list[BenchResult]:
    """Measure retry and its baseline on the same chunks; return one row."""
    items = [f"tok{i} " for i in range(1_000 if quick else 50_000)]

    async def ours() -> None:
        stream = so.retry(lambda: _source(items))
        async for _ in stream:
            pass

    async def baseline() -> None:
        async for _ in _passthrough(_source(items)):
            pass

    repeat = 1 if quick else 5
    return [
        BenchResult(
            operator="retry",
            workload=f"{len(items)} chunks, success",
            ours_s=best_of(lambda: asyncio.run(ours()), repeat=repeat),
            baseline_s=best_of(lambda: asyncio.run(baseline()), repeat=repeat),
            baseline="passthrough async gen",
            target=3.0,
        )
    ]


if __name__ == "__main__":
    print(format_table(run()))
