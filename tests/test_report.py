"""Unit tests of the report additions: chunk events, filtered subscriptions, summary, JSON."""

from __future__ import annotations

import json

import pytest

import streamops as so
from streamops._core._driver import _aiter


class Thing:
    """A chunk that is not JSON-serialisable."""

    def __repr__(self) -> str:
        return "Thing()"


def test_on_event_does_not_get_chunk_events() -> None:
    kinds: list[str] = []
    list(so.identity()(["a", "b"], on_event=lambda e: kinds.append(e.kind)))
    assert kinds == ["stream.start", "stream.end"]


def test_subscribe_with_kinds_filters() -> None:
    report = so.StreamReport()
    seen: list[str] = []
    report.subscribe(lambda e: seen.append(e.kind), kinds={"b"})
    for kind in "abc":
        report.emit(kind)
    assert seen == ["b"]
    assert not report.listening
    assert report.wants("b")
    assert not report.wants("a")


def test_record_is_built_at_once_only_for_a_subscriber_of_its_kind() -> None:
    ticks = iter(range(10))
    report = so.StreamReport(clock=lambda: float(next(ticks)))
    seen: list[so.Event] = []
    report.subscribe(seen.append, kinds=["stream.start", "redact.flag"])
    report.record("stream.start")
    report.record("redact.redact", stage="redact", pattern="email")  # nobody takes it
    assert [e.kind for e in seen] == ["stream.start"]
    assert report._lazy == 1  # kept as its fields, not built
    report.record("redact.flag", stage="redact", pattern="phone")
    assert [(e.kind, e.time) for e in seen] == [("stream.start", 0.0), ("redact.flag", 2.0)]
    report.emit("stream.end")
    assert [(e.kind, e.time, e.data) for e in report.events] == [
        ("stream.start", 0.0, {}),
        ("redact.redact", 1.0, {"pattern": "email"}),
        ("redact.flag", 2.0, {"pattern": "phone"}),
        ("stream.end", 3.0, {}),
    ]
    assert report.events[2] is seen[1]  # the event the subscriber got, not a copy


def test_listening_only_for_unfiltered_subscribers() -> None:
    report = so.StreamReport()
    assert not bool(report.listening)
    report.subscribe(print, kinds=["stream.end"])
    assert not bool(report.listening)
    report.subscribe(print)
    assert report.listening
    assert report.wants("anything")


def test_unsubscribe_stops_delivery_and_is_harmless_twice() -> None:
    report = so.StreamReport()
    seen: list[str] = []
    callback = seen.append

    def cb(e: so.Event) -> None:
        callback(e.kind)

    report.subscribe(cb)
    report.subscribe(cb, kinds=["b"])
    report.emit("a")
    report.unsubscribe(cb)
    report.unsubscribe(cb)
    report.emit("b")
    assert seen == ["a"]


@pytest.mark.parametrize("bad", ["stream.end", [1]])
def test_subscribe_rejects_bad_kinds(bad: object) -> None:
    with pytest.raises(TypeError, match="kinds must be an iterable of event kind strings"):
        so.StreamReport().subscribe(print, kinds=bad)  # type: ignore[arg-type]


def test_chunk_event_serialises_any_chunk() -> None:
    event = so.ChunkEvent(index=3, chunk=Thing(), time=2.0, stage="s")
    data = json.loads(event.model_dump_json())
    assert data == {
        "kind": "chunk.released",
        "time": 2.0,
        "stage": "s",
        "data": {},
        "index": 3,
        "chunk": "Thing()",
    }
    assert so.ChunkEvent(index=0, chunk={"a": [1]}).model_dump(mode="json")["chunk"] == {"a": [1]}


def test_summary_is_readable() -> None:
    stream = so.collect()(["Hello, ", "world"])
    list(stream)
    report = stream.report
    report.counters["redact.applied"] = 1
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "stream report: complete"
    assert lines[1] == "  chunks: 2 in, 2 out; released 12 chars"
    assert lines[2] == "  counters: redact.applied=1"
    assert lines[3].startswith(
        '  collect: text="Hello, world", finished=true, stop_reason="complete"'
    )
    assert lines[4] == "  events:"
    assert lines[5].endswith(" stream.start")
    assert lines[6].endswith(' stream.end reason="complete"')
    assert report.summary() == text


def test_summary_shows_error_and_shortens_long_values() -> None:
    def boom() -> object:
        yield "x" * 200
        raise ValueError("bad upstream")

    stream = so.collect()(boom())  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="bad upstream"):
        list(stream)
    text = str(stream.report)
    assert text.splitlines()[0] == "stream report: error (ValueError)"
    assert "  error: ValueError('bad upstream')" in text
    assert 'text="xxxxxxxx' in text
    assert "x" * 100 not in text


def test_running_report_summary() -> None:
    assert str(so.StreamReport()).splitlines()[0] == "stream report: running"


async def test_report_with_collect_is_json_serialisable() -> None:
    stream = so.collect()(_aiter(["a", "b"]))
    assert await stream.text() == "ab"
    data = json.loads(stream.report.to_json())
    section = data["sections"]["collect"]
    assert section["text"] == "ab"
    assert section["stop_reason"] == "complete"
    assert section["metrics"]["chunk_count"] == 2
    assert "chunks" not in section
    assert [e["kind"] for e in data["events"]] == ["stream.start", "stream.end"]
