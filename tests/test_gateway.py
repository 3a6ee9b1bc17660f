"""`streamops serve`: real openai and anthropic SDK clients through the gateway to a real upstream.

The upstream is `streamops.testing.FakeOpenAIServer` (text answers, faults,
records of early closes) or, for reasoning and tool-call channels it does not
produce, a scripted SSE server in this module. Everything runs on loopback
sockets on ephemeral ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from helpers import (
    close_sdk_clients,  # noqa: F401 - the fixture, used by pytestmark
    keys_file,
)

import streamops as so
from streamops._gateway import GatewayConfig, load_config
from streamops._gateway._thread import GatewayServer
from streamops.testing import FakeOpenAIServer, Fault

pytestmark = pytest.mark.usefixtures("close_sdk_clients")

SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
ANSWER = f"Sure. The key is {SECRET} and the mail is ann@example.com, bye."
USER: Any = [{"role": "user", "content": "hi"}]


def fake(text: str = ANSWER, **options: Any) -> FakeOpenAIServer:
    options.setdefault("chunking", 5)  # the secret is split over several chunks
    model = so.FakeStreamingModel(text, format="openai-dict", **options)
    return FakeOpenAIServer(model)


def config(*args: str) -> GatewayConfig:
    return load_config([*args, "--port", "0"])


@contextlib.contextmanager
def gateway(*args: str) -> Iterator[GatewayServer]:
    with GatewayServer(config(*args)) as server:
        yield server


def chat_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --------------------------------------------------------------------------
# the three wires, stream and non-stream, with the real SDKs
# --------------------------------------------------------------------------


def test_openai_sync_chat_stream_redacts_across_chunks_and_keeps_ids_and_usage() -> None:
    with fake() as up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    text = chat_text(chunks)
    assert SECRET not in text
    assert "ann@example.com" not in text
    assert text == "Sure. The key is [OPENAI_KEY] and the mail is [EMAIL], bye."
    assert {c.id for c in chunks} == {"chatcmpl-fake0"}
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_openai_chat_stream_without_include_usage_has_no_usage_chunk() -> None:
    with fake() as up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_openai_async_chat_stream_and_non_stream() -> None:
    async with fake() as up:
        with gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
            async with openai.AsyncOpenAI(
                base_url=gw.base_url, api_key="x", max_retries=0
            ) as client:
                stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
                chunks = [c async for c in stream]
                whole = await client.chat.completions.create(model="m", messages=USER)
    assert chat_text(chunks) == "Sure. The key is [OPENAI_KEY] and the mail is [EMAIL], bye."
    assert whole.choices[0].message.content == chat_text(chunks)
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None
    assert whole.usage.completion_tokens > 0
    assert whole.id == "chatcmpl-fake1"


def test_anthropic_stream_and_non_stream() -> None:
    with fake() as up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        client = anthropic.Anthropic(base_url=gw.root_url, api_key="x", max_retries=0)
        with client.messages.stream(model="m", max_tokens=100, messages=USER) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        whole = client.messages.create(model="m", max_tokens=100, messages=USER)
    assert text == "Sure. The key is [OPENAI_KEY] and the mail is [EMAIL], bye."
    assert final.stop_reason == "end_turn"
    assert final.id == "msg_fake0"
    assert whole.content[0].type == "text"
    assert whole.content[0].text == text
    assert whole.usage.output_tokens > 0


async def test_openai_responses_stream_and_non_stream() -> None:
    async with fake() as up:
        with gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
            async with openai.AsyncOpenAI(
                base_url=gw.base_url, api_key="x", max_retries=0
            ) as client:
                events = [
                    e
                    async for e in await client.responses.create(model="m", input="hi", stream=True)
                ]
                whole = await client.responses.create(model="m", input="hi")
                async with client.responses.stream(model="m", input="hi") as helper:
                    async for _ in helper:
                        pass
                    helped = await helper.get_final_response()
    expected = "Sure. The key is [OPENAI_KEY] and the mail is [EMAIL], bye."
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == expected
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == expected
    seqs = [e.sequence_number for e in events]
    assert seqs == sorted(set(seqs))
    assert whole.output_text == expected
    assert helped.output_text == expected


def test_models_and_healthz_pass_through() -> None:
    with fake() as up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        assert httpx.get(gw.root_url + "/healthz").json() == {"status": "ok"}
        listed = httpx.get(gw.base_url + "/models", headers={"authorization": "Bearer sk-c"})
        assert listed.status_code == 200
        assert listed.json()["data"][0]["id"] == up.model.model_name
        models = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0).models.list()
        assert [m.id for m in models] == [up.model.model_name]
        # Without --keys the client's credential goes upstream.
        assert up.models_requests[0]["authorization"] == "Bearer sk-c"
        assert httpx.get(gw.root_url + "/playground").status_code == 404  # off by default


# --------------------------------------------------------------------------
# keys, budgets, errors
# --------------------------------------------------------------------------


def test_unknown_key_gets_401_in_each_wire_and_the_upstream_is_never_called(
    tmp_path: Path,
) -> None:
    keys = keys_file(tmp_path, team_a={"key": "sk-team-a"})
    with (
        fake() as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys) as gw,
    ):
        oa = openai.OpenAI(base_url=gw.base_url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            oa.chat.completions.create(model="m", messages=USER, stream=True)
        assert info.value.status_code == 401
        assert info.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            oa.responses.create(model="m", input="hi")
        an = anthropic.Anthropic(base_url=gw.root_url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as ainfo:
            an.messages.create(model="m", max_tokens=5, messages=USER)
        assert ainfo.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        assert httpx.post(gw.base_url + "/chat/completions", json={}).status_code == 401
        assert up.requests == 0
        # The right key passes, and the gateway's own credential goes upstream.
        good = openai.OpenAI(base_url=gw.base_url, api_key="sk-team-a", max_retries=0)
        assert good.chat.completions.create(model="m", messages=USER).choices[0].message.content


def test_upstream_gets_the_gateway_credential_never_the_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMOPS_UPSTREAM_API_KEY", "sk-upstream")
    keys = keys_file(tmp_path, team_a={"key": "sk-team-a"})
    with fake() as up:
        with gateway("--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys) as gw:
            client = openai.OpenAI(base_url=gw.base_url, api_key="sk-team-a", max_retries=0)
            client.chat.completions.create(model="m", messages=USER)
            an = anthropic.Anthropic(base_url=gw.root_url, api_key="sk-team-a", max_retries=0)
            an.messages.create(model="m", max_tokens=5, messages=USER)
        seen = [r.request_headers for r in up.served]
    assert seen[0]["authorization"] == "Bearer sk-upstream"
    assert seen[1]["x-api-key"] == "sk-upstream"
    assert all("sk-team-a" not in json.dumps(h) for h in seen)


def test_without_keys_the_clients_authorization_is_forwarded() -> None:
    with fake() as up:
        with gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
            openai.OpenAI(
                base_url=gw.base_url, api_key="sk-client", max_retries=0
            ).chat.completions.create(model="m", messages=USER)
        seen = [r.request_headers.get("authorization", "") for r in up.served]
    assert seen == ["Bearer sk-client"]


LONG = " ".join(f"word{i}" for i in range(120))


def test_daily_budget_cuts_the_stream_exactly_then_429(tmp_path: Path) -> None:
    keys = keys_file(tmp_path, team_a={"key": "sk-a", "daily_tokens": 50})
    with (
        fake(LONG) as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys) as gw,
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="sk-a", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="m", messages=USER, stream=True, stream_options={"include_usage": True}
            )
        )
        text = chat_text(chunks)
        assert so.count_tokens(text) == 50
        assert LONG.startswith(text)
        assert chunks[-2].choices[0].finish_reason == "length"
        usage = chunks[-1].usage
        assert usage is not None
        assert usage.completion_tokens == 50
        assert up.last_served.stopped  # the upstream was closed at the cut
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=USER, stream=True)
        assert info.value.code == "daily_budget_exhausted"
        an = anthropic.Anthropic(base_url=gw.root_url, api_key="sk-a", max_retries=0)
        with pytest.raises(anthropic.RateLimitError):
            an.messages.create(model="m", max_tokens=5, messages=USER)
        assert up.requests == 1


MINI = so.DEFAULT_PRICES.price("gpt-4o-mini")
PICO_OUT = round(MINI.output_per_million * 1e6)  # picodollars per output token
PICO_IN = round(MINI.input_per_million * 1e6)


def test_daily_cost_budget_cuts_the_stream_exactly_then_429(tmp_path: Path) -> None:
    # Enough for 30 output tokens of gpt-4o-mini (counted with its encoding, o200k_base).
    cost = 30 * MINI.output_per_million / 1e6
    keys = keys_file(tmp_path, team_a={"key": "sk-a", "daily_cost": cost})
    with (
        fake(LONG) as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys) as gw,
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="sk-a", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = chat_text(chunks)
        assert so.count_tokens(text, "o200k_base") == 30
        assert LONG.startswith(text)
        assert chunks[-2].choices[0].finish_reason == "length"
        usage = chunks[-1].usage
        assert usage is not None
        assert usage.completion_tokens == 30
        assert up.last_served.stopped  # the upstream was closed at the cut
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
        assert info.value.code == "daily_budget_exhausted"
        assert "daily cost budget of $" in str(info.value)
        an = anthropic.Anthropic(base_url=gw.root_url, api_key="sk-a", max_retries=0)
        with pytest.raises(anthropic.RateLimitError):
            an.messages.create(model="gpt-4o-mini", max_tokens=5, messages=USER)
        assert up.requests == 1


def test_daily_cost_charges_output_and_prompt_at_the_models_price(tmp_path: Path) -> None:
    keys = keys_file(tmp_path, a={"key": "sk-a", "daily_cost": 1.0})
    with (
        fake(ANSWER) as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys) as gw,
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="sk-a", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = chunks[-1].usage
        assert usage is not None
        delivered = so.count_tokens(chat_text(chunks), "o200k_base")
        key = gw.config.keys.keys[0] if gw.config.keys is not None else None
        assert key is not None
        spent = asyncio.run(gw.gateway.state.spent_today(key))
        # The answer's tokens as delivered, by the budget's count, and the prompt's
        # tokens as the provider reported them, each at the model's own price.
        assert spent == delivered * PICO_OUT + usage.prompt_tokens * PICO_IN
        assert usage.prompt_tokens > 0
        # A model the price table does not know cannot be paid for: refused, upstream untouched.
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="no-such-model", messages=USER)
        assert info.value.code == "unknown_model_price"
        assert up.requests == 1


def test_budget_cut_on_anthropic_and_responses_ends_as_the_provider_would(tmp_path: Path) -> None:
    keys = keys_file(
        tmp_path,
        a={"key": "sk-a", "daily_tokens": 20},
        b={"key": "sk-b", "daily_tokens": 20},
        c={"key": "sk-c", "daily_tokens": 20},
        d={"key": "sk-d", "daily_tokens": 20},
    )
    with (
        fake(LONG) as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys) as gw,
    ):
        an = anthropic.Anthropic(base_url=gw.root_url, api_key="sk-a", max_retries=0)
        with an.messages.stream(model="m", max_tokens=500, messages=USER) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert so.count_tokens(text) == 20
        assert final.stop_reason == "max_tokens"
        assert final.usage.output_tokens == 20
        whole = anthropic.Anthropic(
            base_url=gw.root_url, api_key="sk-b", max_retries=0
        ).messages.create(model="m", max_tokens=500, messages=USER)
        assert whole.stop_reason == "max_tokens"
        assert whole.content[0].type == "text"
        assert whole.content[0].text == text
        oa = openai.OpenAI(base_url=gw.base_url, api_key="sk-c", max_retries=0)
        events = list(oa.responses.create(model="m", input="hi", stream=True))
        assert events[-1].type == "response.incomplete"
        assert events[-1].response.output_text == text
        assert events[-1].response.incomplete_details is not None
        assert events[-1].response.incomplete_details.reason == "max_output_tokens"
        seqs = [e.sequence_number for e in events]
        assert seqs == sorted(set(seqs))
        plain = openai.OpenAI(base_url=gw.base_url, api_key="sk-d", max_retries=0)
        resp = plain.responses.create(model="m", input="hi")
        assert resp.status == "incomplete"
        assert resp.output_text == text


def test_client_disconnect_closes_the_upstream_within_100ms() -> None:
    with (
        fake(LONG, chunking="word", delay=0.02) as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw,
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        for i, _ in enumerate(stream):
            if i == 3:
                break
        left = time.monotonic()
        stream.close()
        record = up.last_served
        assert record.wait_stopped(2.0)
    assert record.disconnected_at is not None
    assert record.disconnected_at - left < 0.1
    assert record.stopped_at is not None
    assert record.stopped_at - left < 0.1
    assert record.produced < 60


def test_a_client_that_stops_reading_gets_backpressure_then_a_clear_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway reads the upstream only as fast as the client: then cuts it, closing both."""
    policy = tmp_path / "light.toml"
    policy.write_text("[timeout]\nidle = 600\n")  # cheap per chunk: the test is about flow
    content = "hello world " * 333
    piece = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events: list[dict[str, Any]] = [
        {**piece, "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    ] * 8000  # 32 MB: far more than every socket buffer on the way
    timeout = 3.0
    with (
        FakeOpenAIServer("unused", events={"chat.completions": events}) as up,
        gateway(
            "--upstream",
            up.base_url,
            "--policy",
            str(policy),
            "--slow-client-timeout",
            str(timeout),
        ) as gw,
        caplog.at_level(logging.INFO, "streamops.gateway"),
        socket.socket() as sock,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", gw.port))
        body = json.dumps({"model": "m", "messages": USER, "stream": True}).encode()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        # Backpressure: with nobody reading, the upstream's production stalls.
        deadline = time.monotonic() + 60
        while not up.served:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        record = up.served[-1]
        last = -1
        while record.produced != last and not record.stopped:
            last = record.produced
            time.sleep(0.5)
            assert time.monotonic() < deadline, "the upstream never stalled"
        stalled = time.monotonic()
        assert record.produced < len(events) // 2, record.produced
        # Then the cut: the upstream request is closed, not left hanging.
        assert record.wait_stopped(timeout + 30)
        assert not record.completed
        assert record.produced < len(events) // 2
        # The client gets what was buffered, then the connection ends: no [DONE].
        sock.settimeout(30)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 16):
                received += chunk
        cut_after = time.monotonic() - stalled
    assert received.startswith(b"HTTP/1.1 200")
    assert b"data: [DONE]" not in received
    assert len(received) < len(events) * len(content) // 2
    assert cut_after < timeout + 30
    messages = [r.getMessage() for r in caplog.records if r.name == "streamops.gateway"]
    assert any("cut a stream: the client read nothing" in m for m in messages)
    ours = [json.loads(m) for m in messages if m.startswith('{"event":"request"')]
    assert ours[-1]["error"] == "slow_client"
    assert ours[-1]["report"]["stop_reason"] == "slow_client"


def test_added_ttft_is_the_gateways_own_share_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """added_ms runs from the upstream's first event to the client's first byte, per request."""
    with (
        fake(chunking="word", first_chunk_delay=0.4) as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw,
        caplog.at_level(logging.INFO, "streamops.gateway"),
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        list(client.chat.completions.create(model="m", messages=USER, stream=True))
        client.chat.completions.create(model="m", messages=USER)
        metrics = httpx.get(gw.root_url + "/metrics").text
    messages = [r.getMessage() for r in caplog.records if r.name == "streamops.gateway"]
    lines = [json.loads(m) for m in messages if m.startswith('{"event":"request"')]
    assert [line["stream"] for line in lines] == [True, False]
    for line in lines:
        # The upstream's own wait for its first event is not the gateway's.
        assert line["ttft_ms"] - line["added_ms"] >= 390, line
        assert line["added_ms"] >= 0
    count = 'streamops_gateway_added_ttft_seconds_count{route="chat.completions"} 2.0'
    assert count in metrics


@pytest.mark.parametrize("seed", range(20))
def test_sse_data_reads_what_the_sse_decoder_reads_however_split(seed: int) -> None:
    import random

    from streamops._gateway._wires import SSEData

    stream = (
        b'data: {"a":1}\n\nevent: message_start\ndata: {"b":"\xc3\xa9"}\n\n'
        b": comment\ndata:x\ndata\ndata: y\n\n\n\nid: 3\n\ndata: [DONE]\n\n"
    )
    if seed % 2:
        stream += b"data: 1\r\n\r\ndata: 2\rdata: 3\r\r"  # CR line ends from here on
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(stream)), 6))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    ours, decoder = SSEData(), so.SSEDecoder()
    got = [data for piece in pieces for data in ours.feed(piece)]
    want = [e.data.encode() for piece in pieces for e in decoder.feed(piece) if e.data]
    assert got == want


