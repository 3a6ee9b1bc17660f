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
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import anthropic_blocks, chat_arguments, chat_stream, chat_text, get
from openai.types.chat import ChatCompletionChunk

import streamops as so


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
