"""Unit tests of the incremental JSON parser family (streamops._json._operator*)."""

from __future__ import annotations

import asyncio
import copy
import datetime
import enum
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

import streamops as so
from streamops._json._parser import JSONParser


def run(op: so.Operator[Any, Any], chunks: Iterable[Any]) -> list[Any]:
    """Collect an operator's output, typed as values (not text)."""
    return list(op(chunks))


def _values(chunks: list[str], **opts: Any) -> list[Any]:
    """Deep copies of the snapshots, taken as they are yielded (the value is live)."""
    stream: so.SyncStream[Any] = so.parse_json(**opts)(chunks)
    return [copy.deepcopy(v) for v in stream]


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


DOC = (
    '{"a": [1, -0, 2.5, -1.25e-3, 1E400, 123456789012345678901234567890, true, false, null],'
    ' "s": "x\\"y\\\\z\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\ud800!", "o": {"": {}}, "e": []}'
)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 1024])
def test_final_value_equals_json_loads(size: int) -> None:
    values = _values(_split(DOC, size))
    assert repr(values[-1]) == repr(json.loads(DOC))
    assert type(values[-1]["a"][5]) is int


@pytest.mark.parametrize(
    "text", ["12", "-0", "-0.0", "1E400", '"s"', "true", "null", " [ ] ", "{}", "\n3.5e+2\t"]
)
def test_scalars_and_whitespace(text: str) -> None:
    for size in (1, 2, 100):
        assert repr(_values(_split(text, size))[-1]) == repr(json.loads(text))


def test_partial_values_grow_in_place() -> None:
    out = []
    s: so.SyncStream[Any] = so.parse_json()(['{"name": "Bo', 'b", "n": 1', "2, ", '"t": tr', "ue}"])
    for v in s:
        out.append(copy.deepcopy(v))
        last = v
    assert out == [
        {"name": "Bo"},
        {"name": "Bob"},
        {"name": "Bob", "n": 12},
        {"name": "Bob", "n": 12, "t": True},
    ]
    assert last is not None


def test_snapshot_is_one_live_object() -> None:
    seen = run(so.parse_json(), ["[1, ", "2, ", "3]"])
    assert seen[0] is seen[1] is seen[2]
    assert seen[0] == [1, 2, 3]


def test_numbers_split_anywhere() -> None:
    assert _values(["[12", ".5e", "3]"]) == [[], [12500.0]]
    assert _values(["12", ".5e", "3"]) == [12500.0]  # top-level: complete at the end only


def test_surrogate_pair_split_never_shows_half() -> None:
    text = '"a\\ud83d\\ude00b"'
    for cut in range(1, len(text)):
        values = _values([text[:cut], text[cut:]])
        assert values[-1] == "a\U0001f600b"
        for v in values:
            assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in v)


# Every edge of the parser's fast paths: escapes cut right after the backslash
# or inside \u, surrogate pairs, keys with escapes, printable-test outliers
# (raw DEL, NBSP, soft hyphen, U+2028 are valid unescaped), numbers, literals.
TRICKY = (
    '{"k\\"e\\u00e9y": ["a\\\\b\\"c", "\\ud83d\\ude00\\ud800x\\n", "\x7f\xa0\xad\u2028\U0001f600",'
    ' -0.5e+2, 10, true, null, {}], "": "\\/"}'
)


def test_every_two_and_three_way_split() -> None:
    final = json.loads(TRICKY)
    n = len(TRICKY)
    for i in range(n + 1):
        for j in range(i, n + 1, 3):
            parts = [TRICKY[:i], TRICKY[i:j], TRICKY[j:]]
            values = _values(parts)
            assert repr(values[-1]) == repr(final), parts
            assert all(type(v) is dict for v in values), parts
            key = 'k"e\u00e9y'
            for v in values:  # strings only grow: never half a pair or half an escape
                for part, whole in zip(v.get(key, []), final[key], strict=False):
                    assert type(part) is type(whole), parts
                    if isinstance(part, str):
                        assert whole.startswith(part), parts


