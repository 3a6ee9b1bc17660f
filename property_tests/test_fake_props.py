"""Hypothesis properties of the fake streaming model (issue 3)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamops as so
from streamops.testing import Chunking, Fault, run

# Surrogates cannot be encoded to UTF-8, so no real model could stream them.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
chunkings = st.one_of(
    st.sampled_from(["char", "word", "token", "random"]),
    st.integers(1, 12),
    st.builds(
        lambda lo, extra: Chunking.random(lo, lo + extra), st.integers(1, 6), st.integers(0, 6)
    ),
)
seeds = st.integers(0, 2**32)


async def _collect(model: so.FakeStreamingModel) -> list[tuple[float, Any]]:
    loop = asyncio.get_running_loop()
    return [(loop.time(), chunk) async for chunk in model.astream()]


@given(text=texts, chunking=chunkings, seed=seeds)
def test_chunks_concatenate_back_to_the_text(
    text: str, chunking: str | int | Chunking, seed: int
) -> None:
    model = so.FakeStreamingModel(text, chunking=chunking, seed=seed)
    chunks = list(model.stream())
    assert "".join(chunks) == text
    assert model.last_call.planned == chunks
    assert model.last_call.completed


@given(text=texts, chunking=chunkings, seed=seeds, jitter=st.floats(0, 2))
def test_same_seed_same_chunks_and_timings_sync_and_async(
    text: str, chunking: str | int | Chunking, seed: int, jitter: float
) -> None:
    def make() -> so.FakeStreamingModel:
        return so.FakeStreamingModel(text, chunking=chunking, seed=seed, delay=0.5, jitter=jitter)

    sync_model, async_model = make(), make()
    sync_chunks = list(sync_model.stream())
    stamps = run(_collect(async_model))
    assert [c for _, c in stamps] == sync_chunks
    assert sync_model.last_call.delays == async_model.last_call.delays
    assert make().chunking.split(text, seed=seed) == sync_chunks


@given(data=st.data(), text=texts, chunking=chunkings)
def test_raise_fires_exactly_at_the_requested_chunk(
    data: st.DataObject, text: str, chunking: str | int | Chunking
) -> None:
    n = len(list(so.FakeStreamingModel(text, chunking=chunking).stream()))
    index = data.draw(st.integers(0, n), label="index")
    model = so.FakeStreamingModel(text, chunking=chunking, faults=[Fault.raise_at(index)])
    got: list[str] = []
    with pytest.raises(so.FakeUpstreamError, match=f"^fake upstream error at chunk {index}$"):
        got.extend(model.stream())
    call = model.last_call
    assert got == call.planned[:index]
    assert (call.pulled, call.finalized, call.completed) == (index, True, False)


@given(data=st.data(), text=texts, chunking=chunkings)
def test_disconnect_fires_exactly_at_the_requested_chunk(
    data: st.DataObject, text: str, chunking: str | int | Chunking
) -> None:
    n = len(list(so.FakeStreamingModel(text, chunking=chunking).stream()))
    index = data.draw(st.integers(0, n), label="index")
    model = so.FakeStreamingModel(
        text, chunking=chunking, format="openai-dict", faults=[Fault.disconnect_at(index)]
    )
    chunks = list(model.stream())
    call = model.last_call
    assert call.texts == call.planned[:index]
    assert (call.disconnected, call.finish_reason) == (True, None)
    assert all(c["choices"] and c["choices"][0]["finish_reason"] is None for c in chunks)


@given(
    data=st.data(),
    words=st.integers(1, 12),
    delay=st.integers(0, 5),
    stall=st.integers(1, 100),
)
def test_stall_delays_exactly_the_requested_chunk(
    data: st.DataObject, words: int, delay: int, stall: int
) -> None:
    index = data.draw(st.integers(0, words - 1), label="index")
    model = so.FakeStreamingModel(
        " ".join(["w"] * words), delay=delay, faults=[Fault.stall_at(index, stall)]
    )
    times = [t for t, _ in run(_collect(model))]
    # Whole-second delays under virtual time: the clock reads exact floats.
    expected = [i * delay + (stall if i >= index else 0) for i in range(words)]
    assert times == expected
