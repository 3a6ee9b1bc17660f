"""Unit tests of the SSE decoder and encoder."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

import streamops as so
from streamops import SSEDecoder, SSEEvent, sse_decode, sse_format, sse_json
from streamops._core._stages import ProcessorStage
from streamops.lowlevel import find_lens
from streamops.testing import Chunking, Fault


def decode(*chunks: bytes | str) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [e for c in chunks for e in decoder.feed(c)]
    return events + decoder.close()


# --------------------------------------------------------------------------
# the decoder
# --------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["\n", "\r", "\r\n"])
def test_every_line_ending(end: str) -> None:
    raw = f"event: e{end}data: a{end}data: b{end}{end}data: c{end}{end}"
    assert decode(raw) == [SSEEvent("a\nb", "e"), SSEEvent("c")]


def test_crlf_split_between_reads_is_one_line_end() -> None:
    assert decode(b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n") == [
        SSEEvent("a"),
        SSEEvent("b"),
    ]


def test_fields_comments_and_ids() -> None:
    raw = (
        ": keep-alive\n"
        "id: 1\nretry: 1500\ndata:no space\ndata:  two spaces\nunknown: x\n\n"
        "id: bad\0id\ndata\nretry: -5\n\n"
        "event: only-event\n\n"
        "data: after\n\n"
    )
    assert decode(raw) == [
        SSEEvent("no space\n two spaces", id="1", retry=1500),
        SSEEvent("", id="1"),  # a NUL in the id and a bad retry are ignored
        SSEEvent("after", id="1"),  # a block without data dispatches nothing
    ]


def test_bom_utf8_split_and_incomplete_event() -> None:
    data = "\ufeffdata: café ☕\n\ndata: never finished".encode()
    pieces = [data[i : i + 1] for i in range(len(data))]
    assert decode(*pieces) == [SSEEvent("café ☕")]


def test_invalid_utf8_replaced_or_strict() -> None:
    assert decode(b"data: a\xffb\n\n") == [SSEEvent("a\ufffdb")]
    strict = SSEDecoder(errors="strict")
    with pytest.raises(UnicodeDecodeError):
        strict.feed(b"data: \xff\n\n")
    strict = SSEDecoder(errors="strict")
    strict.feed(b"data: \xe2\x98")
    with pytest.raises(UnicodeDecodeError):
        strict.close()
    with pytest.raises(ValueError, match="errors must be"):
        SSEDecoder(errors="ignore")  # type: ignore[arg-type]


def test_decoder_rejects_other_chunk_types() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: 1\n")
    with pytest.raises(so.ChunkTypeError, match=r"^chunk 1 has type int, expected bytes or str"):
        decoder.feed(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# decoding operators
# --------------------------------------------------------------------------


class Source:
    """A byte source that records whether it was closed."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.chunks:
                self.pulled += 1
                yield chunk
        finally:
            self.closed = True

    async def aiter(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self.chunks:
                self.pulled += 1
                yield chunk
        finally:
            self.closed = True


def test_sse_decode_stops_at_done_and_closes_upstream() -> None:
    source = Source([b"data: 1\n\ndata: [DONE]\n\n", b"data: never\n\n"])
    stream = sse_decode(done="[DONE]")(iter(source))
    assert list(stream) == [SSEEvent("1")]
    assert source.closed
    assert source.pulled == 1
    assert stream.report.counters["sse.events"] == 2


async def test_sse_decode_async() -> None:
    source = Source([b"data: 1\n", b"\nda", b"ta: 2\n\n"])
    assert [e.data async for e in sse_decode()(source.aiter())] == ["1", "2"]
    assert source.closed


async def test_sse_decode_async_stops_at_done() -> None:
    source = Source([b"data: 1\n\ndata: [DONE]\n\n", b"data: never\n\n"])
    assert [e.data async for e in sse_decode(done="[DONE]")(source.aiter())] == ["1"]
    assert source.closed
    assert source.pulled == 1


def test_sse_decode_rejects_bad_chunks_and_options() -> None:
    with pytest.raises(so.ChunkTypeError, match=r"chunk 1 has type int, expected bytes or str"):
        list(sse_decode()([b"data: 1\n\n", 5]))
    with pytest.raises(ValueError, match="errors must be"):
        sse_json(errors="bad")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="done must be a str or None, got int"):
        sse_decode(done=0)  # type: ignore[arg-type]


