"""WebSocket both ways, over loopback with real clients (websockets, google-genai's Live client).

A uvicorn server in a thread serves Starlette WebSocket routes: one sends a
wrapped stream with ``so.to_websocket``, one plays a Gemini Live API session.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from google.genai import types
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import streamops as so
from streamops.testing import FakeStreamingModel, Fault

EMAIL = "ann.lee@example.com"
REPLY = f"Write to {EMAIL} today, please."
REDACTED = "Write to [EMAIL] today, please."

# What the server side saw, per route: reports and fake models.
SEEN: dict[str, Any] = {}


async def text_route(websocket: WebSocket) -> None:
    model = FakeStreamingModel(REPLY, chunking="char")
    SEEN["text"] = await so.to_websocket(websocket, so.redact()(model.astream("hi")))


async def json_route(websocket: WebSocket) -> None:
    model = FakeStreamingModel(REPLY, chunking="char", format="openai-dict")
    SEEN["json"] = await so.to_websocket(websocket, so.redact()(model.astream("hi")), mode="json")


async def slow_route(websocket: WebSocket) -> None:
    model = FakeStreamingModel("tick " * 200, delay=0.05)  # real sleeps on the server loop
    SEEN["slow_model"] = model
    SEEN["slow"] = await so.to_websocket(websocket, so.redact()(model.astream("hi")))


async def failing_route(websocket: WebSocket) -> None:
    model = FakeStreamingModel("one two three", faults=[Fault.raise_at(2, ConnectionResetError)])
    try:
        await so.to_websocket(websocket, so.identity()(model.astream("hi")))
    except ConnectionResetError as exc:
        SEEN["failing"] = exc


LIVE_TURN = [
    {"serverContent": {"modelTurn": {"parts": [{"text": "Write to ann.lee@exa"}]}}},
    {"serverContent": {"modelTurn": {"parts": [{"text": "mple.com today."}]}}},
    {"serverContent": {"outputTranscription": {"text": "mail ann.lee@"}}},
    {"serverContent": {"outputTranscription": {"text": "example.com"}}},
    {"serverContent": {"turnComplete": True}},
    {"usageMetadata": {"promptTokenCount": 3, "responseTokenCount": 7, "totalTokenCount": 10}},
]


async def live_route(websocket: WebSocket) -> None:
    """A Gemini Live API session: setup, then one model turn per client message."""
    await websocket.accept()
    setup = json.loads(await websocket.receive_text())
    SEEN["live_setup"] = setup
    await websocket.send_text(json.dumps({"setupComplete": {}}))
    while True:
        try:
            await websocket.receive_text()
        except Exception:
            return
        for message in LIVE_TURN:
            await websocket.send_text(json.dumps(message))


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    app = Starlette(
        routes=[
            WebSocketRoute("/text", text_route),
            WebSocketRoute("/json", json_route),
            WebSocketRoute("/slow", slow_route),
            WebSocketRoute("/failing", failing_route),
            WebSocketRoute("/ws/{rest:path}", live_route),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="error", lifespan="off", ws="websockets-sansio")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


async def receive_all(url: str) -> tuple[list[str], int | None]:
    frames: list[str] = []
    async with connect(url) as ws:
        try:
            async for frame in ws:
                assert isinstance(frame, str)
                frames.append(frame)
        except ConnectionClosed:
            pass
        code = ws.close_code
    return frames, code


async def test_text_frames_report_and_clean_close(base: str) -> None:
    frames, code = await receive_all(f"ws://{base}/text")
    report = json.loads(frames[-1])
    assert report["type"] == "report"
    assert "".join(frames[:-1]) == REDACTED
    assert len(frames) > 4  # streamed, not one frame at the end
    assert report["report"]["stop_reason"] == "complete"
    assert report["report"]["sections"]["redact"]["redacted"] == {"email": 1}
    assert code == 1000
    assert EMAIL not in "".join(frames)


async def test_json_messages_carry_provider_chunks(base: str) -> None:
    frames, code = await receive_all(f"ws://{base}/json")
    messages = [json.loads(f) for f in frames]
    chunks = [m["data"] for m in messages if m["type"] == "chunk"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == REDACTED
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert messages[-1]["type"] == "report"
    assert messages[-1]["report"]["sections"]["usage"]["completion_tokens"] > 0
    assert code == 1000


async def test_disconnect_closes_the_upstream(base: str) -> None:
    async with connect(f"ws://{base}/slow") as ws:
        assert (await ws.recv()).strip() == "tick"
    for _ in range(100):
        if "slow" in SEEN:
            break
        await asyncio.sleep(0.05)
    model = SEEN["slow_model"]
    assert model.last_call.closed_early
    assert model.last_call.finalized
    assert model.last_call.pulled < 20
    assert SEEN["slow"].stop_reason == so.StopReason.CANCELLED


async def test_an_upstream_error_sends_the_report_and_closes_1011(base: str) -> None:
    frames, code = await receive_all(f"ws://{base}/failing")
    assert frames[:2] == ["one", " two"]
    assert json.loads(frames[-1])["report"]["stop_reason"] == "error"
    assert code == 1011
    for _ in range(100):
        if "failing" in SEEN:
            break
        await asyncio.sleep(0.05)
    assert isinstance(SEEN["failing"], ConnectionResetError)


async def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match='mode must be "text" or "json"'):
        await so.to_websocket(None, so.identity()([]), mode="xml")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an async stream"):
        await so.to_websocket(None, so.identity()(["a"]))


# -- reading Live-API messages -----------------------------------------------------


def live_text(messages: list[Any]) -> tuple[str, str]:
    """The model turn text and the output transcript of Live-API JSON messages."""
    text = transcript = ""
    for m in messages:
        content = m.get("serverContent") or {}
        for part in (content.get("modelTurn") or {}).get("parts") or ():
            text += part.get("text") or ""
        transcript += (content.get("outputTranscription") or {}).get("text") or ""
    return text, transcript


async def test_live_json_messages_over_a_raw_websocket(base: str) -> None:
    async with connect(f"ws://{base}/ws/live") as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-live"}}))
        await ws.send(json.dumps({"clientContent": {"turnComplete": True}}))

        async def messages() -> Any:
            async for frame in ws:
                message = json.loads(frame)
                yield message
                if "usageMetadata" in message:
                    return

        stream = so.redact()(messages())
        out = [m async for m in stream]
    assert out[0] == {"setupComplete": {}}
    assert live_text(out) == ("Write to [EMAIL] today.", "mail [EMAIL]")
    assert EMAIL not in json.dumps(out)
    assert stream.report["usage"].model_dump()["total_tokens"] == 10


def test_live_server_message_objects() -> None:
    """google-genai's LiveServerMessage objects (what client.aio.live sessions yield)."""
    messages = [types.LiveServerMessage.model_validate(m) for m in LIVE_TURN]
    out = list(so.redact()(messages))
    assert all(isinstance(m, types.LiveServerMessage) for m in out)
    text = "".join(
        p.text or ""
        for m in out
        if m.server_content and m.server_content.model_turn
        for p in m.server_content.model_turn.parts or ()
    )
    said = "".join(
        m.server_content.output_transcription.text or ""
        for m in out
        if m.server_content and m.server_content.output_transcription
    )
    assert (text, said) == ("Write to [EMAIL] today.", "mail [EMAIL]")
    assert out[-1].usage_metadata is not None


