"""One budget over every text channel of a stream (issue 15: "budgets count the
channels the provider bills").

Providers bill reasoning and tool-call tokens as completion tokens, so a
budget on provider chunks counts content, refusal, reasoning and tool-call
arguments against one allowance: each channel has its own token counter
(tokens never span channels), the total is shared, and the stream stops when
the total reaches the limit in any channel, cut exactly at that character.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import (
    ATracked,
    Tracked,
    anthropic_blocks,
    anthropic_events,
    chat_arguments,
    chat_chunk,
    chat_stream,
    chat_text,
    splits,
)
from openai.types.chat import ChatCompletionChunk

import streamops as so

ENC = so.get_encoding("cl100k_base")
KEY = "sk-proj-4Ab12Cd34Ef56Gh78Ij90Kl12Mn34"


def ntok(text: str) -> int:
    return len(ENC.encode_ordinary(text))


def prefix(text: str, n: int) -> str:
    """The text of the first ``n`` tokens of ``text``, backed off to a whole character."""
    return ENC.decode_bytes(ENC.encode_ordinary(text)[:n]).decode("utf-8", "ignore")


def usage_of(stream: Any) -> so.BudgetUsage:
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    return usage


# -- OpenAI chat chunks --------------------------------------------------------


REASONING = "Let me think about this question carefully, step by step."
ANSWER = "The answer is forty-two, as everyone knows by now."
ARGS = {"city": "Paris, France", "note": 'say "hi" to José'}


def args_tokens(args: dict[str, str]) -> int:
    """The tokens a budget counts for ``json.dumps(args)``: strings decoded, then the rest."""
    strings = [s for kv in args.items() for s in kv]
    structure = ["{", *([": ", ", "] * len(args))[:-1], "}"]
    return sum(ntok(s) for s in strings) + sum(ntok(s) for s in structure)


def openai_chunks(
    *, objects: bool, reasoning: str = REASONING, answer: str = ANSWER, tools: bool = False
) -> list[Any]:
    return chat_stream(
        [("reasoning_content", splits(reasoning)), ("content", splits(answer))],
        tool_args=splits(json.dumps(ARGS, ensure_ascii=False), 5) if tools else None,
        objects=objects,
    )


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
def test_reasoning_tokens_count_against_the_answer(objects: bool) -> None:
    reasoning = "one two three four five six seven eight"
    assert ntok(reasoning) == 8
    source = Tracked(openai_chunks(objects=objects, reasoning=reasoning))
    stream = so.budget(max_tokens=10)(source)
    out = list(stream)
    assert chat_text(out, "reasoning_content") == reasoning
    assert chat_text(out, "content") == prefix(ANSWER, 2)
    assert stream.report.stop_reason is so.StopReason.BUDGET
    assert source.closed
    assert source.pulled < len(source.items)
    usage = usage_of(stream)
    assert usage.exhausted
    assert usage.completion_tokens == 10
    assert usage.channel_tokens == {"reasoning": 8, "content": 2}
    assert stream.report.released_text == prefix(ANSWER, 2)  # the answer only


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
def test_the_cut_can_fall_in_the_reasoning(objects: bool) -> None:
    source = Tracked(openai_chunks(objects=objects))
    stream = so.budget(max_tokens=5)(source)
    out = list(stream)
    assert chat_text(out, "reasoning_content") == prefix(REASONING, 5)
    assert chat_text(out, "content") == ""
    assert stream.report.stop_reason is so.StopReason.BUDGET
    assert source.closed
    assert source.pulled < len(source.items)
    assert usage_of(stream).completion_tokens == 5


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
def test_every_channel_counts_exactly_within_budget(objects: bool) -> None:
    stream = so.budget(max_tokens=1000)(openai_chunks(objects=objects, tools=True))
    out = list(stream)
    assert chat_text(out, "reasoning_content") == REASONING
    assert chat_text(out, "content") == ANSWER
    assert json.loads(chat_arguments(out)) == ARGS
    # Tool-call arguments are counted message by message: each string value
    # (decoded, as operators see it), each number, the structure between them.
    tool_tokens = args_tokens(ARGS)
    usage = usage_of(stream)
    assert usage.channel_tokens == {
        "reasoning": ntok(REASONING),
        "content": ntok(ANSWER),
        "tool_arguments": tool_tokens,
    }
    assert usage.completion_tokens == ntok(REASONING) + ntok(ANSWER) + tool_tokens
    assert stream.report.stop_reason is so.StopReason.COMPLETE
    assert not usage.exhausted


@pytest.mark.parametrize("limit", range(0, 40, 3))
def test_every_cut_is_exact_across_channels(limit: int) -> None:
    stream = so.budget(max_tokens=limit)(openai_chunks(objects=False))
    out = list(stream)
    r = chat_text(out, "reasoning_content")
    c = chat_text(out, "content")
    if limit <= ntok(REASONING):
        assert (r, c) == (prefix(REASONING, limit), "")
    else:
        assert r == REASONING
        assert c == prefix(ANSWER, limit - ntok(REASONING))
    assert usage_of(stream).completion_tokens == min(limit, ntok(REASONING) + ntok(ANSWER))
    assert ntok(r) + ntok(c) <= limit


def test_channels_option_counts_only_the_answer() -> None:
    stream = so.budget(max_tokens=3, channels=["content"])(openai_chunks(objects=False))
    out = list(stream)
    assert chat_text(out, "reasoning_content") == REASONING  # not counted
    assert chat_text(out, "content") == prefix(ANSWER, 3)
    assert usage_of(stream).completion_tokens == 3
    assert usage_of(stream).channel_tokens == {"content": 3}
    with pytest.raises(ValueError, match="unknown channel"):
        so.budget(max_tokens=3, channels=["thoughts"])


def test_channels_option_without_the_answer_is_still_one_budget() -> None:
    stream = so.budget(max_tokens=3, channels=["reasoning", "refusal"])(
        [
            chat_chunk({"reasoning_content": "one two"}),
            chat_chunk({"refusal": " three four"}),
            chat_chunk({}, "stop"),
        ]
    )
    out = list(stream)
    assert chat_text(out, "reasoning_content") + chat_text(out, "refusal") == "one two three"
    assert usage_of(stream).completion_tokens == 3


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_budget_without_the_answer_reports_what_it_counted(kind: str) -> None:
    # Without "content" in its channels, the budget's report said 0 tokens and no
    # cost for a stream that completed (the ledger's report was right): the
    # processor made for the answer was never used, and never ended.
    raw = chat_stream(
        [("content", ["Let me call it."])], tool_args=['{"city": "Paris", ', '"days": 3}']
    )
    args = '{"city": "Paris", "days": 3}'
    op = so.budget(max_tokens=1000, model="gpt-4o", channels=["tool_arguments"])
    if kind == "sync":
        stream = op(raw)
        list(stream)
    else:

        async def run() -> Any:
            async def source() -> AsyncIterator[Any]:
                for chunk in raw:
                    yield chunk

            out = op(source())
            [c async for c in out]
            return out

        stream = asyncio.run(run())
    usage = usage_of(stream)
    assert stream.report.stop_reason is so.StopReason.COMPLETE
    tokens = usage.channel_tokens["tool_arguments"]
    assert usage.completion_tokens == tokens > 0
    assert abs(tokens - len(so.get_encoding("cl100k_base").encode(args))) <= 3
    assert usage.cost is not None
    assert usage.cost > 0


def test_interleaved_channels_share_one_allowance() -> None:
    # Tokens count in the order they arrive; in one chunk, content comes first.
    chunks = [
        chat_chunk({"reasoning_content": "alpha beta", "content": "one two"}),
        chat_chunk({"reasoning_content": " gamma", "content": " three"}),
        chat_chunk({"reasoning_content": " delta", "content": " four"}),
        chat_chunk({}, "stop"),
    ]
    stream = so.budget(max_tokens=7)(chunks)
    out = list(stream)
    r, c = chat_text(out, "reasoning_content"), chat_text(out, "content")
    assert (r, c) == ("alpha beta gamma", "one two three four")
    assert ntok(r) + ntok(c) == 7 == usage_of(stream).completion_tokens


def test_channels_the_chain_does_not_name_are_other() -> None:
    stream = so.budget(max_tokens=100)(openai_chunks(objects=False))
    list(stream)
    usage = usage_of(stream)
    assert usage.channel_tokens["content"] == ntok(ANSWER)
    assert sum(usage.channel_tokens.values()) == usage.completion_tokens


def test_a_channel_keeps_the_counted_text_it_held_when_another_cuts() -> None:
    # Near the limit "three" is held back (it might grow); it counts as one
    # token, so the answer gets one, and the reasoning's held text comes out.
    chunks = [
        chat_chunk({"reasoning_content": "one two three"}),
        chat_chunk({"content": "x y z"}),
        chat_chunk({}, "stop"),
    ]
    stream = so.budget(max_tokens=4)(chunks)
    out = list(stream)
    assert chat_text(out, "reasoning_content") == "one two three"
    assert chat_text(out, "content") == "x"
    assert usage_of(stream).completion_tokens == 4


def test_str_streams_are_unchanged() -> None:
    text = "Hello, world! How are you today?"
    stream = so.budget(max_tokens=4)(splits(text, 3))
    assert "".join(stream) == prefix(text, 4)
    assert usage_of(stream).completion_tokens == 4
    assert usage_of(stream).channel_tokens == {"content": 4}


async def test_async_is_sync_on_channels() -> None:
    for limit in (4, 12, 17, 1000):
        op = so.budget(max_tokens=limit)
        sync = op(openai_chunks(objects=True, tools=True))
        expected = list(sync)
        astream = op(ATracked(openai_chunks(objects=True, tools=True)))
        got = [c async for c in astream]
        assert got == expected
        assert usage_of(astream) == usage_of(sync)
        assert usage_of(astream).model_dump() == usage_of(sync).model_dump()
        assert astream.report.stop_reason == sync.report.stop_reason


# -- Anthropic -------------------------------------------------------------------

THINKING = "The user wants the weather; I should call the tool."
TEXT = "Let me check the weather for you."


def claude_events(*, objects: bool) -> list[Any]:
    return anthropic_events(
        [
            ("thinking", splits(THINKING, 7)),
            ("text", splits(TEXT, 6)),
            ("tool_use", splits(json.dumps(ARGS), 4)),
        ],
        stop_reason="tool_use",
        output_tokens=30,
        objects=objects,
    )


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
def test_anthropic_thinking_text_and_tool_input_are_one_budget(objects: bool) -> None:
    stream = so.budget(max_tokens=1000)(claude_events(objects=objects))
    out = list(stream)
    got = anthropic_blocks(out)
    assert got[0] == THINKING
    assert got[1] == TEXT
    assert json.loads(got[2]) == ARGS
    tool_tokens = args_tokens(ARGS)
    usage = usage_of(stream)
    assert usage.completion_tokens == ntok(THINKING) + ntok(TEXT) + tool_tokens
    assert usage.channel_tokens == {
        "reasoning": ntok(THINKING),
        "content": ntok(TEXT),
        "tool_arguments": tool_tokens,
    }


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
def test_anthropic_cut_in_the_text_block_after_thinking(objects: bool) -> None:
    limit = ntok(THINKING) + 3
    source = Tracked(claude_events(objects=objects))
    stream = so.budget(max_tokens=limit)(source)
    out = list(stream)
    got = anthropic_blocks(out)
    assert got[0] == THINKING
    assert got[1] == prefix(TEXT, 3)
    assert 2 not in got
    assert stream.report.stop_reason is so.StopReason.BUDGET
    assert source.closed
    assert source.pulled < len(source.items)


# -- with a ledger ---------------------------------------------------------------


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
async def test_ledger_budget_runs_on_openai_chunks(objects: bool) -> None:
    ledger = so.MemoryLedger(limit=10)
    op = so.budget(ledger=ledger, key="k", block=4)
    reasoning = "one two three four five six seven eight"
    source = ATracked(openai_chunks(objects=objects, reasoning=reasoning))
    async with op(source) as stream:
        out = [c async for c in stream]
    assert chat_text(out, "reasoning_content") == reasoning
    assert chat_text(out, "content") == prefix(ANSWER, 2)
    assert stream.report.stop_reason is so.StopReason.BUDGET
    assert source.closed
    assert await ledger.spent("k") == 10
    usage = usage_of(stream)
    assert usage.completion_tokens == 10
    assert usage.ledger_reserved - usage.ledger_refunded == 10


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
async def test_ledger_budget_charges_every_channel(objects: bool) -> None:
    ledger = so.MemoryLedger(limit=10_000)
    op = so.budget(ledger=ledger, key="k", block=8)
    async with op(ATracked(openai_chunks(objects=objects, tools=True))) as stream:
        out = [c async for c in stream]
    assert chat_text(out, "reasoning_content") == REASONING
    assert chat_text(out, "content") == ANSWER
    assert json.loads(chat_arguments(out)) == ARGS
    total = ntok(REASONING) + ntok(ANSWER) + args_tokens(ARGS)
    assert usage_of(stream).completion_tokens == total
    assert await ledger.spent("k") == total
    assert stream.report.stop_reason is so.StopReason.COMPLETE


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
async def test_ledger_budget_runs_on_anthropic_events(objects: bool) -> None:
    limit = ntok(THINKING) + 3
    ledger = so.MemoryLedger(limit=limit)
    op = so.budget(ledger=ledger, key="k", block=5)
    source = ATracked(claude_events(objects=objects))
    async with op(source) as stream:
        out = [c async for c in stream]
    got = anthropic_blocks(out)
    assert got[0] == THINKING
    assert got[1] == prefix(TEXT, 3)
    assert source.closed
    assert await ledger.spent("k") == limit
    assert stream.report.stop_reason is so.StopReason.BUDGET


async def test_ledger_budget_is_the_local_budget_on_channels() -> None:
    """With a ledger big enough, the output equals the ledger-free budget's."""
    for limit in (3, 11, 20, 1000):
        local = list(so.budget(max_tokens=limit)(openai_chunks(objects=True, tools=True)))
        ledger = so.MemoryLedger(limit=10_000)
        op = so.budget(max_tokens=limit, ledger=ledger, key="k", block=3)
        async with op(ATracked(openai_chunks(objects=True, tools=True))) as stream:
            shared = [c async for c in stream]
        assert chat_text(shared, "reasoning_content") == chat_text(local, "reasoning_content")
        assert chat_text(shared, "content") == chat_text(local, "content")
        assert chat_arguments(shared) == chat_arguments(local)
        assert await ledger.spent("k") == usage_of(stream).completion_tokens


