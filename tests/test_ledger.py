"""Tests for the ledgers: reservation semantics, windows, Redis, concurrency, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from helpers import aiter_of
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis_server import SERVERS, redis_url, running_redis, unused_port

import streamops as so

__all__ = ["redis_url"]  # the fixture, imported so pytest finds it here

ENC = so.get_encoding("cl100k_base")


class Clock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    # More connections than concurrent streams (redis-py 8 defaults to 100 and
    # then fails at once with "Too many connections").
    client = Redis.from_url(redis_url, max_connections=512)
    await client.flushdb()
    yield client
    await client.aclose()


LedgerFactory = Callable[..., so.Ledger]


@pytest.fixture(params=["memory", "redis"])
def make_ledger(request: pytest.FixtureRequest) -> LedgerFactory:
    if request.param == "memory":
        return lambda **kw: so.MemoryLedger(**kw)
    client: Redis = request.getfixturevalue("redis_client")
    # These tests are about exact accounting, not latency: a loaded CI machine
    # must not turn a slow round trip into LedgerUnavailableError.
    return lambda **kw: so.RedisLedger(client, **{"timeout": 10.0, **kw})


async def test_reserve_grants_at_most_what_is_left(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger(limit=1000)
    first = await ledger.reserve("u", 600)
    second = await ledger.reserve("u", 600)
    third = await ledger.reserve("u", 600)
    assert (first.tokens, second.tokens, third.tokens) == (600, 400, 0)
    await ledger.refund(first, 250)
    assert await ledger.spent("u") == 750
    assert await ledger.spent("other") == 0
    await ledger.refund(first, 10_000)  # never below zero
    assert await ledger.spent("u") == 0


async def test_windows_start_fresh_and_refunds_go_to_their_bucket(
    make_ledger: LedgerFactory,
) -> None:
    clock = Clock(datetime(2030, 1, 1, 23, 30, tzinfo=UTC))
    ledger = make_ledger(limit=100, window="hour", clock=clock)
    grant = await ledger.reserve("u", 80)
    assert grant.bucket.endswith("u:2030-01-01T23")
    clock.now += 3600  # next hour, next day
    assert await ledger.spent("u") == 0
    assert (await ledger.reserve("u", 100)).tokens == 100
    await ledger.refund(grant, 30)
    clock.now -= 3600
    assert await ledger.spent("u") == 50
    daily = make_ledger(limit=100, window="day", clock=clock)
    assert (await daily.reserve("d", 1)).bucket.endswith("d:2030-01-01")


async def test_redis_keys_expire_after_their_window(redis_client: Redis) -> None:
    ledger = so.RedisLedger(redis_client, limit=10, window="hour", prefix="t:")
    grant = await ledger.reserve("u", 5)
    ttl = await redis_client.ttl(grant.bucket)
    assert 3600 < ttl <= 7200
    plain = so.RedisLedger(redis_client, limit=10, prefix="t:")
    grant = await plain.reserve("v", 5)
    assert await redis_client.ttl(grant.bucket) == -1


async def test_unreachable_redis_is_a_clear_error() -> None:
    # No retries: the ledger must report the failure, not the client's backoff.
    client = Redis(port=unused_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    ledger = so.RedisLedger(client, limit=10)
    try:
        with pytest.raises(so.LedgerUnavailableError, match="unreachable during reserve"):
            await ledger.reserve("u", 1)
        with pytest.raises(ConnectionError):
            await ledger.spent("u")
    finally:
        await client.aclose()


@contextlib.contextmanager
def _paused(url: str) -> Iterator[None]:
    """Freeze the redis-server process: connections are accepted, nothing is answered."""
    pid = SERVERS[url].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_hung_redis_times_out(redis_url: str, redis_client: Redis) -> None:
    loop = asyncio.get_running_loop()
    ledger = so.RedisLedger(redis_client, limit=100, timeout=0.2)
    own = so.RedisLedger.from_url(redis_url, limit=100, timeout=0.2)
    try:
        with _paused(redis_url):
            for lg in (ledger, own):
                start = loop.time()
                with pytest.raises(
                    so.LedgerUnavailableError, match=r"reserve: no answer within 0\.2s"
                ):
                    await lg.reserve("u", 1)
                assert loop.time() - start < 2
            # fail_open takes over instead of blocking the stream forever
            op = so.budget(max_tokens=3, ledger=ledger, key="k", fail_open=True)
            async with op(aiter_of(["one two", " three four"])) as stream:
                assert await stream.text() == "one two three"
            assert any(e.kind == "budget.ledger_unavailable" for e in stream.report.events)
    finally:
        await own.client.aclose()


async def test_redis_refund_never_creates_a_key_without_expiry(redis_client: Redis) -> None:
    ledger = so.RedisLedger(redis_client, limit=10, window="hour", prefix="r:")
    grant = await ledger.reserve("u", 5)
    await redis_client.delete(grant.bucket)  # the window's key expired meanwhile
    await ledger.refund(grant, 5)
    assert await redis_client.exists(grant.bucket) == 0
    grant = await ledger.reserve("u", 5)
    await ledger.refund(grant, 5)  # refunded down to zero: no key left behind
    assert await redis_client.exists(grant.bucket) == 0


async def test_memory_ledger_drops_expired_windows() -> None:
    clock = Clock(datetime(2030, 1, 1, 0, 30, tzinfo=UTC))
    ledger = so.MemoryLedger(limit=100, window="hour", clock=clock)
    for _ in range(48):  # two days of hourly buckets for two keys
        await ledger.reserve("a", 5)
        await ledger.reserve("b", 5)
        clock.now += 3600
    assert len(ledger) <= 2 * 3  # only buckets at most two windows old are kept
    old = await ledger.reserve("a", 5)
    await ledger.refund(old, 5)
    assert len(ledger) <= 2 * 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"limit": -1}, "limit must be"),
        ({"limit": 10, "window": "week"}, "window must be"),
    ],
)
def test_bad_ledger_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        so.MemoryLedger(**kwargs)  # type: ignore[arg-type]


async def test_bad_ledger_calls() -> None:
    ledger = so.MemoryLedger(limit=10)
    with pytest.raises(ValueError, match="key must be a non-empty str"):
        await ledger.reserve("", 1)
    with pytest.raises(ValueError, match="tokens must be"):
        await ledger.reserve("u", -1)


# -- many streams against one key ------------------------------------------------

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "12", "日本"]
N_STREAMS = 200


def _reply(rng: random.Random) -> list[str]:
    return [" " + rng.choice(WORDS) for _ in range(rng.randint(5, 60))]


async def _run_streams(
    ledger: so.Ledger, *, block: int, cancel_some: bool
) -> tuple[list[str], list[so.BudgetUsage]]:
    """Run 200 concurrent streams; return the text each consumer received, and the usages.

    With ``cancel_some``, every third consumer leaves after its first piece
    (``break``), and every fifth task is cancelled twice right after it
    received its first piece (a second cancellation lands during cleanup).
    """
    rng = random.Random(7)
    op = so.budget(ledger=ledger, key="tenant", block=block)
    received = [""] * N_STREAMS
    usages: list[so.BudgetUsage] = []

    async def source(chunks: list[str]) -> AsyncIterator[str]:
        for chunk in chunks:
            await asyncio.sleep(0)
            yield chunk

    async def one(i: int, chunks: list[str], first: asyncio.Event) -> None:
        stream = op(source(chunks))
        usage = stream.report["budget"]
        assert isinstance(usage, so.BudgetUsage)
        usages.append(usage)
        try:
            async with stream:
                async for piece in stream:
                    received[i] += piece
                    first.set()
                    if cancel_some and i % 3 == 0:
                        break
                    await asyncio.sleep(0)
        finally:
            first.set()  # (a stream that got nothing is not waited for)

    async def cancel_twice(task: asyncio.Task[None], first: asyncio.Event) -> None:
        await first.wait()
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()

    tasks = []
    cancellers = []
    for i in range(N_STREAMS):
        first = asyncio.Event()
        task = asyncio.create_task(one(i, _reply(rng), first))
        tasks.append(task)
        if cancel_some and i % 5 == 1:
            cancellers.append(asyncio.create_task(cancel_twice(task, first)))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*cancellers)
    for result in results:
        assert result is None or isinstance(result, asyncio.CancelledError)
    if cancel_some:
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) > 10
    return received, usages


@pytest.mark.parametrize("cancel_some", [False, True], ids=["complete", "cancelled"])
async def test_concurrent_streams_spend_exactly_what_consumers_received(
    make_ledger: LedgerFactory, cancel_some: bool
) -> None:
    budget, block = 3000, 16
    ledger = make_ledger(limit=budget)
    received, usages = await _run_streams(ledger, block=block, cancel_some=cancel_some)
    spent = await ledger.spent("tenant")
    # The ledger never grants past the limit, so it is never overspent.
    assert spent <= budget
    # Every stream is charged for the text its consumer received, nothing more:
    # what was reserved and not released went back, however the stream ended.
    # (A stream cut by the shared budget is charged its allowance, which its
    # text may fall short of by the part of a token backed off to a character.)
    assert spent == sum(u.completion_tokens for u in usages)
    got = sorted(so.count_tokens(t) for t in received)
    charged = sorted(u.completion_tokens for u in usages)
    assert got == charged
    assert spent > budget // 2  # and the budget was actually used


async def test_cancelled_streams_lose_no_tokens(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger(limit=100_000)
    received, usages = await _run_streams(ledger, block=32, cancel_some=True)
    assert await ledger.spent("tenant") == sum(so.count_tokens(t) for t in received)
    assert all(u.ledger_reserved - u.ledger_refunded == u.completion_tokens for u in usages)


async def _spent_after(run: Callable[[], Awaitable[None]], ledger: so.Ledger) -> int:
    await run()
    return await ledger.spent("k")


async def test_redis_budget_end_to_end(redis_client: Redis) -> None:
    ledger = so.RedisLedger(redis_client, limit=5)
    op = so.budget(ledger=ledger, key="k", block=2)

    async def run() -> None:
        async def source() -> AsyncIterator[str]:
            for word in ["one", "two", "three", "four", "five", "six", "seven"]:
                yield " " + word

        async with op(source()) as stream:
            assert await stream.text() == " one two three four five"

    assert await _spent_after(run, ledger) == 5


# -- faults on a real server -------------------------------------------------------
#
# Each fault is injected into a real redis-server: a frozen process (SIGSTOP:
# connections are accepted, nothing is answered) for a delayed or hung reply,
# CONFIG/REPLICAOF for server errors, SIGKILL for a dead server.


async def _warm(ledger: so.RedisLedger) -> None:
    """Load the scripts and leave an idle connection, so a reservation is sent at once."""
    await ledger.reserve("warm-up", 0)
    await ledger.cancel("warm-up")


async def _received_and_spent(
    op: so.Operator[str, str], chunks: list[str], ledger: so.Ledger
) -> tuple[str, int]:
    async with op(aiter_of(chunks)) as stream:
        text = await stream.text()
    return text, await ledger.spent("k")


@contextlib.asynccontextmanager
async def _not_redis() -> AsyncIterator[str]:
    """A TCP service on a free port that answers everything with an HTTP error."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(1024)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def _faulty(fault: str, redis_url: str, client: Redis) -> AsyncIterator[so.RedisLedger]:
    """A ledger whose server fails with ``fault``; the shared server is restored after."""
    if fault == "not-redis":
        async with _not_redis() as url:
            ledger = so.RedisLedger.from_url(url, limit=100)
            try:
                yield ledger
            finally:
                await ledger.client.aclose()
        return
    if fault == "wrong-db":
        ledger = so.RedisLedger.from_url(redis_url.rsplit("/", 1)[0] + "/99", limit=100)
        try:
            yield ledger
        finally:
            await ledger.client.aclose()
        return
    ledger = so.RedisLedger(client, limit=100)
    await _warm(ledger)
    if fault == "read-only":  # a failover left us talking to a replica
        await client.replicaof("127.0.0.1", unused_port())
        restore: Awaitable[object] = client.replicaof("NO", "ONE")
    else:  # out of memory, nothing may be evicted
        assert fault == "oom"
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", "1")
        restore = client.config_set("maxmemory", "0")
    try:
        yield ledger
    finally:
        await restore