def test_interrupted_turn_masks_a_partial_secret() -> None:
    messages = [
        {"serverContent": {"modelTurn": {"parts": [{"text": "mail ann.lee@exam"}]}}},
        {"serverContent": {"interrupted": True}},
    ]
    text, _ = live_text(list(so.redact(["email"])(messages)))
    assert "ann.lee" not in text


def test_each_turn_is_its_own_message_and_tool_calls_are_redacted() -> None:
    messages: list[Any] = [
        {"serverContent": {"modelTurn": {"parts": [{"text": "first ann@"}]}, "turnComplete": True}},
        {"toolCall": {"functionCalls": [{"name": "send", "args": {"to": EMAIL}, "id": "c1"}]}},
        {
            "serverContent": {
                "modelTurn": {"parts": [{"text": "example.com"}]},
                "turnComplete": True,
            }
        },
    ]
    out = list(so.redact(["email"])(messages))
    text, _ = live_text(out)
    assert text == "first ann@example.com"  # two turns: no address spans them
    assert out[1]["toolCall"]["functionCalls"][0]["args"] == {"to": "[EMAIL]"}


def test_lens_is_found_for_objects_and_dicts() -> None:
    from streamops.lowlevel import find_lens

    assert isinstance(find_lens({"setupComplete": {}}), so.GeminiLiveLens)
    message = types.LiveServerMessage.model_validate({"setupComplete": {}})
    assert isinstance(find_lens(message), so.GeminiLiveLens)