async def test_ledger_budget_channels_option() -> None:
    ledger = so.MemoryLedger(limit=100)
    op = so.budget(ledger=ledger, key="k", channels=["content"])
    async with op(ATracked(openai_chunks(objects=False))) as stream:
        out = [c async for c in stream]
    assert chat_text(out, "reasoning_content") == REASONING
    assert chat_text(out, "content") == ANSWER
    assert await ledger.spent("k") == ntok(ANSWER)


async def test_ledger_budget_bytes_chunks() -> None:
    ledger = so.MemoryLedger(limit=3)
    op = so.budget(ledger=ledger, key="k", block=2)
    text = "Héllo wörld, how are you?"
    data = text.encode()
    source = ATracked([data[i : i + 3] for i in range(0, len(data), 3)])
    async with op(source) as stream:
        out: list[Any] = [c async for c in stream]
    assert b"".join(out).decode() == prefix(text, 3)
    assert await ledger.spent("k") == 3


async def test_cancelled_ledger_stream_on_channels_charges_what_it_released() -> None:
    ledger = so.MemoryLedger(limit=10_000)
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[Any]:
        yield chat_chunk({"reasoning_content": "Hello there"})
        yield chat_chunk({"content": "Hello world"})
        await gate.wait()
        yield chat_chunk({"content": " never"})

    received: list[Any] = []

    async def consume() -> None:
        async with so.budget(ledger=ledger, key="k", block=64)(slow()) as stream:
            async for chunk in stream:
                received.append(chunk)

    task = asyncio.create_task(consume())
    for _ in range(50):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    released = ntok(chat_text(received, "reasoning_content")) + ntok(chat_text(received, "content"))
    assert await ledger.spent("k") == released > 0


