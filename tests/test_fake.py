"""Unit tests for the fake streaming model (streamops/_fake.py)."""

from __future__ import annotations

import asyncio
import itertools
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import openai
import pytest

import streamops as so
from streamops.testing import Chunking, FakeCall, FakeReply, Fault, assert_closed, run

# -- helpers ----------------------------------------------------------------


async def _timed(stream: AsyncIterator[Any]) -> list[tuple[float, Any]]:
    """Collect (loop time, chunk) pairs from an async stream."""
    loop = asyncio.get_running_loop()
    return [(loop.time(), chunk) async for chunk in stream]


def _texts_of_openai(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# -- chunking ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunking", "expected"),
    [
        ("char", ["H", "i", " ", "y", "o", "u"]),
        ("word", ["Hi", " you"]),
        (2, ["Hi", " y", "ou"]),
        (Chunking.fixed(4), ["Hi y", "ou"]),
        (Chunking.chars(), ["H", "i", " ", "y", "o", "u"]),
    ],
)
def test_each_chunking_strategy_cuts_the_reply_as_named(
    chunking: str | int | Chunking, expected: list[str]
) -> None:
    assert list(so.FakeStreamingModel("Hi you", chunking=chunking).stream()) == expected


def test_word_chunking_keeps_leading_and_trailing_whitespace() -> None:
    assert Chunking.words().split("  a b\n\nc  ") == ["  a", " b", "\n\nc", "  "]


def test_token_chunking_follows_cl100k_and_never_splits_a_character() -> None:
    assert Chunking.tokens().split("Hello world") == ["Hello", " world"]
    # The emoji is several tokens in cl100k; they are merged into one chunk.
    pieces = Chunking.tokens().split("héllo 🎉!")
    assert "".join(pieces) == "héllo 🎉!"
    assert "\N{PARTY POPPER}" in pieces or " \N{PARTY POPPER}" in pieces
    assert all("\ufffd" not in p for p in pieces)


def test_token_chunking_treats_special_tokens_as_text() -> None:
    assert "".join(Chunking.tokens().split("a<|endoftext|>b")) == "a<|endoftext|>b"


def test_random_chunking_is_seeded_and_bounded() -> None:
    text = "abcdefghijklmnopqrstuvwxyz" * 4
    spec = Chunking.random(2, 5)
    first = spec.split(text, seed=1)
    assert first == spec.split(text, seed=1)
    assert first != spec.split(text, seed=2)
    assert "".join(first) == text
    assert all(2 <= len(p) <= 5 for p in first[:-1])
    assert 1 <= len(first[-1]) <= 5


def test_model_seed_drives_random_chunking() -> None:
    text = "the quick brown fox jumps over the lazy dog"
    a = list(so.FakeStreamingModel(text, chunking="random", seed=3).stream())
    b = list(so.FakeStreamingModel(text, chunking="random", seed=3).stream())
    c = list(so.FakeStreamingModel(text, chunking="random", seed=4).stream())
    assert a == b
    assert a != c


def test_explicit_chunks_are_used_as_given() -> None:
    model = so.FakeStreamingModel(FakeReply(chunks=["", "He", "llo", ""]), chunking="char")
    assert list(model.stream()) == ["", "He", "llo", ""]
    assert model.last_call.response == "Hello"


def test_empty_reply_streams_nothing_and_completes() -> None:
    model = so.FakeStreamingModel("")
    assert list(model.stream()) == []
    assert model.last_call.completed
    assert model.last_call.finish_reason == "stop"


# -- replies ----------------------------------------------------------------


def test_replies_cycle_by_default() -> None:
    model = so.FakeStreamingModel(["one", "two"])
    assert [model.invoke(str(i)) for i in range(5)] == ["one", "two", "one", "two", "one"]
    assert [c.prompt for c in model.calls] == ["0", "1", "2", "3", "4"]


