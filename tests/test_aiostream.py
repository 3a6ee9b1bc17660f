"""aiostream interop: ``xs | op`` gives an aiostream stream that chains with ``pipe.*``."""

from __future__ import annotations

import pytest

import streamops as so

aiostream = pytest.importorskip("aiostream")
stream, pipe = aiostream.stream, aiostream.pipe


async def test_pipe_operator_returns_an_aiostream_stream() -> None:
    xs = stream.iterate(["sk-proj-4f9a8b7c", "6d5e4f3a2b1c0d9e ok"])
    ys = xs | so.redact() | pipe.map(str.upper)
    assert isinstance(ys, aiostream.core.Stream)
    assert "".join(await stream.list(ys)) == "[OPENAI_KEY] OK"


async def test_result_can_be_iterated_twice_with_fresh_state() -> None:
    zs = stream.iterate(["a b c d e f"]) | so.budget(max_tokens=2)
    assert "".join(await stream.list(zs)) == "a b"
    assert "".join(await stream.list(zs)) == "a b"  # a second run, not an empty one


async def test_a_streamer_is_an_ordinary_async_source() -> None:
    xs = stream.iterate(["ab", "cd"])
    async with xs.stream() as streamer:
        out = [piece async for piece in so.identity()(streamer)]
    assert out == ["ab", "cd"]


async def test_report_is_reachable_through_options() -> None:
    report = so.StreamReport()
    ys = so.redact()  # the same operator, reused
    zs = stream.iterate(["mail ann@example.com"]) | (lambda s: ys(s, report=report))
    assert "".join(await stream.list(zs)) == "mail [EMAIL]"
    assert report["redact"].redacted == {"email": 1}  # type: ignore[attr-defined]