FAULTS = ["read-only", "oom", "wrong-db", "not-redis"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_redis_server_errors_are_ledger_unavailable(
    fault: str, redis_url: str, redis_client: Redis
) -> None:
    async with _faulty(fault, redis_url, redis_client) as ledger:
        with pytest.raises(so.LedgerUnavailableError, match="during reserve") as info:
            await ledger.reserve("k", 1)
        assert isinstance(info.value.__cause__, (RedisError, OSError))
        assert not info.value.retryable
        with pytest.raises(so.LedgerUnavailableError, match="during cancel"):
            await ledger.cancel("some-rid")
        if fault in ("wrong-db", "not-redis"):  # (reads still work on a replica, or when full)
            with pytest.raises(so.LedgerUnavailableError, match="during spent"):
                await ledger.spent("k")


@pytest.mark.parametrize("fault", FAULTS)
async def test_redis_server_errors_honour_fail_open(
    fault: str, redis_url: str, redis_client: Redis
) -> None:
    chunks = ["one two", " three four"]
    async with _faulty(fault, redis_url, redis_client) as ledger:
        closed = so.budget(max_tokens=3, ledger=ledger, key="k")
        with pytest.raises(so.LedgerUnavailableError):
            await _received_and_spent(closed, chunks, ledger)
        op = so.budget(max_tokens=3, ledger=ledger, key="k", fail_open=True)
        async with op(aiter_of(chunks)) as stream:
            assert await stream.text() == "one two three"
        assert any(e.kind == "budget.ledger_unavailable" for e in stream.report.events)


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "open"])
async def test_a_killed_server_fails_closed_or_open_mid_stream(fail_open: bool) -> None:
    with running_redis() as url:
        ledger = so.RedisLedger.from_url(url, limit=1000, timeout=0.5)
        op = so.budget(max_tokens=50, ledger=ledger, key="k", block=1, fail_open=fail_open)
        gate = asyncio.Event()

        async def source() -> AsyncIterator[str]:
            yield "one two"
            await gate.wait()
            yield " three four five"

        try:
            async with op(source()) as stream:
                await stream.__anext__()
                SERVERS[url].kill()
                SERVERS[url].wait()
                gate.set()
                if fail_open:  # unmetered, under the local limit
                    assert await stream.text() == "one two three four five"
                else:
                    with pytest.raises(so.LedgerUnavailableError, match="unreachable"):
                        await stream.text()
        finally:
            await ledger.client.aclose()
    events = [e.kind for e in stream.report.events]
    assert "budget.ledger_unavailable" in events
    assert "budget.refund_failed" in events  # what could not be given back stays spent


