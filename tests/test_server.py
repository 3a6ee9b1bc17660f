"""The fake OpenAI server, driven by real `openai` clients (over a socket and in process)."""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

import streamops as so
from streamops import SSEDecoder, sse_response, to_sse
from streamops._cli import add_fake_server_arguments, fake_server_from_args
from streamops.testing import FakeOpenAIServer, FakeReply, Fault, serve

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
    disconnect = FakeReply("a b c", faults=[Fault.disconnect_at(1)])
    broken = FakeReply("a b c", faults=[Fault.raise_at(2)])
    server = FakeOpenAIServer(scripted(disconnect, broken, chunking="word"))
    response = await wire(server, {"model": "m", "messages": MESSAGES, "stream": True})
    assert "[DONE]" not in response.text
    assert '"finish_reason":"stop"' not in response.text
    with pytest.raises(so.FakeUpstreamError):  # in process the app's error reaches the client
        await wire(server, {"model": "m", "messages": MESSAGES, "stream": True})


async def test_non_streaming_failure_is_a_500() -> None:
    broken = FakeReply("a b c", faults=[Fault.raise_at(2)])
    server = FakeOpenAIServer(scripted(broken, chunking="word"))
    response = await wire(server, {"model": "m", "messages": MESSAGES})
    assert response.status_code == 500
    assert "fake upstream error at chunk 2" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "'messages' must be a non-empty list"),
        ([1, 2], "the request body must be a JSON object"),
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


# --------------------------------------------------------------------------
# Anthropic Messages and OpenAI Responses wires, parsed by the stock SDKs
# --------------------------------------------------------------------------

ANTHROPIC_TYPES = [
    "message_start",
    "content_block_start",
    *["content_block_delta"] * 3,
    "content_block_stop",
    "message_delta",
    "message_stop",
]
RESPONSES_TYPES = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def strict_anthropic(events: list[Any]) -> list[Any]:
    """Validate each event the SDK built (it does not validate) against its type."""
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    return [adapter.validate_python(e.model_dump(exclude_unset=True)) for e in events]


def strict_responses(events: list[Any]) -> list[Any]:
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    return [adapter.validate_python(e.model_dump(exclude_unset=True)) for e in events]


def check_anthropic_events(events: list[Any], text: str = "Hi you there") -> None:
    assert [e.type for e in events] == ANTHROPIC_TYPES
    validated = strict_anthropic(events)
    assert [type(e).__name__ for e in validated] == [type(e).__name__ for e in events]
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == text
    start, delta = events[0], events[-2]
    assert start.message.id == "msg_fake0"
    assert start.message.usage.input_tokens > 0
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 3


def check_responses_events(events: list[Any], text: str = "Hi you there") -> None:
    assert [e.type for e in events] == RESPONSES_TYPES
    strict_responses(events)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == text
    done = {e.type: e for e in events}
    assert done["response.output_text.done"].text == text
    assert done["response.content_part.done"].part.text == text
    completed = done["response.completed"].response
    assert completed.status == "completed"
    assert completed.output_text == text
    assert completed.usage is not None
    assert completed.usage.output_tokens == 3


def word_model(*replies: Any, **options: Any) -> so.FakeStreamingModel:
    return so.FakeStreamingModel(list(replies), chunking="word", format="openai-dict", **options)


ANTHROPIC_MESSAGES: Any = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]


async def test_anthropic_async_client_parses_every_event() -> None:
    model = word_model("Hi you there", delay=0.001)
    async with (
        FakeOpenAIServer(model) as server,
        anthropic.AsyncAnthropic(base_url=server.root_url, api_key="x", max_retries=0) as client,
    ):
        stream = await client.messages.create(
            model="claude-test", max_tokens=100, messages=ANTHROPIC_MESSAGES, stream=True
        )
        events = [event async for event in stream]
        async with client.messages.stream(
            model="claude-test", max_tokens=100, messages=ANTHROPIC_MESSAGES
        ) as helper:
            final = await helper.get_final_message()
        message = await client.messages.create(
            model="claude-test", max_tokens=100, messages=ANTHROPIC_MESSAGES
        )
    check_anthropic_events(events)
    assert model.calls[0].prompt == "hello"
    assert final.content[0].type == "text"
    assert final.content[0].text == "Hi you there"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hi you there"
    assert (message.stop_reason, message.usage.output_tokens) == ("end_turn", 3)
    assert [r.route for r in server.served] == ["messages"] * 3
    assert [r.stream for r in server.served] == [True, True, False]


