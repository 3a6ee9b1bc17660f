"""parse_tool_calls (issue 17): calls keyed by (choice, index, id), cut messages, tools=."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import streamops as so


def _chunk(choice: int = 0, finish: str | None = None, **call: Any) -> dict[str, Any]:
    delta = {"tool_calls": [{"index": 0, **call}]} if call else {}
    return {"choices": [{"index": choice, "delta": delta, "finish_reason": finish}]}


def _final(updates: list[so.ToolCallUpdate]) -> dict[tuple[int, str | None], Any]:
    return {(u.choice, u.id): u.arguments for u in updates if u.complete}


def test_choices_do_not_share_calls() -> None:
    # n=2: both choices call tool index 0; the second id used to overwrite the
    # first and their arguments were fed to one parser.
    chunks = [
        _chunk(0, id="a", function={"name": "f", "arguments": ""}),
        _chunk(1, id="b", function={"name": "f", "arguments": ""}),
        _chunk(0, function={"arguments": '{"x": '}),
        _chunk(1, function={"arguments": '{"x": '}),
        _chunk(0, function={"arguments": "1}"}),
        _chunk(1, function={"arguments": "2}"}),
    ]
    updates = list(so.parse_tool_calls()(chunks))
    assert _final(updates) == {(0, "a"): {"x": 1}, (1, "b"): {"x": 2}}


def test_a_new_id_on_an_index_in_use_is_a_new_call() -> None:
    chunks = [
        _chunk(id="a", function={"name": "f", "arguments": '{"x": 1}'}),
        _chunk(id="b", function={"name": "g", "arguments": '{"y": 2}'}),
    ]
    updates = list(so.parse_tool_calls()(chunks))
    assert _final(updates) == {(0, "a"): {"x": 1}, (0, "b"): {"y": 2}}
    assert [u.name for u in updates if u.complete] == ["f", "g"]


@pytest.mark.parametrize("reason", ["length", "content_filter"])
def test_finish_reason_mid_arguments_raises(reason: str) -> None:
    chunks = [
        _chunk(id="a", function={"name": "f", "arguments": '{"x": [1, 2'}),
        _chunk(finish=reason),
    ]
    with pytest.raises(so.ToolCallTruncatedError) as info:
        list(so.parse_tool_calls()(chunks))
    assert info.value.finish_reason == reason
    assert (info.value.choice, info.value.index, info.value.call_id) == (0, 0, "a")
    assert isinstance(info.value, so.JSONStreamError)
    # recover: the call is left incomplete instead.
    updates = list(so.parse_tool_calls(recover=True)(chunks))
    assert not updates[-1].complete


def test_anthropic_max_tokens_mid_arguments_raises() -> None:
    block = {"type": "tool_use", "id": "t", "name": "f"}
    delta = {"type": "input_json_delta", "partial_json": '{"q": "ab'}
    events = [
        {"type": "content_block_start", "index": 1, "content_block": block},
        {"type": "content_block_delta", "index": 1, "delta": delta},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}},
    ]
    with pytest.raises(so.ToolCallTruncatedError, match="max_tokens"):
        list(so.parse_tool_calls()(events))


def test_finish_after_complete_arguments_is_fine() -> None:
    chunks = [_chunk(id="a", function={"name": "f", "arguments": "{}"}), _chunk(finish="length")]
    assert _final(list(so.parse_tool_calls()(chunks))) == {(0, "a"): {}}


class Weather(BaseModel):
    city: str
    days: int


WEATHER_JSON_TOOL = {
    "type": "function",
    "function": {
        "name": "Weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


@pytest.mark.parametrize("tool", [Weather, WEATHER_JSON_TOOL])
def test_tools_validate_field_by_field_as_they_stream(tool: Any) -> None:
    pulled: list[int] = []

    def source() -> Any:
        pieces = ['{"days": "many",', ' "city": "Paris"}']
        yield _chunk(id="a", function={"name": "Weather", "arguments": ""})
        for i, piece in enumerate(pieces):
            pulled.append(i)
            yield _chunk(function={"arguments": piece})

    with pytest.raises(so.JSONValidationError) as info:
        list(so.parse_tool_calls(tools=[tool])(source()))
    assert info.value.path == "/days"
    assert pulled == [0]  # rejected before the rest arrived


def test_tools_parsed_is_typed_while_streaming_and_validated_at_the_end() -> None:
    chunks = [
        _chunk(id="a", function={"name": "Weather", "arguments": '{"city": "Pa'}),
        _chunk(function={"arguments": 'ris", "days": 3}'}),
    ]
    updates = list(so.parse_tool_calls(tools=[Weather])(chunks))
    assert isinstance(updates[0].parsed, Weather)
    assert updates[-1].parsed == Weather(city="Paris", days=3)
    assert updates[-1].complete


def test_unknown_tool_and_bad_tools() -> None:
    chunks = [_chunk(id="a", function={"name": "Nope", "arguments": "{}"})]
    with pytest.raises(ValueError, match="no tool named 'Nope'"):
        list(so.parse_tool_calls(tools=[Weather])(chunks))
    with pytest.raises(TypeError, match="tools"):
        so.parse_tool_calls(tools=[42])
    with pytest.raises(ValueError, match="no name"):
        so.parse_tool_calls(tools=[{"type": "function", "function": {"parameters": {}}}])