@pytest.mark.parametrize(
    ("chunks", "offset"),
    [
        (['"ab', 'c\x01d"'], 4),  # a control character in a chunk inside a string
        (['{"ab', "c\x01"], 5),  # ... inside a key
        (['"a\\', "q"], 3),  # a bad escape right after a chunk ending in a backslash
        (['"\\u12', "g"], 5),  # a bad hex digit after a cut \\u escape
        (["[1", ".", "e5]"], 3),  # a cut number gone wrong
    ],
)
def test_errors_at_the_offending_character_across_chunks(chunks: list[str], offset: int) -> None:
    with pytest.raises(so.JSONStreamError) as info:
        run(so.parse_json(), chunks)
    assert info.value.offset == offset


def test_hidden_string_is_not_shown_before_it_is_complete() -> None:
    assert _values(['"', 'ab"'], partial_strings=False) == ["ab"]
    assert _values(['["', 'a"]'], partial_strings=False) == [[], ["a"]]


def test_prose_whitespace_chunks_do_not_make_a_fence() -> None:
    # "`` `" is not a fence: the text after the value is not ignored, so no
    # value parses to the end of the reply.
    with pytest.raises(so.JSONStreamError, match="no JSON document"):
        run(so.parse_json(skip_prefix=True), ["``", " ", "`x [1] ```"])


def test_lone_surrogate_kept_as_json_loads_does() -> None:
    assert _values(['"\\ud800', 'x"'])[-1] == json.loads('"\\ud800x"')


def test_hidden_partial_strings() -> None:
    assert _values(['{"a": "xy', 'z", "b": 1}'], partial_strings=False) == [
        {},
        {"a": "xyz", "b": 1},
    ]


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ('{"a" 1}', 5, "':'"),
        ("[1,]", 3, "a value"),
        ("[1 2]", 3, "',' or ']'"),
        ('{"a":1}x', 7, "end of input"),
        ('"\x01"', 1, "a string character (control characters must be escaped)"),
        ("NaN", 0, "a value"),
        ("trux", 3, "'true'"),
        ("1.e5", 2, "a valid number"),
        ('"\\x"', 2, 'an escape character (one of "\\/bfnrtu)'),
        ('"\\u12g4"', 5, "a hex digit"),
        ("{,", 1, "'\"' (an object key) or '}'"),
    ],
)
def test_invalid_json_raises_at_the_offending_character(
    text: str, offset: int, expected: str
) -> None:
    pulled: list[str] = []

    def source() -> Any:
        for ch in text:
            pulled.append(ch)
            yield ch
        yield " never pulled"

    with pytest.raises(so.JSONStreamError) as info:
        run(so.parse_json(), source())
    assert info.value.offset == offset
    assert info.value.expected == expected
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, so.StreamOpsError)
    assert len(pulled) == offset + 1  # raised as soon as the bad character arrived
    with pytest.raises(ValueError, match=r"."):
        strict_loads(text)


def strict_loads(text: str) -> Any:
    """json.loads without its NaN/Infinity extension (not RFC 8259)."""

    def reject(name: str) -> None:
        raise ValueError(name)

    return json.loads(text, parse_constant=reject)


@pytest.mark.parametrize("text", ["", "[", '{"a": 1', '"abc', "tr", "-", "[1.", '"\\ud83d'])
def test_incomplete_input_raises_at_end(text: str) -> None:
    with pytest.raises(so.JSONStreamError, match="unexpected end of JSON input") as info:
        run(so.parse_json(), [text])
    assert info.value.got is None
    assert info.value.offset == len(text)


def test_big_int_beyond_conversion_limit_is_an_error() -> None:
    text = "[" + "1" * 5000 + "]"
    with pytest.raises(ValueError, match=r"."):
        json.loads(text)
    with pytest.raises(so.JSONStreamError, match="offset 1"):
        run(so.parse_json(), _split(text, 7))


def test_recover_keeps_best_partial_value() -> None:
    s: so.SyncStream[Any] = so.parse_json(recover=True)(['{"a": [1, 2', "3", '], "b": "tru'])
    values = [copy.deepcopy(v) for v in s]
    assert values[-1] == {"a": [1, 23], "b": "tru"}
    report = s.report["json"]
    assert isinstance(report, so.JSONReport)
    assert report.incomplete is True
    assert [e.kind for e in s.report.events if e.kind.startswith("json")] == ["json.incomplete"]