def test_anthropic_sync_client_parses_every_event() -> None:
    with (
        FakeOpenAIServer(word_model("Hi you there")) as server,
        anthropic.Anthropic(base_url=server.root_url, api_key="x", max_retries=0) as client,
    ):
        events = list(
            client.messages.create(
                model="claude-test", max_tokens=100, messages=ANTHROPIC_MESSAGES, stream=True
            )
        )
        with client.messages.stream(
            model="claude-test", max_tokens=100, messages=ANTHROPIC_MESSAGES
        ) as helper:
            assert "".join(helper.text_stream) == "Hi you there"
    check_anthropic_events(events)


async def test_anthropic_wire_bytes_name_each_event() -> None:
    server = FakeOpenAIServer(word_model("Hi"))
    body = {"model": "m", "max_tokens": 5, "messages": ANTHROPIC_MESSAGES, "stream": True}
    async with server.async_client() as http:
        response = await http.post("/messages", json=body)
    events = SSEDecoder().feed(response.text)
    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(e.json()["type"] == e.event for e in events)


async def test_anthropic_errors_and_finishes() -> None:
    cut = FakeReply("one two three", finish_reason="length")
    dropped = FakeReply("one two three", faults=[Fault.disconnect_at(1)])
    async with (
        FakeOpenAIServer(word_model(cut, dropped), http_errors={1: 429}) as server,
        anthropic.AsyncAnthropic(base_url=server.root_url, api_key="x", max_retries=0) as client,
    ):
        with pytest.raises(anthropic.RateLimitError, match="HTTP 429 on request 1"):
            await client.messages.create(model="m", max_tokens=5, messages=ANTHROPIC_MESSAGES)
        with pytest.raises(anthropic.BadRequestError, match="'messages' must be a non-empty"):
            await client.messages.create(model="m", max_tokens=5, messages=[])
        stream = await client.messages.create(
            model="m", max_tokens=5, messages=ANTHROPIC_MESSAGES, stream=True
        )
        events = [e async for e in stream]
        stream = await client.messages.create(
            model="m", max_tokens=5, messages=ANTHROPIC_MESSAGES, stream=True
        )
        partial = [e async for e in stream]
    assert events[-2].type == "message_delta"
    assert events[-2].delta.stop_reason == "max_tokens"
    assert [e.type for e in partial] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ]


