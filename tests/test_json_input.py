"""Bytes input, offsets, pickling, multiple+stop (issue 17, "Tool calls, recovery, leniency")."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

import streamops as so


def test_bytes_with_a_truncated_utf8_tail_raise_like_json_loads() -> None:
    chunks = [b'{"a": 1}', b"\xe2\x82"]
    with pytest.raises(ValueError):  # noqa: PT011  # json.loads' own error is a ValueError
        json.loads(b"".join(chunks))
    with pytest.raises(so.JSONStreamError, match="truncated UTF-8") as info:
        list(so.parse_json()(chunks))
    assert info.value.byte_offset == 8
    # recover keeps the value (the tail is a truncation like any other).
    out: list[Any] = list(so.parse_json(recover=True)(chunks))
    assert out[-1] == {"a": 1}


def test_a_character_split_between_byte_chunks_is_whole() -> None:
    data = '{"k": "caf\u00e9 \u20ac \U0001f600"}'.encode()
    for size in (1, 2, 3, 5):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert list(so.parse_json()(chunks))[-1] == json.loads(data)


def test_invalid_utf8_in_the_middle_is_an_error_with_its_byte_offset() -> None:
    with pytest.raises(so.JSONStreamError, match="invalid UTF-8 at byte offset 7") as info:
        list(so.parse_json()([b'{"a": "', b"\xff", b'"}']))
    assert info.value.byte_offset == 7


def test_errors_on_bytes_input_carry_byte_and_character_offsets() -> None:
    with pytest.raises(so.JSONStreamError) as info:
        list(so.parse_json()(['{"\u20ac": 1'.encode(), b"x}"]))
    assert (info.value.offset, info.value.byte_offset) == (7, 9)
    with pytest.raises(so.JSONStreamError) as text_info:
        list(so.parse_json()(['{"a": 1', "x}"]))
    assert text_info.value.byte_offset is None


@pytest.mark.parametrize("split", [1, 2, 3, 4])
def test_utf8_bom_accepted_on_bytes_as_json_loads_does(split: int) -> None:
    data = b'\xef\xbb\xbf{"a": [1]}'
    assert json.loads(data) == {"a": [1]}
    chunks = [data[:split], data[split:]]
    out: list[Any] = list(so.parse_json()(chunks))
    assert out[-1] == {"a": [1]}
    with pytest.raises(so.JSONStreamError):  # as json.loads(str) rejects it
        list(so.parse_json()([data.decode()]))


def test_errors_pickle_across_processes() -> None:
    with pytest.raises(so.JSONStreamError) as info:
        list(so.parse_json()(['{"a": 1', "x}"]))
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is so.JSONStreamError
    assert (str(again), again.offset, again.expected, again.got) == (
        str(info.value),
        7,
        info.value.expected,
        "x",
    )

    from pydantic import BaseModel

    class User(BaseModel):
        age: int

    with pytest.raises(so.JSONValidationError) as vinfo:
        list(so.parse_json(model=User)(['{"age": "x"}']))
    v = pickle.loads(pickle.dumps(vinfo.value))
    assert (v.path, v.offset, v.errors[0]["type"]) == ("/age", 12, "int_parsing")


def test_multiple_with_trailing_stop_yields_every_value_then_stops() -> None:
    chunks = ['{"a": 1}\n{"a"', ": 2}\n[3]  ", "\nThat is all, folks!"]
    assert list(so.parse_json(multiple=True, trailing="stop")(chunks)) == [{"a": 1}, {"a": 2}, [3]]
    report_stream = so.parse_json(multiple=True, trailing="stop")(chunks)
    list(report_stream)
    section = report_stream.report["json"]
    assert isinstance(section, so.JSONReport)
    assert section.values_completed == 3
