"""Properties of the token counter and the budget limiter under random text and splits."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import streamops as so

ENC = so.get_encoding("cl100k_base")

_FRAGMENTS = [
    " ", "  ", "   ", "\n", "\n\n", "\r\n", "\t", " \n ", "'ll", "'s", "'T", "don't",
    "I'm", "12", "12345", "3.14", "x", "hello", " world", "É", "naïve", "日本語", "中文",
    "😀", "👍🏽", "\u0301", "!!", "...", "//", "<|endoftext|>", "ab'c",
]  # fmt: skip
_CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"])

texts = st.lists(st.sampled_from(_FRAGMENTS) | st.text(_CHARS, max_size=4), max_size=30).map(
    "".join
)


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def expected_prefix(text: str, limit: int) -> str:
    tokens = ENC.encode_ordinary(text)
    if len(tokens) <= limit:
        return text
    return ENC.decode_bytes(tokens[:limit]).decode("utf-8", "ignore")


@given(texts, st.lists(st.integers(0, 10_000), max_size=40), st.integers(1, 64))
def test_count_is_exact_and_committed_is_monotone(text: str, cuts: list[int], batch: int) -> None:
    final = len(ENC.encode_ordinary(text))
    counter = so.TokenCounter(batch=batch)
    committed = 0
    for chunk in split(text, cuts):
        counter.feed(chunk)
        assert committed <= counter.committed <= final
        committed = counter.committed
    assert counter.count() == final


@given(texts, st.lists(st.integers(0, 10_000), max_size=40), st.integers(0, 40))
def test_budget_output_is_the_text_of_the_first_tokens(
    text: str, cuts: list[int], limit: int
) -> None:
    stream = so.budget(max_tokens=limit)(split(text, cuts))
    out = "".join(stream)
    assert out == expected_prefix(text, limit)
    exhausted = len(ENC.encode_ordinary(text)) > limit
    assert stream.report.stop_reason == ("budget" if exhausted else "complete")


@given(texts, st.lists(st.integers(0, 10_000), max_size=20), st.integers(0, 30), st.integers(1, 8))
def test_ledger_budget_gives_the_same_text_and_refunds_all(
    text: str, cuts: list[int], limit: int, block: int
) -> None:
    ledger = so.MemoryLedger(limit=limit)

    async def source() -> AsyncIterator[str]:
        for chunk in split(text, cuts):
            yield chunk

    async def main() -> tuple[str, int]:
        op = so.budget(ledger=ledger, key="k", block=block)
        async with op(source()) as stream:
            out = await stream.text()
        return out, await ledger.spent("k")

    out, spent = asyncio.run(main())
    assert out == expected_prefix(text, limit)
    assert spent == min(limit, len(ENC.encode_ordinary(text)))


@given(
    texts,
    st.lists(st.integers(0, 10_000), max_size=20),
    st.integers(0, 5),
    st.integers(1, 8),
)
def test_ledger_charges_exactly_what_the_consumer_received(
    text: str, cuts: list[int], pieces: int, block: int
) -> None:
    ledger = so.MemoryLedger(limit=10_000)

    async def source() -> AsyncIterator[str]:
        for chunk in split(text, cuts):
            yield chunk

    async def main() -> tuple[str, int]:
        received, n = "", 0
        async with so.budget(ledger=ledger, key="k", block=block)(source()) as stream:
            async for piece in stream:
                received += piece
                n += 1
                if n == pieces:  # the consumer leaves after this piece (0: never)
                    break
        return received, await ledger.spent("k")

    received, spent = asyncio.run(main())
    assert spent == len(ENC.encode_ordinary(received))


_WORDS = [" a", " the", " and", "!", " x", " budget", " ledger", " stream", " of", " red"]
replies = st.lists(st.lists(st.sampled_from(_WORDS), max_size=25), min_size=1, max_size=5)


class _View:
    """One stream's view of a shared ledger: records what was left at its first reservation."""

    def __init__(self, shared: so.MemoryLedger) -> None:
        self.shared = shared
        self.left_at_start: int | None = None

    async def reserve(
        self, key: str, tokens: int, *, extra: int = 0, rid: str | None = None
    ) -> so.Reservation:
        if self.left_at_start is None:  # (MemoryLedger calls never interleave)
            self.left_at_start = self.shared.limit - await self.shared.spent(key)
        return await self.shared.reserve(key, tokens, extra=extra, rid=rid)

    async def cancel(self, rid: str) -> None:
        await self.shared.cancel(rid)

    async def refund(self, reservation: so.Reservation, tokens: int) -> None:
        await self.shared.refund(reservation, tokens)

    async def spent(self, key: str) -> int:
        return await self.shared.spent(key)