def test_replies_can_be_consumed() -> None:
    model = so.FakeStreamingModel(["one", "two"], cycle=False)
    assert model.invoke() == "one"
    assert model.invoke() == "two"
    with pytest.raises(so.FakeModelExhaustedError, match="call 3: all 2 replies were used"):
        model.stream()
    assert isinstance(so.FakeModelExhaustedError("x"), so.StreamOpsError)


def test_callable_replies_get_the_prompt() -> None:
    model = so.FakeStreamingModel(lambda prompt: f"echo: {prompt}")
    assert list(model.stream("hi there")) == ["echo:", " hi", " there"]
    assert model.invoke(42) == "echo: 42"


def test_callable_may_return_a_fake_reply() -> None:
    model = so.FakeStreamingModel(lambda p: FakeReply(chunks=[p, "!"]))
    assert list(model.stream("x")) == ["x", "!"]


def test_exception_reply_fails_the_call_then_the_next_succeeds() -> None:
    model = so.FakeStreamingModel([ConnectionResetError("reset"), "ok now"], cycle=False)
    with pytest.raises(ConnectionResetError, match="reset"):
        list(model.stream("try 1"))
    assert list(model.stream("try 2")) == ["ok", " now"]
    first, second = model.calls
    assert (first.pulled, type(first.error), first.closed_early) == (0, ConnectionResetError, False)
    assert (second.completed, second.error) == (True, None)


def test_invoke_and_ainvoke_return_the_whole_text() -> None:
    model = so.FakeStreamingModel("a b c", format="openai-dict", delay=2.0)
    assert model.invoke() == "a b c"

    async def main() -> tuple[str, float]:
        text = await model.ainvoke()
        return text, asyncio.get_running_loop().time()

    assert run(main()) == ("a b c", 4.0)
    assert [c.method for c in model.calls] == ["invoke", "ainvoke"]


def test_repr_and_last_call() -> None:
    model = so.FakeStreamingModel(["a", "b"])
    assert repr(model) == "FakeStreamingModel(replies=2, chunking=word, format='text', calls=0)"
    with pytest.raises(IndexError, match="not been called"):
        _ = model.last_call
    model.invoke("p")
    assert model.last_call.prompt == "p"


# -- timing -----------------------------------------------------------------


def test_thousand_chunks_at_one_second_take_no_real_time() -> None:
    model = so.FakeStreamingModel(FakeReply(chunks=["x"] * 1000), delay=1.0)
    wall = time.perf_counter()
    stamps = run(_timed(model.astream()))
    wall = time.perf_counter() - wall
    times = [t for t, _ in stamps]
    assert len(times) == 1000
    assert times[0] == 0.0
    assert [b - a for a, b in itertools.pairwise(times)] == [1.0] * 999
    assert times[-1] == 999.0
    # Real time would be 999 s; any bound far below that proves the clock is virtual.
    assert wall < 60.0


def test_first_chunk_delay_and_delay() -> None:
    model = so.FakeStreamingModel("a b c", first_chunk_delay=5.0, delay=0.25)
    assert [t for t, _ in run(_timed(model.astream()))] == [5.0, 5.25, 5.5]
    assert model.last_call.delays == [5.0, 0.25, 0.25, 0.0]


def test_empty_reply_waits_first_chunk_delay() -> None:
    model = so.FakeStreamingModel("", first_chunk_delay=3.0)

    async def main() -> float:
        async for _ in model.astream():
            pass
        return asyncio.get_running_loop().time()

    assert run(main()) == 3.0


def test_jitter_is_seeded_and_bounded() -> None:
    def delays(seed: int) -> list[float]:
        model = so.FakeStreamingModel("a b c d e f g h", delay=1.0, jitter=0.5, seed=seed)
        list(model.stream())
        return model.last_call.delays

    first = delays(7)
    assert first == delays(7)
    assert first != delays(8)
    assert first[0] == 0.0
    assert all(1.0 <= d <= 1.5 for d in first[1:-1])