def test_recover_drops_cut_number_and_literal() -> None:
    assert _values(["[1, 2", "3"], recover=True)[-1] == [1]
    assert _values(['{"a": tr'], recover=True)[-1] == {}


def test_report_section_and_events() -> None:
    s: so.SyncStream[Any] = so.parse_json(multiple=True)(['{"a": 1}\n[2', "]\n3 "])
    assert list(s) == [{"a": 1}, [2], 3]
    assert s.report["json"] == so.JSONReport(values_completed=3, chars_parsed=15)
    kinds = [(e.kind, e.data) for e in s.report.events if e.kind == "json.value"]
    assert kinds == [("json.value", {"index": i}) for i in range(3)]


def test_skip_prose_and_fence() -> None:
    text = 'Sure! Here it is:\n```json\n{"a": [1, 2]}\n```\nAnything else?'
    for size in (1, 3, 100):
        assert _values(_split(text, size), skip_prefix=True)[-1] == {"a": [1, 2]}


def test_prose_without_fence_must_end_cleanly() -> None:
    assert _values(["The answer: [1", "]"], skip_prefix=True)[-1] == [1]
    with pytest.raises(so.JSONStreamError, match="no JSON document"):
        run(so.parse_json(skip_prefix=True), ["x [1] y"])


def test_trailing_stop_closes_upstream() -> None:
    pulled: list[str] = []

    def source() -> Any:
        for piece in ['{"a": 1}', " and more", " text"]:
            pulled.append(piece)
            yield piece

    s: so.SyncStream[Any] = so.parse_json(trailing="stop")(source())
    assert list(s) == [{"a": 1}]
    assert pulled == ['{"a": 1}']
    assert s.report["json"] == so.JSONReport(values_completed=1, chars_parsed=8)


def test_multiple_values_concatenated() -> None:
    assert _values(["[1][2]{", '}"x"4 5'], multiple=True) == [[1], [2], {}, "x", 4, 5]


def test_deltas() -> None:
    events = run(so.parse_json(deltas=True), ['{"items": [{"name": "Bo', 'b"}, 3]}'])
    assert [(e.op, e.path) for e in events] == [
        ("set", ""),
        ("set", "/items"),
        ("set", "/items/0"),
        ("set", "/items/0/name"),
        ("append", "/items/0/name"),
        ("done", "/items/0/name"),
        ("done", "/items/0"),
        ("set", "/items/1"),
        ("done", "/items/1"),
        ("done", "/items"),
        ("done", ""),
    ]
    assert events[3].value == "Bo"
    assert events[4].value == "b"
    assert events[5].value == "Bob"
    assert events[-1].value == {"items": [{"name": "Bob"}, 3]}


def test_deltas_total_text_is_linear() -> None:
    text = json.dumps({"s": "y" * 5000})
    events = run(so.parse_json(deltas=True), _split(text, 4))
    appended = sum(len(e.value) for e in events if e.op in ("set", "append") and e.path == "/s")
    assert appended == 5000


def test_pointer_escaping() -> None:
    events = run(so.parse_json(deltas=True), ['{"a/b~": ', "1}"])
    assert events[1] == so.JSONDelta("set", "/a~1b~0", 1)


def test_async_stream() -> None:
    async def chunks() -> AsyncIterator[str]:
        for piece in ['{"a"', ": [", "1]}"]:
            yield piece

    async def main() -> list[Any]:
        async with so.parse_json()(chunks()) as s:
            return [copy.deepcopy(v) async for v in s]

    assert asyncio.run(main()) == [{}, {"a": []}, {"a": [1]}]


def test_operator_is_reusable() -> None:
    op = so.parse_json()
    assert run(op, ["[1]"]) == [[1]]
    assert run(op, ["[2]"]) == [[2]]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"trailing": "ignore"}, ValueError), ({"model": int, "deltas": True}, ValueError)],
)
def test_bad_options_fail_at_build(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match=r"."):
        so.parse_json(**kwargs)


def test_wrong_chunk_type() -> None:
    with pytest.raises(so.ChunkTypeError, match="chunk 0 has type int"):
        run(so.parse_json(), [1])