def test_events_the_policy_leaves_alone_are_the_upstreams_bytes() -> None:
    """Unchanged events are not serialised again; a usage the client did not ask for is gone."""
    with fake() as up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        body = {"model": "m", "messages": USER, "stream": True}
        plain = httpx.post(gw.base_url + "/chat/completions", json=body).text
        body["stream_options"] = {"include_usage": True}
        usage = httpx.post(gw.base_url + "/chat/completions", json=body).text
    for text, asked in ((plain, False), (usage, True)):
        events = [e.data for e in so.SSEDecoder().feed(text.encode()) if e.data]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(("usage" in c) is asked for c in chunks), text
        assert SECRET not in text
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-1 - asked]["choices"][0]["finish_reason"] == "stop"
    assert json.loads(events[-2])["usage"]["completion_tokens"] > 0


def test_a_changed_text_is_spliced_into_the_upstreams_bytes_only_where_it_stands() -> None:
    """A chunk whose text the policy changed goes out as the upstream's bytes with the new
    text in the old one's place; any doubt serialises the chunk whole (``None``)."""
    from streamops._gateway._wires import ChatWriter, _splice

    def chunk(delta: bytes, model: bytes = b'"m"') -> tuple[bytes, dict[str, Any]]:
        raw = (
            b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":' + model + b","
            b'"choices":[{"index":0,"delta":' + delta + b',"logprobs":null,"finish_reason":null}],'
            b'"usage":null}'
        )
        return raw, json.loads(raw)

    def changed(item: dict[str, Any], text: str) -> dict[str, Any]:
        choice = item["choices"][0]
        return {**item, "choices": [{**choice, "delta": {**choice["delta"], "content": text}}]}

    raw, item = chunk(b'{"role":"assistant","content":"' + SECRET.encode() + b'"}')
    out = changed(item, '[SECRET] "\u00e9"\n')
    spliced = _splice(out, item, raw)
    assert spliced is not None
    assert json.loads(spliced) == out
    assert SECRET.encode() not in spliced
    writer = ChatWriter({"model": "m", "stream": True})  # no include_usage: its null goes too
    [data] = writer.feed(out)
    framed = writer.reuse(data, item, raw)
    assert framed is not None
    assert framed.startswith(b"data: ")
    assert framed.endswith(b"\n\n")
    assert json.loads(framed[6:]) == {k: v for k, v in out.items() if k != "usage"}
    doubts = [
        chunk(b'{"content":"' + SECRET.encode() + b'"}', model=b'"content"'),  # a second key
        chunk(b'{"\\u0063ontent":"' + SECRET.encode() + b'"}'),  # the key spelled by escapes
        chunk(b'{"content": "' + SECRET.encode() + b'"}'),  # not as this module writes it
        chunk(b'{"content":"' + SECRET.encode() + b'\\u0021"}'),
    ]
    for raw, item in doubts:
        assert _splice(changed(item, "[SECRET]"), item, raw) is None, raw
    raw, item = chunk(b'{"content":"' + SECRET.encode() + b'"}')
    assert _splice({**changed(item, "x"), "model": "other"}, item, raw) is None
    assert _splice({**changed(item, "x"), "extra": 1}, item, raw) is None


