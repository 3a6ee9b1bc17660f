"""Typed partial objects in model mode (issue 17, "Typed partial objects")."""

from __future__ import annotations

import datetime
import enum
from typing import Any

from pydantic import BaseModel, RootModel

import streamops as so


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


class Color(enum.Enum):
    RED = "red"


class Line(BaseModel):
    sku: str
    qty: int
    when: datetime.date
    color: Color


class Order(BaseModel):
    customer: str
    lines: list[Line]
    tags: dict[str, int] = {}


ORDER = (
    '{"customer": "Ada", "lines": [{"sku": "pen", "qty": 2, "when": "2024-05-01",'
    ' "color": "red"}, {"sku": "ink", "qty": 1, "when": "2024-05-02", "color": "red"}],'
    ' "tags": {"a": 1}}'
)


def _types(value: Any) -> Any:
    """The type of every value in a partial, as a nested structure."""
    if isinstance(value, BaseModel):
        return (type(value).__name__, {k: _types(v) for k, v in value.__dict__.items()})
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    return type(value).__name__


def test_nested_models_and_items_are_instances_at_every_partial() -> None:
    for size in (1, 3, 7, 40):
        for partial in so.parse_json(model=Order)(_split(ORDER, size)):
            assert isinstance(partial, Order)
            assert isinstance(partial.lines, (list, type(None)))
            for line in partial.lines or ():
                assert isinstance(line, Line), type(line)  # never a raw dict
                line.sku, line.qty, line.when, line.color  # noqa: B018  # no AttributeError


def test_a_field_never_changes_type_between_partials() -> None:
    # A str field grows; any other field is None until complete, then its final
    # type (a date stays None while its string streams in, never a str first).
    for size in (1, 2, 5, 11):
        seen: dict[str, set[str]] = {}
        for partial in so.parse_json(model=Order)(_split(ORDER, size)):
            for line in partial.lines or ():
                for name in ("sku", "qty", "when", "color"):
                    seen.setdefault(name, set()).add(type(getattr(line, name)).__name__)
        assert seen["sku"] <= {"NoneType", "str"}
        assert seen["qty"] <= {"NoneType", "int"}
        assert seen["when"] <= {"NoneType", "date"}
        assert seen["color"] <= {"NoneType", "Color"}


def test_strings_grow_and_missing_fields_are_none() -> None:
    out = []
    chunks = ['{"customer": "A', 'da", "lines": [{"sku": "p']
    for partial in so.parse_json(model=Order, recover=True)(chunks):
        out.append((partial.customer, partial.lines and partial.lines[0].sku))
    assert out[0] == ("A", None)
    assert out[-1] == ("Ada", "p")


def test_a_string_opened_by_the_chunk_that_completes_a_field_shows_at_once() -> None:
    # One chunk completes a plain int field and opens a str field: its partial
    # shows both (the empty string too), then the string as it grows. (The
    # first item teaches model mode that qty is a plain int: the second one
    # takes the shortcut for such fields.)
    out = []
    first = '{"sku": "a", "qty": 1, "when": "2024-05-01", "color": "red"}'
    head = _split('{"customer": "A", "lines": [' + first + ", {", 3)
    chunks = [*head, '"qty": 2', ', "sku": "', "p", 'en", "qty": 3']
    for partial in so.parse_json(model=Order, recover=True)(chunks):
        if len(partial.lines or ()) > 1:
            out.append((partial.lines[1].qty, partial.lines[1].sku))
    assert out == [(None, None), (2, ""), (2, "p"), (2, "pen"), (2, "pen")]  # (3: cut, dropped)


def test_root_model_partial_is_typed() -> None:
    model = RootModel[list[Line]]
    text = '[{"sku": "a", "qty": 1, "when": "2024-01-01", "color": "red"}, {"sku": "b"'
    out = list(so.parse_json(model=model, recover=True)(_split(text, 9)))
    assert all(isinstance(p, model) for p in out)
    assert all(isinstance(line, Line) for line in out[-1].root)
    assert out[-1].root[1].sku == "b"
    assert out[-1].root[1].qty is None