def test_str_subclass_chunks_are_text() -> None:
    class Text(str):
        __slots__ = ()

    chunks = ['{"a": [1', ", 2]", "}"]
    for op in (so.parse_json(), so.parse_json(model=dict[str, list[int]])):
        expected = [copy.deepcopy(v) for v in op(chunks)]
        assert [copy.deepcopy(v) for v in op([Text(c) for c in chunks])] == expected
        mixed = [Text(chunks[0]), chunks[1], Text(chunks[2])]
        assert [copy.deepcopy(v) for v in op(mixed)] == expected


def test_parser_core_sans_io() -> None:
    p = JSONParser()
    assert p.feed("[") is True
    assert p.feed("  ") is False
    assert p.feed("1") is False  # a number is shown only once complete
    assert p.feed("]") is True
    assert p.completed == [[1]]
    assert p.close() is False


# -- pydantic ----------------------------------------------------------------


class Item(BaseModel):
    name: str
    qty: int = Field(gt=0)


class Order(BaseModel):
    id: int
    items: list[Item]
    note: str = ""

    @field_validator("note")
    @classmethod
    def _no_shouting(cls, v: str) -> str:
        if v.isupper():
            raise ValueError("no shouting")
        return v


ORDER = '{"id": 7, "items": [{"name": "pen", "qty": 2}, {"name": "ink", "qty": 1}], "note": "ok"}'


def test_model_partial_results_and_final_instance() -> None:
    # The partial is one live object (as in values mode): look at it as it comes.
    seen = []
    for x in so.parse_json(model=Order)(_split(ORDER, 9)):
        assert isinstance(x, Order)
        seen.append((x.id, set(x.model_fields_set)))
    assert x == Order.model_validate_json(ORDER)
    assert seen[1][0] == 7
    assert "note" not in seen[1][1]


def test_model_wrong_first_field_fails_at_once() -> None:
    pulled: list[str] = []

    def source() -> Any:
        for piece in ['{"id": "x",', ' "items": [', "]}"]:
            pulled.append(piece)
            yield piece

    with pytest.raises(so.JSONValidationError) as info:
        run(so.parse_json(model=Order), source())
    assert info.value.path == "/id"
    assert info.value.errors[0]["type"] == "int_parsing"
    assert len(pulled) == 1
    assert isinstance(info.value, so.StreamOpsError)


def test_model_nested_constraint_fails_with_pointer() -> None:
    text = '{"id": 1, "items": [{"name": "a", "qty": 1}, {"name": "b", "qty": 0}, '
    with pytest.raises(so.JSONValidationError) as info:
        run(so.parse_json(model=Order), _split(text, 5))
    assert info.value.path == "/items/1/qty"
    assert info.value.errors[0]["type"] == "greater_than"


def test_model_field_validator_runs_in_final_validation() -> None:
    with pytest.raises(so.JSONValidationError, match="no shouting") as info:
        run(so.parse_json(model=Order), ['{"id": 1, "items": [], "note": "HEY"}'])
    assert info.value.path == "/note"


def test_type_adapter_target() -> None:
    out = run(so.parse_json(model=TypeAdapter(list[Item])), ['[{"name": "a", "qty": 1}', "]"])
    assert out[-1] == [Item(name="a", qty=1)]
    with pytest.raises(so.JSONValidationError):
        run(so.parse_json(model=list[Item]), ['[{"name": 1, "qty": 1}', "]"])


def test_model_recover_returns_partial_instance() -> None:
    s: so.SyncStream[Any] = so.parse_json(model=Order, recover=True)(
        ['{"id": 3, "items": [{"name": "a"']
    )
    out = list(s)
    assert isinstance(out[-1], Order)
    assert out[-1].id == 3
    assert s.report["json"] == so.JSONReport(values_completed=0, chars_parsed=32, incomplete=True)


def test_bad_model_fails_at_build() -> None:
    with pytest.raises(TypeError, match=r"."):
        so.parse_json(model=object())  # type: ignore[arg-type]


# -- tool calls ------------------------------------------------------------


def _openai_chunks() -> list[dict[str, Any]]:
    def tc(index: int, **fn: Any) -> dict[str, Any]:
        extra = {"id": f"call_{index}", "type": "function"} if "name" in fn else {}
        return {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": index, **extra, "function": fn}]}}
            ]
        }

    return [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
        tc(0, name="get_weather", arguments=""),
        tc(0, arguments='{"city": "Pa'),
        tc(1, name="get_time", arguments='{"tz"'),
        tc(0, arguments='ris"}'),
        tc(1, arguments=': "CET"}'),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]