async def test_200_streams_share_a_ledger_from_url_with_its_default_pool(redis_url: str) -> None:
    ledger = so.RedisLedger.from_url(redis_url, limit=3000, prefix="pool:")
    try:
        received, usages = await _run_streams(ledger, block=16, cancel_some=False)
        spent = await ledger.spent("tenant")
        assert spent == sum(so.count_tokens(t) for t in received)
        assert spent == sum(u.completion_tokens for u in usages)
        assert all(u.ledger_error is None for u in usages)
        assert spent > 3000 // 2
    finally:
        await ledger.client.aclose()


async def test_cancelling_a_stream_while_its_reservation_is_in_flight_charges_nothing(
    redis_url: str, redis_client: Redis
) -> None:
    ledger = so.RedisLedger(redis_client, limit=1000, timeout=None)
    await _warm(ledger)
    op = so.budget(ledger=ledger, key="k", block=64)
    task = asyncio.create_task(_received_and_spent(op, ["Hello world"], ledger))
    with _paused(redis_url):
        await asyncio.sleep(0.05)  # the reservation is on the wire; no answer comes
        task.cancel()
        await asyncio.sleep(0.05)  # the stream's cancellation of it is on the wire too
    with pytest.raises(asyncio.CancelledError):
        await task
    # The server ran the reservation after all; it was cancelled, in either order.
    assert await ledger.spent("k") == 0


