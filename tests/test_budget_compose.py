"""A budget composed with other text operators: the ledger budget is the local one.

A budget with a ledger cannot be fused: it wraps what comes before it as a
stream and its own processor runs in a chain of its own. It must still
behave exactly as the budget without a ledger composed the same way (the
same text in every channel, the same stop reason, the same tokens spent), whichever
side of it redaction runs, whatever channels it counts, wherever the cut
falls (in a number of tool-call arguments, say). And a cut stream delivers
a prefix of what the uncut stream delivers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import anthropic_blocks, anthropic_events, chat_arguments, chat_stream, chat_text, get
from openai.types.chat import ChatCompletionChunk

import streamops as so
from streamops._core._driver import _Chain, _drive_async, _drive_sync, _Flush
from streamops._core._report import StreamReport
from streamops._core._stages import ProcessorStage

KEY = "sk-proj-4Ab12Cd34Ef56Gh78Ij90Kl12Mn34"


async def _aiter(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def _texts(out: list[Any]) -> dict[str, str]:
    """The text of each channel the chunks in ``out`` carry (chat or Anthropic)."""
    if out and get(out[0], "type") == "message_start":
        return {str(i): text for i, text in anthropic_blocks(out).items()}
    fields = ("content", "reasoning_content", "refusal")
    return {"arguments": chat_arguments(out)} | {f: chat_text(out, f) for f in fields}


def run_local(op: so.Operator[Any, Any], raw: list[Any]) -> tuple[Any, ...]:
    stream = op(raw)
    out = list(stream)
    usage = stream.report["budget"]
    assert isinstance(usage, so.BudgetUsage)
    return _texts(out), stream.report.stop_reason, usage.completion_tokens


def run_ledger(op: so.Operator[Any, Any], raw: list[Any], ledger: so.Ledger) -> tuple[Any, ...]:
    async def main() -> tuple[Any, ...]:
        stream = op(_aiter(raw))
        out = [c async for c in stream]
        usage = stream.report["budget"]
        assert isinstance(usage, so.BudgetUsage)
        return _texts(out), stream.report.stop_reason, usage.completion_tokens

    result = asyncio.run(main())
    assert asyncio.run(ledger.spent("k")) == result[2]  # charged what it delivered
    return result


def tool_chunks(*pieces: str) -> list[ChatCompletionChunk]:
    """Chat chunks (the SDK's type) streaming one tool call's arguments in ``pieces``."""
    return chat_stream(tool_args=list(pieces), objects=True)


# -- 4. a cut inside a number: the cut stream is a prefix of the uncut one ------------


@pytest.mark.parametrize(
    "args",
    [
        '{"n": 0.4111111111111111}',  # the fraction passes Luhn: redacted, a JSON string
        '{"n": 4111111111111111, "m": 2}',
        '{"n": [12345678901234567890, -3.25e-10]}',
        '{"s": "a", "n": 0.4111111111111111e5}',
    ],
)
@pytest.mark.parametrize("order", ["redact_first", "budget_first", "budget_alone"])
def test_a_cut_inside_a_number_releases_a_prefix_of_the_uncut_arguments(
    args: str, order: str
) -> None:
    # Cut just before the part of a number redaction changes, the budget gave
    # a bare number ('{"n": 0') that no uncut stream gives ('{"n": "0.[CREDIT_CARD]"}').
    raw = tool_chunks(args)

    def op(limit: int | None) -> so.Operator[Any, Any]:
        b = so.budget(max_tokens=limit or 10**6)
        return {"redact_first": so.redact() | b, "budget_first": b | so.redact(),
                "budget_alone": b}[order]  # fmt: skip

    full = chat_arguments(op(None)(raw))
    json.loads(full)
    for limit in range(1, 30):
        released = chat_arguments(op(limit)(raw))
        assert full.startswith(released), (limit, full, released)


@pytest.mark.parametrize("args", ["4111111111111111", "[4111111111111111]"])
def test_a_number_after_a_cut_in_another_channel_is_not_an_empty_string(args: str) -> None:
    # The answer is cut as its channel ends; the arguments (a number the
    # redaction changes) end after it and nothing of them passes: the number
    # was written as an empty JSON string, '""', no prefix of the uncut stream's.
    raw = chat_stream([("content", ["\\u0040"])], tool_args=[args], objects=True)
    full = chat_arguments((so.redact() | so.budget(max_tokens=10**6))(raw))
    released = chat_arguments((so.redact() | so.budget(max_tokens=1))(raw))
    assert "[CREDIT_CARD]" in full
    assert full.startswith(released)


def test_a_number_is_released_whole_or_not_at_all() -> None:
    # A cut number is another number: a budget releases a number whole or not at all.
    args = '{"n": 12345678901234567890, "m": 7}'
    start, end = args.index("1"), args.index(",")
    for limit in range(1, 20):
        released = chat_arguments(so.budget(max_tokens=limit)(tool_chunks(args)))
        assert args.startswith(released)
        assert not start < len(released) < end, (limit, released)


# -- 2. ledger == local over numbers the redaction changed ---------------------------


@pytest.mark.parametrize(
    "args",
    [
        "[4111111111111111]",
        '{"n": 0.4111111111111111}',
        '{"card": 4111111111111111, "n": 1, "s": "x"}',
        '{"a": [1, 22, 333, 4444, 55555]}',
    ],
)
@pytest.mark.parametrize("order", ["redact_first", "budget_first"])
def test_a_ledger_budget_is_the_local_one_over_redacted_numbers(args: str, order: str) -> None:
    # redact | budget(ledger) gave '["' where the local budget gave '[' (the
    # shell read the number the redaction made a string); budget(ledger) | redact
    # closed the string the local budget left open.
    raw = tool_chunks(*[args[i : i + 5] for i in range(0, len(args), 5)])
    total = run_local(so.budget(max_tokens=10**6), raw)[2] + 10
    for limit in range(1, total):
        ledger = so.MemoryLedger(limit=limit)
        b_local = so.budget(max_tokens=limit)
        b_ledger = so.budget(ledger=ledger, key="k", block=2)
        if order == "redact_first":
            local = run_local(so.redact() | b_local, raw)
            shared = run_ledger(so.redact() | b_ledger, raw, ledger)
        else:
            local = run_local(b_local | so.redact(), raw)
            shared = run_ledger(b_ledger | so.redact(), raw, ledger)
        assert shared == local, limit


def test_a_flush_after_a_ledger_cut_adds_nothing_to_the_channel_it_cut() -> None:
    # The budget cuts a string of the arguments while the redaction before it holds
    # a number further on (a possible card). At the cut, the flush handed that number
    # on to the arguments channel the budget had stopped, which wrote an opening
    # quote for it: '{"k": "hello"' (a cut string that looks closed) where the
    # local budget gives '{"k": "hello'.
    head = '{"k": "hello world and more", "n": 411111111111'
    raw = tool_chunks(head, "1111}")
    full = chat_arguments(so.redact()(raw))
    for limit in range(1, 16):
        ledger = so.MemoryLedger(limit=10**6)
        local = run_local(so.redact() | so.budget(max_tokens=limit), raw)
        b_ledger = so.budget(max_tokens=limit, ledger=ledger, key="k")
        shared = run_ledger(so.redact() | b_ledger, raw, ledger)
        assert full.startswith(shared[0]["arguments"]), (limit, shared)
        assert shared == local, limit


# -- 3. a block after a ledger budget ------------------------------------------------


@pytest.mark.parametrize("limit", [5, 8, 10, 15, 20, 40, 100])
def test_a_block_after_a_ledger_budget_stops_where_the_local_one_does(limit: int) -> None:
    # budget(ledger) | redact(action="block") read the whole chunk before the
    # block stopped the stream in it: it charged every token of the chunk and
    # reported the stop as the budget's.
    raw = tool_chunks('{"a": "x b c y", "b": "long text that goes on and on for many tokens"}')
    block = so.redact([r"b c"], action="block")
    ledger = so.MemoryLedger(limit=limit)
    local = run_local(so.budget(max_tokens=limit) | block, raw)
    shared = run_ledger(so.budget(ledger=ledger, key="k") | block, raw, ledger)
    assert shared == local
    if limit >= 8:
        assert local[1] is so.StopReason.BLOCKED


def test_a_ledger_budget_fuses_the_stages_after_it_per_channel() -> None:
    # Text stages after the budget run in its chain, channel by channel, as
    # without a ledger: a redaction after it sees each channel's own text.
    raw = chat_stream(
        [("content", ["Sending ", KEY[:10], KEY[10:], " now"]),
         ("reasoning_content", ["mm ", KEY[:20], KEY[20:], " ok"])],
        tool_args=['{"k": "', KEY[:12], KEY[12:], '"}'],
        objects=True,
    )  # fmt: skip
    for limit in (3, 9, 20, 60, 100):
        ledger = so.MemoryLedger(limit=limit)
        local = run_local(so.budget(max_tokens=limit) | so.redact(), raw)
        shared = run_ledger(so.budget(ledger=ledger, key="k") | so.redact(), raw, ledger)
        assert shared == local, limit
        assert KEY[:8] not in json.dumps(shared[0])


# -- 1. what redaction held in other channels at a ledger cut ------------------------


def chat_with_tool(objects: bool = True) -> list[Any]:
    return chat_stream(
        [("content", ["Calling it with ", "sk-proj-4Ab12"])],
        tool_args=['{"city": ', '"Paris, France and ', 'more text here please"}'],
        objects=objects,
    )


def claude_with_tool() -> list[Any]:
    # (Blocks come one after another: the text block's held text is out before
    # the tool's input streams. A check that nothing else changes.)
    return anthropic_events(
        [("text", ["Calling it with ", "sk-proj-4Ab12"]),
         ("tool_use", ['{"city": ', '"Paris, France and ', 'more text here please"}'])],
        objects=True,
    )  # fmt: skip


CASES = {
    "chat-tool": (chat_with_tool, ["tool_arguments"]),
    "chat-tool-all": (chat_with_tool, None),
    "anthropic": (claude_with_tool, ["tool_arguments"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_ledger_cut_flushes_what_redaction_held_in_the_other_channels(case: str) -> None:
    # redact | budget(ledger, channels=["tool_arguments"]): at the cut the text
    # redaction held in the answer (a key's first characters) was lost; the
    # local budget flushes it, masked. The shell closed the upstream driver
    # instead of asking it to end its input and flush.
    make, channels = CASES[case]
    raw = make()
    total = run_local(so.redact() | so.budget(max_tokens=10**6, channels=channels), raw)[2]
    for limit in range(1, total + 2):
        ledger = so.MemoryLedger(limit=limit)
        local = run_local(so.redact() | so.budget(max_tokens=limit, channels=channels), raw)
        op = so.redact() | so.budget(ledger=ledger, key="k", channels=channels, block=2)
        shared = run_ledger(op, raw, ledger)
        assert shared == local, limit
        if channels and case.startswith("chat") and limit < total - 2:
            assert "[OPENAI_KEY]" in json.dumps(local[0])
            assert "4Ab12" not in json.dumps(shared[0])


def test_the_chat_flush_is_the_masked_answer() -> None:
    limit = 5
    ledger = so.MemoryLedger(limit=limit)
    op = so.redact() | so.budget(ledger=ledger, key="k", channels=["tool_arguments"])

    async def main() -> list[Any]:
        return [c async for c in op(_aiter(chat_with_tool(objects=False)))]

    out = asyncio.run(main())
    assert chat_text(out, "content") == "Calling it with [OPENAI_KEY]"
    assert chat_arguments(out) == '{"city": "Paris'


# -- the flush signal, in both drivers -----------------------------------------------


class _Hold:
    """A processor that holds its last character until the end (forced: masks it)."""

    done = False

    def __init__(self) -> None:
        self.held = ""

    def feed(self, text: str) -> list[str]:
        out, self.held = self.held + text[:-1], text[-1:]
        return [out] if out else []

    def close(self) -> list[str]:
        return [self.held] if self.held else []

    def truncate(self) -> list[str]:
        return ["#"] if self.held else []


def _chain(report: StreamReport) -> _Chain:
    return _Chain([ProcessorStage("hold", lambda r: _Hold())], report, last=False)


def test_the_sync_driver_flushes_truncated_when_told_to() -> None:
    closed: list[bool] = []

    def source() -> Iterator[str]:
        try:
            yield from ["ab", "cd", "ef"]
        finally:
            closed.append(True)

    report = StreamReport()
    gen = _drive_sync(source(), _chain(report), first=True)
    assert next(gen) == "a"
    report.stop(so.StopReason.BUDGET)  # what a shell after it does at its cut
    assert gen.throw(_Flush()) == "#"  # the held "b", masked: the input ended by force
    assert closed == [True]  # the real upstream is closed before the flush
    assert list(gen) == []


def test_the_async_driver_flushes_truncated_when_told_to() -> None:
    closed: list[bool] = []

    async def source() -> AsyncIterator[str]:
        try:
            for x in ["ab", "cd", "ef"]:
                yield x
        finally:
            closed.append(True)

    async def main() -> list[str]:
        report = StreamReport()
        gen = _drive_async(source(), _chain(report), first=True)
        got = [await anext(gen)]
        report.stop(so.StopReason.BUDGET)
        got.append(await gen.athrow(_Flush()))
        assert closed == [True]
        got += [x async for x in gen]
        return got

    assert asyncio.run(main()) == ["a", "#"]


def test_a_flush_mid_batch_delivers_the_rest_of_the_batch_first() -> None:
    # A chunk that gave several items: the ones not yet handed on come first.
    class Split:
        done = False

        def feed(self, text: str) -> list[str]:
            return list(text)

        def close(self) -> list[str]:
            return ["!"]

    report = StreamReport()
    chain = _Chain([ProcessorStage("split", lambda r: Split())], report, last=False)
    gen = _drive_sync(iter(["abc", "de"]), chain, first=True)
    assert next(gen) == "a"
    assert gen.throw(_Flush()) == "b"
    assert list(gen) == ["c", "!"]


# -- the stop reason when the provider cut the message too ----------------------------


@pytest.mark.parametrize("finish", [None, "length"], ids=["no-end", "length"])
@pytest.mark.parametrize("order", ["redact_first", "budget_first"])
def test_a_ledger_cut_in_what_the_end_releases_is_the_budgets_stop(
    finish: str | None, order: str
) -> None:
    # The arguments' closing bracket is held until they end; released at the end
    # of a message the provider cut, it is over the budget. Without a ledger the
    # stop is the budget's (the cut comes as the channels end, before the end is
    # read as the provider's cut); with one it was 'truncated': the stages before
    # the shell recorded the provider's cut before the shell saw what they released.
    raw = chat_stream(tool_args=["[4111111111111111]"], finish=finish or "stop", objects=True)
    if finish is None:
        raw = raw[:-1]  # no finish chunk: the message never ended
    first = order == "redact_first"
    total = run_local((so.redact() | so.budget(max_tokens=10**6)) if first else so.budget(
        max_tokens=10**6), raw)[2]  # fmt: skip
    for limit in range(1, total + 2):
        ledger = so.MemoryLedger(limit=limit)
        b_local = so.budget(max_tokens=limit)
        b_ledger = so.budget(ledger=ledger, key="k", block=2)
        if first:
            local = run_local(so.redact() | b_local, raw)
            shared = run_ledger(so.redact() | b_ledger, raw, ledger)
        else:
            local = run_local(b_local | so.redact(), raw)
            shared = run_ledger(b_ledger | so.redact(), raw, ledger)
        assert shared == local, limit
        assert local[1] is (so.StopReason.BUDGET if limit < total else so.StopReason.TRUNCATED)
