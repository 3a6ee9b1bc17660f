"""Responses items as a proxy or a hand-built stream may send them: no ``id``, whole arguments.

The real wire gives every output item an ``id`` and sends a function call's
arguments as ``""`` at ``output_item.added``, then as deltas. A proxy, a
recorded stream or a test fixture may do neither: an item without an id is
still the same item at ``output_item.added``, ``output_item.done`` and in
``response.completed`` (it sits at the same ``output_index``), so it is fed
once; and arguments given whole are arguments wherever they arrive (counted
and redacted as ``tool_arguments``, JSON kept valid), not a tool's output.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_budget_whole import numbered, run_ledger, run_local, usage_of
from test_tool_outputs import RESPONSE

import streamops as so

ENC = so.get_encoding("cl100k_base")
OUTPUT = "file contents of notes.txt, mail ops@example.com " * 6
OTHER = "the other file lists ann@example.com and nothing else " * 4
ARGS = json.dumps({"to": "ann@example.com", "body": "the report is ready", "n": 3})


def tokens(text: str) -> int:
    return len(ENC.encode(text))


def mcp(output: str, **extra: Any) -> dict[str, Any]:
    return {"type": "mcp_call", "server_label": "files", "name": "cat", "arguments": "",
            "output": output, "status": "completed", **extra}  # fmt: skip


def repeated(*items: dict[str, Any], added: list[dict[str, Any]] | None = None) -> list[Any]:
    """Each item at ``output_item.added`` (or as ``added`` says), ``.done`` and completed."""
    events: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        first = item if added is None else added[index]
        events += [
            {"type": "response.output_item.added", "output_index": index, "item": first},
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]
    events.append(
        {"type": "response.completed",
         "response": {**RESPONSE, "status": "completed", "output": list(items)}}
    )  # fmt: skip
    return numbered(events)


def shown(out: list[dict[str, Any]], index: int, field: str) -> list[Any]:
    """``field`` of output item ``index`` in every event that shows it."""
    values = []
    for event in out:
        if event["type"].startswith("response.output_item."):
            if event["output_index"] == index:
                values.append(event["item"][field])
        elif event["type"] == "response.completed":
            values.append(event["response"]["output"][index][field])
    return values


@pytest.mark.parametrize("with_id", [True, False], ids=["id", "no-id"])
def test_an_item_repeated_whole_is_counted_once_with_or_without_an_id(with_id: bool) -> None:
    item = mcp(OUTPUT, id="mc1") if with_id else mcp(OUTPUT)
    stream = so.budget(max_tokens=10**6, channels=["tool_output"])(repeated(item))
    out = list(stream)
    assert usage_of(stream.report).channel_tokens == {"tool_output": tokens(OUTPUT)}
    assert shown(out, 0, "output") == [OUTPUT] * 3


def test_an_item_without_an_id_is_redacted_once_and_alike_everywhere() -> None:
    stream = so.redact(["email"])(repeated(mcp(OUTPUT)))
    out = list(stream)
    redactions = [e for e in stream.report.events if e.kind == "redact.redact"]
    assert len(redactions) == OUTPUT.count("@")
    assert shown(out, 0, "output") == [OUTPUT.replace("ops@example.com", "[EMAIL]")] * 3


def test_items_without_ids_at_different_places_are_kept_apart() -> None:
    # keyed on the place: the second item is not taken for a repetition of the first
    stream = so.budget(max_tokens=10**6, channels=["tool_output"])(
        repeated(mcp(OUTPUT), mcp(OTHER))
    )
    out = list(stream)
    assert usage_of(stream.report).channel_tokens == {"tool_output": tokens(OUTPUT) + tokens(OTHER)}
    assert shown(out, 0, "output") == [OUTPUT] * 3
    assert shown(out, 1, "output") == [OTHER] * 3


def call(arguments: str, **extra: Any) -> dict[str, Any]:
    return {"type": "function_call", "call_id": "c1", "name": "send", "arguments": arguments,
            "status": "completed", **extra}  # fmt: skip


def argument_tokens() -> int:
    """What a budget counts in ARGS: each string value, number and structure run alone."""
    delta = {"type": "response.function_call_arguments.delta", "item_id": "f", "output_index": 0}
    stream = so.budget(max_tokens=10**6)(numbered([{**delta, "delta": ARGS}]))
    list(stream)
    used: int = usage_of(stream.report).channel_tokens["tool_arguments"]
    return used


@pytest.mark.parametrize("with_id", [True, False], ids=["id", "no-id"])
def test_arguments_given_whole_at_added_are_arguments_counted_once(with_id: bool) -> None:
    item = call(ARGS, id="fc1") if with_id else call(ARGS)
    stream = so.budget(max_tokens=10**6, channels=["tool_arguments", "tool_output"])(repeated(item))
    out = list(stream)
    assert usage_of(stream.report).channel_tokens == {"tool_arguments": argument_tokens()}
    assert shown(out, 0, "arguments") == [ARGS] * 3


@pytest.mark.parametrize("with_id", [True, False], ids=["id", "no-id"])
def test_arguments_given_whole_at_added_are_redacted_as_json_alike_everywhere(
    with_id: bool,
) -> None:
    item = call(ARGS, id="fc1") if with_id else call(ARGS)
    stream = so.redact(["email"])(repeated(item))
    out = list(stream)
    assert [e.kind for e in stream.report.events].count("redact.redact") == 1
    expected = json.dumps({"to": "[EMAIL]", "body": "the report is ready", "n": 3})
    assert shown(out, 0, "arguments") == [expected] * 3


def test_arguments_given_whole_only_at_done_are_arguments_too() -> None:
    # the wire's own shape with no deltas: "" at added, whole at done and completed
    stream = so.budget(max_tokens=10**6, channels=["tool_arguments", "tool_output"])(
        repeated(call(ARGS), added=[call("", status="in_progress")])
    )
    out = list(stream)
    assert usage_of(stream.report).channel_tokens == {"tool_arguments": argument_tokens()}
    assert shown(out, 0, "arguments") == ["", ARGS, ARGS]


def test_streamed_messages_without_ids_keep_their_own_texts() -> None:
    # deltas without an item_id: each message's channel is its place in the output
    texts = ["Write to ann@example.com today.", "Then tell bob@example.com."]
    events: list[dict[str, Any]] = []
    items = []
    for index, text in enumerate(texts):
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {"type": "message", "role": "assistant", "status": "completed", "content": [part]}
        items.append(item)
        where = {"output_index": index, "content_index": 0}
        events += [
            {"type": "response.output_item.added", "output_index": index,
             "item": {**item, "status": "in_progress", "content": []}},
            *({"type": "response.output_text.delta", **where, "delta": text[i : i + 4],
               "logprobs": []} for i in range(0, len(text), 4)),
            {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **where, "part": part},
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]  # fmt: skip
    events.append(
        {"type": "response.completed",
         "response": {**RESPONSE, "status": "completed", "output": items}}
    )  # fmt: skip
    out = list(so.redact(["email"])(numbered(events)))
    for index, text in enumerate(texts):
        streamed = "".join(
            e["delta"]
            for e in out
            if e["type"] == "response.output_text.delta" and e["output_index"] == index
        )
        assert streamed == text.replace(text.split()[2].rstrip("."), "[EMAIL]")
        copies = [
            e["text"]
            for e in out
            if e["type"] == "response.output_text.done" and e["output_index"] == index
        ]
        copies += [
            e["part"]["text"]
            for e in out
            if e["type"] == "response.content_part.done" and e["output_index"] == index
        ]
        copies += [p["text"] for content in shown(out, index, "content")[1:] for p in content]
        assert copies == [streamed] * 4, index


@pytest.mark.parametrize("with_id", [True, False], ids=["id", "no-id"])
def test_a_ledger_is_exact_over_arguments_and_outputs_given_whole(with_id: bool) -> None:
    ids = [{"id": "fc1"}, {"id": "mc1"}] if with_id else [{}, {}]
    raw = repeated(call(ARGS, **ids[0]), mcp(OUTPUT, **ids[1]))
    channels = ["tool_arguments", "tool_output"]
    total = run_local(raw, 10**6, channels=channels)[1].completion_tokens
    assert total == argument_tokens() + tokens(OUTPUT)
    for limit in range(1, total + 2):
        _, usage, stop, spent = run_ledger(raw, limit, channels=channels, block=7)
        _, local_usage, local_stop = run_local(raw, limit, channels=channels)
        assert usage.completion_tokens == spent == min(limit, total), limit
        assert stop is local_stop, limit
        assert usage.channel_tokens == local_usage.channel_tokens, limit
