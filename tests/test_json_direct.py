"""parse_json on the driver's direct feed: the parser's own feed() is the loop's call.

In snapshot mode on one document, the driver calls ``JSONParser.feed`` itself
for every str chunk and yields the parser's live value when it returns True
(``feed_live``); the report is kept by the parser's ``on_complete`` hook and by
``abort()``. These check that nothing observable moved: values, the report
section and its events, errors, bytes and str mixed, sync and async.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import streamops as so
from streamops._core._stages import _NOTHING


def _json_events(s: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, dict(e.data)) for e in s.report.events if e.kind.startswith("json.")]


def test_values_and_one_value_event() -> None:
    chunks = ['{"a": [1, ', '2], "b": "x', 'y"}', "  "]
    s: so.SyncStream[Any] = so.parse_json()(chunks)
    shown = [json.dumps(v) for v in s]
    assert shown == ['{"a": [1]}', '{"a": [1, 2], "b": "x"}', '{"a": [1, 2], "b": "xy"}']
    assert s.report["json"] == so.JSONReport(values_completed=1, chars_parsed=26)
    assert _json_events(s) == [("json.value", {"index": 0})]


def test_top_level_number_completed_at_close_is_reported_once() -> None:
    s: so.SyncStream[Any] = so.parse_json()(["1", "2"])
    assert list(s) == [12]
    assert s.report["json"] == so.JSONReport(values_completed=1, chars_parsed=2)
    assert _json_events(s) == [("json.value", {"index": 0})]


def test_bytes_and_str_chunks_mixed_report_the_value_once() -> None:
    s: so.SyncStream[Any] = so.parse_json()([b'{"a":', " 1", b"}", " "])
    assert [json.dumps(v) for v in s][-1] == '{"a": 1}'
    assert s.report["json"] == so.JSONReport(values_completed=1, chars_parsed=9)
    assert _json_events(s) == [("json.value", {"index": 0})]


@pytest.mark.parametrize(
    ("chunks", "offset", "section"),
    [
        (['{"a": 1', "x"], 7, so.JSONReport(values_completed=0, chars_parsed=7)),
        # An error after the value completed: the value was reported, then the error.
        (["[1", "]", " x"], 4, so.JSONReport(values_completed=1, chars_parsed=3)),
    ],
)
def test_error_finalises_the_report_section(
    chunks: list[str], offset: int, section: so.JSONReport
) -> None:
    s: so.SyncStream[Any] = so.parse_json()(chunks)
    with pytest.raises(so.JSONStreamError) as info:
        list(s)
    assert info.value.offset == offset
    assert s.report["json"] == section


def test_async_agrees_with_sync() -> None:
    chunks = ['{"k": "a\\u00e9', '", "n": 1', "2.5, ", '"t": tr', "ue}"]

    async def run() -> tuple[list[str], Any]:
        async def source() -> Any:
            for c in chunks:
                yield c

        s = so.parse_json()(source())
        return [json.dumps(v) async for v in s], s.report["json"]

    s: so.SyncStream[Any] = so.parse_json()(chunks)
    assert asyncio.run(run()) == ([json.dumps(v) for v in s], s.report["json"])


def test_model_mode_yields_the_typed_partials() -> None:
    from pydantic import BaseModel

    class Item(BaseModel):
        name: str
        n: int

    s: so.SyncStream[Any] = so.parse_json(model=Item)(['{"name": "A', 'l", "n": ', "5}"])
    out = list(s)
    assert out[-1] == Item(name="Al", n=5)
    assert s.report["json"] == so.JSONReport(values_completed=1, chars_parsed=22)
    assert _json_events(s) == [("json.value", {"index": 0})]
    s = so.parse_json(model=Item)(['{"name": "A', 'l", "n": ', "5}", " x"])
    with pytest.raises(so.JSONStreamError):
        list(s)
    assert s.report["json"] == so.JSONReport(values_completed=1, chars_parsed=22)
    assert _json_events(s) == [("json.value", {"index": 0})]


class _Optional:
    """A processor that states its direct feed as ``feed_opt`` (the Processor protocol)."""

    done = False

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def feed(self, item: Any) -> list[Any]:
        self.log.append("feed")
        x = self.feed_opt(item)
        return [] if x is _NOTHING else [x]

    def feed_opt(self, text: str) -> Any:
        self.log.append("feed_opt")
        return text.upper() if text.strip() else _NOTHING

    def close(self) -> list[Any]:
        return []


def test_a_feed_opt_processor_is_still_fed_directly() -> None:
    log: list[str] = []
    # (items that are not text: the chain records nothing, as parse_json's)
    op = so.Operator.from_processor(lambda r: _Optional(log), produces=None, can_stop=False)
    assert list(op(["a", " ", "b"])) == ["A", "B"]
    assert log == ["feed_opt"] * 3  # the driver's loop called it, not feed()