@given(replies, st.integers(1, 60), st.integers(1, 300), st.lists(st.integers(0, 3), max_size=8))
def test_concurrent_ledger_streams_spend_what_they_deliver_and_none_starves(
    words: list[list[str]], limit: int, block: int, pauses: list[int]
) -> None:
    shared = so.MemoryLedger(limit=limit)
    views = [_View(shared) for _ in words]

    async def source(reply: list[str], i: int) -> AsyncIterator[str]:
        for j, word in enumerate(reply):
            for _ in range(pauses[(i + j) % len(pauses)] if pauses else 0):
                await asyncio.sleep(0)  # the streams interleave differently each example
            yield word

    async def one(reply: list[str], i: int) -> str:
        op = so.budget(ledger=views[i], key="k", block=block)
        async with op(source(reply, i)) as stream:
            return await stream.text()

    async def main() -> tuple[list[str], int]:
        got = await asyncio.gather(*(one(reply, i) for i, reply in enumerate(words)))
        return got, await shared.spent("k")

    received, spent = asyncio.run(main())
    counts = [len(ENC.encode_ordinary(t)) for t in received]
    # Spend equals the tokens the consumers received, within the limit.
    assert spent == sum(counts) <= limit
    for reply, view, n in zip(words, views, counts, strict=True):
        # No stream that started while budget remained ends with nothing.
        if reply and view.left_at_start:
            assert n > 0, (view.left_at_start, counts)


# -- provider chunks: one budget over every channel ---------------------------------


def _oa(**delta: str) -> dict[str, object]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


def _channel(out: list[object], name: str) -> str:
    text = ""
    for chunk in out:
        assert isinstance(chunk, dict)
        text += chunk["choices"][0]["delta"].get(name) or ""
    return text


def _reasoning_then_answer(reasoning: str, answer: str, cuts: list[int]) -> list[dict[str, object]]:
    chunks = [_oa(reasoning_content=p) for p in split(reasoning, cuts)]
    finish: dict[str, object] = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    return [*chunks, *(_oa(content=p) for p in split(answer, cuts)), finish]


@given(texts, texts, st.lists(st.integers(0, 10_000), max_size=20), st.integers(0, 40))
def test_one_budget_over_reasoning_then_answer(
    reasoning: str, answer: str, cuts: list[int], limit: int
) -> None:
    stream = so.budget(max_tokens=limit)(_reasoning_then_answer(reasoning, answer, cuts))
    out: list[object] = list(stream)
    n_r = len(ENC.encode_ordinary(reasoning))
    n_a = len(ENC.encode_ordinary(answer))
    got_r, got_a = _channel(out, "reasoning_content"), _channel(out, "content")
    # Each channel counted on its own, tokens in the order they arrive.
    assert got_r == expected_prefix(reasoning, limit)
    assert got_a == (expected_prefix(answer, limit - n_r) if limit > n_r else "")
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.completion_tokens == min(limit, n_r + n_a)
    assert sum(usage.channel_tokens.values()) == usage.completion_tokens
    assert stream.report.stop_reason == ("budget" if n_r + n_a > limit else "complete")


