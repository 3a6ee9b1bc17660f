"""Nesting is composing: ``op2(op1(src))`` ends like ``(op1 | op2)(src)`` on every forced end.

DESIGN.md: "A truncated secret is a secret ... Composition order never leaks".
For every way a stream is stopped before its end (a budget cut, a redaction
block, a quiet idle timeout, a stop button) and a random text with a secret at a
random place, split at random points: the nested stream releases the same
text as the composed one, with the same stop reason, sync and async, and no
prefix of the secret.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import streamops as so
from streamops.testing import run

SECRET = "sk-proj-" + "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12Wx34"
WORDS = st.sampled_from(["alpha", "beta", "my key is", "stop", "ok", "x"])
STALL = 3600.0  # virtual seconds: the source stalls past every idle limit


@st.composite
def texts(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A text with the secret somewhere, and a random split of it into chunks."""
    before = " ".join(draw(st.lists(WORDS, max_size=6)))
    after = " ".join(draw(st.lists(WORDS, max_size=4)))
    text = f"{before} {SECRET} {after}"
    cuts = sorted(set(draw(st.lists(st.integers(1, len(text) - 1), max_size=12))))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


OUTER: dict[str, Callable[[], so.Operator[Any, Any]]] = {
    "redact": so.redact,
    "identity": so.identity,
    "collect": so.collect,
}


class Stop:
    """One forced end: an ``op1`` per run, and what the source does (cancel, stall)."""

    def __init__(self, kind: str, at: int) -> None:
        self.kind = kind
        self.at = at  # a token count, or the chunk index where the source stops or stalls
        self.token = so.CancelToken()

    def op(self) -> so.Operator[Any, Any]:
        if self.kind == "budget":
            return so.budget(max_tokens=self.at)
        if self.kind == "block":
            return so.redact(["stop"], action="block")
        if self.kind == "timeout":
            return so.timeout(idle=1.0, on_timeout="end")
        return so.cancellable(self.token)

    def chunks(self, pieces: list[str]) -> Iterator[str]:
        for i, piece in enumerate(pieces):
            if self.kind == "cancel" and i == self.at:
                self.token.cancel("stop button")  # inside the pull: the stream stops here
            yield piece

    async def achunks(self, pieces: list[str]) -> AsyncIterator[str]:
        for i, piece in enumerate(pieces):
            if i == self.at:
                if self.kind == "cancel":
                    self.token.cancel("stop button")
                elif self.kind == "timeout":
                    await asyncio.sleep(STALL)
            yield piece


KINDS = st.sampled_from(["budget", "block", "cancel"])


def _sync(stop: Stop, pieces: list[str], outer: str, nested: bool) -> tuple[str, Any]:
    op2 = OUTER[outer]()
    source = stop.chunks(pieces)
    stream = op2(stop.op()(source)) if nested else (stop.op() | op2)(source)
    with stream:
        text = "".join(x for x in stream if isinstance(x, str))
    return text, stream.report.stop_reason


def _async(stop: Stop, pieces: list[str], outer: str, nested: bool) -> tuple[str, Any]:
    async def main() -> tuple[str, Any]:
        op2 = OUTER[outer]()
        source = stop.achunks(pieces)
        stream = op2(stop.op()(source)) if nested else (stop.op() | op2)(source)
        async with stream:
            text = "".join([x async for x in stream if isinstance(x, str)])
        return text, stream.report.stop_reason

    return run(main())


def _check(composed: tuple[str, Any], nested: tuple[str, Any], outer: str) -> None:
    assert nested == composed
    if outer == "redact":
        assert "sk-pro" not in nested[0]


@settings(max_examples=60, deadline=None)
@given(texts(), KINDS, st.integers(0, 30), st.sampled_from(sorted(OUTER)))
def test_nested_equals_composed_sync(
    case: tuple[str, list[str]], kind: str, at: int, outer: str
) -> None:
    _, pieces = case
    composed = _sync(Stop(kind, at), pieces, outer, nested=False)
    nested = _sync(Stop(kind, at), pieces, outer, nested=True)
    _check(composed, nested, outer)


@settings(max_examples=60, deadline=None)
@given(
    texts(),
    st.sampled_from(["budget", "block", "cancel", "timeout"]),
    st.integers(0, 30),
    st.sampled_from(sorted(OUTER)),
)
def test_nested_equals_composed_async(
    case: tuple[str, list[str]], kind: str, at: int, outer: str
) -> None:
    _, pieces = case
    composed = _async(Stop(kind, at), pieces, outer, nested=False)
    nested = _async(Stop(kind, at), pieces, outer, nested=True)
    _check(composed, nested, outer)
    if kind != "timeout":  # (time limits work on async streams only)
        assert _sync(Stop(kind, at), pieces, outer, nested=True) == nested