def test_stream_and_astream_have_the_same_chunks_and_timings() -> None:
    kwargs: dict[str, Any] = {"chunking": "random", "seed": 11, "delay": 0.5, "jitter": 0.3}
    text = "streams of tokens arrive one after another"
    sync_model = so.FakeStreamingModel(text, **kwargs)
    async_model = so.FakeStreamingModel(text, **kwargs)
    sync_chunks = list(sync_model.stream())
    stamps = run(_timed(async_model.astream()))
    assert [c for _, c in stamps] == sync_chunks
    assert sync_model.last_call.delays == async_model.last_call.delays
    expected = 0.0
    for (stamp, _), gap in zip(stamps, async_model.last_call.delays, strict=False):
        expected += gap
        assert stamp == pytest.approx(expected, abs=1e-6)


def test_sync_stream_does_not_sleep_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    model = so.FakeStreamingModel("a b", first_chunk_delay=2.0, delay=1.0)
    assert list(model.stream()) == ["a", " b"]
    assert slept == []
    sleepy = so.FakeStreamingModel("a b", first_chunk_delay=2.0, delay=1.0, sync_sleep=True)
    assert list(sleepy.stream()) == ["a", " b"]
    assert slept == [2.0, 1.0]


# -- faults -----------------------------------------------------------------


def test_raise_at_default_error() -> None:
    model = so.FakeStreamingModel("a b c", faults=[Fault.raise_at(2)])
    got: list[str] = []
    with pytest.raises(so.FakeUpstreamError, match="at chunk 2") as info:
        got.extend(model.stream())
    assert got == ["a", " b"]
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value, so.StreamOpsError)
    call = model.last_call
    assert (call.pulled, call.error, call.completed, call.closed_early, call.finalized) == (
        2,
        info.value,
        False,
        False,
        True,
    )


def test_raise_at_with_class_and_with_instance_copied_per_call() -> None:
    model = so.FakeStreamingModel("a b", faults=[Fault.raise_at(1, TimeoutError)])
    with pytest.raises(TimeoutError, match="fake upstream error at chunk 1"):
        list(model.stream())
    boom = ValueError("boom")
    model = so.FakeStreamingModel("a b", faults=[Fault.raise_at(0, boom)])
    errors = []
    for _ in range(2):
        with pytest.raises(ValueError, match="boom") as info:
            list(model.stream())
        errors.append(info.value)
    assert errors[0] is not errors[1]
    assert errors[0] is not boom


def _rate_limit_error() -> openai.RateLimitError:
    request = httpx2.Request("POST", "https://api.invalid/v1/chat/completions")  # openai's httpx
    response = httpx2.Response(429, request=request, json={"error": {"type": "rate_limit"}})
    return openai.RateLimitError("rate limited", response=response, body=None)


def _http_status_error() -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://api.invalid/v1/messages")
    response = httpx.Response(503, request=request)
    return httpx.HTTPStatusError("503 unavailable", request=request, response=response)


@pytest.mark.parametrize("make", [_rate_limit_error, _http_status_error])
def test_raise_at_with_an_error_that_cannot_be_copied(make: Any) -> None:
    error = make()  # keyword-only constructor arguments: copy.copy fails on these
    model = so.FakeStreamingModel("a b", faults=[Fault.raise_at(1, error)])
    depths = []
    for _ in range(3):
        got: list[str] = []
        with pytest.raises(type(error)) as info:
            got.extend(model.stream())
        assert got == ["a"]
        assert info.value is error  # raised again, as it is
        depths.append(len(traceback.extract_tb(info.value.__traceback__)))
    assert depths[0] == depths[1] == depths[2]  # the traceback does not grow per call
    assert [call.error for call in model.calls] == [error, error, error]