def test_sse_operators_are_fusable_processor_stages() -> None:
    """One processor stage: fused with its neighbours, no sync/async twin loops."""
    for op in (sse_decode(), sse_json()):
        (stage,) = op.stages
        assert isinstance(stage, ProcessorStage)
        assert (stage.accepts, stage.produces) == (None, None)
    # Fused with the identity after it: one driver for both.
    assert len((sse_json() | so.identity())._groups()) == 1


def test_sse_decode_events_after_done_in_the_same_read_are_dropped() -> None:
    raw = b"data: 1\n\ndata: [DONE]\n\ndata: 2\n\n\xe2\x82"
    stream = sse_decode(done="[DONE]", errors="strict")([raw])
    # The incomplete character after [DONE] is not an error: the stream ended before it.
    assert list(stream) == [SSEEvent("1")]
    assert stream.report.stop_reason == so.StopReason.COMPLETE


def openai_wire(text_pieces: list[str]) -> bytes:
    chunks = so.FakeStreamingModel(
        "".join(text_pieces), chunking=Chunking.fixed(4), format="openai-dict"
    ).stream("hi")
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return body.encode()


def test_sse_json_then_redact_gives_redacted_wire_dicts() -> None:
    raw = openai_wire(["Mail jane@example.com today"])
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    out: list[Any] = list((sse_json() | so.redact(["email"]))(pieces))
    assert all(isinstance(c, dict) for c in out)
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in out if c["choices"])
    assert text == "Mail [EMAIL] today"
    assert out[-1]["usage"]["completion_tokens"] == 5


def test_responses_api_sse_stream_is_redacted() -> None:
    events: list[dict[str, Any]] = [
        {"type": "response.created", "sequence_number": 0, "response": {"id": "r1"}},
        {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0,
         "content_index": 0, "delta": "Mail a@b.", "logprobs": [], "sequence_number": 1},
        {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0,
         "content_index": 0, "delta": "co now", "logprobs": [], "sequence_number": 2},
        {"type": "response.output_text.done", "item_id": "m1", "output_index": 0,
         "content_index": 0, "text": "Mail a@b.co now", "logprobs": [], "sequence_number": 3},
    ]  # fmt: skip
    raw = "".join(sse_format(json.dumps(e), event=e["type"]) for e in events).encode()
    assert isinstance(find_lens(events[0]), so.OpenAIResponsesLens)
    out: list[Any] = list((sse_json(done=None) | so.redact(["email"]))([raw[:50], raw[50:]]))
    assert [e["type"] for e in out][-1] == "response.output_text.done"
    assert out[-1]["text"] == "Mail [EMAIL] now"
    assert "a@b.co" not in json.dumps(out)


def test_sse_json_invalid_json_is_an_sse_error() -> None:
    with pytest.raises(
        so.SSEError, match=r"^SSE event \(id '7'\) data is not JSON at offset 1: "
    ) as info:
        list(sse_json()([b"data: 1\n\nid: 7\ndata: {oops\n\n"]))
    err = info.value
    assert isinstance(err, so.StreamOpsError)
    assert isinstance(err, ValueError)
    assert err.event == SSEEvent("{oops", id="7")
    assert err.offset == 1
    assert isinstance(err.__cause__, json.JSONDecodeError)


# --------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["plain", "two\nlines", " leading space", "", "a\r\nb"])
def test_sse_format_round_trips(text: str) -> None:
    raw = sse_format(text, event="x", id="7", retry=10)
    assert decode(raw) == [SSEEvent(text.replace("\r\n", "\n"), "x", "7", 10)]


