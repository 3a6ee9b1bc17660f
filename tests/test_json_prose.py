"""skip_prefix finds the document the model meant, on real LLM reply shapes (issue 17)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import streamops as so


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


SIZES = [1, 2, 3, 7, 10_000]

REPLIES = [
    # prose with an empty object before the document
    (
        "I'll return {} when nothing matches. Here is the result:\n"
        '```json\n{"matches": ["a", "b"]}\n```\nLet me know!',
        {"matches": ["a", "b"]},
    ),
    # the same without a fence: the first value that parses to the end
    ('Return {} when empty. Result: {"matches": []}', {"matches": []}),
    # [1]-style citations in the prose
    (
        'According to the docs [1] and [2], the config is:\n{"retries": 3, "backoff": [1, 2]}',
        {"retries": 3, "backoff": [1, 2]},
    ),
    # a Python fence before the JSON fence
    (
        "You can load it with:\n```python\nimport json\ndata = json.loads('{\"a\": 1}')\n"
        'x = [1, 2]\n```\nand the data:\n```json\n[{"id": 1}]\n```',
        [{"id": 1}],
    ),
    # reasoning first
    ('<think>Maybe {"draft": true}? No.</think>\n{"final": 2}', {"final": 2}),
    ('<think>\nlist [1] first\n</think>```json\n{"x": null}\n```', {"x": None}),
    # a fenced block marked JSON (upper case) and prose after it
    ('Here:\n```JSON\n{"ok": true}\n```\n\n[Note] see {above}.', {"ok": True}),
    # plain JSON and a fence at the very start still stream
    ('{"plain": 1}', {"plain": 1}),
    ('```\n{"bare": 1}\n```', {"bare": 1}),
]


@pytest.mark.parametrize(("text", "expected"), REPLIES)
def test_the_document_the_model_meant(text: str, expected: Any) -> None:
    for size in SIZES:
        values = list(so.parse_json(skip_prefix=True)(_split(text, size)))
        assert values[-1] == expected, (size, values[-1])


def test_fenced_and_leading_documents_stream_before_the_end() -> None:
    pulled: list[str] = []

    def source(pieces: list[str]) -> Iterator[str]:
        for piece in pieces:
            pulled.append(piece)
            yield piece

    pieces = ["Sure:\n```json\n", '{"a": [1', ", 2]}", "\n```\nmore prose"]
    stream = iter(so.parse_json(skip_prefix=True)(source(pieces)))
    assert next(stream) == {"a": []}  # (the 1 may go on: numbers show when complete)
    assert len(pulled) == 2
    pulled.clear()
    stream = iter(so.parse_json(skip_prefix=True)(source(['{"a": "x', 'y"}'])))
    assert next(stream) == {"a": "x"}
    assert len(pulled) == 1


def test_no_document_is_a_clear_error() -> None:
    with pytest.raises(so.JSONStreamError, match="no JSON document"):
        list(so.parse_json(skip_prefix=True)(["Sorry, I can't help with [that] {today}."]))


class Result(BaseModel):
    matches: list[str]


def test_model_mode_and_items_after_prose() -> None:
    text = REPLIES[0][0]
    for size in SIZES:
        out = list(so.parse_json(skip_prefix=True, model=Result)(_split(text, size)))
        assert out[-1] == Result(matches=["a", "b"])
        items = list(so.parse_json(skip_prefix=True, items="/matches/*")(_split(text, size)))
        assert [i.value for i in items] == ["a", "b"]


def test_offsets_count_from_the_start_of_the_reply() -> None:
    text = 'Prose first.\n```json\n{"a": 1 x}\n```'
    with pytest.raises(so.JSONStreamError) as info:
        list(so.parse_json(skip_prefix=True)(_split(text, 4)))
    assert info.value.offset == text.index("x")