@pytest.mark.parametrize("make", [_rate_limit_error, _http_status_error])
def test_an_uncopyable_error_as_a_reply(make: Any) -> None:
    error = make()
    model = so.FakeStreamingModel([error, "ok"], cycle=False)
    with pytest.raises(type(error), match=str(error)):
        list(model.stream())
    assert list(model.stream()) == ["ok"]


@pytest.mark.parametrize("make", [_rate_limit_error, _http_status_error])
def test_raise_at_with_an_error_function_makes_a_fresh_error_per_call(make: Any) -> None:
    model = so.FakeStreamingModel("a b", faults=[Fault.raise_at(0, make)])
    errors = []
    for _ in range(2):
        with pytest.raises(type(make())) as info:
            list(model.stream())
        errors.append(info.value)
    assert errors[0] is not errors[1]


async def test_an_uncopyable_error_is_retried_by_retry() -> None:
    model = so.FakeStreamingModel(
        [FakeReply("", faults=[Fault.raise_at(0, _rate_limit_error())]), "fine"]
    )
    stream = so.retry(model.astream, backoff=so.Backoff(initial=0, jitter=0))
    assert await stream.text() == "fine"


def test_an_error_function_must_return_an_exception() -> None:
    model = so.FakeStreamingModel("a", faults=[Fault.raise_at(0, lambda: "oops")])  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="returned str, not an exception"):
        list(model.stream())


def test_raise_after_the_last_chunk_in_a_provider_format_skips_the_finish() -> None:
    model = so.FakeStreamingModel("a b", format="openai-dict", faults=[Fault.raise_at(2)])
    got: list[dict[str, Any]] = []
    with pytest.raises(so.FakeUpstreamError):
        got.extend(model.stream())
    assert _texts_of_openai(got) == "a b"
    assert all(c["choices"][0]["finish_reason"] is None for c in got)


def test_raise_at_zero_emits_nothing_not_even_framing() -> None:
    model = so.FakeStreamingModel("a b", format="anthropic-dict", faults=[Fault.raise_at(0)])
    stream = model.stream()
    with pytest.raises(so.FakeUpstreamError):
        next(stream)
    assert model.last_call.chunks == []


def test_stall_at_delays_that_chunk_only() -> None:
    model = so.FakeStreamingModel("a b c", delay=1.0, faults=[Fault.stall_at(1, 30.0)])
    assert [t for t, _ in run(_timed(model.astream()))] == [0.0, 31.0, 32.0]
    assert model.last_call.completed