def test_tool_calls_openai_dicts() -> None:
    out = [
        (u.index, u.name, copy.deepcopy(u.arguments), u.complete)
        for u in so.parse_tool_calls()(_openai_chunks())
        if isinstance(u, so.ToolCallUpdate)
    ]
    assert out == [
        (0, "get_weather", None, False),
        (0, "get_weather", {"city": "Pa"}, False),
        (1, "get_time", {}, False),
        (0, "get_weather", {"city": "Paris"}, True),
        (1, "get_time", {"tz": "CET"}, True),
    ]


def test_tool_calls_openai_sdk_types() -> None:
    from openai.types.chat import ChatCompletionChunk

    chunks = [
        ChatCompletionChunk.model_validate(
            {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", **c}
        )
        for c in _openai_chunks()
    ]
    final = run(so.parse_tool_calls(), chunks)
    assert [(u.id, u.arguments) for u in final if u.complete] == [
        ("call_0", {"city": "Paris"}),
        ("call_1", {"tz": "CET"}),
    ]


def test_tool_calls_anthropic_sdk_types_and_dicts() -> None:
    from anthropic.types import RawContentBlockDeltaEvent, RawContentBlockStartEvent

    events: list[Any] = [
        {"type": "message_start", "message": {}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_stop", "index": 0},
        RawContentBlockStartEvent.model_validate(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "tu_1", "name": "f", "input": {}},
            }
        ),
        RawContentBlockDeltaEvent.model_validate(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"q": [1'},
            }
        ),
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ", 2]}"},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "tu_2", "name": "g", "input": {}},
        },
        {"type": "content_block_stop", "index": 2},
    ]
    out = [
        (u.index, u.id, copy.deepcopy(u.arguments), u.complete)
        for u in so.parse_tool_calls()(events)
    ]
    assert out == [
        (1, "tu_1", None, False),
        (1, "tu_1", {"q": []}, False),
        (1, "tu_1", {"q": [1, 2]}, True),
        (2, "tu_2", None, False),
        (2, "tu_2", {}, True),
    ]


