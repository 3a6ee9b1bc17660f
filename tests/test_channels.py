"""Every text channel of a provider chunk is a stream (issue 15).

Refusals, reasoning, thinking and tool-call arguments used to pass through
unredacted. Each channel now runs through the text operators with its own
state, held text is flushed at the provider's own block boundary, and tool
arguments stay valid JSON.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import (
    anthropic_delta_text,
    anthropic_events,
    chat_arguments,
    chat_chunk,
    chat_stream,
    chat_text,
    dump,
    get,
    thirds,
)
from langchain_core.messages import AIMessageChunk
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

import streamops as so

KEY = "sk-proj-4Ab12Cd34Ef56Gh78Ij90Kl12Mn34"
MAIL = "jo.smith@example.com"


def assert_clean(out: list[Any]) -> None:
    for chunk in out:
        text = dump(chunk)
        assert KEY[:12] not in text, text
        assert "smith@" not in text, text


# -- OpenAI Chat Completions -------------------------------------------------


def openai_stream(field: str, text: str, *, objects: bool) -> list[Any]:
    return chat_stream([(field, thirds(text))], objects=objects)


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
@pytest.mark.parametrize("field", ["content", "refusal", "reasoning_content", "reasoning"])
def test_openai_every_text_field_is_redacted(field: str, objects: bool) -> None:
    text = f"note {KEY} and {MAIL} end."
    out = list(so.redact()(openai_stream(field, text, objects=objects)))
    assert_clean(out)
    assert chat_text(out, field) == "note [OPENAI_KEY] and [EMAIL] end."
    assert len(out) == len(thirds(text)) + 2  # one out per chunk in


def tool_stream(args: str, *, objects: bool, index: int = 0) -> list[Any]:
    """One tool call whose header comes with the role, its arguments in about five pieces."""
    return chat_stream(
        tool_args=thirds(args, 5),
        tool_index=index,
        tool_name="send",
        tool_head_with_role=True,
        objects=objects,
    )


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
def test_openai_tool_arguments_are_redacted_and_stay_valid_json(objects: bool) -> None:
    args = json.dumps({"to": MAIL, "token": KEY, "n": 3, "note": 'say "hi"\n'})
    out = list(so.redact()(tool_stream(args, objects=objects)))
    assert_clean(out)
    parsed = json.loads(chat_arguments(out))
    assert parsed == {"to": "[EMAIL]", "token": "[OPENAI_KEY]", "n": 3, "note": 'say "hi"\n'}


def test_tool_arguments_with_json_escapes_are_decoded_before_matching() -> None:
    escaped = '{"to": "jo.smith\\u0040example.com", "emoji": "\\ud83d\\ude00 ok"}'
    out = list(so.redact()(tool_stream(escaped, objects=False)))
    parsed = json.loads(chat_arguments(out))
    assert parsed == {"to": "[EMAIL]", "emoji": "\U0001f600 ok"}


def test_parse_tool_calls_reads_redacted_arguments() -> None:
    args = json.dumps({"to": MAIL})
    out = list(so.redact()(tool_stream(args, objects=True)))
    updates = list(so.parse_tool_calls()(out))
    assert updates[-1].arguments == {"to": "[EMAIL]"}


def test_each_tool_call_is_its_own_channel() -> None:
    # A secret split across two different tool calls is two harmless halves.
    half = len(MAIL) // 2
    chunks = [
        chat_chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": f'{{"a": "{MAIL[:half]}'}}]}
        ),
        chat_chunk(
            {"tool_calls": [{"index": 1, "function": {"arguments": f'{{"b": "{MAIL[half:]}"}}'}}]}
        ),
        chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"}'}}]}),
        chat_chunk({}, "tool_calls"),
    ]
    out = list(so.redact()(chunks))
    assert chat_arguments(out).count("smith") == 1


def test_channels_option_selects_what_is_redacted() -> None:
    text = f"mail {MAIL} now"
    out = list(
        so.redact(channels=["content"])(openai_stream("reasoning_content", text, objects=False))
    )
    assert chat_text(out, "reasoning_content") == text
    with pytest.raises(ValueError, match="unknown channel 'thoughts'"):
        so.redact(channels=["thoughts"])
    with pytest.raises(TypeError, match="channels must be an iterable"):
        so.redact(channels=3)  # type: ignore[arg-type]


def test_length_finish_masks_a_partial_secret_in_every_channel() -> None:
    chunks = [
        chat_chunk({"reasoning_content": "the key: " + KEY[:10], "content": "use " + KEY[:9]}),
        chat_chunk({}, "length"),
    ]
    out = list(so.redact()(chunks))
    assert_clean(out)
    assert "sk-proj" not in json.dumps(out)


def test_report_released_text_is_the_answer_only() -> None:
    chunks = [
        chat_chunk({"reasoning_content": "think", "content": "answer"}),
        chat_chunk({}, "stop"),
    ]
    stream = so.redact()(chunks)
    list(stream)
    assert stream.report.released_text == "answer"


# -- Anthropic ----------------------------------------------------------------


def claude_events(*, objects: bool, stop_reason: str = "end_turn") -> list[Any]:
    """Thinking that mails, a text block ending in "jo", a tool call carrying the key."""
    return anthropic_events(
        [
            ("thinking", thirds(f"the user mailed {MAIL} and ")),
            ("text", ["Calling the tool for jo"]),
            ("tool_use", thirds(json.dumps({"token": KEY}), 4)),
        ],
        stop_reason=stop_reason,
        objects=objects,
    )


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
def test_anthropic_thinking_and_tool_input_are_redacted_block_by_block(objects: bool) -> None:
    source = claude_events(objects=objects)
    out = list(so.redact()(source))
    assert_clean(out)
    blocks: dict[int, list[str]] = {}
    order: list[tuple[str, Any]] = []
    for e in out:
        order.append((get(e, "type"), get(e, "index")))
        if get(e, "type") == "content_block_delta":
            blocks.setdefault(get(e, "index"), []).append(anthropic_delta_text(e))
    assert "".join(blocks[0]) == "the user mailed [EMAIL] and "
    assert "".join(blocks[1]) == "Calling the tool for jo"  # "jo" flushed in its own block
    assert json.loads("".join(blocks[2])) == {"token": "[OPENAI_KEY]"}
    # Every delta of a block comes before that block's stop, blocks in order.
    stops = [i for i, (kind, _) in enumerate(order) if kind == "content_block_stop"]
    for index, stop in zip((0, 1, 2), stops, strict=True):
        assert all(
            pos < stop
            for pos, (kind, idx) in enumerate(order)
            if kind == "content_block_delta" and idx == index
        )
    assert {type(e) for e in out} == {type(e) for e in source}


def test_anthropic_max_tokens_masks_a_partial_secret_at_the_block_stop() -> None:
    events: list[dict[str, Any]] = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "use " + KEY[:12]},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {}},
        {"type": "message_stop"},
    ]
    out = list(so.redact()(events))
    assert_clean(out)
    assert [e["type"] for e in out][-3:] == ["content_block_stop", "message_delta", "message_stop"]


# -- OpenAI Responses -----------------------------------------------------------


def responses_events(*, objects: bool, final: str = "response.completed") -> list[Any]:
    text = f"Mail {MAIL} now"
    reasoning = f"key is {KEY}."
    args = json.dumps({"to": MAIL})
    seq = iter(range(1000))
    ev: list[dict[str, Any]] = []

    def add(data: dict[str, Any]) -> None:
        ev.append({**data, "sequence_number": next(seq)})

    base = {"id": "r1", "object": "response", "created_at": 1, "model": "m", "output": []}
    response = {
        **base,
        "status": "in_progress",
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    add({"type": "response.created", "response": response})
    rs = {"type": "reasoning", "id": "rs1", "summary": []}
    add({"type": "response.output_item.added", "output_index": 0, "item": rs})
    for p in thirds(reasoning):
        add(
            {
                "type": "response.reasoning_summary_text.delta",
                "item_id": "rs1",
                "output_index": 0,
                "summary_index": 0,
                "delta": p,
            }
        )
    add(
        {
            "type": "response.reasoning_summary_text.done",
            "item_id": "rs1",
            "output_index": 0,
            "summary_index": 0,
            "text": reasoning,
        }
    )
    rs_done = {**rs, "summary": [{"type": "summary_text", "text": reasoning}]}
    add({"type": "response.output_item.done", "output_index": 0, "item": rs_done})
    msg = {
        "type": "message",
        "id": "m1",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    add({"type": "response.output_item.added", "output_index": 1, "item": msg})
    for p in thirds(text):
        add(
            {
                "type": "response.output_text.delta",
                "item_id": "m1",
                "output_index": 1,
                "content_index": 0,
                "delta": p,
                "logprobs": [],
            }
        )
    add(
        {
            "type": "response.output_text.done",
            "item_id": "m1",
            "output_index": 1,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        }
    )
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    add(
        {
            "type": "response.content_part.done",
            "item_id": "m1",
            "output_index": 1,
            "content_index": 0,
            "part": part,
        }
    )
    msg_done = {**msg, "status": "completed", "content": [part]}
    add({"type": "response.output_item.done", "output_index": 1, "item": msg_done})
    fc = {
        "type": "function_call",
        "id": "fc1",
        "call_id": "call_1",
        "name": "send",
        "arguments": "",
        "status": "in_progress",
    }
    add({"type": "response.output_item.added", "output_index": 2, "item": fc})
    for p in thirds(args, 4):
        add(
            {
                "type": "response.function_call_arguments.delta",
                "item_id": "fc1",
                "output_index": 2,
                "delta": p,
            }
        )
    add(
        {
            "type": "response.function_call_arguments.done",
            "item_id": "fc1",
            "output_index": 2,
            "arguments": args,
        }
    )
    fc_done = {**fc, "arguments": args, "status": "completed"}
    add({"type": "response.output_item.done", "output_index": 2, "item": fc_done})
    status = "completed" if final == "response.completed" else "incomplete"
    add(
        {
            "type": final,
            "response": {**response, "status": status, "output": [rs_done, msg_done, fc_done]},
        }
    )
    if not objects:
        return ev
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    return [adapter.validate_python(e) for e in ev]


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
def test_responses_every_channel_and_every_done_event_agree(objects: bool) -> None:
    out = list(so.redact()(responses_events(objects=objects)))
    assert_clean(out)
    data = [e if isinstance(e, dict) else e.model_dump(mode="json") for e in out]
    seqs = [e["sequence_number"] for e in data]
    assert seqs == sorted(set(seqs))  # unique and increasing
    deltas: dict[str, str] = {}
    for e in data:
        if e["type"].endswith(".delta"):
            deltas[e["type"]] = deltas.get(e["type"], "") + e["delta"]
    assert deltas["response.output_text.delta"] == "Mail [EMAIL] now"
    assert deltas["response.reasoning_summary_text.delta"] == "key is [OPENAI_KEY]."
    assert json.loads(deltas["response.function_call_arguments.delta"]) == {"to": "[EMAIL]"}
    done = {e["type"]: e for e in data}
    assert done["response.output_text.done"]["text"] == deltas["response.output_text.delta"]
    assert (
        done["response.reasoning_summary_text.done"]["text"]
        == (deltas["response.reasoning_summary_text.delta"])
    )
    assert (
        done["response.function_call_arguments.done"]["arguments"]
        == (deltas["response.function_call_arguments.delta"])
    )
    final = done["response.completed"]["response"]["output"]
    assert final[0]["summary"][0]["text"] == deltas["response.reasoning_summary_text.delta"]
    assert final[1]["content"][0]["text"] == deltas["response.output_text.delta"]
    assert final[2]["arguments"] == deltas["response.function_call_arguments.delta"]
    # A delta never comes after the done event of its channel.
    kinds = [e["type"] for e in data]
    assert kinds.index("response.output_text.done") > max(
        i for i, k in enumerate(kinds) if k == "response.output_text.delta"
    )


# -- LangChain ------------------------------------------------------------------


def test_langchain_reasoning_tool_args_and_kwargs_are_redacted() -> None:
    args = json.dumps({"token": KEY})
    chunks = [
        AIMessageChunk(
            content=[{"type": "thinking", "thinking": f"mail {MAIL[:6]}", "index": 0}], id="r1"
        ),
        AIMessageChunk(
            content=[{"type": "thinking", "thinking": f"{MAIL[6:]} ok", "index": 0}], id="r1"
        ),
        AIMessageChunk(content="", additional_kwargs={"reasoning_content": "also " + KEY}, id="r1"),
        AIMessageChunk(
            content="",
            id="r1",
            tool_call_chunks=[{"name": "f", "args": args[:15], "id": "t1", "index": 0}],
        ),
        AIMessageChunk(
            content="",
            id="r1",
            tool_call_chunks=[{"name": None, "args": args[15:], "id": None, "index": 0}],
        ),
        AIMessageChunk(content="done", id="r1", response_metadata={"finish_reason": "stop"}),
    ]
    out = list(so.redact()(chunks))
    assert_clean(out)
    merged = out[0]
    for c in out[1:]:
        merged = merged + c
    assert merged.tool_calls[0]["args"] == {"token": "[OPENAI_KEY]"}
    assert merged.additional_kwargs["reasoning_content"] == "also [OPENAI_KEY]"
    thinking = "".join(b.get("thinking", "") for b in merged.content if isinstance(b, dict))
    assert thinking == "mail [EMAIL] ok"


# -- chains with several stages -------------------------------------------------


@pytest.mark.parametrize("objects", [False, True], ids=["dicts", "objects"])
def test_collect_and_identity_around_channels(objects: bool) -> None:
    op = so.identity() | so.redact() | so.collect() | so.redact(["email"])
    stream = op(openai_stream("refusal", f"no, {MAIL}", objects=objects))
    out = list(stream)
    assert_clean(out)
    assert chat_text(out, "refusal") == "no, [EMAIL]"


# -- second review: tool arguments are billed and redacted whole ------------------


def test_a_budget_counts_the_numbers_and_structure_of_tool_arguments() -> None:
    doc = json.dumps({"values": list(range(2000))})
    stream = so.budget(max_tokens=50)(tool_stream(doc, objects=False))
    out = list(stream)
    assert stream.report.stop_reason is so.StopReason.BUDGET
    released = chat_arguments(out)
    assert 20 < len(released) < 400  # cut near 50 tokens, not all 12,000 characters


def test_numbers_in_tool_arguments_are_redacted_into_strings() -> None:
    args = '{"card": 4111111111111111, "n": 42, "ok": true}'
    out = list(so.redact()(tool_stream(args, objects=True)))
    assert json.loads(chat_arguments(out)) == {"card": "[CREDIT_CARD]", "n": 42, "ok": True}


def test_escaped_lone_surrogates_stay_encodable() -> None:
    for args, finish in [('{"k": "hi \\ud83d', "length"), ('{"k": "\\ud83d"}', "tool_calls")]:
        chunks = tool_stream(args, objects=True)
        chunks[-1] = ChatCompletionChunk.model_validate(chat_chunk({}, finish))
        for chunk in so.redact()(chunks):
            chunk.model_dump_json()  # no lone surrogate that cannot be encoded


def test_an_invalid_escape_passes_through_unchanged() -> None:
    args = '{"k":"\\u00zz"}'
    out = chat_arguments(list(so.redact()(tool_stream(args, objects=False))))
    assert out == args  # the consumer's parser reports it, as it would have


@pytest.mark.parametrize("action", ["redact", "block"])
def test_a_raw_control_character_in_a_string_passes_through_unchanged(action: str) -> None:
    # Not JSON (a string holds control characters only escaped): written as it came,
    # never escaped, in every chunking; what a block releases is a prefix of it.
    args = '{"q": "a\x1fb", "r": "\x00 mail jo.smith@example.com\n"}'
    for cut in range(1, len(args)):
        chunks = chat_stream(tool_args=[args[:cut], args[cut:]])
        op = so.redact(["email"], action="block" if action == "block" else "redact")
        out = chat_arguments(list(op(chunks)))
        if action == "block":
            assert args.startswith(out), (cut, out)
        else:
            assert out == args.replace("jo.smith@example.com", "[EMAIL]"), (cut, out)


@pytest.mark.parametrize("args", ['{"n": -3, "m": [-1.5e-2]}', '{"n": -x}', "[1, -", "- 2"])
def test_a_minus_sign_at_any_cut_passes_through(args: str) -> None:
    # A minus sign with no digit after it yet (the chunk ends there, or the text is
    # not JSON) made the reader of the text outside strings loop for ever.
    for cut in range(1, len(args)):
        chunks = chat_stream(tool_args=[args[:cut], args[cut:]])
        assert chat_arguments(list(so.redact(["email"])(chunks))) == args, cut


@pytest.mark.parametrize(
    "args",
    [
        r'{"ok": true, "to": "ann\u0040example.com", "card": 4111111111111111}',
        r'[false, null, true, "ann\u0040example.com"]',
        r'{"a": null}',
    ],
)
def test_a_literal_cut_anywhere_stays_json(args: str) -> None:
    # A cut inside true, false or null ('tr' | 'ue') read the literal's start as no
    # JSON: the rest went through as plain text, its escapes undecoded (the e-mail
    # passed) and its numbers unquoted (invalid JSON after a card's replacement).
    whole = chat_arguments(list(so.redact()(chat_stream(tool_args=[args]))))
    assert "example.com" not in whole
    json.loads(whole)
    for cut in range(1, len(args)):
        for pieces in (
            [args[:cut], args[cut:]],
            [args[:cut], args[cut : cut + 1], args[cut + 1 :]],
        ):
            out = chat_arguments(list(so.redact()(chat_stream(tool_args=pieces))))
            assert out == whole, (cut, out)


@pytest.mark.parametrize(
    ("args", "by_char"),
    [('{"card": 4111111111111111, "n": 1}', False), ('{"n": [1, 3.5e-1]}', True)],
)
def test_a_budget_cut_after_a_redaction_in_a_number_releases_a_prefix(
    args: str, by_char: bool
) -> None:
    # A number the redaction changed, cut by the budget, was closed as a JSON
    # string ('"[C"'); and the number a stop ended inside was read again at the
    # end of the stream (a '""' after it).
    pieces = list(args) if by_char else [args]
    full = chat_arguments(list(so.redact()(chat_stream(tool_args=pieces))))
    json.loads(full)
    for limit in range(1, 16):
        op = so.redact() | so.budget(max_tokens=limit)
        out = chat_arguments(list(op(chat_stream(tool_args=pieces))))
        assert full.startswith(out), (limit, out)


def test_a_stream_without_its_end_event_ended_by_force() -> None:
    """No finish reason, no message_stop, an error event: the message is not complete."""
    partial = "my key is sk-proj-Ab12Cd34"
    no_finish = [chat_chunk({"content": partial})]  # the connection dropped before [DONE]
    anthropic_error = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": partial},
        },
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    responses_error = [
        {
            "type": "response.output_text.delta",
            "item_id": "m1",
            "output_index": 0,
            "content_index": 0,
            "delta": partial,
            "sequence_number": 1,
        },
        {"type": "error", "code": "server_error", "message": "boom", "sequence_number": 2},
    ]
    for source in (no_finish, anthropic_error, anthropic_error[:2], responses_error):
        out = list(so.redact()(source))
        assert "sk-proj" not in json.dumps(out), source


def test_more_channels_openai_and_responses() -> None:
    """Found by review: the deprecated function_call, audio transcripts, MCP, custom
    tool and code-interpreter inputs passed through unredacted."""
    chunks = [
        chat_chunk({"function_call": {"name": "f", "arguments": '{"key": "' + KEY[:10]}}),
        chat_chunk({"function_call": {"arguments": KEY[10:] + '"}'}}),
        chat_chunk({"audio": {"id": "a1", "transcript": "mail " + MAIL}}),
        chat_chunk({}, "stop"),
    ]
    for source in (chunks, [ChatCompletionChunk.model_validate(c) for c in chunks]):
        assert_clean(list(so.redact()(source)))
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    events: list[dict[str, Any]] = []
    for n, (kind, field) in enumerate(
        [
            ("response.mcp_call_arguments", "arguments"),
            ("response.custom_tool_call_input", "input"),
            ("response.code_interpreter_call_code", "code"),
        ]
    ):
        text = json.dumps({"k": KEY}) if "mcp" in kind else f"key = '{KEY}'"
        base = {"item_id": f"i{n}", "output_index": n}
        events += [
            {"type": f"{kind}.delta", "delta": text[:15], **base},
            {"type": f"{kind}.delta", "delta": text[15:], **base},
            {"type": f"{kind}.done", field: text, **base},
        ]
    events = [{**e, "sequence_number": i} for i, e in enumerate(events)]
    for source in (events, [adapter.validate_python(e) for e in events]):
        assert_clean(list(so.redact()(source)))


def test_langchain_text_held_at_a_tool_block_stays_before_it_and_mirrors_agree() -> None:
    """Found by review: held text came after the tool call; tool-call mirrors leaked."""
    chunks = [
        AIMessageChunk(content=[{"type": "text", "text": "Write to bob", "index": 0}], id="r"),
        AIMessageChunk(
            content=[
                {"type": "tool_use", "id": "t1", "name": "f", "input": {}, "index": 1},
                {"type": "input_json_delta", "partial_json": '{"key": "' + KEY, "index": 1},
            ],
            tool_call_chunks=[{"name": "f", "args": '{"key": "' + KEY, "id": "t1", "index": 1}],
            additional_kwargs={
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "t1",
                        "function": {"name": "f", "arguments": '{"key": "' + KEY},
                    }
                ]
            },
            id="r",
        ),
        AIMessageChunk(
            content=[{"type": "input_json_delta", "partial_json": '"}', "index": 1}],
            tool_call_chunks=[{"name": None, "args": '"}', "id": None, "index": 1}],
            id="r",
        ),
        AIMessageChunk(content="", id="r", response_metadata={"stop_reason": "tool_use"}),
    ]
    out = list(so.redact()(chunks))
    assert_clean(out)
    merged = out[0]
    for c in out[1:]:
        merged = merged + c
    texts = [b for b in merged.content if isinstance(b, dict) and b.get("type") == "text"]
    assert "".join(b["text"] for b in texts) == "Write to bob"
    kinds = [b.get("type") for b in merged.content if isinstance(b, dict)]
    assert kinds.index("text") < kinds.index("tool_use")
    assert merged.tool_calls[0]["args"] == {"key": "[OPENAI_KEY]"}


# -- third review ----------------------------------------------------------------


def test_block_in_tool_arguments_ends_the_stream() -> None:
    for args in (json.dumps({"k": KEY, "x": 1}), '{"n": 4111111111111111, "k": "x"}'):
        source = [*tool_stream(args, objects=False), chat_chunk({"content": "after"})]
        stream = so.redact(action="block")(source)
        out = list(stream)
        assert stream.report.stop_reason is so.StopReason.BLOCKED
        assert "after" not in json.dumps(out)
        assert_clean(out)


def test_a_budget_stops_an_array_of_numbers_early() -> None:
    doc = json.dumps({"values": list(range(3000))})
    pulled: list[int] = []

    def source() -> Any:
        for i, chunk in enumerate(tool_stream(doc, objects=False)):
            pulled.append(i)
            yield chunk

    stream = so.budget(max_tokens=50)(source())
    list(stream)
    assert stream.report.stop_reason is so.StopReason.BUDGET
    assert len(pulled) < 20  # not the whole array before the cut


def test_a_number_replaced_by_nothing_stays_valid_json() -> None:
    args = '{"n": 4111111111111111, "m": [4111111111111111]}'
    for replacement in ("", "X"):
        out = chat_arguments(
            list(so.redact(replacement=replacement)(tool_stream(args, objects=False)))
        )
        assert json.loads(out) == {"n": replacement, "m": [replacement]}


def test_arguments_that_are_not_json_are_one_plain_message() -> None:
    for args in (f"{{'k': '{KEY}'}}", "{'k': '4111 1111 1111 1111'}", "key=AKIAIOSFODNN7EXAMPLE"):
        out = list(so.redact()(tool_stream(args, objects=False)))
        text = chat_arguments(out)
        assert KEY[:8] not in text
        assert "4111 1111" not in text
        assert "AKIAIOSF" not in text


def test_langchain_argument_copies_get_their_tail_too() -> None:
    args = json.dumps({"n": 5, "key": KEY})
    chunks = [
        AIMessageChunk(
            content=[{"type": "input_json_delta", "partial_json": piece, "index": 1}],
            tool_call_chunks=[{"name": None, "args": piece, "id": None, "index": 1}],
            additional_kwargs={"tool_calls": [{"index": 1, "function": {"arguments": piece}}]},
            id="r",
        )
        for piece in thirds(args, 4)
    ]
    chunks.append(AIMessageChunk(content="", id="r", response_metadata={"stop_reason": "tool_use"}))
    merged = None
    for c in so.redact()(chunks):
        merged = c if merged is None else merged + c
    assert merged is not None
    expected = {"n": 5, "key": "[OPENAI_KEY]"}
    assert merged.tool_calls[0]["args"] == expected
    raw = merged.additional_kwargs["tool_calls"][0]["function"]["arguments"]
    assert json.loads(raw) == expected
    blocks = [b for b in merged.content if isinstance(b, dict)]
    assert json.loads("".join(b["partial_json"] for b in blocks)) == expected


def test_responses_texts_that_came_with_no_delta_are_redacted() -> None:
    item: dict[str, Any] = {
        "type": "mcp_call",
        "id": "i1",
        "name": "f",
        "server_label": "s",
        "arguments": json.dumps({"k": KEY}),
        "status": "completed",
    }
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_text.done",
            "item_id": "m1",
            "output_index": 0,
            "content_index": 0,
            "text": f"mail {MAIL}",
            "logprobs": [],
        },
        {"type": "response.output_item.done", "output_index": 1, "item": item},
        {"type": "response.completed", "response": {"id": "r", "output": [item]}},
    ]
    events = [{**e, "sequence_number": i} for i, e in enumerate(events)]
    out = list(so.redact()(events))
    assert_clean(out)
    assert out[0]["text"] == "mail [EMAIL]"


def test_an_open_number_at_the_end_of_the_arguments_is_cut_like_an_open_string() -> None:
    for args in ('{"k": 4111111111111', '{"k": "4111 1111 1111 1'):
        out = chat_arguments(list(so.redact()(tool_stream(args, objects=False))))
        assert "4111" not in out, out
