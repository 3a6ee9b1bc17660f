"""The Responses lens through a real ``openai`` client: every channel, every repetition.

A Responses stream repeats each text several times: as deltas, in its
``*.done`` event, in ``content_part.done`` / ``reasoning_summary_part.done``,
in ``output_item.done`` and in ``response.completed``'s full output. These
tests script such a stream on :class:`~streamops.testing.FakeOpenAIServer`'s
``/v1/responses``, read it with ``client.responses.create(..., stream=True)``
(sync and async: the SDK's own event types) and check the guarantees on what
the client receives: a secret split across deltas (answer, reasoning summary,
function-call arguments) or given whole (a citation's title, a tool's output)
shows in no event; a budget cut delivers exactly its tokens and every
repetition agrees with what was delivered; a tool item repeated whole is
counted once.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel, TypeAdapter
from test_budget_whole import numbered
from test_tool_outputs import RESPONSE

import streamops as so
from streamops.testing import FakeOpenAIServer

SECRET = "sk-proj-" + "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12Wx34"
# What may not show anywhere: the secret and any piece of it a split would leave.
FRAGMENTS = [SECRET[i : i + 12] for i in range(0, len(SECRET) - 11, 4)]
ENC = so.get_encoding("cl100k_base")

SUMMARY = f"The user pasted {SECRET} so I must not repeat it; I will send the note."
ANSWER = f"Your key {SECRET} was rotated. I have sent a note to the team about it."
ARGS = json.dumps({"to": "ops", "body": f"rotate {SECRET} today", "n": 3})
TITLE = f"Incident report for {SECRET}"
TOOL_OUTPUT = f"notes.txt: the old key was {SECRET}, rotated at noon. " * 3
QUERY = "key rotation policy for " + "production services " * 6
MESSAGES: Any = [{"role": "user", "content": "hi"}]


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def script(size: int = 5, split: Callable[[str], list[str]] | None = None) -> list[dict[str, Any]]:
    """A Responses stream as the wire sends it: reasoning, cited text, a call, tool items.

    Deltas are ``size`` characters each, so the secret is split at many
    places, or the pieces ``split`` cuts each streamed text into.
    """
    if split is None:
        split = functools.partial(pieces, size=size)
    summary = {"type": "summary_text", "text": SUMMARY}
    reasoning = {"type": "reasoning", "id": "rs1", "summary": [summary], "status": "completed"}
    note = {"type": "url_citation", "title": TITLE, "url": "https://example.com/r",
            "start_index": 0, "end_index": 8}  # fmt: skip
    part = {"type": "output_text", "text": ANSWER, "annotations": [note], "logprobs": []}
    message = {"type": "message", "id": "m1", "role": "assistant", "status": "completed",
               "content": [part]}  # fmt: skip
    call = {"type": "function_call", "id": "fc1", "call_id": "call_1", "name": "send",
            "arguments": ARGS, "status": "completed"}  # fmt: skip
    search = {"type": "web_search_call", "id": "ws1", "status": "completed",
              "action": {"type": "search", "query": QUERY}}  # fmt: skip
    mcp = {"type": "mcp_call", "id": "mc1", "server_label": "files", "name": "cat",
           "arguments": "{}", "output": TOOL_OUTPUT, "status": "completed"}  # fmt: skip
    started = {**RESPONSE, "status": "in_progress", "output": []}
    rs = {"item_id": "rs1", "output_index": 0, "summary_index": 0}
    m = {"item_id": "m1", "output_index": 1, "content_index": 0}
    fc = {"item_id": "fc1", "output_index": 2}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**reasoning, "summary": [], "status": "in_progress"}},
        {"type": "response.reasoning_summary_part.added", **rs,
         "part": {"type": "summary_text", "text": ""}},
        *({"type": "response.reasoning_summary_text.delta", **rs, "delta": p}
          for p in split(SUMMARY)),
        {"type": "response.reasoning_summary_text.done", **rs, "text": SUMMARY},
        {"type": "response.reasoning_summary_part.done", **rs, "part": summary},
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {**message, "content": [], "status": "in_progress"}},
        {"type": "response.content_part.added", **m,
         "part": {**part, "text": "", "annotations": []}},
        *({"type": "response.output_text.delta", **m, "delta": p, "logprobs": []}
          for p in split(ANSWER)),
        {"type": "response.output_text.annotation.added", **m, "annotation_index": 0,
         "annotation": note},
        {"type": "response.output_text.done", **m, "text": ANSWER, "logprobs": []},
        {"type": "response.content_part.done", **m, "part": part},
        {"type": "response.output_item.done", "output_index": 1, "item": message},
        {"type": "response.output_item.added", "output_index": 2,
         "item": {**call, "arguments": "", "status": "in_progress"}},
        *({"type": "response.function_call_arguments.delta", **fc, "delta": p}
          for p in split(ARGS)),
        {"type": "response.function_call_arguments.done", **fc, "arguments": ARGS},
        {"type": "response.output_item.done", "output_index": 2, "item": call},
        {"type": "response.output_item.added", "output_index": 3, "item": search},
        {"type": "response.output_item.done", "output_index": 3, "item": search},
        {"type": "response.output_item.added", "output_index": 4,
         "item": {**mcp, "arguments": "", "output": None, "status": "in_progress"}},
        {"type": "response.output_item.done", "output_index": 4, "item": mcp},
        {"type": "response.completed", "response": {
            **RESPONSE, "status": "completed",
            "output": [reasoning, message, call, search, mcp],
            "usage": {"input_tokens": 5, "output_tokens": 90, "total_tokens": 95,
                      "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 20}}}},
    ]  # fmt: skip
    return numbered(events)


EVENT: TypeAdapter[Any] = TypeAdapter(openai.types.responses.ResponseStreamEvent)


def test_the_script_is_valid_sdk_events() -> None:
    # (the tests below mean something: the SDK's own types, strictly validated)
    for event in script():
        EVENT.validate_python(event)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer("unused", events={"responses": script()}) as fake:
        yield fake


def run(server: FakeOpenAIServer, op: so.Operator[Any, Any], *, use_async: bool) -> Any:
    """``op`` over ``client.responses.create(stream=True)``: (events out, the stream's report)."""
    if use_async:
        import asyncio

        async def main() -> Any:
            async with openai.AsyncOpenAI(
                base_url=server.base_url, api_key="x", max_retries=0
            ) as client:
                source = await client.responses.create(model="m", input="hi", stream=True)
                stream = op(source)
                async with stream:
                    return [e async for e in stream], stream.report

        return asyncio.run(main())
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        source = client.responses.create(model="m", input="hi", stream=True)
        stream = op(source)
        with stream:
            return list(stream), stream.report


def dumped(events: list[Any]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") if isinstance(e, BaseModel) else e for e in events]


def strings(value: Any) -> Iterator[str]:
    """Every string in ``value`` (events dumped), keys and values, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def deltas(events: list[dict[str, Any]], kind: str, item_id: str) -> str:
    return "".join(e["delta"] for e in events if e["type"] == kind and e.get("item_id") == item_id)


STREAMED = {  # item id -> (delta event type, the channel's text in its *.done event)
    "rs1": ("response.reasoning_summary_text.delta", "response.reasoning_summary_text.done"),
    "m1": ("response.output_text.delta", "response.output_text.done"),
    "fc1": ("response.function_call_arguments.delta", "response.function_call_arguments.done"),
}


def repeated_texts(event: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(item id, text)`` for every whole copy of a streamed text in ``event``."""
    kind = event["type"]
    if kind.endswith(".done") and event.get("item_id") in STREAMED and "part" not in event:
        yield event["item_id"], event["arguments" if "arguments" in event else "text"]
    elif kind in ("response.content_part.done", "response.reasoning_summary_part.done"):
        yield event["item_id"], event["part"]["text"]
    items = [event["item"]] if "item" in event else []
    if kind in ("response.completed", "response.incomplete"):
        items = event["response"]["output"]
    for item in items:
        if item["id"] == "rs1":
            yield from (("rs1", s["text"]) for s in item["summary"])
        elif item["id"] == "m1":
            yield from (("m1", c["text"]) for c in item["content"])
        elif item["id"] == "fc1" and (kind != "response.output_item.added" or item["arguments"]):
            yield "fc1", item["arguments"]


def check_repetitions(out: list[dict[str, Any]]) -> dict[str, str]:
    """Every whole copy of a streamed text equals its deltas; returns the delivered texts."""
    delivered = {i: deltas(out, kind, i) for i, (kind, _) in STREAMED.items()}
    for event in out:
        for item_id, text in repeated_texts(event):
            assert text == delivered[item_id], (event["type"], item_id)
    return delivered


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_secret_shows_in_no_event_the_client_receives(
    server: FakeOpenAIServer, use_async: bool
) -> None:
    events, report = run(server, so.redact(), use_async=use_async)
    assert all(type(e).__module__.startswith("openai.types") for e in events)
    out = dumped(events)
    leaked = [f for f in FRAGMENTS for s in strings(out) if f in s]
    assert leaked == []
    delivered = check_repetitions(out)
    assert delivered["m1"] == ANSWER.replace(SECRET, "[OPENAI_KEY]")
    assert delivered["rs1"] == SUMMARY.replace(SECRET, "[OPENAI_KEY]")
    assert json.loads(delivered["fc1"]) == {
        "to": "ops",
        "body": "rotate [OPENAI_KEY] today",
        "n": 3,
    }
    shown = json.dumps(out)
    # the title at annotation.added, content_part.done, output_item.done, response.completed
    assert shown.count(json.dumps(TITLE.replace(SECRET, "[OPENAI_KEY]"))) == 4
    assert shown.count(json.dumps(TOOL_OUTPUT.replace(SECRET, "[OPENAI_KEY]"))) == 2
    # once per secret: the answer, the summary, the arguments, the title, the tool output
    redactions = [e for e in report.events if e.kind == "redact.redact"]
    assert len(redactions) == 4 + TOOL_OUTPUT.count(SECRET)
    # ids, order and sequence numbers kept; every event still an SDK event
    assert [e["sequence_number"] for e in out] == sorted({e["sequence_number"] for e in out})
    for event in out:
        EVENT.validate_python(event)


def tokens(text: str) -> int:
    return len(ENC.encode(text))


# JSON outside strings: numbers, and runs of structure between strings and numbers
_ARGUMENT_MESSAGES = re.compile(r'"((?:[^"\\]|\\.)*)"?|(-?[0-9][0-9.eE+-]*)|([^"0-9-]+)')


def argument_tokens(text: str) -> int:
    """The tokens a budget counts in tool-call arguments (even cut short).

    It counts each message of the JSON text on its own (a string's decoded
    value, a number, a run of structure between them); the quotes around a
    string are the lens's, not counted (see ``_JSONStrings``).
    """
    total = 0
    for m in _ARGUMENT_MESSAGES.finditer(text):
        string, number, structure = m.groups()
        if string is not None:
            total += tokens(json.loads(f'"{string}"') if m.group().endswith('"') else string)
        else:
            total += tokens(number or structure)
    return total


def billed(out: list[dict[str, Any]]) -> int:
    """The tokens a default budget counts in what the client received (after the checks)."""
    delivered = check_repetitions(out)
    mcp = [e["item"]["arguments"] for e in out if e["type"] == "response.output_item.done"
           and e["item"]["id"] == "mc1"]  # fmt: skip
    texts = tokens(delivered["rs1"]) + tokens(delivered["m1"])
    return texts + sum(argument_tokens(a) for a in [delivered["fc1"], *mcp])


# the billed channels of the script: the streamed texts, then the MCP call's "{}" arguments
TOTAL = tokens(SUMMARY) + tokens(ANSWER) + argument_tokens(ARGS) + argument_tokens("{}")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("limit", [1, 7, tokens(SUMMARY) + 3, TOTAL - 9, TOTAL - 1, TOTAL])
def test_a_budget_cut_delivers_exactly_its_tokens_and_every_copy_agrees(
    server: FakeOpenAIServer, use_async: bool, limit: int
) -> None:
    events, report = run(server, so.budget(max_tokens=limit), use_async=use_async)
    out = dumped(events)
    assert billed(out) == limit
    assert report["budget"].completion_tokens == limit
    expected = "complete" if limit == TOTAL else "budget"
    assert report.stop_reason == expected
    for event in out:
        EVENT.validate_python(event)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_tool_item_repeated_whole_is_counted_once(
    server: FakeOpenAIServer, use_async: bool
) -> None:
    op = so.budget(max_tokens=10**6, channels=["tool_output"])
    events, report = run(server, op, use_async=use_async)
    # the search's query and the MCP output at added (the search), done and
    # completed; the citation (title, URL) at annotation.added, the part, the
    # item and completed
    expected = tokens(QUERY) + tokens(TOOL_OUTPUT) + tokens(TITLE) + tokens("https://example.com/r")
    assert report["budget"].channel_tokens == {"tool_output": expected}
    # tool output is not redacted, only counted: every event unchanged but for
    # where the deltas split (arguments hold their JSON structure a little)
    out = dumped(events)
    raw = [EVENT.validate_python(e).model_dump(mode="json") for e in script()]

    def wholes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**e, "sequence_number": 0} for e in events if not e["type"].endswith(".delta")]

    assert wholes(out) == wholes(raw)
    assert check_repetitions(out) == {"rs1": SUMMARY, "m1": ANSWER, "fc1": ARGS}


