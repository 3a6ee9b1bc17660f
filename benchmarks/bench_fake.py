"""Cost of the fake model and of virtual time.

1. Per-chunk cost of ``FakeStreamingModel.astream`` (recording every chunk)
   against its floor: a plain async generator that yields to the loop once per
   chunk (``await asyncio.sleep(0)``), as the fake does. Target: <= 2x.
2. Virtual time: 1,000 chunks 1 s apart (999 virtual seconds) under
   ``streamops.testing.run``, against the same chunks with no delay on a plain
   loop. looptime spins a few dozen idle loop cycles before each clock jump
   (so that work scheduled "at the same instant" runs first); the ratio shows
   that price. No target: what matters is the wall time in the note.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import streamops as so
from streamops.testing import FakeReply
from streamops.testing import run as run_virtual

from ._common import BenchResult, best_of, format_table


async def _floor(chunks: list[str]) -> AsyncIterator[str]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


async def _drain(stream: AsyncIterator[str]) -> None:
    async for _ in stream:
        pass


def run(quick: bool = False) -> list[BenchResult]:
    """Measure the fake model's per-chunk cost and the price of virtual time."""
    n = 2_000 if quick else 100_000
    chunks = [f"tok{i % 97} " for i in range(n)]
    model = so.FakeStreamingModel(FakeReply(chunks=chunks))
    repeat = 2 if quick else 5

    floor_s = best_of(lambda: asyncio.run(_drain(_floor(chunks))), repeat=repeat)
    fake_s = best_of(lambda: asyncio.run(_drain(model.astream())), repeat=repeat)

    m = 200 if quick else 1_000
    slow = so.FakeStreamingModel(FakeReply(chunks=chunks[:m]), delay=1.0)
    instant = so.FakeStreamingModel(FakeReply(chunks=chunks[:m]))
    virtual_s = best_of(lambda: run_virtual(_drain(slow.astream())), repeat=repeat)
    instant_s = best_of(lambda: asyncio.run(_drain(instant.astream())), repeat=repeat)
    return [
        BenchResult(
            "FakeStreamingModel.astream",
            f"{n} chunks",
            fake_s,
            floor_s,
            "async gen + sleep(0)",
            2.0,
        ),
        BenchResult(
            "virtual time (run)",
            f"{m} chunks, 1 s apart",
            virtual_s,
            instant_s,
            "no delay, plain loop",
            None,
            note=f"{m - 1} virtual seconds in {virtual_s:.3f} s of wall time",
        ),
    ]


if __name__ == "__main__":
    print(format_table(run()))
