"""The Gemini lens over real google-genai types, and a real genai.Client on loopback.

The loopback server below speaks Gemini's ``streamGenerateContent?alt=sse``
wire (one JSON ``GenerateContentResponse`` per ``data:`` line), so the SDK
parses the stream itself and the lens sees the objects users get.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from google import genai
from google.genai import types
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

import streamops as so
from streamops.testing import FakeStreamingModel

EMAIL = "ann.lee@example.com"


def response(
    parts: list[dict[str, Any]], finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", **extra}


USAGE = {
    "usageMetadata": {
        "promptTokenCount": 4,
        "candidatesTokenCount": 9,
        "thoughtsTokenCount": 5,
        "totalTokenCount": 18,
    }
}

# A thinking model's stream: thoughts, then the answer, a function call; a
# secret split across chunks in the thoughts, the answer and the call's args.
SCRIPT = [
    response([{"text": "User wants ann.lee@exa", "thought": True}]),
    response([{"text": "mple.com checked", "thought": True}]),
    response([{"text": "Write to ann.lee"}]),
    response([{"text": "@example.com please"}]),
    response(
        [{"functionCall": {"name": "send", "args": {"to": EMAIL, "n": 2}}}],
        "STOP",
        **USAGE,
        modelStatus={"modelStage": "STABLE", "message": f"Support: {EMAIL}"},
    ),
]
# what the API writes at the finish, on the candidate (a secret in it too)
SCRIPT[-1]["candidates"][0]["finishMessage"] = f"Stopped after the call to {EMAIL}"


def objects(script: list[dict[str, Any]]) -> list[Any]:
    return [types.GenerateContentResponse.model_validate(c) for c in script]


def parts_text(chunks: list[Any], *, thought: bool) -> str:
    out = []
    for c in chunks:
        for p in c.candidates[0].content.parts or ():
            if p.text is not None and bool(p.thought) == thought:
                out.append(p.text)
    return "".join(out)


def test_text_thoughts_and_function_calls() -> None:
    out = list(so.redact(["email"])(objects(SCRIPT)))
    assert all(isinstance(c, types.GenerateContentResponse) for c in out)
    assert parts_text(out, thought=True) == "User wants [EMAIL] checked"
    assert parts_text(out, thought=False) == "Write to [EMAIL] please"
    call = out[-1].candidates[0].content.parts[-1].function_call
    assert call.name == "send"
    assert call.args == {"to": "[EMAIL]", "n": 2}
    assert out[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert out[-1].usage_metadata.thoughts_token_count == 5
    assert out[-1].model_version == "gemini-2.5-flash"
    assert EMAIL not in repr(out)


def test_held_thought_goes_before_the_answer() -> None:
    script = [
        response([{"text": "think of ann@", "thought": True}]),
        response([{"text": "Answer"}], "STOP"),
    ]
    out = list(so.redact(["email"])(objects(script)))
    parts = [p for c in out for p in c.candidates[0].content.parts or ()]
    assert [(p.text, bool(p.thought)) for p in parts if p.text] == [
        ("think of ", True),
        ("ann@", True),
        ("Answer", False),
    ]


def test_wire_dicts_work_the_same() -> None:
    out = list(so.redact(["email"])(json.loads(json.dumps(SCRIPT))))
    texts = [p.get("text") for c in out for p in c["candidates"][0]["content"]["parts"]]
    assert "".join(t for t in texts if t) == "User wants [EMAIL] checkedWrite to [EMAIL] please"
    assert out[-1]["candidates"][0]["finishReason"] == "STOP"
    assert out[-1]["usageMetadata"] == USAGE["usageMetadata"]


@pytest.mark.parametrize("finish", ["MAX_TOKENS", "SAFETY"])
def test_cut_finish_masks_a_partial_secret(finish: str) -> None:
    script = [response([{"text": "mail ann.lee@exam"}]), response([], finish)]
    stream = so.redact(["email"])(objects(script))
    out = list(stream)
    assert "ann.lee" not in parts_text(out, thought=False)
    assert out[-1].candidates[0].finish_reason == finish


def test_no_finish_reason_means_truncated() -> None:
    stream = so.redact(["email"])(objects([response([{"text": "mail ann.lee@exam"}])]))
    assert "ann.lee" not in parts_text(list(stream), thought=False)


def test_budget_counts_and_cuts_gemini_chunks() -> None:
    script = [response([{"text": "one two three four five six seven"}], "STOP")]
    out = list(so.budget(max_tokens=3)(objects(script)))
    assert parts_text(out, thought=False) == "one two three"


def test_lens_is_found_for_objects_and_dicts() -> None:
    from streamops.lowlevel import find_lens

    assert isinstance(find_lens(objects(SCRIPT)[0]), so.GeminiLens)
    assert isinstance(find_lens(SCRIPT[0]), so.GeminiLens)


def test_several_candidates_are_refused() -> None:
    chunk = {"candidates": [response([{"text": "a"}])["candidates"][0]] * 2}
    with pytest.raises(so.LensError, match="candidate_count=1"):
        list(so.redact()([types.GenerateContentResponse.model_validate(chunk)]))


def test_partial_args_are_redacted_per_path() -> None:
    def call(value: str, more: bool) -> dict[str, Any]:
        arg = {"jsonPath": "$.to", "stringValue": value, "willContinue": more}
        return response([{"functionCall": {"name": "send", "partialArgs": [arg]}}])

    out = list(so.redact(["email"])(objects([call("ann.lee@exa", True), call("mple.com", False)])))
    values = [
        a.string_value
        for c in out
        for p in c.candidates[0].content.parts or ()
        if p.function_call
        for a in p.function_call.partial_args or ()
    ]
    assert "".join(values) == "[EMAIL]"


def test_partial_args_in_wire_dicts_are_redacted_per_path() -> None:
    # Wire JSON spells every field in camelCase, ``willContinue`` included: an
    # address split across two partial arguments is one value, never two.
    def call(value: str, more: bool) -> dict[str, Any]:
        arg = {"jsonPath": "$.to", "stringValue": value, "willContinue": more}
        return response([{"functionCall": {"name": "send", "partialArgs": [arg]}}])

    out = list(so.redact(["email"])([call("ann.lee@exa", True), call("mple.com", False)]))
    values = [
        a["stringValue"]
        for c in out
        for p in c["candidates"][0]["content"]["parts"]
        for a in p["functionCall"]["partialArgs"]
    ]
    assert "".join(values) == "[EMAIL]"


@pytest.mark.parametrize("fmt", ["gemini", "gemini-dict"])
async def test_fake_model_gemini_format(fmt: Any) -> None:
    model = FakeStreamingModel(f"Mail {EMAIL} now", chunking="char", format=fmt)
    chunks: list[Any] = [c async for c in so.redact()(model.astream("hi"))]
    if fmt == "gemini":
        assert parts_text(chunks, thought=False) == "Mail [EMAIL] now"
        assert chunks[-1].usage_metadata.candidates_token_count > 0
        assert chunks[-1].candidates[0].finish_reason == "STOP"
    else:
        assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_fake_model_length_is_max_tokens() -> None:
    from streamops.testing import FakeReply

    model = FakeStreamingModel(FakeReply("cut", finish_reason="length"), format="gemini")
    assert list(model.stream())[-1].candidates[0].finish_reason == "MAX_TOKENS"


# -- a real genai.Client over loopback ----------------------------------------------


@pytest.fixture(scope="module")
def gemini_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def stream(request: Request) -> StreamingResponse:
        seen.append({"path": request.url.path, "query": dict(request.query_params)})

        async def body() -> Any:
            for chunk in SCRIPT:
                yield f"data: {json.dumps(chunk)}\r\n\r\n".encode()

        return StreamingResponse(body(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/{rest:path}", stream, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}", seen
    server.should_exit = True
    thread.join(10)
    sock.close()


async def test_raw_sse_bytes_through_sse_json(
    gemini_server: tuple[str, list[dict[str, Any]]],
) -> None:
    """Gemini's REST stream read as bytes (no SDK): sse_json() then the lens, as dicts."""
    import httpx

    url, _ = gemini_server
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST", f"{url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", json={}
        ) as response,
    ):
        op: so.Operator[Any, Any] = so.sse_json(done=None) | so.redact(["email"])
        out: list[Any] = [c async for c in op(response.aiter_bytes())]
    texts = [p.get("text") or "" for c in out for p in c["candidates"][0]["content"]["parts"]]
    assert "".join(texts) == "User wants [EMAIL] checkedWrite to [EMAIL] please"
    assert out[-1]["usageMetadata"]["totalTokenCount"] == 18
    assert out[-1]["candidates"][0]["finishMessage"] == "Stopped after the call to [EMAIL]"
    assert out[-1]["modelStatus"]["message"] == "Support: [EMAIL]"
    assert EMAIL not in json.dumps(out)