def test_redaction_then_a_budget_cut_anywhere_leaks_nothing_and_every_copy_agrees(
    server: FakeOpenAIServer,
) -> None:
    summary, answer, args = (t.replace(SECRET, "[OPENAI_KEY]") for t in (SUMMARY, ANSWER, ARGS))
    total = tokens(summary) + tokens(answer) + argument_tokens(args) + argument_tokens("{}")
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        for limit in range(1, total + 1):
            source = client.responses.create(model="m", input="hi", stream=True)
            stream = (so.redact() | so.budget(max_tokens=limit))(source)
            with stream:
                out = dumped(list(stream))
            assert [f for f in FRAGMENTS for s in strings(out) if f in s] == [], limit
            assert billed(out) == limit, limit
            assert stream.report.stop_reason == ("complete" if limit == total else "budget")


@pytest.mark.parametrize("op", ["redact", "budget"])
def test_the_responses_stream_helper_is_refused_rather_than_leaked(
    server: FakeOpenAIServer, op: str
) -> None:
    # client.responses.stream() adds the accumulated text to every delta event
    # (``snapshot``): the raw secret showed there beside the redacted delta, and a
    # budget's cut text beside the whole. As with Anthropic's messages.stream(),
    # its events are refused with a pointer to the raw events.
    # (the helper adds snapshots to the answer's and the arguments' deltas)
    cut = so.budget(max_tokens=tokens(SUMMARY) + 5)
    operator = so.redact() if op == "redact" else cut
    with (
        openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
        client.responses.stream(model="m", input="hi") as events,
    ):
        stream = operator(events)
        with pytest.raises(so.LensError, match=r"responses\.create\(\.\.\., stream=True\)"):
            list(stream)


@pytest.mark.parametrize("end", ["error", "response.failed"])
def test_an_error_message_is_redacted(end: str) -> None:
    # the API's own words about a failure may quote what the model wrote
    message = f"The output contained {SECRET} and was stopped."
    events = script()[:40]
    if end == "error":
        events.append({"type": "error", "code": "server_error", "message": message, "param": None})
    else:
        failed = {**RESPONSE, "status": "failed", "output": [],
                  "error": {"code": "server_error", "message": message}}  # fmt: skip
        events.append({"type": "response.failed", "response": failed})
    events = numbered(events)
    EVENT.validate_python(events[-1])
    with (
        FakeOpenAIServer("unused", events={"responses": events}) as fake,
        openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0) as client,
    ):
        source = client.responses.create(model="m", input="hi", stream=True)
        stream = so.redact()(source)
        with stream:
            out = dumped(list(stream))
    assert [f for f in FRAGMENTS for s in strings(out) if f in s] == []
    (last,) = [e for e in out if e["type"] == end]
    shown = last if end == "error" else last["response"]["error"]
    assert shown["message"] == "The output contained [OPENAI_KEY] and was stopped."
