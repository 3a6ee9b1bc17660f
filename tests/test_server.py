"""The fake OpenAI server, driven by real `openai` clients (over a socket and in process)."""

from __future__ import annotations

import argparse
import json
import threading
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

import streamops as so
from streamops import FakeOpenAIServer, SSEDecoder, serve, sse_response, to_sse
from streamops._server import add_fake_server_arguments, fake_server_from_args

SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
REPLY = f"Your key is {SECRET}, keep it safe."
MESSAGES: Any = [{"role": "user", "content": "what is my key?"}]


def scripted(*replies: Any, **options: Any) -> so.FakeStreamingModel:
    options.setdefault("chunking", 6)  # the secret is cut into several chunks
    return so.FakeStreamingModel(list(replies), format="openai-dict", **options)


async def collect(client: openai.AsyncOpenAI, **extra: Any) -> list[ChatCompletionChunk]:
    upstream: Any = await client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True, **extra
    )
    async with so.redact()(upstream) as stream:
        return [chunk async for chunk in stream]


def content(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def no_server_threads() -> bool:
    return not any(t.name == "streamops-fake-server" for t in threading.enumerate())


async def test_openai_client_stream_redacted_end_to_end() -> None:
    model = scripted(REPLY)
    async with (
        FakeOpenAIServer(model) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        chunks = await collect(client, stream_options={"include_usage": True})
    assert no_server_threads()
    planned = model.last_call.planned
    assert any(SECRET not in p and p in SECRET for p in planned)  # the secret was split
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert not any(SECRET[:10] in c.model_dump_json() for c in chunks)
    assert content(chunks) == "Your key is [OPENAI_KEY], keep it safe."
    assert {c.id for c in chunks} == {"chatcmpl-fake0"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    sent_usage = model.last_call.chunks[-1]["usage"]
    assert chunks[-1].usage.model_dump(exclude_none=True) == sent_usage
    assert [c.usage for c in chunks[:-1]] == [None] * (len(chunks) - 1)


async def test_http_500_on_the_first_call_then_retry_recovers() -> None:
    model = scripted(REPLY)
    async with (
        FakeOpenAIServer(model, http_errors={1: 500}) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):

        async def attempt() -> Any:
            upstream = await client.chat.completions.create(
                model="gpt-test",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            return so.redact()(upstream)

        stream = so.retry(attempt, attempts=3, backoff=so.Backoff(initial=0.0, jitter=0.0))
        async with stream:
            chunks = [c async for c in stream]
    assert server.requests == 2
    assert len(model.calls) == 1
    attempts = stream.report["retry"].attempts  # type: ignore[attr-defined]
    assert [(a.outcome, a.error_type) for a in attempts] == [
        ("failed", "InternalServerError"),
        ("success", None),
    ]
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert content(chunks) == "Your key is [OPENAI_KEY], keep it safe."
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None


async def test_in_process_client_and_model_failures() -> None:
    model = scripted(ConnectionError("upstream reset"), REPLY)
    server = FakeOpenAIServer(model, http_errors={2: 429})
    async with openai.AsyncOpenAI(
        base_url=server.in_process_url,
        api_key="x",
        max_retries=0,
        http_client=server.async_client(),
    ) as client:
        with pytest.raises(openai.InternalServerError, match="upstream reset"):
            await collect(client)
        with pytest.raises(openai.RateLimitError, match="HTTP 429 on request 2"):
            await collect(client)
        chunks = await collect(client)
    assert content(chunks) == "Your key is [OPENAI_KEY], keep it safe."
    assert chunks[-1].choices[0].finish_reason == "stop"  # no usage chunk: not asked for
    assert server.requests == 3
    assert model.last_call.prompt == "what is my key?"


async def test_non_streaming_completion() -> None:
    server = FakeOpenAIServer(scripted("Hello there"))
    async with openai.AsyncOpenAI(
        base_url=server.in_process_url, api_key="x", http_client=server.async_client()
    ) as client:
        completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


async def wire(server: FakeOpenAIServer, body: Any) -> httpx.Response:
    async with server.async_client() as http:
        response: httpx.Response = await http.post("/chat/completions", json=body)
        return response


async def test_wire_format_is_openai_exact() -> None:
    server = FakeOpenAIServer(scripted("Hi you", chunking="word"))
    response = await wire(server, {"model": "m", "messages": MESSAGES, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    text = response.text
    assert text.endswith("\n\ndata: [DONE]\n\n")
    decoder = SSEDecoder()
    events = decoder.feed(text)
    datas = [json.loads(e.data) for e in events[:-1]]
    assert all(d["object"] == "chat.completion.chunk" for d in datas)
    assert all("usage" not in d for d in datas)
    assert [d["choices"][0]["delta"].get("content") for d in datas] == ["", "Hi", " you", None]
    assert text.startswith('data: {"id":"chatcmpl-fake0","object":"chat.completion.chunk"')


async def test_faults_mid_stream() -> None:
    disconnect = so.FakeReply("a b c", faults=[so.Fault.disconnect_at(1)])
    broken = so.FakeReply("a b c", faults=[so.Fault.raise_at(2)])
    server = FakeOpenAIServer(scripted(disconnect, broken, chunking="word"))
    response = await wire(server, {"model": "m", "messages": MESSAGES, "stream": True})
    assert "[DONE]" not in response.text
    assert '"finish_reason":"stop"' not in response.text
    with pytest.raises(so.FakeUpstreamError):  # in process the app's error reaches the client
        await wire(server, {"model": "m", "messages": MESSAGES, "stream": True})


async def test_non_streaming_failure_is_a_500() -> None:
    broken = so.FakeReply("a b c", faults=[so.Fault.raise_at(2)])
    server = FakeOpenAIServer(scripted(broken, chunking="word"))
    response = await wire(server, {"model": "m", "messages": MESSAGES})
    assert response.status_code == 500
    assert "fake upstream error at chunk 2" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "'messages' must be a non-empty list"),
        ([1, 2], "'messages' must be a non-empty list"),
        ({"messages": MESSAGES, "n": 2}, "the fake server streams one choice: n must be 1"),
    ],
)
async def test_bad_requests_get_400(body: Any, message: str) -> None:
    server = FakeOpenAIServer("x")
    response = await wire(server, body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


async def test_body_that_is_not_json() -> None:
    server = FakeOpenAIServer("x")
    async with server.async_client() as http:
        response = await http.post("/chat/completions", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="format='openai-dict'"):
        FakeOpenAIServer(so.FakeStreamingModel("x"))
    with pytest.raises(ValueError, match="request numbers >= 1"):
        FakeOpenAIServer("x", http_errors={0: 500})
    with pytest.raises(ValueError, match="HTTP error statuses"):
        FakeOpenAIServer("x", http_errors={1: 200})
    with pytest.raises(ValueError, match="not a loopback address"):
        FakeOpenAIServer("x", host="192.168.1.5")
    with pytest.raises(ValueError, match="port must be"):
        FakeOpenAIServer("x", port=70000)
    assert FakeOpenAIServer("x", host="::1").host == "::1"
    with pytest.raises(RuntimeError, match="not running"):
        _ = FakeOpenAIServer("x").base_url
    with pytest.raises(ValueError, match="not a loopback address"):
        serve("x", host="0.0.0.0")


def test_sync_server_start_stop_and_restart_guard() -> None:
    server = FakeOpenAIServer("Hello")
    with server:
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        with client:
            stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            chunks = list(so.redact()(stream))
    assert content(chunks) == "Hello"
    assert no_server_threads()
    server.stop()  # harmless when stopped


def test_cli_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_fake_server_arguments(parser)
    args = parser.parse_args(
        ["--port", "0", "--reply", "one", "--reply", "two", "--http-error", "1:429"]
    )
    fake = fake_server_from_args(args)
    assert (fake.host, fake.port, fake.http_errors) == ("127.0.0.1", 0, {1: 429})
    assert [fake.model.invoke() for _ in range(2)] == ["one", "two"]
    assert fake.model.format == "openai-dict"
    with pytest.raises(SystemExit):
        parser.parse_args(["--http-error", "oops"])
    with pytest.raises(ValueError, match="unknown chunking 'bogus'"):
        fake_server_from_args(parser.parse_args(["--chunking", "bogus"]))


def test_serve_refuses_a_port_in_use_with_a_clear_error() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"^cannot listen on 127.0.0.1:{port}: "):
            serve("x", port=port)


async def test_proxy_relays_a_redacted_openai_stream_as_sse() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    upstream_server = FakeOpenAIServer(scripted(REPLY))
    client = openai.AsyncOpenAI(
        base_url=upstream_server.in_process_url,
        api_key="x",
        http_client=upstream_server.async_client(),
    )

    async def relay(request: Request) -> Response:
        upstream = await client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        response: Response = sse_response(so.redact()(upstream))
        return response

    app = Starlette(routes=[Route("/relay", relay)])
    async with client, httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        body = (await http.get("http://proxy/relay")).content
    events = SSEDecoder().feed(body)
    assert SECRET[:10] not in body.decode()
    assert events[-1].data == "[DONE]"
    report = events[-2].json()
    assert report["usage"]["total_tokens"] > 0
    assert report["stop_reason"] == "complete"
    chunks = [ChatCompletionChunk.model_validate_json(e.data) for e in events[:-2]]
    assert content(chunks) == "Your key is [OPENAI_KEY], keep it safe."
    # to_sse alone gives the same bytes for a sync stream of the same chunks
    again = b"".join(to_sse(iter(chunks), report_event=None))
    assert [e.data for e in SSEDecoder().feed(again)] == [e.data for e in events[:-2]] + ["[DONE]"]