async def test_a_reservation_that_timed_out_is_cancelled_when_the_stream_ends(
    redis_url: str, redis_client: Redis
) -> None:
    ledger = so.RedisLedger(redis_client, limit=1000, timeout=0.2)
    await _warm(ledger)
    gate = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        yield "Hello world"
        await gate.wait()
        yield " again"

    op = so.budget(max_tokens=100, ledger=ledger, key="k", block=64, fail_open=True)
    async with op(source()) as stream:
        with _paused(redis_url):  # a delayed reply: later than the 0.2 s timeout
            assert await stream.__anext__() == "Hello world"  # unmetered: fail open
        gate.set()
        assert await stream.text() == "Hello world again"
    assert any(e.kind == "budget.ledger_unavailable" for e in stream.report.events)
    # The reservation that timed out was granted once the server woke up, and
    # cancelled when the stream ended: nothing stays charged.
    assert await ledger.spent("k") == 0


async def test_a_hung_redis_without_timeout_cannot_block_a_cancelled_stream(
    redis_url: str, redis_client: Redis
) -> None:
    ledger = so.RedisLedger(redis_client, limit=1000, timeout=None)
    await _warm(ledger)
    gate = asyncio.Event()
    got = asyncio.Event()
    streams: list[so.AsyncStream[str]] = []

    async def source() -> AsyncIterator[str]:
        yield "Hello world"
        await gate.wait()

    async def consume() -> None:
        op = so.budget(ledger=ledger, key="k", block=64, cleanup_timeout=0.2)
        async with op(source()) as stream:
            streams.append(stream)
            async for _ in stream:
                got.set()

    task = asyncio.create_task(consume())
    await got.wait()
    with _paused(redis_url):
        task.cancel()  # its refund gets no answer
        done, _ = await asyncio.wait({task}, timeout=5)  # (a bound, not a timing claim)
        assert task in done
    with pytest.raises(asyncio.CancelledError):
        await task
    events = [e.kind for e in streams[0].report.events]
    assert "budget.refund_failed" in events