# -- budget and redaction, in both orders, never leak at a cut in another channel --


@pytest.mark.parametrize("order", ["budget_first", "redact_first"])
@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
@pytest.mark.parametrize("cut", range(1, 16))
def test_a_cut_in_reasoning_never_leaks_a_partial_secret_in_content(
    order: str, objects: bool, cut: int
) -> None:
    chunks = [
        chat_chunk({"content": "use " + KEY[:6]}),
        chat_chunk({"content": KEY[6:14]}),
        chat_chunk({"reasoning_content": "thinking about " + KEY[:9]}),
        chat_chunk({"reasoning_content": KEY[9:] + " and more reasoning text here"}),
        chat_chunk({"content": KEY[14:] + " done"}),
        chat_chunk({}, "stop"),
    ]
    source = [ChatCompletionChunk.model_validate(c) for c in chunks] if objects else chunks
    b, r = so.budget(max_tokens=cut), so.redact()
    op = b | r if order == "budget_first" else r | b
    out: list[Any] = list(op(source))
    text = json.dumps([c if isinstance(c, dict) else c.model_dump() for c in out])
    assert "sk-proj" not in text
    assert KEY[:5] not in text


@pytest.mark.parametrize("order", ["budget_first", "redact_first"])
@pytest.mark.parametrize("cut", range(1, 40, 2))
def test_a_cut_never_leaks_on_anthropic_channels(order: str, cut: int) -> None:
    events = claude_events(objects=False)
    # The text block carries a whole key, in pieces; the cut falls anywhere.
    first = 4 + len(splits(THINKING, 7))
    pieces = ["use ", KEY[:8], KEY[8:20], KEY[20:], " now"]
    text = [
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": p}}
        for p in pieces
    ]
    events[first : first + len(splits(TEXT, 6))] = text
    b, r = so.budget(max_tokens=cut), so.redact()
    op = b | r if order == "budget_first" else r | b
    out = list(op(events))
    assert "sk-proj" not in json.dumps(out)
    assert KEY[:5] not in json.dumps(out)