async def test_the_upstream_client_keeps_no_cookies() -> None:
    """A cookie an upstream answer sets goes with no later request: the client serves every key."""
    from streamops._gateway._app import Gateway

    received: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            received.append(head.lower())
            await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split()[0]))
            writer.write(
                b"HTTP/1.1 200 OK\r\nset-cookie: session=1; Path=/\r\ncontent-length: 2\r\n\r\n{}"
            )
            await writer.drain()
            if len(received) == 2:
                break
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    gw = Gateway(load_config(["--upstream", url, "--policy", "safe-chat"]))
    await gw.startup()
    try:
        for _ in range(2):
            async with gw.client.post(url + "/chat/completions", data=b"{}") as reply:
                assert await reply.read() == b"{}"
    finally:
        await gw.shutdown()
        server.close()
        await server.wait_closed()
    assert len(received) == 2
    assert b"\r\ncookie:" not in received[1]


def test_the_upstream_is_reached_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``HTTP_PROXY`` is honoured (and ``NO_PROXY`` bypasses it), read once per upstream URL."""
    with fake("Hello there") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.removesuffix("/v1"))
        monkeypatch.delenv("no_proxy", raising=False)
        # The test's own client reaches the gateway directly (its SDK reads these too).
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        # Nothing listens at the upstream's own address: only the proxy can answer.
        with gateway("--upstream", "http://upstream.invalid:9/v1", "--policy", "safe-chat") as gw:
            client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
            stream = client.chat.completions.create(model="m", messages=USER, stream=True)
            assert chat_text(list(stream)) == "Hello there"
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,upstream.invalid")
        with gateway("--upstream", "http://upstream.invalid:9/v1", "--policy", "safe-chat") as gw:
            client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
            with pytest.raises(openai.APIStatusError) as bypassed:
                client.chat.completions.create(model="m", messages=USER, stream=True)
            assert bypassed.value.status_code == 502


@pytest.mark.parametrize(
    ("url", "no_proxy", "bypassed"),
    [
        ("http://api.example.com:8443/v1", "api.example.com:8443", True),  # with its port
        ("http://u:p@api.example.com:8443/v1", "api.example.com:8443", True),
        ("http://api.example.com:8443/v1", "api.example.com:9000", False),
        ("http://api.example.com:8443/v1", ".example.com", True),
        ("http://notexample.com/v1", "example.com", False),
        ("http://x.com/v1", "*", True),
        ("http://x.com/v1", " y.com , x.com", True),
    ],
)
def test_no_proxy_entries_are_matched_as_httpx_matches_them(
    monkeypatch: pytest.MonkeyPatch, url: str, no_proxy: str, bypassed: bool
) -> None:
    from streamops._gateway._app import _env_proxy

    for name in ("no_proxy", "http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert _env_proxy(url) == (None if bypassed else "http://proxy.invalid:3128")


def test_upstream_errors_map_to_each_wires_shape() -> None:
    model = so.FakeStreamingModel("fine", format="openai-dict")
    errors = {1: 500, 2: 429, 3: 400, 4: 500, 5: 503}
    with (
        FakeOpenAIServer(model, http_errors=errors) as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw,
    ):
        oa = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as e502:
            oa.chat.completions.create(model="m", messages=USER, stream=True)
        assert e502.value.status_code == 502
        with pytest.raises(openai.RateLimitError):
            oa.chat.completions.create(model="m", messages=USER)
        with pytest.raises(openai.BadRequestError):
            oa.responses.create(model="m", input="hi", stream=True)
        an = anthropic.Anthropic(base_url=gw.root_url, api_key="x", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as a502:
            an.messages.create(model="m", max_tokens=5, messages=USER)
        assert a502.value.status_code == 502
        assert a502.value.body["error"]["type"] == "api_error"  # type: ignore[index]
        with pytest.raises(anthropic.APIStatusError) as a502b:
            an.messages.create(model="m", max_tokens=5, messages=USER, stream=True)
        assert a502b.value.status_code == 502
        bad = httpx.post(gw.base_url + "/messages", content=b"{not json")
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"


def test_headers_timeout_is_504(tmp_path: Path) -> None:
    policy = tmp_path / "quick.toml"
    policy.write_text("[timeout]\nfirst_chunk = 0.2\n")
    model = so.FakeStreamingModel("late", format="openai-dict")
    with (
        FakeOpenAIServer(model, headers_delay=2.0) as up,
        gateway("--upstream", up.base_url, "--policy", str(policy)) as gw,
    ):
        oa = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        start = time.monotonic()
        with pytest.raises(openai.APIStatusError) as info:
            oa.chat.completions.create(model="m", messages=USER, stream=True)
        assert info.value.status_code == 504
        assert time.monotonic() - start < 1.5
        assert up.last_served.wait_stopped(1.0)  # the slow request was abandoned


def test_fallback_upstream_before_the_first_text() -> None:
    broken = so.FakeStreamingModel("never", format="openai-dict")
    with (
        FakeOpenAIServer(broken, http_errors={1: 503}) as bad,
        fake() as good,
        gateway(
            "--upstream", bad.base_url, "--upstream", good.base_url, "--policy", "safe-chat"
        ) as gw,
    ):
        oa = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        chunks = list(oa.chat.completions.create(model="m", messages=USER, stream=True))
        assert chat_text(chunks).startswith("Sure. The key is [OPENAI_KEY]")
        assert bad.requests == 1
        assert good.requests == 1


def test_mid_stream_upstream_failure_is_the_wires_error_event() -> None:
    model = so.FakeStreamingModel(
        LONG, format="openai-dict", faults=[Fault.disconnect_at(5)], chunking="word"
    )
    with (
        FakeOpenAIServer(model) as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw,
    ):
        oa = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        got: list[Any] = []
        with pytest.raises(openai.APIError, match="ended the answer early"):
            got.extend(oa.chat.completions.create(model="m", messages=USER, stream=True))
        an = anthropic.Anthropic(base_url=gw.root_url, api_key="x", max_retries=0)
        with pytest.raises(anthropic.APIStatusError, match="ended the answer early"):
            list(an.messages.create(model="m", max_tokens=5, messages=USER, stream=True))


def test_rate_limit_per_key(tmp_path: Path) -> None:
    keys = keys_file(tmp_path, a={"key": "sk-a", "requests_per_minute": 2})
    with (
        fake() as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys) as gw,
    ):
        oa = openai.OpenAI(base_url=gw.base_url, api_key="sk-a", max_retries=0)
        oa.chat.completions.create(model="m", messages=USER)
        oa.chat.completions.create(model="m", messages=USER)
        with pytest.raises(openai.RateLimitError) as info:
            oa.chat.completions.create(model="m", messages=USER)
        assert info.value.code == "rate_limit_exceeded"
        assert int(info.value.response.headers["retry-after"]) >= 1
        assert up.requests == 2


def test_input_rules_redact_or_block_before_the_upstream(tmp_path: Path) -> None:
    redacting = tmp_path / "in-redact.toml"
    redacting.write_text('[input]\npatterns = ["secrets", "email"]\n')
    blocking = tmp_path / "in-block.toml"
    blocking.write_text('[input]\npatterns = ["secrets"]\naction = "block"\n')
    keys = keys_file(
        tmp_path,
        r={"key": "sk-r", "policy": str(redacting)},
        b={"key": "sk-b", "policy": str(blocking)},
    )
    prompt = f"my key is {SECRET}, mail ann@example.com"
    with (
        fake("ok") as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys) as gw,
    ):
        oa = openai.OpenAI(base_url=gw.base_url, api_key="sk-r", max_retries=0)
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
        call = up.model.last_call
        assert call is not None
        assert call.prompt == "my key is [OPENAI_KEY], mail [EMAIL]"
        an = anthropic.Anthropic(base_url=gw.root_url, api_key="sk-b", max_retries=0)
        with pytest.raises(anthropic.BadRequestError, match="input rules"):
            an.messages.create(
                model="m", max_tokens=5, messages=[{"role": "user", "content": prompt}]
            )
        assert up.requests == 1