async def test_responses_async_client_parses_every_event() -> None:
    model = word_model("Hi you there", delay=0.001)
    async with (
        FakeOpenAIServer(model) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        stream = await client.responses.create(model="gpt-test", input="hello", stream=True)
        events = [event async for event in stream]
        async with client.responses.stream(model="gpt-test", input="hello") as helper:
            final = await helper.get_final_response()
        response = await client.responses.create(
            model="gpt-test", input=[{"role": "user", "content": "hello"}]
        )
    check_responses_events(events)
    assert final.output_text == "Hi you there"
    assert final.status == "completed"
    assert response.output_text == "Hi you there"
    assert response.status == "completed"
    assert response.usage is not None
    assert response.usage.output_tokens == 3
    assert [c.prompt for c in model.calls] == ["hello"] * 3
    assert [r.route for r in server.served] == ["responses"] * 3


def test_responses_sync_client_parses_every_event() -> None:
    with (
        FakeOpenAIServer(word_model("Hi you there")) as server,
        openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        events = list(client.responses.create(model="gpt-test", input="hello", stream=True))
        with client.responses.stream(model="gpt-test", input="hello") as helper:
            texts = [e.delta for e in helper if e.type == "response.output_text.delta"]
            final = helper.get_final_response()
    check_responses_events(events)
    assert "".join(texts) == final.output_text == "Hi you there"


async def test_responses_length_finish_is_incomplete() -> None:
    server = FakeOpenAIServer(word_model(FakeReply("one two", finish_reason="length")))
    async with openai.AsyncOpenAI(
        base_url=server.in_process_url, api_key="x", http_client=server.async_client()
    ) as client:
        events = [e async for e in await client.responses.create(model="m", input="x", stream=True)]
        response = await client.responses.create(model="m", input="x")
    strict_responses(events)
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert response.status == "incomplete"
    assert response.output_text == "one two"


# --------------------------------------------------------------------------
# the server's record of each request
# --------------------------------------------------------------------------


def test_served_records_a_complete_stream() -> None:
    with (
        FakeOpenAIServer(word_model("a b c", delay=0.001)) as server,
        openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    record = server.last_served
    assert (record.number, record.route, record.stream, record.status) == (
        1,
        "chat.completions",
        True,
        200,
    )
    assert record.completed
    assert record.stopped
    assert record.disconnected_at is None
    assert record.produced == 6  # role, three words, finish, usage
    assert record.sent == len(chunks) + 1  # and [DONE]; the usage chunk was not asked for
    assert record.call is not None
    assert record.call.completed
    assert record.started_at <= record.produced_at[0] <= record.headers_at  # type: ignore[operator]
    assert record.stopped_at is not None
    assert record.stopped_at >= record.produced_at[-1]


def test_a_client_leaving_mid_stream_stops_generation_at_once() -> None:
    model = word_model(" ".join(["word"] * 200), delay=0.02)
    with FakeOpenAIServer(model) as server:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
            lines = response.iter_lines()
            for _ in range(6):
                next(lines)
            # Taken before the close: the server thread may see the disconnect
            # before this thread runs again after the `with`.
            left = time.monotonic()
        record = server.last_served
        assert record.wait_stopped(2.0)
        assert record.disconnected_at is not None
        assert record.disconnected_at >= left
        assert record.produced_after(left) <= 2
        assert not record.completed
        assert record.call is not None
        assert record.call.closed_early


def test_headers_delay_and_a_client_leaving_before_the_headers() -> None:
    with FakeOpenAIServer(word_model("a b"), headers_delay=5.0) as server:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=0.2)
        record = server.last_served
        assert record.wait_stopped(2.0)
        assert record.disconnected_at is not None
        assert record.call is None
        assert record.headers_at is None
        assert record.status is None
        assert record.produced == 0
        assert not record.completed
        server.headers_delay = 0.05
        body["stream"] = False
        response = httpx.post(f"{server.base_url}/chat/completions", json=body)
    assert response.json()["choices"][0]["message"]["content"] == "a b"
    assert server.last_served.headers_at - server.last_served.started_at >= 0.05  # type: ignore[operator]


def test_served_records_errors_and_bad_options() -> None:
    server = FakeOpenAIServer("x", http_errors={1: 500})
    with server:
        first = httpx.post(f"{server.base_url}/responses", json={"model": "m", "input": "x"})
        second = httpx.post(f"{server.base_url}/responses", json={"model": "m"})
    assert (first.status_code, second.status_code) == (500, 400)
    assert second.json()["error"]["message"] == "'input' must be a non-empty list"
    assert [(r.route, r.status, r.call) for r in server.served] == [
        ("responses", 500, None),
        ("responses", 400, None),
    ]
    assert all(r.stopped and not r.produced for r in server.served)
    with pytest.raises(ValueError, match="headers_delay must be a finite number"):
        FakeOpenAIServer("x", headers_delay=-1)
    with pytest.raises(IndexError, match="has not served a request yet"):
        _ = FakeOpenAIServer("x").last_served


def test_served_sockets_send_small_writes_at_once() -> None:
    # An accepted socket inherits TCP_NODELAY from the listening one (asyncio sets it
    # only on sockets whose proto says TCP, and an accepted socket's says 0): without
    # it a stream's first chunk, written right after the headers, waited for the
    # client's delayed ACK (40 ms on Linux).
    import socket

    from streamops._serving import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()
    # (the fake server, the threaded server of so.serve and the gateway all bind with it)
