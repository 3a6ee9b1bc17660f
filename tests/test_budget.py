"""Tests for so.budget: exact truncation, clean stop, raise mode, warnings, cost, usage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import aiter_of

import streamops as so
from streamops.testing import Chunking

ENC = so.get_encoding("cl100k_base")
TEXT = "The quick brown fox jumps over the lazy dog. It's 12345 times faster! 😀 日本語 end."


def prefix(text: str, limit: int) -> str:
    tokens = ENC.encode_ordinary(text)
    return ENC.decode_bytes(tokens[:limit]).decode("utf-8", "ignore")


@pytest.mark.parametrize("size", [1, 3, 4, 11, 1000])
@pytest.mark.parametrize("limit", [0, 1, 5, 12, 19])
def test_output_is_the_text_of_the_first_tokens(size: int, limit: int) -> None:
    chunks = [TEXT[i : i + size] for i in range(0, len(TEXT), size)]
    stream = so.budget(max_tokens=limit)(chunks)
    assert "".join(stream) == prefix(TEXT, limit)
    assert stream.report.stop_reason == so.StopReason.BUDGET
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.exhausted
    assert usage.completion_tokens == limit


def test_a_four_token_budget_stops_after_the_fourth_token() -> None:
    stream = so.budget(max_tokens=4)(["The quick brown", " fox jumps"])
    assert stream.text() == "The quick brown fox"


def test_within_budget_passes_everything_through_unchanged() -> None:
    chunks = ["Hello", ", wor", "ld"]
    stream = so.budget(max_tokens=100)(chunks)
    assert list(stream) == chunks  # far from the limit nothing is held back
    assert stream.report.stop_reason == so.StopReason.COMPLETE
    assert stream.report["budget"].model_dump()["completion_tokens"] == 3


def test_a_token_that_splits_a_character_is_backed_off() -> None:
    text = "a🤖b"
    tokens = ENC.encode_ordinary(text)
    assert len(tokens) > 3  # the emoji takes several byte tokens
    assert so.budget(max_tokens=2)([text]).text() == "a"


def test_text_is_released_as_soon_as_it_is_certain() -> None:
    stream = so.budget(max_tokens=10)(iter(["Hello", " there", " my", " friend", " and", " more"]))
    assert next(stream) == "Hello"
    assert next(stream) == " there"


def _counting_source(chunks: list[str], log: dict[str, Any]) -> Iterator[str]:
    try:
        for chunk in chunks:
            log["pulled"] += 1
            yield chunk
    finally:
        log["finally"] = True


def _first_exceeding(chunks: list[str], limit: int) -> int:
    for k in range(1, len(chunks) + 1):
        if len(ENC.encode_ordinary("".join(chunks[:k]))) > limit:
            return k
    raise AssertionError("never exceeds")


def test_upstream_is_closed_right_after_the_budget_is_reached() -> None:
    chunks = [f" word{i}" for i in range(100)]
    log = {"pulled": 0, "finally": False}
    stream = so.budget(max_tokens=20)(_counting_source(chunks, log))
    out = stream.text()
    assert out == prefix("".join(chunks), 20)
    assert log["finally"]
    assert log["pulled"] <= _first_exceeding(chunks, 20) + 1


def test_fake_model_is_closed_after_at_most_one_more_chunk() -> None:
    reply = " ".join(f"token{i}" for i in range(200))
    model = so.FakeStreamingModel(reply, chunking="word")
    chunks = Chunking.words().split(reply)
    stream = so.budget(max_tokens=30)(model.stream("prompt"))
    assert stream.text() == prefix(reply, 30)
    call = model.calls[0]
    assert call.finalized
    assert call.closed_early
    assert call.pulled <= _first_exceeding(chunks, 30) + 1


async def test_async_stream_closes_upstream() -> None:
    log = {"pulled": 0, "finally": False}

    async def source() -> AsyncIterator[str]:
        try:
            for i in range(100):
                log["pulled"] += 1
                yield f" word{i}"
        finally:
            log["finally"] = True

    async with so.budget(max_tokens=5)(source()) as stream:
        out = await stream.text()
    assert out == prefix("".join(f" word{i}" for i in range(100)), 5)
    assert log["finally"]
    assert log["pulled"] <= 4
    assert stream.report.stop_reason == "budget"


def test_raise_mode_carries_released_and_remainder() -> None:
    stream = so.budget(max_tokens=6, on_exhausted="raise")(iter(TEXT.split(" ")))
    received: list[str] = []

    def consume() -> None:
        for piece in stream:
            received.append(piece)

    with pytest.raises(so.BudgetExceededError) as info:
        consume()
    exc = info.value
    assert isinstance(exc, so.StreamOpsError)
    assert exc.released == "".join(received)
    assert exc.released + exc.remainder == prefix("".join(TEXT.split(" ")), 6)
    assert exc.limit == 6
    assert stream.report.stop_reason == "budget"


def test_warning_event_once_at_the_threshold() -> None:
    events: list[so.Event] = []
    stream = so.budget(max_tokens=10, warn_at=0.5)(TEXT.split(" "), on_event=events.append)
    stream.text()
    warnings = [e for e in events if e.kind == "budget.warning"]
    assert len(warnings) == 1
    assert warnings[0].data["limit"] == 10
    assert warnings[0].data["tokens"] >= 5
    assert [e.kind for e in events].count("budget.exhausted") == 1
    assert stream.report["budget"].model_dump()["warned"] is True


def test_no_warning_below_the_threshold() -> None:
    stream = so.budget(max_tokens=100, warn_at=0.9)(["short text"])
    stream.text()
    assert not any(e.kind == "budget.warning" for e in stream.report.events)


def test_max_cost_counts_prompt_and_completion() -> None:
    price = so.ModelPrice(input_per_million=1_000_000, output_per_million=2_000_000)
    # 10 spent on 10 prompt tokens leaves 10 for output at 2 per token: 5 tokens.
    stream = so.budget(max_cost=20, pricing=price, prompt_tokens=10)(TEXT.split(" "))
    assert stream.text() == prefix("".join(TEXT.split(" ")), 5)
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.limit == 5
    assert usage.total_tokens == 15
    assert usage.cost == pytest.approx(20.0)


def test_max_tokens_and_max_cost_take_the_smaller() -> None:
    op = so.budget(max_tokens=3, max_cost=1.0, model="gpt-4", prompt="hello")
    stream = op(["one two three four five"])
    usage = stream.report["budget"]
    stream.text()
    assert isinstance(usage, so.BudgetUsage)
    assert usage.limit == 3
    assert usage.prompt_tokens == 1
    assert usage.cost == pytest.approx(so.DEFAULT_PRICES.price("gpt-4").cost(
        prompt_tokens=1, completion_tokens=3
    ))  # fmt: skip


def test_provider_usage_is_recorded_and_compared() -> None:
    stream = so.budget(max_tokens=50)(["Hello world"])
    stream.text()
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.usage_mismatch is None
    usage.record_provider_usage(prompt_tokens=3, completion_tokens=5)
    assert usage.model_dump()["usage_mismatch"] is True
    assert usage.provider == so.ProviderUsage(prompt_tokens=3, completion_tokens=5)
    assert usage.provider.total == 8
    assert so.ProviderUsage(prompt_tokens=3).total is None
    assert so.ProviderUsage(total_tokens=9).total == 9
    data = json.loads(stream.report.to_json())["sections"]["budget"]
    assert data["usage_mismatch"] is True
    assert data["provider"]["completion_tokens"] == 5


def test_a_model_tiktoken_does_not_know_uses_the_default_encoding() -> None:
    price = so.ModelPrice(input_per_million=0, output_per_million=1)
    stream = so.budget(max_tokens=2, model="my-model", pricing=price)(["a b c"])
    assert stream.text() == "a b"
    assert stream.report["budget"].model_dump()["encoding"] == "cl100k_base"


def test_the_encoding_follows_the_model() -> None:
    # cl100k_base without a model (the contract's default); the model's own
    # encoding when tiktoken knows it (issue 18: o200k_base is offline now).
    plain = so.budget(max_tokens=5)(["Hello world"])
    assert plain.text() == "Hello world"
    assert plain.report["budget"].model_dump()["encoding"] == "cl100k_base"
    stream = so.budget(max_tokens=5, model="gpt-4o")(["Hello world"])
    assert stream.text() == "Hello world"
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.encoding == "o200k_base"
    assert usage.cost == so.DEFAULT_PRICES.price("gpt-4o").cost(completion_tokens=2)
    auto = so.budget(max_tokens=5, model="gpt-4", encoding="auto")(["Hello world"])
    auto.text()
    assert auto.report["budget"].model_dump()["encoding"] == "cl100k_base"


def test_one_encoding_resolver() -> None:
    assert so.resolve_encoding() is ENC
    assert so.resolve_encoding(None, model="gpt-4o") is so.get_encoding("o200k_base")
    assert so.resolve_encoding(None, model="my-model") is ENC
    assert so.resolve_encoding("auto", model="gpt-4") is ENC
    assert so.get_encoding(model="gpt-4") is so.resolve_encoding("auto", model="gpt-4")
    assert so.get_encoding(model="gpt-4o").name == "o200k_base"


def test_usage_counts_what_was_released_when_the_consumer_leaves() -> None:
    price = so.ModelPrice(input_per_million=0, output_per_million=1_000_000)
    op = so.budget(max_tokens=1000, pricing=price, prompt_tokens=0)
    stream = op(iter(["Hello world", " and more", " text here"]))
    received = next(stream) + next(stream)
    stream.close()
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert stream.report.stop_reason == so.StopReason.CLOSED
    assert usage.completion_tokens == so.count_tokens(received) == 4
    assert usage.cost == pytest.approx(4.0)


async def test_usage_counts_what_was_released_when_cancelled() -> None:
    got = asyncio.Event()
    received: list[str] = []

    async def slow() -> AsyncIterator[str]:
        yield "Hello world"
        await asyncio.sleep(3600)
        yield " never"

    async def consume() -> None:
        async with so.budget(max_tokens=100, model="gpt-4o")(slow()) as stream:
            streams.append(stream)
            async for piece in stream:
                received.append(piece)
                got.set()

    streams: list[so.AsyncStream[str]] = []
    task = asyncio.create_task(consume())
    await got.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    usage = streams[0].report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert received == ["Hello world"]
    assert usage.completion_tokens == 2
    assert usage.cost == so.DEFAULT_PRICES.price("gpt-4o").cost(completion_tokens=2)


class _TakeOne:
    """A processor that passes one item on and is then done."""

    done = False

    def feed(self, item: str) -> list[str]:
        self.done = True
        return [item]

    def close(self) -> list[str]:
        return []


def test_usage_when_a_later_operator_stops_first() -> None:
    take_one: so.Operator[str, str] = so.Operator.from_processor(lambda report: _TakeOne())
    stream = (so.budget(max_tokens=100) | take_one)(iter(["Hello world", " more", " text"]))
    assert stream.text() == "Hello world"
    assert stream.report["budget"].model_dump()["completion_tokens"] == 2


def test_operator_is_reusable_and_composes() -> None:
    op = so.identity() | so.budget(max_tokens=2)
    assert op(["a b c d"]).text() == "a b"
    assert op(["x y z"]).text() == "x y"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "needs max_tokens, max_cost or ledger"),
        ({"max_tokens": -1}, ValueError, "max_tokens must be a non-negative int"),
        ({"max_tokens": True}, TypeError, "max_tokens must be an int"),
        ({"max_tokens": 5, "on_exhausted": "stop"}, ValueError, "on_exhausted"),
        ({"max_tokens": 5, "warn_at": 1.5}, ValueError, "warn_at"),
        ({"max_tokens": 5, "block": 0}, ValueError, "block must be"),
        ({"max_tokens": 5, "key": "k"}, ValueError, "only meaningful with ledger"),
        ({"max_tokens": 5, "ledger": so.MemoryLedger(limit=5)}, ValueError, "needs key="),
        ({"max_tokens": 5, "ledger": object(), "key": "k"}, TypeError, "must implement Ledger"),
        ({"max_cost": 1.0}, so.PricingError, "max_cost needs a price"),
        ({"max_cost": -1.0, "model": "gpt-4o"}, ValueError, "max_cost must be"),
        ({"max_cost": 1.0, "model": "unknown-model"}, so.PricingError, "no price for model"),
        ({"max_tokens": 5, "pricing": {"a": 1}}, TypeError, "pricing must be"),
        ({"max_tokens": 5, "prompt": "a", "prompt_tokens": 1}, ValueError, "not both"),
        ({"max_tokens": 5, "encoding": "nope"}, so.EncodingUnavailableError, "unknown tiktoken"),
        ({"max_tokens": 5, "name": ""}, ValueError, "name must be"),
        (
            {"max_tokens": 5, "model": "my-model", "encoding": "auto"},
            so.EncodingUnavailableError,
            "does not know",
        ),
        ({"max_tokens": 5, "encoding": "auto"}, ValueError, "needs model="),
        ({"max_tokens": 5, "encoding": 5}, TypeError, "encoding must be"),
        (
            {"max_tokens": 5, "prompt_tokens": -2},
            ValueError,
            "prompt_tokens must be a non-negative",
        ),
    ],
)
def test_bad_options_fail_at_construction(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        so.budget(**kwargs)


def test_wrong_chunk_type_is_a_chunk_type_error() -> None:
    with pytest.raises(so.ChunkTypeError):
        list(so.budget(max_tokens=5)([3]))


def test_price_table_files(tmp_path: Path) -> None:
    json_file = tmp_path / "prices.json"
    json_file.write_text(
        json.dumps({"models": {"m": {"input_per_million": 1, "output_per_million": 2}}})
    )
    toml_file = tmp_path / "prices.toml"
    toml_file.write_text(
        'as_of = "2030-01"\n[models."m"]\ninput_per_million = 3\noutput_per_million = 4\n'
    )
    assert so.PriceTable.from_file(json_file).price("m-2024").output_per_million == 2
    table = so.PriceTable.from_file(toml_file)
    assert table.as_of == "2030-01"
    merged = so.DEFAULT_PRICES.merged(table)
    assert merged.price("m").input_per_million == 3
    assert merged.price("gpt-4o") == so.DEFAULT_PRICES.price("gpt-4o")


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("p.json", "{not json", "not valid json"),
        ("p.toml", "= broken", "not valid toml"),
        ("p.yaml", "models: {}", "must end in .json or .toml"),
        ("p.json", '{"models": {"m": {"input_per_million": -1}}}', "is invalid"),
    ],
)
def test_bad_price_files_are_clear_errors(
    tmp_path: Path, name: str, content: str, match: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(so.PricingError, match=match):
        so.PriceTable.from_file(path)


def test_missing_price_file() -> None:
    with pytest.raises(so.PricingError, match="cannot read price file"):
        so.PriceTable.from_file("/nonexistent/prices.json")


# -- ledger-backed budgets (more in tests/test_ledger.py) ----------------------


async def test_ledger_budget_cuts_at_the_shared_limit_and_refunds() -> None:
    ledger = so.MemoryLedger(limit=7)
    op = so.budget(ledger=ledger, key="user", block=4)
    chunks = TEXT.split(" ")
    async with op(aiter_of(chunks)) as stream:
        out = await stream.text()
    assert out == prefix("".join(chunks), 7)
    assert await ledger.spent("user") == 7
    async with op(aiter_of(chunks)) as stream:
        assert await stream.text() == ""
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.exhausted


async def test_ledger_budget_refunds_unused_reservation() -> None:
    ledger = so.MemoryLedger(limit=1000)
    op = so.budget(max_tokens=500, ledger=ledger, key="user", block=100)
    async with op(aiter_of(["Hello", " world"])) as stream:
        assert await stream.text() == "Hello world"
    assert await ledger.spent("user") == 2
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.ledger_reserved - usage.ledger_refunded == 2


def test_ledger_budget_refuses_sync_streams() -> None:
    op = so.budget(ledger=so.MemoryLedger(limit=10), key="k")
    with pytest.raises(TypeError, match="async streams only"):
        op(["a"])


class _DownLedger:
    async def reserve(
        self, key: str, tokens: int, *, extra: int = 0, rid: str | None = None
    ) -> so.Reservation:
        raise so.LedgerUnavailableError("ledger is down")

    async def cancel(self, rid: str) -> None:
        raise so.LedgerUnavailableError("ledger is down")

    async def refund(self, reservation: so.Reservation, tokens: int) -> None:
        raise so.LedgerUnavailableError("ledger is down")

    async def spent(self, key: str) -> int:
        raise so.LedgerUnavailableError("ledger is down")


async def test_unreachable_ledger_fails_closed() -> None:
    op = so.budget(max_tokens=50, ledger=_DownLedger(), key="k")
    with pytest.raises(so.LedgerUnavailableError, match="down"):
        async with op(aiter_of(["Hello", " world"])) as stream:
            await stream.text()


async def test_unreachable_ledger_can_fail_open() -> None:
    op = so.budget(max_tokens=3, ledger=_DownLedger(), key="k", fail_open=True)
    async with op(aiter_of(["one two", " three four"])) as stream:
        assert await stream.text() == "one two three"
    assert any(e.kind == "budget.ledger_unavailable" for e in stream.report.events)


async def test_cancelled_ledger_stream_charges_what_it_released() -> None:
    ledger = so.MemoryLedger(limit=10_000)
    got = asyncio.Event()
    received: list[str] = []

    async def slow() -> AsyncIterator[str]:
        yield "Hello world"
        await asyncio.sleep(3600)
        yield " never"

    async def consume() -> None:
        async with so.budget(ledger=ledger, key="k", block=64)(slow()) as stream:
            async for piece in stream:
                received.append(piece)
                got.set()

    task = asyncio.create_task(consume())
    await got.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert received == ["Hello world"]
    assert await ledger.spent("k") == so.count_tokens("Hello world") == 2


class _HoldAll:
    """A processor that releases nothing until the end (so the consumer gets nothing)."""

    done = False

    def feed(self, item: str) -> list[str]:
        return []

    def close(self) -> list[str]:
        return ["<end>"]


async def test_ledger_charges_what_the_budget_released_even_if_held_later() -> None:
    ledger = so.MemoryLedger(limit=10_000)
    hold: so.Operator[str, str] = so.Operator.from_processor(lambda report: _HoldAll())
    op = so.budget(ledger=ledger, key="k", block=64) | hold
    async with op(aiter_of(["Hello world", " more"])) as stream:
        await stream.aclose()  # the consumer leaves before anything reached it
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert await ledger.spent("k") == usage.completion_tokens == 0
    async with op(aiter_of(["Hello world", " more"])) as stream:
        assert await stream.__anext__() == "<end>"
    assert await ledger.spent("k") == 3


@pytest.mark.looptime
async def test_ledger_text_is_released_as_soon_as_it_arrives() -> None:
    loop = asyncio.get_running_loop()

    async def source() -> AsyncIterator[str]:
        yield "Hello there."
        await asyncio.sleep(1)
        yield " Second."

    op = so.budget(max_tokens=100, ledger=so.MemoryLedger(limit=1000), key="k", block=4)
    async with op(source()) as stream:
        start = loop.time()
        assert await stream.__anext__() == "Hello there."
        assert loop.time() - start == pytest.approx(0.0)
        assert await stream.__anext__() == " Second."
        assert loop.time() - start == pytest.approx(1.0)


async def test_ledger_reservations_follow_tokens_not_bytes() -> None:
    # Stream A holds 5 real tokens of long words (many bytes each); it must
    # not reserve by bytes and starve stream B, which needs 2.
    ledger = so.MemoryLedger(limit=40)
    op = so.budget(ledger=ledger, key="k", block=8)
    text_a = " internationalization" * 2 + " extraordinarily "
    assert so.count_tokens(text_a) == 6
    assert len(text_a.encode()) > 40
    gate = asyncio.Event()

    async def a_source() -> AsyncIterator[str]:
        yield text_a
        await gate.wait()

    async with op(a_source()) as a:
        assert await a.__anext__() == text_a
        async with op(aiter_of(["Hello world"])) as b:
            assert await b.text() == "Hello world"
        gate.set()
        assert await a.text() == text_a  # (all it released)
    assert await ledger.spent("k") == so.count_tokens(text_a) + 2


class _SlowRefundLedger(so.MemoryLedger):
    """A MemoryLedger whose refunds wait for ``release`` (to cancel during them)."""

    def __init__(self, *, limit: int) -> None:
        super().__init__(limit=limit)
        self.release = asyncio.Event()
        self.refunding = asyncio.Event()

    async def refund(self, reservation: so.Reservation, tokens: int) -> None:
        self.refunding.set()
        await self.release.wait()
        await super().refund(reservation, tokens)


async def test_repeated_cancellation_loses_no_refund() -> None:
    ledger = _SlowRefundLedger(limit=10_000)
    got = asyncio.Event()
    streams: list[so.AsyncStream[str]] = []

    async def source() -> AsyncIterator[str]:
        yield "Hello world"
        await asyncio.sleep(3600)

    async def consume() -> None:
        async with so.budget(ledger=ledger, key="k", block=64)(source()) as stream:
            streams.append(stream)
            async for _ in stream:
                got.set()

    task = asyncio.create_task(consume())
    await got.wait()
    task.cancel()
    await ledger.refunding.wait()
    for _ in range(3):  # cancelled again and again while the refund runs
        task.cancel()
        await asyncio.sleep(0)
    assert not task.done()
    ledger.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    usage = streams[0].report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert await ledger.spent("k") == 2
    assert usage.ledger_reserved - usage.ledger_refunded == 2


def test_usage_is_live_while_the_stream_runs() -> None:
    price = so.ModelPrice(input_per_million=1.0, output_per_million=2.0)
    stream = so.budget(max_tokens=100, pricing=price, prompt_tokens=10)(
        iter(["Hello world", " and more", " text"])
    )
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    first = next(stream)
    assert usage.completion_tokens == 0  # final figures come at the end
    assert usage.tokens_so_far() >= 2
    live = usage.cost_so_far()
    assert live is not None
    assert live > price.cost(prompt_tokens=10, completion_tokens=0)
    rest = "".join(stream)
    assert usage.tokens_so_far() == usage.completion_tokens == so.count_tokens(first + rest)
    assert usage.cost_so_far() == usage.cost


# -- shared budgets: fairness, cancellation, bounded cleanup -------------------


async def _words(n: int, gate: asyncio.Event | None = None) -> AsyncIterator[str]:
    for i in range(n):
        await asyncio.sleep(0)  # the streams interleave chunk by chunk
        yield f" w{i}"
    if gate is not None:
        await gate.wait()


async def test_concurrent_streams_share_a_small_budget_without_starving() -> None:
    # block=256 with a 40-token budget: the first stream must not take it all.
    ledger = so.MemoryLedger(limit=40)
    op = so.budget(ledger=ledger, key="k")  # block=256
    streams = [op(_words(25)) for _ in range(3)]
    texts = await asyncio.gather(*(s.text() for s in streams))
    got = [so.count_tokens(t) for t in texts]
    assert all(n > 0 for n in got), got
    assert await ledger.spent("k") == sum(got) == 40  # nothing left unspent


async def test_a_stream_under_a_spent_ledger_never_pulls_its_source() -> None:
    ledger = so.MemoryLedger(limit=2)
    await ledger.reserve("k", 2)
    pulled = False

    async def source() -> AsyncIterator[str]:
        nonlocal pulled
        pulled = True
        yield "Hello"

    async with so.budget(ledger=ledger, key="k")(source()) as stream:
        assert await stream.text() == ""
    assert stream.report.stop_reason == so.StopReason.BUDGET
    assert not pulled  # no request is made (and billed) for a budget already spent


class _HangingLedger(so.MemoryLedger):
    """A MemoryLedger whose refunds and cancels never answer (a hung store)."""

    async def refund(self, reservation: so.Reservation, tokens: int) -> None:
        await asyncio.Event().wait()

    async def cancel(self, rid: str) -> None:
        await asyncio.Event().wait()


async def test_cleanup_against_a_hung_ledger_is_bounded() -> None:
    ledger = _HangingLedger(limit=1000)
    got = asyncio.Event()
    streams: list[so.AsyncStream[str]] = []

    op = so.budget(ledger=ledger, key="k", block=64, cleanup_timeout=0.05)

    async def consume() -> None:
        async with op(_words(3, gate=asyncio.Event())) as stream:
            streams.append(stream)
            async for _ in stream:
                got.set()

    task = asyncio.create_task(consume())
    await got.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)  # (a bound for the test, not a timing claim)
    report = streams[0].report
    assert any(e.kind == "budget.refund_failed" for e in report.events)
    usage = report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.ledger_refunded == 0  # fail closed: the unrefunded tokens stay spent
    assert usage.ledger_error is not None


class _SlowClose:
    """An async source whose ``aclose`` waits (an HTTP response closing slowly)."""

    def __init__(self, chunks: list[str]) -> None:
        self.chunks = iter(chunks)
        self.closing = asyncio.Event()

    def __aiter__(self) -> _SlowClose:
        return self

    async def __anext__(self) -> str:
        await asyncio.sleep(0)
        try:
            return next(self.chunks)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        if not self.closing.is_set():  # the first close is slow; closing twice is harmless
            self.closing.set()
            await asyncio.sleep(3600)


async def test_cut_text_is_not_charged_when_the_consumer_is_cancelled_during_the_close() -> None:
    ledger = so.MemoryLedger(limit=1000)
    source = _SlowClose(["one two", " three four", " five six"])
    received: list[str] = []
    stream = so.budget(max_tokens=3, ledger=ledger, key="k", block=8)(source)

    async def consume() -> None:
        async with stream:
            async for piece in stream:
                received.append(piece)

    task = asyncio.create_task(consume())
    await source.closing.wait()  # the budget cut it; the upstream is closing
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    text = "".join(received)
    assert "three" not in text  # the cut piece never reached the consumer
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert stream.report.released_text == text
    assert usage.completion_tokens == so.count_tokens(text)
    assert await ledger.spent("k") == so.count_tokens(text)


async def test_fused_budget_cut_text_is_not_released_when_cancelled_during_the_close() -> None:
    source = _SlowClose(["one two", " three four", " five six"])
    received: list[str] = []
    stream = so.budget(max_tokens=3)(source)

    async def consume() -> None:
        async with stream:
            async for piece in stream:
                received.append(piece)

    task = asyncio.create_task(consume())
    await source.closing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.report.released_text == "".join(received)


def test_a_cut_near_a_lone_surrogate_does_not_crash() -> None:
    text = "ab \ud83d cd ef gh ij"
    for op in (so.budget(max_tokens=3) | so.redact(), so.redact() | so.budget(max_tokens=3)):
        assert "".join(op([text])).startswith("ab \ud83d")
