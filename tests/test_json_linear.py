"""O(n) where it was not (issue 17): the work is counted, not timed.

Timings live in ``benchmarks/bench_json.py``; here the quantity that made the
cost superlinear is counted directly, so the tests are fast and deterministic.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import streamops as so
from streamops._json import _parser
from streamops._json._parser import JSONParser


def _nested_open_arrays(depth: int, per_level: int) -> str:
    # Every level holds complete small arrays (so each chunk has a ']' and the
    # C scanner is tried) and stays open until the very end.
    return ("[" + "[1], " * per_level) * depth + "1" + "]" * depth


def test_open_nested_containers_in_a_big_chunk_are_not_rescanned_per_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = _nested_open_arrays(depth=300, per_level=20)
    scanned = 0
    real = _parser._scan_once

    def counting(text: str, pos: int) -> tuple[Any, int]:
        nonlocal scanned
        try:
            value, end = real(text, pos)
        except json.JSONDecodeError as exc:
            scanned += exc.pos - pos
            raise
        except StopIteration as exc:
            scanned += exc.value - pos
            raise
        scanned += end - pos
        return value, end

    monkeypatch.setattr(_parser, "_scan_once", counting)
    half = len(doc) // 2
    out = list(so.parse_json()([doc[:half], doc[half:]]))
    assert out[-1] == json.loads(doc)
    # Before: each of the 300 open levels re-scanned the rest of the chunk
    # (~150x the document); now failed scans cost a few times the chunk.
    assert scanned <= 6 * len(doc), scanned / len(doc)


def _count_scanned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the characters json's scanner reads (failed tries included), in a 1-list."""
    scanned = [0]
    real = _parser._scan_once

    def counting(text: str, pos: int) -> tuple[Any, int]:
        try:
            value, end = real(text, pos)
        except json.JSONDecodeError as exc:
            scanned[0] += exc.pos - pos
            raise
        except StopIteration as exc:
            scanned[0] += exc.value - pos
            raise
        except RecursionError:
            scanned[0] += len(text) - pos
            raise
        scanned[0] += end - pos
        return value, end

    monkeypatch.setattr(_parser, "_scan_once", counting)
    return scanned


def test_open_nested_objects_in_a_big_chunk_cost_a_bounded_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The benchmark's deep document: objects open at the end of the first of two
    # chunks, each with complete members. A run of an open object's members
    # (_members) over it fails (the nesting does not close in the chunk); it is
    # tried on a window of the chunk, not on all of it (3.5x the document was
    # scanned with runs over the whole chunk, 3.0x before runs, 2.5x now).
    scanned = _count_scanned(monkeypatch)
    doc = ('{"k": [{"a": 1}, [1], "' + "z" * 330 + '", ') * 400 + "1" + "]}" * 400
    half = len(doc) // 2
    parser = JSONParser()
    parser.feed(doc[:half])
    parser.feed(doc[half:])
    parser.close()
    assert parser.value == json.loads(doc)
    assert scanned[0] <= 3 * len(doc), scanned[0] / len(doc)


def _runs_show_what_steps_show(
    monkeypatch: pytest.MonkeyPatch, doc: str, chunks: list[str]
) -> list[int]:
    """Parse ``chunks`` with runs and member by member: after every chunk both show the
    same; return the characters the runs' parser handed to the scanner (a cell)."""
    steps = JSONParser()  # (made before the count: its scans are not counted)
    steps._runs = False
    scanned = _count_scanned(monkeypatch)
    runs = JSONParser()
    for chunk in chunks:
        assert runs.feed(chunk) == steps.feed(chunk)
        assert repr(runs.value) == repr(steps.value)
    runs.close()
    assert runs.value == json.loads(doc)
    return scanned


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_an_object_open_across_big_chunks_takes_its_members_in_windows(
    monkeypatch: pytest.MonkeyPatch, parts: int
) -> None:
    # An object of 3,000 members (79 KB) in a few chunks: its members go to the
    # scanner a window at a time, the state machine taking the one cut at each
    # window's end; what is shown after every chunk is what the member loop shows.
    doc = json.dumps({f"key {i}": [i, "v" * (i % 7)] for i in range(3000)})
    size = len(doc) // parts + 1
    chunks = [doc[i : i + size] for i in range(0, len(doc), size)]
    scanned = _runs_show_what_steps_show(monkeypatch, doc, chunks)
    assert scanned[0] <= 2 * len(doc), scanned[0] / len(doc)


@pytest.mark.parametrize("size", [1024, 8192])
def test_an_object_open_for_long_is_not_rescanned_per_chunk(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    # A root object of 5,000 small objects, in big chunks: the root is open in
    # every chunk. Handing its rest to the scanner (_rest) failed over the whole
    # chunk each time, and its runs (_members) took a ',' inside a member's
    # object twice: 2.7x the document was scanned (0.8x before runs). The '}'
    # that would close it and the ',' that ends a member are now guessed with
    # balanced brackets first.
    doc = json.dumps({f"k{i}": {"a": i, "b": [i, i + 1], "c": "x" * (i % 9)} for i in range(5000)})
    chunks = [doc[i : i + size] for i in range(0, len(doc), size)]
    scanned = _runs_show_what_steps_show(monkeypatch, doc, chunks)
    assert scanned[0] <= 1.5 * len(doc), scanned[0] / len(doc)


def test_deltas_keep_a_long_string_as_pieces_until_it_ends() -> None:
    # The text already emitted is not re-joined on every chunk: the parser's
    # own copy is a list of pieces joined once, at the end of the string.
    p = JSONParser(deltas=True)
    p.feed('{"s": "')
    for _ in range(1000):
        p.feed("abcd")
        assert p._sval == ""  # nothing re-built per chunk
    p.feed('"}')
    assert p.value == {"s": "abcd" * 1000}
    assert p.events[-2] == so.JSONDelta("done", "/s", "abcd" * 1000)


@pytest.mark.parametrize("cut", [3, 7, 12])
def test_deltas_recover_keeps_the_whole_truncated_string(cut: int) -> None:
    text = '{"a": "xyzw12345678'
    chunks = [text[i : i + cut] for i in range(0, len(text), cut)]
    p = JSONParser(deltas=True)
    for c in chunks:
        p.feed(c)
    p.close(recover=True)
    assert p.value == {"a": "xyzw12345678"}
    assert p.incomplete


def test_long_chunks_are_not_kept_in_the_plan_caches() -> None:
    # Plans and programs are cached for small chunks only: big chunks rarely
    # repeat, and keeping up to 2,048 of them per state would hold megabytes.
    text = json.dumps([{"id": i, "tags": ["a", "b"], "s": "x" * 40} for i in range(300)])
    parser = JSONParser()
    for i in range(0, len(text), 200):
        parser.feed(text[i : i + 200])
    parser.close()
    assert parser.value == json.loads(text)
    caches: list[dict[str, Any]] = [*parser._plans, *parser._progs]
    cached = [key for cache in caches for key in cache]
    assert all(len(key) <= _parser._PLAN_MAX_CHUNK for key in cached), len(cached)