def client(url: str) -> genai.Client:
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=url))


def test_real_client_stream(gemini_server: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = gemini_server
    gemini = client(url)  # (a client closes its connections when collected)
    stream = gemini.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")
    out: list[Any] = list(so.redact(["email"])(stream))
    assert seen[-1]["path"].endswith("/models/gemini-2.5-flash:streamGenerateContent")
    assert seen[-1]["query"] == {"alt": "sse"}
    assert parts_text(out, thought=False) == "Write to [EMAIL] please"
    assert out[-1].candidates[0].content.parts[-1].function_call.args["to"] == "[EMAIL]"
    assert out[-1].usage_metadata.total_token_count == 18
    # (the SDK drops the Developer API's finishMessage; Vertex AI's it keeps)
    assert out[-1].candidates[0].finish_message in (None, "Stopped after the call to [EMAIL]")
    assert out[-1].model_status.message == "Support: [EMAIL]"
    assert EMAIL not in repr(out)


# google-genai subclasses aiohttp's ClientSession, which aiohttp discourages with a warning.
@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
async def test_real_client_aio(gemini_server: tuple[str, list[dict[str, Any]]]) -> None:
    url, _ = gemini_server
    gemini = client(url)
    source = gemini.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")
    out: list[Any] = [c async for c in so.redact(["email"])(source)]  # an awaitable source
    assert parts_text(out, thought=True) == "User wants [EMAIL] checked"
    assert EMAIL not in repr(out)


def test_example_gemini() -> None:
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "gemini_stream.py"
    text, thoughts = runpy.run_path(str(path))["main"]()
    assert text == "Your contact is [EMAIL]."
    assert "[EMAIL]" in thoughts