@pytest.mark.parametrize("client", ["redis://127.0.0.1:6379/0", None, 42])
def test_redis_ledger_given_no_client_says_how_to_make_one(client: Any) -> None:
    with pytest.raises(TypeError, match=r"RedisLedger\.from_url\(url, limit=\.\.\.\)"):
        so.RedisLedger(client, limit=10)


async def test_a_cancel_while_settling_never_raises_the_count_above_the_charge() -> None:
    # 'mu theta theta lambda' is 4 tokens; ' lambd' alone is 2. The consumer
    # leaves while the stream settles before its last piece: the report may
    # drop that piece, never count more than the ledger charged.
    class SlowRefunds(so.MemoryLedger):
        async def refund(self, reservation: Any, tokens: int) -> None:
            await asyncio.sleep(0.05)
            await super().refund(reservation, tokens)

    ledger = SlowRefunds(limit=11)
    stream = so.budget(ledger=ledger, key="k", block=8)(
        aiter_of(["mu", " theta", " theta", " lam", "bda"])
    )

    async def consume() -> None:
        async with stream:
            async for _ in stream:
                pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.completion_tokens <= 4
    assert usage.completion_tokens == usage.ledger_reserved - usage.ledger_refunded


# -- a ledger cut stops the stream where the budget without one does ---------------


@pytest.mark.parametrize(
    ("limit", "channels"), [(3, ["content"]), (2, None), (2, ["content", "tool_arguments"])]
)
def test_a_ledger_cut_stops_the_stream_at_once(limit: int, channels: list[str] | None) -> None:
    # With no headroom left in the ledger, a chunk whose text needed no more than
    # the allowance but could need more left the allowance open: the channel held
    # its tail waiting for more, and the rest of the stream (a tool call's header
    # and arguments, uncounted) went through; the cut came only at the end, after
    # every chunk was pulled. Without a ledger the stream stops at the cut.
    from helpers import chat_arguments, chat_stream, chat_text

    raw = chat_stream([("content", ["The answer ", "is 42."])], tool_args=['{"q": "we', 'ather"}'])

    def run(budget: so.Operator[Any, Any]) -> tuple[Any, ...]:
        pulled: list[Any] = []

        async def source() -> AsyncIterator[Any]:
            for chunk in raw:
                pulled.append(chunk)
                yield chunk

        async def main() -> tuple[Any, ...]:
            stream = budget(source())
            out = [c async for c in stream]
            tools = [c for c in out if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
            return (chat_text(out, "content"), chat_arguments(out), len(tools),
                    stream.report.stop_reason, len(pulled))  # fmt: skip

        return asyncio.run(main())

    ledger = so.MemoryLedger(limit=limit)
    with_ledger = run(so.budget(ledger=ledger, key="k", channels=channels))
    local = run(so.budget(max_tokens=limit, channels=channels))
    assert with_ledger == local
    assert local[2:4] == (0, so.StopReason.BUDGET)
    assert asyncio.run(ledger.spent("k")) == limit