def test_example_websocket() -> None:
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "websocket_stream.py"
    frames = runpy.run_path(str(path))["main"]()
    assert "".join(frames[:-1]) == "Your key is [OPENAI_KEY]."
    assert json.loads(frames[-1])["report"]["stop_reason"] == "complete"


@pytest.mark.parametrize("objects", [False, True])
def test_live_code_parts_are_redacted(objects: bool) -> None:
    # The code the model runs and what it printed are shown to the client too.
    email = "ann@example.com"
    code = {"executableCode": {"language": "PYTHON", "code": f"print('{email}')"}}
    result = {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": f"{email}\n"}}
    msgs: list[Any] = [
        {"serverContent": {"modelTurn": {"parts": [code]}}},
        {"serverContent": {"modelTurn": {"parts": [result]}}},
        {"serverContent": {"modelTurn": {"parts": [{"text": "done"}]}, "turnComplete": True}},
    ]
    if objects:
        msgs = [types.LiveServerMessage.model_validate(m) for m in msgs]
    out = list(so.redact(["email"])(msgs))
    dumped = json.dumps(
        [o if isinstance(o, dict) else o.model_dump(mode="json", exclude_none=True) for o in out]
    )
    assert email not in dumped
    assert "print('[EMAIL]')" in dumped
    assert '"[EMAIL]\\n"' in dumped


@pytest.mark.parametrize("objects", [False, True])
def test_live_grounding_and_url_context_are_redacted(objects: bool) -> None:
    # A Live session with Google Search: the sources, the supports quoting the
    # answer and the model's queries come whole on the server content.
    email = "ann@example.com"
    grounding = {
        "webSearchQueries": [f"who is {email}"],
        "groundingChunks": [{"web": {"uri": "https://example.org/a", "title": email}}],
        "groundingSupports": [
            {"segment": {"startIndex": 0, "endIndex": 21, "text": f"Mail {email}"}}
        ],
    }
    urls = {"urlMetadata": [{"retrievedUrl": f"https://example.org/?to={email}"}]}
    msgs: list[Any] = [
        {"serverContent": {"modelTurn": {"parts": [{"text": "Mail ann@exa"}]}}},
        {
            "serverContent": {
                "modelTurn": {"parts": [{"text": "mple.com"}]},
                "groundingMetadata": grounding,
                "urlContextMetadata": urls,
                "turnComplete": True,
            }
        },
    ]
    if objects:
        msgs = [types.LiveServerMessage.model_validate(m) for m in msgs]
    out = list(so.redact(["email"])(msgs))
    dumped = json.dumps(
        [o if isinstance(o, dict) else o.model_dump(mode="json", exclude_none=True) for o in out]
    )
    assert email not in dumped
    assert "Mail [EMAIL]" in dumped
    assert "https://example.org/a" in dumped
