"""Element streaming: ``parse_json(items=...)`` (issue 17)."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import streamops as so


class Item(BaseModel):
    id: int
    name: str


def _doc(n: int) -> str:
    return json.dumps(
        {"query": "x", "results": [{"id": i, "name": f"n{i}"} for i in range(n)], "total": n}
    )


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 4, 17, 10_000])
def test_each_element_validated_with_its_index_whatever_the_chunking(size: int) -> None:
    out = list(so.parse_json(items="/results/*", model=Item)(_split(_doc(5), size)))
    assert [(x.index, x.path) for x in out] == [(i, f"/results/{i}") for i in range(5)]
    assert [x.value for x in out] == [Item(id=i, name=f"n{i}") for i in range(5)]


def test_an_element_is_yielded_as_soon_as_it_closes() -> None:
    pulled: list[str] = []

    def source() -> Iterator[str]:
        for piece in ['{"results": [{"id": 1, "name": "a"}', ', {"id": 2', ', "name": "b"}]}']:
            pulled.append(piece)
            yield piece

    stream = so.parse_json(items="/results/*", model=Item)(source())
    first = next(iter(stream))
    assert first.value == Item(id=1, name="a")
    assert len(pulled) == 1


def test_elements_of_top_level_array_and_of_objects_and_wildcards_inside() -> None:
    assert [x.value for x in so.parse_json(items="/*")(["[1, ", '"a", [2]', "]"])] == [1, "a", [2]]
    doc = '{"a": [{"b": [1, 2]}, {"b": [3]}]}'
    for size in (1, 5, 100):
        out = list(so.parse_json(items="/a/*/b/*")(_split(doc, size)))
        assert [(x.path, x.index, x.value) for x in out] == [
            ("/a/0/b/0", 0, 1),
            ("/a/0/b/1", 1, 2),
            ("/a/1/b/0", 0, 3),
        ]
    out = list(so.parse_json(items="/m/*")(_split('{"m": {"x": 1, "y": {"z": 2}}}', 3)))
    assert [(x.path, x.index, x.value) for x in out] == [("/m/x", 0, 1), ("/m/y", 1, {"z": 2})]


def test_invalid_element_error_points_into_the_document() -> None:
    text = '{"results": [{"id": 1, "name": "a"}, {"id": "x", "name": "b"}]}'
    stream = iter(so.parse_json(items="/results/*", model=Item)(_split(text, 6)))
    assert next(stream).value == Item(id=1, name="a")
    with pytest.raises(so.JSONValidationError) as info:
        next(stream)
    assert info.value.path == "/results/1/id"


def test_thousands_of_elements_in_bounded_memory() -> None:
    n = 3_000
    chunks = _split(_doc(n), 64)
    tracemalloc.start()
    try:
        count = 0
        for _ in so.parse_json(items="/results/*", model=Item)(iter(chunks)):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    # The whole parsed tree would peak at ~1.1 MB here (parse_json() without
    # items); the stream keeps only the element being parsed (what remains is
    # the parser's fixed state and pydantic's bounded string cache).
    assert peak < 300_000, peak


def test_async_source() -> None:
    async def source() -> AsyncIterator[str]:
        for piece in _split(_doc(3), 7):
            yield piece

    async def main() -> list[int]:
        return [x.index async for x in so.parse_json(items="/results/*")(source())]

    assert asyncio.run(main()) == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"items": "results/*"}, ValueError),
        ({"items": "/results"}, ValueError),
        ({"items": 3}, TypeError),
        ({"items": "/r/*", "deltas": True}, ValueError),
    ],
)
def test_bad_selector_fails_at_build(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match="items"):
        so.parse_json(**kwargs)


def test_json_item_is_public() -> None:
    item = so.JSONItem("/0", 0, 1)
    assert item.value == 1
    assert repr(item) == "JSONItem(path='/0', index=0, value=1)"
