"""Properties of the fused core: associativity, identity, clean stop at any point."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import streamops as so


class Hold:
    """Hold back ``k`` trailing characters (a stand-in for a windowed filter)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.buf = ""
        self.done = False

    def feed(self, item: str, /) -> list[str]:
        self.buf += item
        cut = max(0, len(self.buf) - self.k)
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return [out] if out else []

    def close(self) -> list[str]:
        return [self.buf] if self.buf else []


class Map:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.done = False

    def feed(self, item: str, /) -> list[str]:
        if self.kind == "upper":
            return [item.upper()]
        if self.kind == "double":
            return [c * 2 for c in item]  # one chunk in, many out
        return [item.replace("a", "")]  # may produce empty text

    def close(self) -> list[str]:
        return []


class Take:
    def __init__(self, report: so.StreamReport, n: int) -> None:
        self.left = n
        self.report = report
        self.done = n == 0

    def feed(self, item: str, /) -> list[str]:
        out = item[: self.left]
        self.left -= len(out)
        if self.left == 0:
            self.done = True
            self.report.stop("budget")
        return [out] if out else []

    def close(self) -> list[str]:
        return []


def make_op(spec: tuple[str, int]) -> so.Operator[str, str]:
    kind, n = spec
    if kind == "hold":
        return so.Operator.from_processor(lambda r: Hold(n), name=f"hold{n}")
    if kind == "take":
        return so.Operator.from_processor(lambda r: Take(r, n), name=f"take{n}")
    if kind == "identity":
        return so.identity()
    return so.Operator.from_processor(lambda r: Map(kind), name=kind)


def chain(specs: list[tuple[str, int]]) -> so.Operator[str, str]:
    """Compose the operators ``specs`` describe, after a leading identity."""
    op = so.identity()
    for spec in specs:
        op = op | make_op(spec)
    return op


op_specs = st.tuples(
    st.sampled_from(["hold", "take", "identity", "upper", "double", "drop_a"]),
    st.integers(0, 6),
)
texts = st.text(alphabet="abcXYZ ", max_size=40)


@st.composite
def chunked(draw: st.DrawFn) -> list[str]:
    text = draw(texts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def run(op: so.Operator[str, str], chunks: list[str]) -> str:
    return "".join(op(chunks))


@given(op_specs, op_specs, op_specs, chunked())
def test_composition_is_associative(
    a: tuple[str, int], b: tuple[str, int], c: tuple[str, int], chunks: list[str]
) -> None:
    left = (make_op(a) | make_op(b)) | make_op(c)
    right = make_op(a) | (make_op(b) | make_op(c))
    assert run(left, chunks) == run(right, chunks)
    assert list(left(chunks)) == list(right(chunks))


@given(st.lists(op_specs, max_size=4), chunked())
def test_identity_is_a_unit(specs: list[tuple[str, int]], chunks: list[str]) -> None:
    op = chain(specs)
    plain = chain(specs)
    assert list((so.identity() | op | so.identity())(chunks)) == list(plain(chunks))
    assert list(so.identity()(chunks)) == chunks


@given(st.lists(op_specs, max_size=4), chunked())
def test_fused_chain_matches_stage_by_stage(
    specs: list[tuple[str, int]], chunks: list[str]
) -> None:
    """Fusing never changes the text: running stages one stream at a time agrees."""
    fused = chain(specs)
    staged: list[str] = chunks
    for spec in specs:
        staged = list(make_op(spec)(staged))
    assert run(fused, chunks) == "".join(staged)


class Source:
    def __init__(self, chunks: list[str]) -> None:
        self.chunks = chunks
        self.finalized = False

    def sync(self) -> Iterator[str]:
        try:
            yield from self.chunks
        finally:
            self.finalized = True

    async def aio(self) -> AsyncIterator[str]:
        try:
            for chunk in self.chunks:
                await asyncio.sleep(0)
                yield chunk
        finally:
            self.finalized = True


@given(st.lists(op_specs, max_size=4), chunked(), st.integers(0, 50))
def test_sync_stop_at_random_point_closes_upstream(
    specs: list[tuple[str, int]], chunks: list[str], stop_after: int
) -> None:
    op = chain(specs)
    source = Source(chunks)
    stream = op(source.sync())
    for i, _ in enumerate(stream):
        if i == stop_after:
            break
    stream.close()
    assert source.finalized
    assert stream.report.stop_reason is not None


@given(st.lists(op_specs, max_size=4), chunked(), st.integers(0, 50))
def test_async_stop_at_random_point_closes_upstream(
    specs: list[tuple[str, int]], chunks: list[str], stop_after: int
) -> None:
    op = chain(specs)
    source = Source(chunks)

    async def main() -> so.AsyncStream[Any]:
        stream = op(source.aio())
        async with stream:
            i = 0
            async for _ in stream:
                if i == stop_after:
                    break
                i += 1
        assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left behind
        return stream

    stream = asyncio.run(main())
    assert source.finalized
    assert stream.report.stop_reason is not None