def test_sse_format_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="event must not contain a line break"):
        sse_format("x", event="a\nb")
    with pytest.raises(ValueError, match="retry must be a non-negative int"):
        sse_format("x", retry=-1)


def test_to_sse_sync_with_report_and_usage() -> None:
    model = so.FakeStreamingModel("Hi a@b.co", format="openai-dict")
    stream = so.redact(["email"])(model.stream("hi"))
    events = decode(b"".join(so.to_sse(stream)))
    assert events[-1] == SSEEvent("[DONE]")
    report = events[-2]
    assert report.event == "report"
    summary = report.json()
    assert summary["stop_reason"] == "complete"
    assert summary["usage"] == {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}
    assert summary["sections"]["redact"]["redacted"] == {"email": 1}
    chunks = [e.json() for e in events[:-2]]
    assert "a@b.co" not in json.dumps(chunks)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_to_sse_encodes_models_events_and_custom_data() -> None:
    model = so.FakeStreamingModel("Hi", format="openai")
    raw = b"".join(so.to_sse(so.identity()(model.stream()), report_event=None, done=None))
    first = decode(raw)[0].json()
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    raw = b"".join(so.to_sse([SSEEvent("x", "ping", "3")], done=None))
    assert decode(raw) == [SSEEvent("x", "ping", "3")]  # no report: a list has none
    raw = b"".join(so.to_sse([1, 2], data=lambda n: f"#{n}", event="n", done=None))
    assert decode(raw) == [SSEEvent("#1", "n"), SSEEvent("#2", "n")]
    with pytest.raises(TypeError, match="cannot encode a object chunk"):
        list(so.to_sse([object()]))
    with pytest.raises(TypeError, match="to_sse needs a stream"):
        so.to_sse(3)


def test_to_sse_error_sends_the_report_then_raises() -> None:
    model = so.FakeStreamingModel("a b c", faults=[Fault.raise_at(2)])
    out: list[bytes] = []
    with pytest.raises(so.FakeUpstreamError):
        out.extend(so.to_sse(so.identity()(model.stream())))
    events = decode(b"".join(out))
    assert [e.data for e in events[:2]] == ["a", " b"]
    assert events[-1].event == "report"
    assert events[-1].json()["stop_reason"] == "error"


async def test_to_sse_consumer_gone_closes_the_upstream() -> None:
    model = so.FakeStreamingModel("a b c d")
    body = so.to_sse(so.identity()(model.astream()))
    assert await anext(body) == b"data: a\n\n"
    await body.aclose()
    call = model.last_call
    assert call.closed_early
    assert call.finalized
    assert call.pulled == 1


# --------------------------------------------------------------------------
# Starlette
# --------------------------------------------------------------------------


async def test_sse_response_in_an_app() -> None:
    model = so.FakeStreamingModel("Mail a@b.co now", delay=0.01)

    async def endpoint(request: Request) -> Response:
        response: Response = so.sse_response(so.redact(["email"])(model.astream("x")))
        return response

    app = Starlette(routes=[Route("/", endpoint)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = decode(response.content)
    assert "".join(e.data for e in events if e.event == "message") == "Mail [EMAIL] now[DONE]"
    assert events[-2].json()["stop_reason"] == "complete"


async def test_sse_response_closes_the_stream_when_the_client_disconnects() -> None:
    model = so.FakeStreamingModel("a b c d")
    response = so.sse_response(so.identity()(model.astream()))
    sent: list[Any] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body" and sent:
            raise OSError("client went away")
        sent.append(message)

    async def receive() -> Any:  # pragma: no cover - not used with ASGI spec 2.4
        return {"type": "http.disconnect"}

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    with pytest.raises(ClientDisconnect):
        await response(scope, receive, send)
    call = model.last_call
    assert call.closed_early
    assert call.finalized


def test_sse_response_refuses_sync_streams() -> None:
    with pytest.raises(TypeError, match="needs an async stream"):
        so.sse_response(so.identity()(["a"]))