@given(
    texts,
    texts,
    st.lists(st.integers(0, 10_000), max_size=12),
    st.integers(0, 30),
    st.integers(1, 8),
)
def test_ledger_budget_over_channels_is_the_local_budget(
    reasoning: str, answer: str, cuts: list[int], limit: int, block: int
) -> None:
    ledger = so.MemoryLedger(limit=limit)
    chunks = _reasoning_then_answer(reasoning, answer, cuts)

    async def source() -> AsyncIterator[dict[str, object]]:
        for chunk in chunks:
            yield chunk

    async def main() -> tuple[list[object], int]:
        op = so.budget(ledger=ledger, key="k", block=block)
        async with op(source()) as stream:
            out: list[object] = [c async for c in stream]
        return out, await ledger.spent("k")

    out, spent = asyncio.run(main())
    local: list[object] = list(so.budget(max_tokens=limit)(chunks))
    for name in ("reasoning_content", "content"):
        assert _channel(out, name) == _channel(local, name)
    n = len(ENC.encode_ordinary(reasoning)) + len(ENC.encode_ordinary(answer))
    assert spent == min(limit, n)


_ARG_FRAGMENTS = [
    '{"q": "', '"', "\\n", "\\u0040", "\\", "'", "\n", " ", "a", "b c", "12", "-3.5", ",", "}",
    "[", "true", "x@y.co", "é", "😀",
]  # fmt: skip
arguments = st.lists(st.sampled_from(_ARG_FRAGMENTS) | st.text(_CHARS, max_size=3), max_size=20)


def _tool_chunk(piece: str) -> Any:
    """A chat chunk (the SDK's type) carrying ``piece`` of one tool call's arguments."""
    from openai.types.chat import ChatCompletionChunk

    call = {"index": 0, "id": "c", "type": "function",
            "function": {"name": "f", "arguments": piece}}  # fmt: skip
    choice = {"index": 0, "finish_reason": None, "delta": {"tool_calls": [call]}}
    return ChatCompletionChunk.model_validate(
        {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [choice],
        }
    )


def _released_arguments(out: list[Any]) -> str:
    """The tool-call arguments the chat chunks in ``out`` carry, joined."""
    return "".join(
        call.function.arguments or ""
        for c in out
        if c.choices and c.choices[0].delta.tool_calls
        for call in c.choices[0].delta.tool_calls
        if call.function is not None
    )


@given(
    arguments.map("".join),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.integers(0, 12),
    st.booleans(),
)
def test_a_stop_inside_tool_arguments_releases_a_prefix(
    args: str, cuts: list[int], limit: int, block: bool
) -> None:
    """JSON or not, what a budget cut or a block releases of tool-call arguments
    is a prefix of them as written (a string's text is encoded back as it came)."""
    op = so.redact([r"b c"], action="block") if block else so.budget(max_tokens=limit)
    released = _released_arguments(list(op([_tool_chunk(p) for p in split(args, cuts)])))
    assert args.startswith(released)


@given(
    st.lists(
        st.sampled_from(
            [*_ARG_FRAGMENTS, "4111111111111111", "0.4111111111111111", "3.5e-1", "a@b.co", ": "]
        )
        | st.text(_CHARS, max_size=3),
        max_size=20,
    ).map("".join),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.integers(0, 16),
)
@example('{"card": 4111111111111111, "n": 1}', [], 5)
@example('{"n": [1, 3.5e-1]}', list(range(1, 18)), 8)
@example('{"n": 0.4111111111111111}', [], 5)  # cut just before the part redaction changes
def test_a_budget_after_redaction_releases_a_prefix_of_the_redacted_arguments(
    args: str, cuts: list[int], limit: int
) -> None:
    """A budget cut after a redaction inside tool-call arguments releases a
    prefix of what the redaction alone releases (a number it replaced is a
    JSON string: cut inside it, it is an open one)."""
    chunks = [_tool_chunk(p) for p in split(args, cuts)]
    full = _released_arguments(list(so.redact()(chunks)))
    released = _released_arguments(list((so.redact() | so.budget(max_tokens=limit))(chunks)))
    assert full.startswith(released), (full, released)


