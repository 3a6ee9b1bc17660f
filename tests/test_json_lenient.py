"""Opt-in leniency of parse_json (issue 17): each option named, strict by default."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

import streamops as so


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _last(text: str, size: int, **options: Any) -> Any:
    return list(so.parse_json(**options)(_split(text, size)))[-1]


CASES = [
    ('{"a": "line\nbreak\tand tab"}', {"allow_control_chars": True}),
    ('[1, NaN, -Infinity, {"x": Infinity}]', {"allow_nan": True}),
    ('{"a": [1, 2,], "b": {"c": 1,},}', {"allow_trailing_commas": True}),
]


@pytest.mark.parametrize(("text", "options"), CASES)
def test_each_leniency_is_opt_in(text: str, options: dict[str, Any]) -> None:
    for size in (1, 2, 3, 100):
        with pytest.raises(so.JSONStreamError):
            list(so.parse_json()(_split(text, size)))  # strict by default
        got = _last(text, size, **options)
        if "allow_trailing_commas" in options:
            assert got == {"a": [1, 2], "b": {"c": 1}}
        else:
            # json.loads is the reference: strict=False for control characters,
            # its default for NaN/Infinity (NaN != NaN: compare the text).
            ref = json.loads(text, strict=False)
            assert json.dumps(got) == json.dumps(ref)


def test_nan_values_are_floats_and_others_stay_strict() -> None:
    got = _last("[NaN, -Infinity]", 3, allow_nan=True)
    assert math.isnan(got[0])
    assert got[1] == -math.inf
    with pytest.raises(so.JSONStreamError):  # trailing commas still rejected
        list(so.parse_json(allow_nan=True)(["[1,]"]))
    with pytest.raises(so.JSONStreamError):  # a comma alone is still no element
        list(so.parse_json(allow_trailing_commas=True)(["[,]"]))
    with pytest.raises(so.JSONStreamError):
        list(so.parse_json(allow_trailing_commas=True)(['{"a": 1,,}']))


def test_one_leniency_does_not_bring_another() -> None:
    # A container whole in one chunk goes through json's C scanner: it must
    # be as strict as the options say.
    with pytest.raises(so.JSONStreamError):
        list(so.parse_json(allow_control_chars=True)(["[NaN]"]))
    with pytest.raises(so.JSONStreamError):
        list(so.parse_json(allow_nan=True)(['["a\nb"]']))
