"""Clean stop on real SDK streams: the upstream stops generating when the operator stops.

DESIGN.md: "Early stop closes the source *object* the operator was called on
(an OpenAI ``AsyncStream``, an Anthropic stream, an httpx response), so the
provider stops generating and billing", and "operators accept an awaitable or
a zero-argument factory as the source; ``first_chunk``/``total`` limits and
TTFT then cover the request itself".

The stock ``openai`` and ``anthropic`` clients talk to the fake server on a
loopback socket. The server records when it produced each chunk and when it
stopped generating (:class:`streamops.testing.ServedRequest`), so every test
checks a behaviour, not a speed: after the operator stops (budget cut,
``break`` and close, timeout, cancel), the server stops within one chunk
interval, i.e. it produces at most ``SLACK`` more chunks. A server that keeps
going produces one chunk per ``INTERVAL`` until ``STOP_WAIT`` runs out, far
more than ``SLACK``.

Three ways to hand the request to an operator:

- ``"stream"``: ``op(await client.chat.completions.create(..., stream=True))``;
- ``"awaitable"``: ``op(client.chat.completions.create(..., stream=True))``,
  the coroutine not awaited (async clients only);
- ``"factory"``: ``op(lambda: client.chat.completions.create(..., stream=True))``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import anthropic
import openai
import pytest

import streamops as so
from streamops.testing import FakeOpenAIServer, FakeReply, Fault, ServedRequest

INTERVAL = 0.03  # seconds between two chunks of the fake model
SLACK = 2  # chunks the server may still produce after the stop (one interval, plus one)
STOP_WAIT = 1.0  # how long a test waits for the server to stop (about 33 intervals)
HEADERS_DELAY = 5.0  # a request whose headers come this late never finishes within a test
STALL = 5.0  # a mid-stream stall that outlasts every test
LONG = " ".join(f"word{i}" for i in range(300))  # 300 chunks: 9 s of generation
MESSAGES: Any = [{"role": "user", "content": "long"}]
STALLING: Any = [{"role": "user", "content": "stall"}]

Pattern = Literal["stream", "awaitable", "factory"]
ASYNC_PATTERNS: list[Pattern] = ["stream", "awaitable", "factory"]
SYNC_PATTERNS: list[Pattern] = ["stream", "factory"]


def script(prompt: Any) -> FakeReply:
    if prompt == "stall":  # four text chunks, then a stall
        return FakeReply(LONG, faults=[Fault.stall_at(4, STALL)])
    return FakeReply(LONG)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    model = so.FakeStreamingModel(script, chunking="word", delay=INTERVAL, format="openai-dict")
    with FakeOpenAIServer(model) as fake:
        yield fake


@pytest.fixture
def coroutines() -> Iterator[list[Any]]:
    """Requests handed over un-awaited: closed at the end, so an operator that refused
    one leaves no "coroutine was never awaited" warning behind (it already failed)."""
    made: list[Any] = []
    yield made
    for coro in made:
        coro.close()


def assert_generation_stopped(server: FakeOpenAIServer, moment: float) -> ServedRequest:
    """The last request stopped generating within one chunk interval of ``moment``."""
    record = server.last_served
    record.wait_stopped(STOP_WAIT)
    late = record.produced_after(moment)
    assert record.stopped, (
        f"the server is still generating {STOP_WAIT} s after the stop:"
        f" {late} chunks produced since, {record.produced} in all, client connected"
        f" (disconnected_at={record.disconnected_at})"
    )
    assert late <= SLACK, f"the server produced {late} chunks after the stop (slack {SLACK})"
    assert record.disconnected_at is not None
    assert not record.completed
    return record


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def async_openai(server: FakeOpenAIServer) -> Any:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as c:
        yield c


async def async_source(
    client: openai.AsyncOpenAI,
    pattern: Pattern,
    coroutines: list[Any],
    messages: Any = MESSAGES,
) -> Any:
    def create() -> Any:
        return client.chat.completions.create(model="m", messages=messages, stream=True)

    if pattern == "stream":
        return await create()
    if pattern == "awaitable":
        coro = create()
        coroutines.append(coro)
        return coro
    return create


def sync_source(client: openai.OpenAI, pattern: Pattern, messages: Any = MESSAGES) -> Any:
    def create() -> Any:
        return client.chat.completions.create(model="m", messages=messages, stream=True)

    return create() if pattern == "stream" else create


# --------------------------------------------------------------------------
# the measurement itself: closing the SDK stream by hand stops the server
# --------------------------------------------------------------------------


async def test_closing_the_sdk_stream_by_hand_stops_the_server(server: FakeOpenAIServer) -> None:
    async with async_openai(server) as client:
        upstream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        for _ in range(3):
            await anext(upstream)
        await upstream.close()
        record = assert_generation_stopped(server, time.monotonic())
    assert 3 <= record.produced < 3 + 2 * SLACK


async def test_without_a_close_the_server_keeps_generating(server: FakeOpenAIServer) -> None:
    # The control: an SDK stream left open keeps the upstream generating.
    async with async_openai(server) as client:
        upstream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        await anext(upstream)
        moment = time.monotonic()
        await asyncio.sleep(10 * INTERVAL)
        assert server.last_served.produced_after(moment) > SLACK
        assert not server.last_served.stopped
        await upstream.close()


# --------------------------------------------------------------------------
# OpenAI, async
# --------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ASYNC_PATTERNS)
async def test_async_budget_cut_stops_the_server(
    server: FakeOpenAIServer, coroutines: list[Any], pattern: Pattern
) -> None:
    async with async_openai(server) as client:
        source = await async_source(client, pattern, coroutines)
        async with so.budget(max_tokens=5)(source) as stream:
            chunks = [chunk async for chunk in stream]
            moment = time.monotonic()
            assert stream.report.stop_reason == "budget"
            # Checked before leaving `async with`: the cut itself closes the source.
            assert_generation_stopped(server, moment)
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert text_of(chunks).startswith("word0 word1")


@pytest.mark.parametrize("pattern", ASYNC_PATTERNS)
async def test_async_break_in_async_with_stops_the_server(
    server: FakeOpenAIServer, coroutines: list[Any], pattern: Pattern
) -> None:
    async with async_openai(server) as client:
        source = await async_source(client, pattern, coroutines)
        async with so.redact()(source) as stream:
            seen = 0
            async for chunk in stream:
                seen += bool(chunk.choices and chunk.choices[0].delta.content)
                if seen == 3:
                    break
        moment = time.monotonic()
        assert_generation_stopped(server, moment)


@pytest.mark.parametrize("pattern", ASYNC_PATTERNS)
async def test_async_break_then_aclose_stops_the_server(
    server: FakeOpenAIServer, coroutines: list[Any], pattern: Pattern
) -> None:
    async with async_openai(server) as client:
        source = await async_source(client, pattern, coroutines)
        stream = (so.redact() | so.budget(max_tokens=500))(source)
        async for _chunk in stream:
            break
        await stream.aclose()
        assert_generation_stopped(server, time.monotonic())


@pytest.mark.parametrize("pattern", ASYNC_PATTERNS)
async def test_async_idle_timeout_stops_the_server(
    server: FakeOpenAIServer, coroutines: list[Any], pattern: Pattern
) -> None:
    async with async_openai(server) as client:
        source = await async_source(client, pattern, coroutines, STALLING)
        async with so.timeout(idle=10 * INTERVAL)(source) as stream:
            with pytest.raises(so.StreamTimeout) as caught:
                async for _chunk in stream:
                    pass
            moment = time.monotonic()
            assert caught.value.limit == "idle"
            assert_generation_stopped(server, moment)
    assert server.last_served.produced == 5  # the role chunk and four words, then the stall


@pytest.mark.parametrize("pattern", ["awaitable", "factory"])
async def test_async_first_chunk_timeout_covers_the_request_and_cancels_it(
    server: FakeOpenAIServer, coroutines: list[Any], pattern: Pattern
) -> None:
    server.headers_delay = HEADERS_DELAY  # the request stalls before its headers
    limit = 10 * INTERVAL
    async with async_openai(server) as client:
        source = await async_source(client, pattern, coroutines)
        stream = so.timeout(first_chunk=limit, idle=limit)(source)
        async with stream:
            with pytest.raises(so.StreamTimeout) as caught:
                async for _chunk in stream:
                    pass
            moment = time.monotonic()
            assert caught.value.limit == "first_chunk"
            record = server.last_served
            record.wait_stopped(STOP_WAIT)
            assert record.disconnected_at is not None, "the request was not cancelled"
            assert record.disconnected_at >= moment - limit
            assert record.call is None  # the model was never reached
            assert record.headers_at is None
    section: Any = stream.report["timeout"]
    # TTFT is counted from the request start: the whole limit was spent waiting on it.
    assert section.fired == "first_chunk"
    assert section.after >= limit


@pytest.mark.parametrize("pattern", ASYNC_PATTERNS)
async def test_async_cancel_token_stops_the_server(
    server: FakeOpenAIServer, coroutines: list[Any], pattern: Pattern
) -> None:
    token = so.CancelToken()
    async with async_openai(server) as client:
        source = await async_source(client, pattern, coroutines)
        async with (so.cancellable(token) | so.redact())(source) as stream:
            seen = 0
            async for chunk in stream:
                seen += bool(chunk.choices and chunk.choices[0].delta.content)
                if seen == 3:
                    token.cancel("stop button")
            moment = time.monotonic()
            assert stream.report.stop_reason == "cancelled"
            assert_generation_stopped(server, moment)


async def test_async_cancel_token_while_waiting_stops_the_server(
    server: FakeOpenAIServer, coroutines: list[Any]
) -> None:
    token = so.CancelToken()
    async with async_openai(server) as client:
        source = await async_source(client, "stream", coroutines, STALLING)
        async with so.cancellable(token)(source) as stream:
            asyncio.get_running_loop().call_later(10 * INTERVAL, token.cancel)
            chunks = [chunk async for chunk in stream]  # ends quietly during the stall
            moment = time.monotonic()
            assert stream.report.stop_reason == "cancelled"
            assert_generation_stopped(server, moment)
    assert text_of(chunks) == "word0 word1 word2 word3"


@pytest.mark.parametrize("pattern", ASYNC_PATTERNS)
async def test_async_task_cancellation_stops_the_server(
    server: FakeOpenAIServer, coroutines: list[Any], pattern: Pattern
) -> None:
    async with async_openai(server) as client:
        source = await async_source(client, pattern, coroutines)
        started = asyncio.Event()

        async def consume() -> None:
            async with so.budget(max_tokens=500)(source) as stream:
                async for _chunk in stream:
                    started.set()

        task = asyncio.create_task(consume())
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if task.done():  # it failed before the first chunk
            task.result()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_generation_stopped(server, time.monotonic())


# --------------------------------------------------------------------------
# OpenAI, sync
# --------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", SYNC_PATTERNS)
def test_sync_budget_cut_stops_the_server(server: FakeOpenAIServer, pattern: Pattern) -> None:
    with (
        openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
        so.budget(max_tokens=5)(sync_source(client, pattern)) as stream,
    ):
        chunks = list(stream)
        moment = time.monotonic()
        assert stream.report.stop_reason == "budget"
        assert_generation_stopped(server, moment)
    assert text_of(chunks).startswith("word0 word1")


@pytest.mark.parametrize("pattern", SYNC_PATTERNS)
def test_sync_break_and_close_stops_the_server(server: FakeOpenAIServer, pattern: Pattern) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        with so.redact()(sync_source(client, pattern)) as stream:
            for n, _chunk in enumerate(stream):
                if n == 3:
                    break
        assert_generation_stopped(server, time.monotonic())


def test_sync_cancel_token_stops_the_server(server: FakeOpenAIServer) -> None:
    token = so.CancelToken()
    with (
        openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
        so.cancellable(token)(sync_source(client, "stream")) as stream,
    ):
        for n, _chunk in enumerate(stream):
            if n == 3:
                token.cancel()
        moment = time.monotonic()
        assert stream.report.stop_reason == "cancelled"
        assert_generation_stopped(server, moment)


# --------------------------------------------------------------------------
# Anthropic
# --------------------------------------------------------------------------


def anthropic_request(client: Any) -> Callable[[], Any]:
    def create() -> Any:
        return client.messages.create(
            model="claude-test", max_tokens=1024, messages=MESSAGES, stream=True
        )

    return create


@pytest.mark.parametrize("pattern", ASYNC_PATTERNS)
async def test_anthropic_async_budget_cut_stops_the_server(
    server: FakeOpenAIServer, coroutines: list[Any], pattern: Pattern
) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=server.root_url, api_key="x", max_retries=0
    ) as client:
        create = anthropic_request(client)
        source: Any = create
        if pattern == "stream":
            source = await create()
        elif pattern == "awaitable":
            source = create()
            coroutines.append(source)
        async with so.budget(max_tokens=5)(source) as stream:
            events = [event async for event in stream]
            moment = time.monotonic()
            assert stream.report.stop_reason == "budget"
            assert_generation_stopped(server, moment)
    assert events[0].type == "message_start"
    assert server.last_served.route == "messages"


async def test_anthropic_async_break_stops_the_server(server: FakeOpenAIServer) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=server.root_url, api_key="x", max_retries=0
    ) as client:
        upstream = await anthropic_request(client)()
        async with so.redact()(upstream) as stream:
            async for event in stream:
                if event.type == "content_block_delta":
                    break
        assert_generation_stopped(server, time.monotonic())


@pytest.mark.parametrize("pattern", SYNC_PATTERNS)
def test_anthropic_sync_budget_cut_stops_the_server(
    server: FakeOpenAIServer, pattern: Pattern
) -> None:
    with anthropic.Anthropic(base_url=server.root_url, api_key="x", max_retries=0) as client:
        create = anthropic_request(client)
        source: Any = create() if pattern == "stream" else create
        with so.budget(max_tokens=5)(source) as stream:
            events = list(stream)
            moment = time.monotonic()
            assert stream.report.stop_reason == "budget"
            assert_generation_stopped(server, moment)
    assert events[0].type == "message_start"
