"""The Responses lens under random chunkings, skipped events and forced ends, checked by the SDK.

The stream of ``tests/test_responses_client.py`` (a reasoning summary, an
answer with a citation, function-call arguments, each carrying a secret, and
tool items repeated whole) with each streamed text cut at random places, so
the secret is split at every boundary across examples; some of the events
that repeat a text whole left out (a proxy's stream); and an end drawn among
``response.completed``, ``response.incomplete``, an ``error`` event and none
(a dropped connection). It is fed as wire dicts or as the SDK's parsed event
objects, through ``redact()`` alone or with a budget before or after it. Whatever
comes out:

- every event still validates as the ``openai`` SDK's ``ResponseStreamEvent``
  (the type a client parses the wire into), and keeps its input's type;
- no piece of the secret shows in any string of any event;
- every event that repeats a text whole (``*.done``, parts, items, the final
  response) shows exactly the text its deltas delivered;
- sequence numbers stay unique and increasing.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from test_budget_whole import numbered
from test_responses_client import EVENT, FRAGMENTS, check_repetitions, dumped, script, strings

import streamops as so

# events that only repeat a text whole: a stream may leave any of them out
_REPEATS = (
    "response.output_text.done",
    "response.reasoning_summary_text.done",
    "response.function_call_arguments.done",
    "response.content_part.done",
    "response.reasoning_summary_part.done",
)


@st.composite
def splitters(draw: st.DrawFn) -> Any:
    """A function cutting each text at drawn places (a different choice per text)."""
    seeds = draw(st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=40), min_size=3))
    calls = iter(seeds)

    def split(text: str) -> list[str]:
        sizes = next(calls)
        out, at, i = [], 0, 0
        while at < len(text):
            size = sizes[i % len(sizes)]
            out.append(text[at : at + size])
            at += size
            i += 1
        return out

    return split


def _end(events: list[dict[str, Any]], end: str) -> list[dict[str, Any]]:
    final = events[-1]
    if end == "completed":
        return events
    if end == "none":  # the connection dropped before the end
        return events[:-1]
    if end == "error":
        return [*events[:-1], {"type": "error", "code": "server_error", "message": "boom",
                               "param": None, "sequence_number": 0}]  # fmt: skip
    response = {**final["response"], "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"}}  # fmt: skip
    return [*events[:-1], {**final, "type": "response.incomplete", "response": response}]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    split=splitters(),
    dropped=st.sets(st.sampled_from(_REPEATS)),
    cut_at=st.one_of(st.none(), st.integers(0, 120)),
    end=st.sampled_from(["completed", "incomplete", "error", "none"]),
    as_sdk=st.booleans(),
    limit=st.one_of(st.none(), st.integers(1, 80)),
    budget_first=st.booleans(),
)
def test_any_chunking_keeps_every_event_an_sdk_event_without_the_secret(
    split: Any,
    dropped: set[str],
    cut_at: int | None,
    end: str,
    as_sdk: bool,
    limit: int | None,
    budget_first: bool,
) -> None:
    events = [e for e in script(split=split) if e["type"] not in dropped]
    events = _end(events, end)
    if cut_at is not None:  # the connection dropped anywhere
        events = events[:cut_at]
    events = numbered(events)
    source: list[Any] = [EVENT.validate_python(e) for e in events] if as_sdk else events
    op: so.Operator[Any, Any] = so.redact()
    if limit is not None:  # composition order never leaks
        budget = so.budget(max_tokens=limit)
        op = (budget | op) if budget_first else (op | budget)
    out = list(op(source))
    for event in out:
        assert isinstance(event, BaseModel) is as_sdk
        EVENT.validate_python(event.model_dump(mode="json") if as_sdk else event)
    shown = dumped(out)
    assert [f for f in FRAGMENTS for s in strings(shown) if f in s] == []
    check_repetitions(shown)
    seqs = [e["sequence_number"] for e in shown]
    assert seqs == sorted(set(seqs))