def test_stall_at_end_delays_the_finish() -> None:
    model = so.FakeStreamingModel("a b", format="openai-dict", faults=[Fault.stall_at(2, 9.0)])
    stamps = run(_timed(model.astream()))
    finish = [t for t, c in stamps if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == [9.0]


def test_disconnect_at_ends_quietly_without_finish_reason() -> None:
    model = so.FakeStreamingModel("a b c", format="openai-dict", faults=[Fault.disconnect_at(2)])
    got = list(model.stream())
    assert _texts_of_openai(got) == "a b"
    assert all(c["choices"] and c["choices"][0]["finish_reason"] is None for c in got)
    call = model.last_call
    assert (call.disconnected, call.completed, call.finish_reason, call.closed_early) == (
        True,
        False,
        None,
        False,
    )


def test_lowest_ending_fault_wins_and_reply_faults_add_to_model_faults() -> None:
    model = so.FakeStreamingModel(
        [FakeReply("a b c d", faults=[Fault.disconnect_at(1)]), "a b c d"],
        faults=[Fault.raise_at(3)],
    )
    assert list(model.stream()) == ["a"]
    assert model.last_call.disconnected
    with pytest.raises(so.FakeUpstreamError):
        list(model.stream())
    assert model.last_call.pulled == 3


# -- recording --------------------------------------------------------------


def test_record_of_a_sync_stream_closed_early() -> None:
    model = so.FakeStreamingModel("one two three four")
    for i, _ in enumerate(model.stream("q")):
        if i == 1:
            break
    call = model.last_call
    assert (call.prompt, call.method, call.pulled, call.text) == ("q", "stream", 2, "one two")
    assert (call.closed_early, call.finalized, call.completed, call.open) == (
        True,
        True,
        False,
        False,
    )
    assert call.planned == ["one", " two", " three", " four"]


def test_record_of_an_async_stream_closed_with_aclose() -> None:
    model = so.FakeStreamingModel("one two three")

    async def main() -> FakeCall:
        stream = model.astream()
        await anext(stream)
        assert model.last_call.open
        await stream.aclose()
        return model.last_call

    call = run(main())
    assert (call.pulled, call.closed_early, call.finalized) == (1, True, True)


def test_cancellation_counts_as_closed_early() -> None:
    model = so.FakeStreamingModel("a b c", delay=10.0)

    async def drain(stream: AsyncIterator[str]) -> None:
        async with asyncio.timeout(15):
            async for _ in stream:
                pass

    async def main() -> None:
        stream = model.astream()
        with pytest.raises(TimeoutError):
            await drain(stream)
        await stream.aclose()

    run(main())
    call = model.last_call
    assert (call.pulled, call.closed_early, call.finalized) == (2, True, True)


def test_never_iterated_stream_is_recorded_but_not_started() -> None:
    model = so.FakeStreamingModel("a")
    model.astream("unused")
    call = model.last_call
    assert (call.started, call.open, call.finalized) == (False, False, False)


def test_operator_closes_the_fake_upstream() -> None:
    model = so.FakeStreamingModel("a b c d")

    async def main() -> list[str]:
        async with so.identity()(model.astream()) as stream:
            return [await anext(stream), await anext(stream)]

    assert run(main()) == ["a", " b"]
    assert_closed(model, early=True)


# -- provider shapes --------------------------------------------------------


def test_openai_dict_chunks_look_like_the_api() -> None:
    model = so.FakeStreamingModel("Hello world", format="openai-dict", model_name="gpt-x")
    chunks = list(model.stream("Say hi"))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert _texts_of_openai(chunks) == "Hello world"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert {c["model"] for c in chunks} == {"gpt-x"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert model.last_call.texts == ["Hello", " world"]
    assert len(model.last_call.chunks) == 5


def test_openai_objects_validate_as_sdk_types() -> None:
    from openai.types.chat import ChatCompletionChunk

    model = so.FakeStreamingModel(FakeReply("a b", finish_reason="length"), format="openai")
    chunks = list(model.stream("p"))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b"
    assert chunks[-2].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (1, 2)


def test_anthropic_events_are_sdk_types_in_protocol_order() -> None:
    from anthropic import types as at

    model = so.FakeStreamingModel("Hi there", format="anthropic")
    events = list(model.stream("hello"))
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    deltas = [e for e in events if isinstance(e, at.RawContentBlockDeltaEvent)]
    assert "".join(d.delta.text for d in deltas if isinstance(d.delta, at.TextDelta)) == (
        "Hi there"
    )
    message_delta = events[5]
    assert isinstance(message_delta, at.RawMessageDeltaEvent)
    assert message_delta.delta.stop_reason == "end_turn"
    assert message_delta.usage.output_tokens == 2
    start = events[0]
    assert isinstance(start, at.RawMessageStartEvent)
    assert start.message.usage.input_tokens == 1


def test_anthropic_dict_maps_length_to_max_tokens() -> None:
    model = so.FakeStreamingModel(FakeReply("a", finish_reason="length"), format="anthropic-dict")
    events = list(model.stream())
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"


def test_langchain_chunks_add_up_to_a_message_with_usage() -> None:
    from langchain_core.messages import AIMessageChunk

    model = so.FakeStreamingModel("Hello big world", format="langchain")
    chunks = list(model.stream("hi"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content == "Hello big world"
    assert total.response_metadata["finish_reason"] == "stop"
    assert total.usage_metadata == {"input_tokens": 1, "output_tokens": 3, "total_tokens": 4}


# -- bad configuration ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": -1.0}, "delay must be a finite number of seconds >= 0"),
        ({"first_chunk_delay": -0.1}, "first_chunk_delay must be"),
        ({"jitter": float("nan")}, "jitter must be"),
        ({"delay": float("inf")}, "delay must be"),
        ({"format": "cohere"}, "unknown format 'cohere'"),
        ({"chunking": "sentence"}, "unknown chunking 'sentence'"),
        ({"chunking": 0}, "chunk size must be at least 1"),
        ({"faults": [Fault.raise_at(3)]}, r"responses\[0\]: fault raise at chunk 3 is out"),
        ({"faults": [Fault.stall_at(9, 1.0)]}, "fault stall at chunk 9 is out of range"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        so.FakeStreamingModel("a b", **kwargs)


def test_fault_index_is_checked_against_every_reply() -> None:
    with pytest.raises(ValueError, match=r"responses\[1\]: fault disconnect at chunk 2"):
        so.FakeStreamingModel(["a b c", "a"], faults=[Fault.disconnect_at(2)])


def test_fault_index_of_a_callable_reply_is_checked_at_call_time() -> None:
    model = so.FakeStreamingModel(lambda p: p, faults=[Fault.raise_at(2)])
    with pytest.raises(so.FakeUpstreamError):
        model.invoke("a b c")
    assert model.last_call.pulled == 2
    with pytest.raises(ValueError, match="call 2: fault raise at chunk 2 is out of range"):
        model.stream("a")


def test_empty_responses_list() -> None:
    with pytest.raises(ValueError, match="responses is empty"):
        so.FakeStreamingModel([])


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Fault.raise_at(-1), ValueError, "fault index must be >= 0"),
        (lambda: Fault.stall_at(0, -2.0), ValueError, "stall seconds must be"),
        (lambda: Fault.raise_at(1, "oops"), TypeError, "error must be an exception"),  # type: ignore[arg-type]
        (lambda: Fault.raise_at(1, int), TypeError, "error must be an exception class"),  # type: ignore[arg-type]
        (lambda: Fault("raise", True), TypeError, "fault index must be an int"),
        (lambda: FakeReply(), ValueError, "either text or chunks"),
        (lambda: FakeReply("a", chunks=["a"]), ValueError, "either text or chunks"),
        (lambda: FakeReply(chunks="ab"), TypeError, "not a bare str"),
        (lambda: FakeReply(chunks=["a", 1]), TypeError, "every chunk must be a str"),  # type: ignore[list-item]
        (lambda: FakeReply(b"x"), TypeError, "reply text must be a str"),  # type: ignore[arg-type]
        (lambda: FakeReply("a", faults=["x"]), TypeError, "faults must be Fault"),  # type: ignore[list-item]
        (lambda: so.FakeStreamingModel([1]), TypeError, "a reply must be a str"),  # type: ignore[list-item]
        (lambda: so.FakeStreamingModel("a", seed=1.5), TypeError, "seed must be an int"),  # type: ignore[arg-type]
        (lambda: so.FakeStreamingModel("a", delay="1"), TypeError, "delay must be a number"),  # type: ignore[arg-type]
        (lambda: so.FakeStreamingModel("a", chunking=True), TypeError, "not a bool"),
        (lambda: so.FakeStreamingModel("a", faults=[1]), TypeError, "faults must be Fault"),  # type: ignore[list-item]
        (lambda: so.FakeStreamingModel(3), TypeError, "responses must be"),  # type: ignore[arg-type]
        (lambda: Chunking.random(3, 2), ValueError, r"max_size \(2\) must be at least"),
        (lambda: Chunking("lines"), ValueError, "unknown chunking kind"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_are_rejected(build: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()
