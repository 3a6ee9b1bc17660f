"""Properties of the collector and tee: any chunking, any read schedule."""

from __future__ import annotations

import asyncio

from helpers import hold_last
from hypothesis import given
from hypothesis import strategies as st

import streamops as so
from streamops._core._driver import _aiter

chunks = st.lists(st.text(max_size=8), max_size=20)


@given(chunks)
def test_collected_text_is_what_the_consumer_received(pieces: list[str]) -> None:
    stream = (hold_last() | so.collect())(pieces)
    received = list(stream)
    result = so.Collected.of(stream)
    assert result.text == "".join(received) == "".join(pieces)
    assert result.chunks == received
    assert result.metrics.chunk_count == len(received)
    assert result.metrics.chars == len("".join(received))


@given(chunks, st.integers(min_value=1, max_value=20))
def test_collected_text_when_the_consumer_stops_early(pieces: list[str], n: int) -> None:
    stream = so.collect()(pieces)
    received = [piece for _, piece in zip(range(n), stream, strict=False)]
    stream.close()
    result = so.Collected.of(stream)
    assert result.finished
    assert result.text == "".join(received)


@given(chunks)
def test_async_collected_text_is_what_the_consumer_received(pieces: list[str]) -> None:
    async def main() -> tuple[list[str], so.Collected]:
        stream = (hold_last() | so.collect())(_aiter(pieces))
        received = [piece async for piece in stream]
        return received, so.Collected.of(stream)

    received, result = asyncio.run(main())
    assert result.text == "".join(received) == "".join(pieces)


@given(
    st.lists(st.integers(), max_size=30),
    st.integers(min_value=1, max_value=4),
    st.lists(st.integers(min_value=0, max_value=3), max_size=200),
)
def test_tee_any_read_schedule(items: list[int], n: int, schedule: list[int]) -> None:
    closes: list[int] = []

    class Source:
        def __init__(self) -> None:
            self.it = iter(items)

        def __iter__(self) -> Source:
            return self

        def __next__(self) -> int:
            return next(self.it)

        def close(self) -> None:
            closes.append(1)

    branches = so.tee(Source(), n, max_buffer=None)
    seen: list[list[int]] = [[] for _ in range(n)]
    for pick in schedule:
        i = pick % n
        seen[i] += [x for _, x in zip(range(1), branches[i], strict=False)]
    for i, branch in enumerate(branches):
        seen[i] += list(branch)
    assert seen == [items] * n
    assert closes == [1]