def test_tool_calls_incomplete_and_invalid() -> None:
    chunks = _openai_chunks()[:3]
    with pytest.raises(so.JSONStreamError, match="tool call 0: unexpected end"):
        run(so.parse_tool_calls(), chunks)
    last = run(so.parse_tool_calls(recover=True), chunks)[-1]
    assert (last.arguments, last.complete) == ({"city": "Pa"}, False)
    bad = [
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{x"}}]}}]}
    ]
    with pytest.raises(so.JSONStreamError, match="tool call 0: invalid JSON at offset 1"):
        run(so.parse_tool_calls(), bad)
    with pytest.raises(so.ChunkTypeError):
        run(so.parse_tool_calls(), ["text"])


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_skip_prefix_rejects_bracketed_prose(size: int) -> None:
    text = 'Mail [EMAIL] or {name} or [ x] about { 1}: ```json\n{"a": [1, {"b": 2}]}\n``` ok'
    values = _values(_split(text, size), skip_prefix=True)
    assert values[-1] == {"a": [1, {"b": 2}]}
    assert all(isinstance(v, dict) for v in values)  # nothing of a rejected candidate shown


def test_skip_prefix_candidate_decided_by_next_significant_character() -> None:
    # '[' then whitespace across chunks, then 'E': prose; '[' then ' {': the value.
    assert _values(["[", "  ", "EMAIL] then [", " ", '{"a": 1}]'], skip_prefix=True)[-1] == [
        {"a": 1}
    ]
    assert _values(["{", " ", "}"], skip_prefix=True) == [{}]  # shown once "}" proves it
    with pytest.raises(so.JSONStreamError, match=re.escape("expected '{' or '['")):
        run(so.parse_json(skip_prefix=True), ["only [prose] and {braces}"])


# -- review fixes: deep nesting, JSON-mode validation, change reporting --------


def _nesting(value: Any) -> tuple[int, Any]:
    """Depth of a chain of one-member containers and the value at its bottom (no recursion)."""
    depth = 0
    while isinstance(value, (list, dict)) and len(value) == 1:
        value = value[0] if isinstance(value, list) else value["k"]
        depth += 1
    return depth, value


@pytest.mark.parametrize("size", [4, 1000, 10**6])
@pytest.mark.parametrize("depth", [1500, 5000])
def test_nesting_deeper_than_the_recursion_limit_parses_whatever_the_split(
    size: int, depth: int
) -> None:
    # json's C scanner (used for containers whole in a chunk) recurses; the
    # parser falls back to its own iterative state machine for those.
    arrays = "[" * depth + "]" * depth
    with pytest.raises(RecursionError):
        json.loads(arrays)
    out = run(so.parse_json(), _split(arrays, size))
    assert _nesting(out[-1]) == (depth - 1, [])
    objects = '{"k": ' * depth + "7" + "}" * depth
    out = run(so.parse_json(), _split(objects, size))
    assert _nesting(out[-1]) == (depth, 7)
    mixed = '{"k": [' * (depth // 2) + '"x"' + "]}" * (depth // 2)
    events = run(so.parse_json(deltas=True), _split(mixed, size))
    assert events[-1].op == "done"
    assert events[-1].path == ""
    assert _nesting(events[-1].value) == (depth // 2 * 2, "x")


def test_deep_value_in_one_chunk_is_still_an_error_where_invalid() -> None:
    text = "[" * 3000 + "]" * 2999 + "}"
    with pytest.raises(so.JSONStreamError) as info:
        run(so.parse_json(), [text])
    assert info.value.offset == len(text) - 1
    assert info.value.expected == "',' or ']'"


def test_shallow_value_after_a_deep_one_still_parses() -> None:
    deep = "[" * 3000 + "]" * 3000
    out = run(so.parse_json(multiple=True), [deep + ' {"a": [1, {"b": 2}]}'])
    assert len(out) == 2
    assert out[1] == {"a": [1, {"b": 2}]}


class Colour(enum.Enum):
    RED = "red"


class StrictEvent(BaseModel):
    model_config = ConfigDict(strict=True)
    when: datetime.datetime
    id: uuid.UUID
    colour: Colour
    pair: tuple[int, int]
    counts: list[int] = []


EVENT = (
    '{"when": "2024-01-02T03:04:05Z", "id": "12345678-1234-5678-1234-567812345678",'
    ' "colour": "red", "pair": [1, 2]}'
)


@pytest.mark.parametrize("size", [4, 1000])
def test_model_validates_in_json_mode_like_model_validate_json(size: int) -> None:
    # In Python mode a strict model rejects all four fields: JSON has no
    # datetime, UUID, Enum or tuple, and pydantic's JSON mode accepts them.
    out = run(so.parse_json(model=StrictEvent), _split(EVENT, size))
    assert out[-1] == StrictEvent.model_validate_json(EVENT)
    assert out[-1].pair == (1, 2)
    assert out[-1].colour is Colour.RED


def test_model_strict_config_applies_field_by_field_at_once() -> None:
    pulled: list[str] = []

    def source() -> Any:
        for piece in [EVENT[:-1] + ', "counts": [1, "2"', "]}"]:
            pulled.append(piece)
            yield piece

    with pytest.raises(so.JSONValidationError) as info:
        run(so.parse_json(model=StrictEvent), source())
    assert info.value.path == "/counts/1"
    assert info.value.errors[0]["type"] == "int_type"  # strict: no str -> int
    assert len(pulled) == 1  # raised when the item was complete, not at the end


class Loose(BaseModel):
    n: int


class StrictOuter(BaseModel):
    model_config = ConfigDict(strict=True)
    inner: Loose
    loose: list[Loose]


def test_model_nested_model_keeps_its_own_config() -> None:
    # As in pydantic: a nested model is validated under its own config, not its parent's.
    doc = '{"inner": {"n": "1"}, "loose": [{"n": "2"}]}'
    out = run(so.parse_json(model=StrictOuter), _split(doc, 3))
    assert out[-1] == StrictOuter.model_validate_json(doc)
    assert out[-1].loose[0].n == 2


def test_type_adapter_config_applies_to_items() -> None:
    adapter = TypeAdapter(list[int], config=ConfigDict(strict=True))
    with pytest.raises(so.JSONValidationError) as info:
        run(so.parse_json(model=adapter), ['[1, "2", ', "3]"])
    assert info.value.path == "/1"
    assert info.value.offset == 9  # at the first chunk


@pytest.mark.parametrize(
    ("chunks", "changes"),
    [
        (['["ab', '"', "]"], [True, False, False]),
        (['["ab', '"]'], [True, False]),
        (['["ab', '", ', '"c"]'], [True, False, True]),
        (['{"a": "x', '"', "}"], [True, False, False]),
        (['{"a": "x', '"}'], [True, False]),
        (['{"a": "x', '",\n  "b"', ': "y"}'], [True, False, True]),
        (["[[1]", "]"], [True, False]),
        (["{}"], [True]),
        (["[", "]"], [True, False]),
    ],
)
def test_feed_reports_a_change_only_when_the_value_shown_changed(
    chunks: list[str], changes: list[bool]
) -> None:
    # A chunk that only ends a string took the plan cache when short and the
    # general path when long: both must agree (and agree with the value).
    p = JSONParser()
    assert [p.feed(c) for c in chunks] == changes
    p.close()
    padded = JSONParser()
    seen = []
    for c in chunks:
        before = repr(padded.value) if padded.has_value else None
        seen.append(padded.feed(c + " " * 40) if c == chunks[-1] else padded.feed(c))
        assert seen[-1] == ((repr(padded.value) if padded.has_value else None) != before)
    assert seen == changes


def test_no_two_consecutive_snapshots_are_equal() -> None:
    doc = '{"a": "xy", "b": ["p", "q"], "c": {"d": "e"}}'
    for size in range(1, len(doc) + 1):
        snapshots = _values(_split(doc, size))
        reprs = [repr(v) for v in snapshots]
        assert all(a != b for a, b in itertools.pairwise(reprs)), size
        assert snapshots[-1] == json.loads(doc)


def test_multiple_values_completed_by_a_bracket_alone_are_yielded() -> None:
    s: so.SyncStream[Any] = so.parse_json(multiple=True)(['["a"', "]", ' {"b": "c"', "}"])
    assert list(s) == [["a"], {"b": "c"}]
    assert s.report["json"] == so.JSONReport(values_completed=2, chars_parsed=16)


def test_single_value_completed_by_a_bracket_alone_is_counted() -> None:
    s: so.SyncStream[Any] = so.parse_json()(['["a"', "]"])
    assert list(s) == [["a"]]
    assert s.report["json"] == so.JSONReport(values_completed=1, chars_parsed=5)
    assert [e.kind for e in s.report.events if e.kind.startswith("json.")] == ["json.value"]


def test_duplicate_key_is_the_one_exception_to_monotone_snapshots() -> None:
    # Documented: the last duplicate wins, as in json.loads, even with another type.
    assert _values(['{"a": [1], ', '"a": "x"}']) == [{"a": [1]}, {"a": "x"}]
    assert _values(['{"a": [1], "a": "x"}']) == [json.loads('{"a": [1], "a": "x"}')]


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_constants_json_loads_accepts_are_rejected(text: str) -> None:
    json.loads(text)  # accepted by json.loads by default, not by RFC 8259
    for size in (1, 100):
        with pytest.raises(so.JSONStreamError):
            run(so.parse_json(), _split(text, size))


def test_tool_call_completed_by_a_closing_brace_alone_is_an_update() -> None:
    # The '}' changes nothing shown, but the call became complete: an update says so.
    events: list[dict[str, Any]] = [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "tu_1", "name": "f", "input": {}},
        },
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": part},
            }
            for part in ['{"q": "x"', "}"]
        ),
    ]
    out = [(copy.deepcopy(u.arguments), u.complete) for u in so.parse_tool_calls()(events)]
    assert out == [(None, False), ({"q": "x"}, False), ({"q": "x"}, True)]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"deltas": "yes"}, TypeError, "deltas must be True or False, got str 'yes'"),
        ({"multiple": 1}, TypeError, "multiple must be True or False, got int 1"),
        ({"allow_nan": None}, TypeError, "allow_nan must be True or False"),
        ({"trailing": "stp"}, ValueError, "trailing must be one of 'error', 'stop'"),
    ],
)
def test_bad_options_are_refused_when_the_operator_is_built(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        so.parse_json(**kwargs)