@pytest.mark.parametrize("order", ["budget_first", "redact_first"])
async def test_ledger_cut_never_leaks_across_channels(order: str) -> None:
    for cut in range(1, 16):
        chunks = [
            chat_chunk({"content": "use " + KEY[:12]}),
            chat_chunk({"reasoning_content": "thinking hard about the whole problem here"}),
            chat_chunk({"content": KEY[12:] + " ok"}),
            chat_chunk({}, "stop"),
        ]
        b = so.budget(ledger=so.MemoryLedger(limit=cut), key="k", block=2)
        r = so.redact()
        op = b | r if order == "budget_first" else r | b
        async with op(ATracked(chunks)) as stream:
            out = [c async for c in stream]
        assert "sk-proj" not in json.dumps(out), (cut, out)


def _tool_chunk(args: str) -> ChatCompletionChunk:
    call = {"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": args}}
    return ChatCompletionChunk.model_validate(
        {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [call]}}],
        }
    )


@pytest.mark.parametrize(
    ("args", "limit"), [("a\nb c d", 2), ('x "y" z w', 2), ("a\\b c d", 2), ("\na ", 1)]
)
def test_a_cut_in_arguments_that_are_not_json_releases_a_prefix(args: str, limit: int) -> None:
    # Arguments that are not JSON are one plain text: what a cut releases of
    # them is written as it came, never JSON-escaped.
    out = list(so.budget(max_tokens=limit)([_tool_chunk(args)]))
    released = "".join(
        call.function.arguments or ""
        for c in out
        if c.choices and c.choices[0].delta.tool_calls
        for call in c.choices[0].delta.tool_calls
        if call.function is not None
    )
    assert released
    assert args.startswith(released)