_COMPOSED_FRAGMENTS = [
    *_ARG_FRAGMENTS, "4111111111111111", "0.4111111111111111", "a@b.co", ": ", "sk-proj-4Ab12",
    "Cd34Ef56Gh78Ij90Kl12Mn34",
]  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(_COMPOSED_FRAGMENTS), max_size=12).map("".join),
    st.lists(st.sampled_from(_COMPOSED_FRAGMENTS), max_size=6).map("".join),
    st.lists(st.integers(0, 10_000), max_size=6),
    st.integers(1, 40),
    st.sampled_from(["redact_first", "budget_first", "block_after"]),
    st.sampled_from([None, ("tool_arguments",), ("content",)]),
)
@example('{"n": 0.4111111111111111}', "", [], 5, "redact_first", None)
@example("[4111111111111111]", "", [], 1, "redact_first", None)
@example('{"a": "x b c y", "b": "long text"}', "", [], 10, "block_after", None)
@example('{"c": "Paris"}', "use sk-proj-4Ab12", [], 3, "redact_first", ("tool_arguments",))
def test_a_ledger_budget_composed_with_redaction_is_the_local_one(
    args: str,
    answer: str,
    cuts: list[int],
    limit: int,
    order: str,
    channels: tuple[str, ...] | None,
) -> None:
    """Composed with redaction either side of it (or a block after it), over an
    answer and a tool call's arguments, a ledger budget gives what the budget
    without a ledger gives: the same text in each channel, the same stop
    reason, the same tokens counted, and the ledger charges them."""
    from helpers import chat_arguments, chat_stream, chat_text

    raw = chat_stream([("content", split(answer, cuts))], tool_args=split(args, cuts[::-1]))
    # The limit is the budget's own, the ledger ample: its first share (a block
    # of 256) makes the allowance final at once, as without a ledger. (A key
    # nearly spent grants in parts, and a channel may then hold its tail and be
    # cut a chunk later than without a ledger: not what this property is about.)
    ledger = so.MemoryLedger(limit=10**6)

    def composed(b: so.Operator[Any, Any]) -> so.Operator[Any, Any]:
        # (No time limits: a loaded machine must not make a redaction give up.)
        if order == "redact_first":
            return so.redact(timeout=None, cpu_budget=None) | b
        if order == "budget_first":
            return b | so.redact(timeout=None, cpu_budget=None)
        return b | so.redact([r"b c"], action="block", timeout=None, cpu_budget=None)

    def summary(out: list[Any], report: so.StreamReport) -> tuple[object, ...]:
        usage = report["budget"]
        assert isinstance(usage, so.BudgetUsage)
        return (chat_text(out, "content"), chat_arguments(out), report.stop_reason,
                usage.completion_tokens)  # fmt: skip

    async def main() -> tuple[object, ...]:
        op = composed(so.budget(max_tokens=limit, ledger=ledger, key="k", channels=channels))
        async with op(_aiter(raw)) as stream:
            out = [c async for c in stream]
        return summary(out, stream.report)

    shared = asyncio.run(main())
    stream = composed(so.budget(max_tokens=limit, channels=channels))(raw)
    local = summary(list(stream), stream.report)
    if shared[2] is so.StopReason.BLOCKED:
        # What a block after the budget leaves counted is what the budget had
        # handed it, which depends on what it held back near an allowance that
        # was not final yet (with a ledger): the texts and the stop are the same.
        assert shared[:3] == local[:3]
    else:
        assert shared == local
    assert asyncio.run(ledger.spent("k")) == shared[3]


async def _aiter(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
