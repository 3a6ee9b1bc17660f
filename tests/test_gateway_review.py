"""The gateway against an adversarial review's findings: each test failed before its fix.

Real SDK clients and SDK request types, the real gateway (``GatewayServer``)
in front of ``FakeOpenAIServer`` (whose ASGI app is wrapped here to record the
JSON bodies that reach it) or a raw socket upstream that sends exact bytes.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import json
import logging
import os
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pydantic
import pytest
import typing_extensions
from anthropic.types import MessageParam, TextBlockParam
from helpers import (
    close_sdk_clients,  # noqa: F401 - the fixture, used by pytestmark
    keys_file,
)
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseInputItemParam

import streamops as so
from streamops._gateway import GatewayConfigError, load_config
from streamops._gateway._thread import GatewayServer
from streamops._gateway._wires import utf8
from streamops.testing import FakeOpenAIServer, Fault

pytestmark = pytest.mark.usefixtures("close_sdk_clients")

SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
MARK = f"see {SECRET} here"


class Recording:
    """Wraps a fake upstream's ASGI app (before it serves): keeps every POST's JSON body."""

    def __init__(self, up: FakeOpenAIServer) -> None:
        self.bodies: list[Any] = []
        self.app = up.app
        up.app = self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        messages = []
        raw = b""
        while True:
            message = await receive()
            messages.append(message)
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(json.loads(raw))
        replay = iter(messages)

        async def again() -> Any:
            message = next(replay, None)
            return message if message is not None else await receive()

        await self.app(scope, again, send)


def fake(text: str = "ok") -> FakeOpenAIServer:
    return FakeOpenAIServer(so.FakeStreamingModel(text, format="openai-dict", chunking=5))


@contextlib.contextmanager
def gateway(*args: str) -> Iterator[GatewayServer]:
    with GatewayServer(load_config([*args, "--port", "0"])) as server:
        yield server


def policy_file(tmp_path: Path, text: str, name: str = "policy.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------
# B01 / A1: input rules see every text the model reads
# --------------------------------------------------------------------------


_WRAPPERS = {
    typing.Annotated,
    typing.Required,
    typing.NotRequired,
    typing_extensions.Required,
    typing_extensions.NotRequired,
    typing_extensions.ReadOnly,
}
_ITERABLES = {list, collections.abc.Iterable, collections.abc.Sequence}


def _strip(tp: Any) -> Any:
    """``Required[X]``, ``NotRequired[X]``, ``Annotated[X, ...]``: X."""
    while typing.get_origin(tp) in _WRAPPERS:
        tp = typing.get_args(tp)[0]
    return tp


def samples(tp: Any, depth: int = 0) -> list[Any]:
    """Values of the request type ``tp`` (an SDK ``*Param``) with ``MARK`` in every string field.

    A TypedDict gives one value with every key set, plus one per other variant of
    a key's type (so every member of every union appears somewhere); a list
    holds every variant of its item type; a ``Literal`` gives its first value.
    """
    tp = _strip(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is str or tp is object or tp is Any:
        return [MARK]
    if tp in (int, float):
        return [1]
    if tp is bool:
        return [True]
    if tp is type(None):
        return [None]
    if origin is typing.Literal:
        return [args[0]]
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in args:
            out += samples(arg, depth)
        return [v for v in out if v is not None] or out
    if typing_extensions.is_typeddict(tp) or (
        isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)
    ):
        if typing_extensions.is_typeddict(tp):
            hints = typing.get_type_hints(tp, include_extras=True)
        else:  # a response type the SDK also takes in a request (an Anthropic block)
            hints = {name: f.annotation for name, f in tp.model_fields.items()}
        if depth > 6:  # recursive types (a tool result holding blocks)
            return []
        options = {name: samples(hint, depth + 1) for name, hint in hints.items()}
        base = {name: values[0] for name, values in options.items() if values}
        variants = [base]
        for name, values in options.items():
            variants += [{**base, name: value} for value in values[1:]]
        return variants
    if origin in _ITERABLES:
        return [samples(args[0], depth)]
    if origin in (dict, collections.abc.Mapping):
        return [{"k": value} for value in samples(args[1], depth)[:1]]
    if origin is typing.IO or tp is os.PathLike:
        return []  # a file the SDK reads and encodes
    raise AssertionError(f"no sample for {tp!r}")


# Request fields whose values are not text the model reads (ids, enums, media types,
# base64 media, opaque payloads the provider gave back): the input rules leave them.
NOT_TEXT = {
    "id",
    "call_id",
    "tool_call_id",
    "tool_use_id",
    "file_id",
    "item_id",
    "container_id",
    "model",
    "signature",
    "encrypted_content",
    "encrypted_index",
    "media_type",
    "mime_type",
    "detail",
    "format",
    "status",
    "role",
    "type",
}
BASE64 = {"data", "file_data"}  # base64 payloads (a plain-text document's data is text)


def leaks(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of strings holding ``SECRET`` that are not on the not-text list."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, str) and SECRET in item:
                if name in NOT_TEXT:
                    continue
                if name in BASE64 and value.get("type") != "text":
                    continue
                if name == "name" and "role" not in value:
                    continue  # a tool's or a file's name, not a message author's
                if name == "result" and value.get("type") == "image_generation_call":
                    continue  # a generated image's base64
                found.append((*path, name))
            else:
                found += leaks(item, (*path, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str) and SECRET in item:
                found.append((*path, index))
            else:
                found += leaks(item, (*path, index))
    return found


HI_CHAT: Any = {"role": "user", "content": "hi"}
HI: Any = [HI_CHAT]


def requests_with_a_secret_everywhere() -> dict[str, dict[str, Any]]:
    """One request per wire whose messages are every shape of the SDK's request types."""
    chat = samples(ChatCompletionMessageParam)
    responses = samples(ResponseInputItemParam)
    messages = samples(MessageParam)
    system = samples(list[TextBlockParam])[0]
    assert len(chat) > 10
    assert len(responses) > 40
    assert len(messages) >= 2
    return {
        "/v1/chat/completions": {"model": "m", "messages": [*chat, HI_CHAT]},
        "/v1/responses": {"model": "m", "instructions": MARK, "input": [*responses, HI_CHAT]},
        "/v1/messages": {
            "model": "m",
            "max_tokens": 5,
            "system": system,
            "messages": [*messages, HI_CHAT],
        },
    }


def sent_upstream(tmp_path: Path, requests: dict[str, Any]) -> dict[str, Any]:
    """What the upstream got for each request (path -> body) through ``secrets`` input rules."""
    policy = policy_file(tmp_path, '[input]\npatterns = ["secrets"]\n')
    up = fake()
    recording = Recording(up)
    sent: dict[str, Any] = {}
    with (
        up,
        gateway("--upstream", up.base_url, "--policy", policy) as gw,
        httpx.Client(base_url=gw.root_url, timeout=30) as client,
    ):
        for path, body in requests.items():
            recording.bodies.clear()
            client.post(path, json=body)
            (sent[path],) = recording.bodies
    return sent


def test_input_rules_redact_every_string_field_of_the_sdk_request_types(tmp_path: Path) -> None:
    requests = requests_with_a_secret_everywhere()
    for path, body in requests.items():
        assert SECRET in json.dumps(body), path
    for path, sent in sent_upstream(tmp_path, requests).items():
        assert leaks(sent) == [], path
        assert "[OPENAI_KEY]" in json.dumps(sent)


def test_input_rules_redact_the_descriptions_of_tool_definitions(tmp_path: Path) -> None:
    # A tool's description (and those in its parameters' schema) is text the model
    # reads: a secret pasted there reached the provider. Names, types and enum
    # values are the schema's own: left as they are.
    query = {"type": "string", "description": MARK, "enum": ["a", "b"]}
    schema = {"type": "object", "description": MARK, "properties": {"q": query}}
    requests = {
        "/v1/chat/completions": {"model": "m", "messages": [HI_CHAT], "tools": [
            {"type": "function", "function": {"name": "f", "description": MARK,
                                              "parameters": schema}}]},
        "/v1/responses": {"model": "m", "input": "hi", "tools": [
            {"type": "function", "name": "f", "description": MARK, "parameters": schema}]},
        "/v1/messages": {"model": "m", "max_tokens": 5, "messages": [HI_CHAT], "tools": [
            {"name": "f", "description": MARK, "input_schema": schema}]},
    }  # fmt: skip
    for path, sent in sent_upstream(tmp_path, requests).items():
        assert leaks(sent) == [], path
        assert json.dumps(sent).count("see [OPENAI_KEY] here") == 3, path
        tool = sent["tools"][0]
        params = tool.get("function", tool).get("parameters") or tool.get("input_schema")
        assert params["properties"]["q"]["enum"] == ["a", "b"]


def chat_args_request(arguments: str) -> dict[str, Any]:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
    }


BLOCKED_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat: assistant tool_calls arguments": (
        "/v1/chat/completions",
        chat_args_request(json.dumps({"k": SECRET})),
    ),
    "chat: legacy function_call arguments": (
        "/v1/chat/completions",
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "f", "arguments": json.dumps({"k": SECRET})},
                },
                HI_CHAT,
            ],
        },
    ),
    "chat: refusal part": (
        "/v1/chat/completions",
        {
            "model": "m",
            "messages": [
                {"role": "assistant", "content": [{"type": "refusal", "refusal": MARK}]},
                HI_CHAT,
            ],
        },
    ),
    "chat: a message author's name": (
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "name": SECRET, "content": "hi"}]},
    ),
    "messages: tool_use input": (
        "/v1/messages",
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                HI_CHAT,
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"k": MARK}}],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}],
                },
            ],
        },
    ),
    "messages: plain-text document": (
        "/v1/messages",
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": MARK},
                        },
                        {"type": "text", "text": "sum"},
                    ],
                }
            ],
        },
    ),
    "messages: thinking block": (
        "/v1/messages",
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                HI_CHAT,
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": MARK, "signature": "sig"}],
                },
                HI_CHAT,
            ],
        },
    ),
    "responses: function_call arguments": (
        "/v1/responses",
        {
            "model": "m",
            "input": [
                HI_CHAT,
                {
                    "type": "function_call",
                    "call_id": "c",
                    "name": "f",
                    "arguments": json.dumps({"k": SECRET}),
                },
                {"type": "function_call_output", "call_id": "c", "output": "ok"},
            ],
        },
    ),
    "responses: function_call_output as input_text parts": (
        "/v1/responses",
        {
            "model": "m",
            "input": [
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "c",
                    "output": [{"type": "input_text", "text": MARK}],
                },
            ],
        },
    ),
    "responses: reasoning summary": (
        "/v1/responses",
        {
            "model": "m",
            "input": [
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": MARK}],
                },
                HI_CHAT,
            ],
        },
    ),
}


def test_input_rules_block_secrets_in_tool_calls_documents_and_reasoning(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[input]\npatterns = ["secrets"]\naction = "block"\n')
    passed = {}
    with (
        fake() as up,
        gateway("--upstream", up.base_url, "--policy", policy) as gw,
        httpx.Client(base_url=gw.root_url, timeout=30) as client,
    ):
        for name, (path, body) in BLOCKED_CASES.items():
            r = client.post(path, json=body)
            if r.status_code != 400 or "input rules" not in r.text:
                passed[name] = r.status_code
    assert passed == {}
    assert up.requests == 0


def test_tool_arguments_are_redacted_as_json_values_and_stay_valid_json(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[input]\npatterns = ["secrets", "email"]\n')
    arguments = json.dumps({"k": f"key {SECRET}", "n": [1, {"mail": "ann@example.com"}]})
    up = fake()
    recording = Recording(up)
    with up, gateway("--upstream", up.base_url, "--policy", policy) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        client.chat.completions.create(**chat_args_request(arguments))
        client.chat.completions.create(**chat_args_request('{"k": "' + SECRET + '", "cut'))
    whole, cut = (
        b["messages"][1]["tool_calls"][0]["function"]["arguments"] for b in recording.bodies
    )
    assert json.loads(whole) == {"k": "key [OPENAI_KEY]", "n": [1, {"mail": "[EMAIL]"}]}
    assert SECRET not in cut  # not JSON: redacted as text


def test_anthropic_sdk_request_with_tool_use_input_is_redacted(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[input]\npatterns = ["secrets"]\n')
    keys = keys_file(tmp_path, a={"key": "sk-a", "policy": policy})
    up = fake()
    recording = Recording(up)
    with up, gateway("--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys) as gw:
        client = anthropic.Anthropic(base_url=gw.root_url, api_key="sk-a", max_retries=0)
        client.messages.create(**BLOCKED_CASES["messages: tool_use input"][1])
    (sent,) = recording.bodies
    assert sent["messages"][1]["content"][0]["input"] == {"k": "see [OPENAI_KEY] here"}


# --------------------------------------------------------------------------
# B13: an upstream URL with a password is refused at start (it would be logged)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--upstream", "--anthropic-upstream"])
@pytest.mark.parametrize("userinfo", ["svc:S3CRET-PASSWORD@", "svc@", ":S3CRET-PASSWORD@"])
def test_an_upstream_url_with_credentials_is_refused_at_start(option: str, userinfo: str) -> None:
    url = f"http://{userinfo}127.0.0.1:9/v1"
    args = ["--upstream", "http://127.0.0.1:9/v1", option, url, "--policy", "safe-chat"]
    with pytest.raises(GatewayConfigError, match="STREAMOPS_UPSTREAM_API_KEY") as info:
        load_config([*args, "--port", "0"])
    assert "S3CRET" not in str(info.value)


# --------------------------------------------------------------------------
# B16, B04, B17: odd upstream events, and the Responses error event
# --------------------------------------------------------------------------

CHAT_HEAD = '{"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":'


def chat_frame(delta: str, finish: str = "null") -> bytes:
    choice = f'[{{"index":0,"delta":{{{delta}}},"finish_reason":{finish}}}]'
    return f"data: {CHAT_HEAD}{choice}}}\n\n".encode()


ROLE_FRAME = chat_frame('"role":"assistant","content":""')


def test_a_malformed_upstream_chunk_is_a_502_not_the_gateways_own_500() -> None:
    bad = b'data: {"id":"c","object":"chat.completion.chunk","choices":[5]}\n\n'
    up = FakeOpenAIServer("unused", events={"chat.completions": [ROLE_FRAME, bad]})
    with (
        up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw,
        httpx.Client(base_url=gw.base_url, timeout=30) as client,
    ):
        whole = client.post("/chat/completions", json={"model": "m", "messages": HI})
        streamed = client.post(
            "/chat/completions", json={"model": "m", "messages": HI, "stream": True}
        )
    assert whole.status_code == 502
    assert "malformed" in whole.json()["error"]["message"]
    last = [line for line in streamed.text.splitlines() if line.startswith("data: {")][-1]
    error = json.loads(last[6:])["error"]
    assert error["code"] == "upstream_error"
    assert "malformed" in error["message"]


def test_responses_stream_ending_in_an_error_ends_with_response_failed(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, '[redact]\npatterns = ["secrets"]\naction = "block"\n')
    model = so.FakeStreamingModel(f"alpha beta {SECRET} gamma", format="openai-dict", chunking=5)
    with (
        FakeOpenAIServer(model) as up,
        gateway("--upstream", up.base_url, "--policy", policy) as gw,
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        events = list(client.responses.create(model="m", input="hi", stream=True))
        with client.responses.stream(model="m", input="hi") as stream:
            helper = list(stream)
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    error, failed = events[-2:]
    assert error.type == "error"
    assert error.code == "content_blocked"
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.message == error.message
    assert failed.sequence_number == error.sequence_number + 1
    assert helper[-1].type == "response.failed"  # the helper's stream ends there too
    assert SECRET not in json.dumps([e.model_dump() for e in events])


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([r"smile \ud83d", r"\ude00 ok"], ("smile \U0001f600 ok", "smile \ufffd\ufffd ok")),
        ([r"lone \udc80", " mail ann@example.com ok"], ("lone \ufffd mail [EMAIL] ok",)),
    ],
)
def test_surrogate_escapes_from_the_upstream_never_crash_the_encoders(
    pieces: list[str], expected: tuple[str, ...]
) -> None:
    script = [
        ROLE_FRAME,
        *(chat_frame(f'"content":"{piece}"') for piece in pieces),
        chat_frame("", '"stop"'),
    ]
    up = FakeOpenAIServer("unused", events={"chat.completions": script})
    with up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        chunks = list(client.chat.completions.create(model="m", messages=HI, stream=True))
        whole = client.chat.completions.create(model="m", messages=HI)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # An event the policy left alone goes out as the upstream's own bytes (its escapes too).
    assert utf8(text).decode() in expected
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert whole.choices[0].message.content == expected[0]


# --------------------------------------------------------------------------
# B03, B12: a malformed request is a 400 naming the field, before the upstream
# --------------------------------------------------------------------------

BAD_REQUESTS: dict[str, tuple[str, bytes, str]] = {
    "nested 100,000 deep": ("/v1/chat/completions", b"[" * 100_000, "nested too deeply"),
    "NaN literal": (
        "/v1/chat/completions",
        b'{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":NaN}',
        "NaN",
    ),
    "stream_options a string": (
        "/v1/chat/completions",
        b'{"model":"m","messages":[],"stream":true,"stream_options":"x"}',
        "'stream_options'",
    ),
    "stream_options a list": (
        "/v1/chat/completions",
        b'{"model":"m","messages":[],"stream_options":[1]}',
        "'stream_options'",
    ),
    "stream a string": ("/v1/chat/completions", b'{"model":"m","stream":"false"}', "'stream'"),
    "n=2": ("/v1/chat/completions", b'{"model":"m","messages":[],"n":2}', "'n' must be 1"),
    "messages: stream a string": ("/v1/messages", b'{"model":"m","stream":"yes"}', "'stream'"),
    "responses: input a number": ("/v1/responses", b'{"model":"m","input":5}', "'input'"),
}


def test_a_malformed_request_is_a_400_in_the_wires_shape_naming_the_field() -> None:
    answers = {}
    with (
        fake() as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw,
        httpx.Client(base_url=gw.root_url, timeout=30) as client,
    ):
        for name, (path, content, field) in BAD_REQUESTS.items():
            r = client.post(path, content=content, headers={"content-type": "application/json"})
            error = r.json()["error"] if r.status_code == 400 else {}
            kind = "invalid_request_error"
            answers[name] = (
                r.status_code,
                error.get("type") == kind,
                field in error.get("message", ""),
            )
        client.post("/v1/chat/completions", json={"model": "m", "messages": HI})  # still serving
    assert answers == dict.fromkeys(BAD_REQUESTS, (400, True, True))
    assert up.requests == 1


def test_n_other_than_1_is_refused_before_the_upstream_with_the_sdk() -> None:
    with fake() as up, gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="x")  # the SDK's default retries
        with pytest.raises(openai.BadRequestError, match="'n' must be 1"):
            client.chat.completions.create(model="m", n=2, messages=HI)
        client.chat.completions.create(model="m", n=1, messages=HI)
    assert up.requests == 1


# --------------------------------------------------------------------------
# B05, B04: a stream that ends without its wire's end is a broken stream
# --------------------------------------------------------------------------


BROKEN = so.FakeStreamingModel("x", format="openai-dict", faults=[Fault.disconnect_at(0)])


@pytest.mark.parametrize("stream", [True, False])
def test_a_quietly_broken_stream_before_any_text_falls_back(stream: bool) -> None:
    broken = so.FakeStreamingModel("broken", format="openai-dict", faults=[Fault.disconnect_at(0)])
    with (
        FakeOpenAIServer(broken) as primary,
        fake("good answer") as fallback,
        gateway(
            "--upstream", primary.base_url, "--upstream", fallback.base_url, "--policy", "safe-chat"
        ) as gw,
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        text: str | None
        if stream:
            chunks = client.chat.completions.create(model="m", messages=HI, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            text = client.chat.completions.create(model="m", messages=HI).choices[0].message.content
    assert text == "good answer"
    assert (primary.requests, fallback.requests) == (1, 1)


@pytest.mark.parametrize(
    ("path", "up"),
    [
        # no event, no [DONE]
        ("/v1/chat/completions", lambda: FakeOpenAIServer(BROKEN)),
        # a 200 whose body ends at once: no message_stop
        ("/v1/messages", lambda: FakeOpenAIServer("unused", events={"messages": []})),
        # no response.completed
        ("/v1/responses", lambda: FakeOpenAIServer("unused", events={"responses": []})),
    ],
)
def test_an_upstream_ending_before_its_end_event_is_a_502_before_the_headers(
    path: str, up: Any
) -> None:
    body = {"model": "m", "messages": HI, "input": "hi", "max_tokens": 5, "stream": True}
    with (
        up() as server,
        gateway("--upstream", server.base_url, "--policy", "safe-chat") as gw,
        httpx.Client(base_url=gw.root_url, timeout=30) as client,
    ):
        r = client.post(path, json=body)
    assert r.status_code == 502, r.text
    assert "ended the answer early" in r.text


# --------------------------------------------------------------------------
# B02: a client leaving before the first event, or a non-streamed answer, closes upstream
# --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_leaving_before_its_answer_starts_closes_the_upstream(stream: bool) -> None:
    text = " ".join(f"w{i}" for i in range(100))
    model = so.FakeStreamingModel(
        text,
        format="openai-dict",
        chunking=3,
        delay=0.05,
        first_chunk_delay=3.0 if stream else 0.0,
    )
    body = {"model": "m", "stream": stream, "messages": HI}
    with (
        FakeOpenAIServer(model) as up,
        gateway("--upstream", up.base_url, "--policy", "safe-chat") as gw,
    ):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(gw.base_url + "/chat/completions", json=body, timeout=0.5)
        record = up.last_served
        assert record.wait_stopped(2.0)  # long before the answer's end (about 5 s)
    assert record.disconnected_at is not None
    assert not record.completed
    if stream:
        assert record.produced == 0  # closed while waiting for the first chunk
    else:
        assert record.produced < 40


# --------------------------------------------------------------------------
# B15: a budget-cut stream logs the prompt tokens the client was told
# --------------------------------------------------------------------------


def test_a_cut_chat_stream_logs_and_exports_the_prompt_tokens_it_reports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = policy_file(tmp_path, "[budget]\nmax_tokens = 3\n")
    with (
        fake("one two three four five six seven eight") as up,
        gateway("--upstream", up.base_url, "--policy", policy) as gw,
        caplog.at_level(logging.INFO, logger="streamops.gateway"),
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="m",
                stream=True,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "please count to ten for me"}],
            )
        )
        metrics = httpx.get(gw.root_url + "/metrics").text
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if '"event":"request"' in r.getMessage()
    ]
    assert lines[-1]["report"]["tokens_in"] == usage.prompt_tokens
    assert lines[-1]["report"]["tokens_out"] == usage.completion_tokens
    assert f'streamops_gateway_tokens_in_total{{key="-"}} {usage.prompt_tokens}.0' in metrics


# --------------------------------------------------------------------------
# B06: the playground takes the API routes' steps
# --------------------------------------------------------------------------


def test_the_playground_applies_input_rules_daily_budget_and_accounting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = policy_file(tmp_path, '[input]\npatterns = ["secrets"]\naction = "block"\n')
    keys = keys_file(tmp_path, team={"key": "sk-team", "daily_tokens": 3})
    auth = {"authorization": "Bearer sk-team"}
    with (
        fake("one two three four five six seven") as up,
        gateway(
            "--upstream", up.base_url, "--policy", policy, "--keys", keys, "--playground"
        ) as gw,
        httpx.Client(base_url=gw.root_url, timeout=30, headers=auth) as client,
        caplog.at_level(logging.INFO, logger="streamops.gateway"),
    ):
        blocked = client.post("/playground/stream", json={"prompt": MARK, "policy": policy})
        assert (blocked.status_code, up.requests) == (400, 0)
        assert "input rules" in blocked.text
        first = client.post("/playground/stream", json={"prompt": "hi", "policy": policy})
        assert first.status_code == 200
        assert "event: report" in first.text
        assert up.requests == 1
        over = client.post("/playground/stream", json={"prompt": "hi", "policy": policy})
        assert (over.status_code, up.requests) == (429, 1)
        unknown = client.post(
            "/playground/stream", json={"prompt": "hi"}, headers={"authorization": "Bearer no"}
        )
        assert unknown.status_code == 401
        metrics = client.get("/metrics").text
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if '"event":"request"' in r.getMessage()
    ]
    playground = [line for line in lines if line["route"] == "playground"]
    assert [line["status"] for line in playground] == [400, 200, 429, 401]
    assert playground[0]["rejected"] == "input_blocked"
    assert playground[2]["rejected"] == "daily_budget"
    assert playground[1]["report"]["tokens_out"] == 3
    assert 'route="playground"' in metrics


def test_the_playground_charges_a_cost_key_for_its_answer_and_its_prompt(tmp_path: Path) -> None:
    keys = keys_file(tmp_path, team={"key": "sk-team", "daily_cost": 1.0})
    price = so.DEFAULT_PRICES.price("gpt-4o-mini")
    pico_out = round(price.output_per_million * 1e6)  # picodollars per token
    pico_in = round(price.input_per_million * 1e6)
    with (
        fake("one two three") as up,
        gateway(
            "--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys, "--playground"
        ) as gw,
    ):
        r = httpx.post(
            gw.root_url + "/playground/stream",
            json={"prompt": "hi there", "model": "gpt-4o-mini"},
            headers={"authorization": "Bearer sk-team"},
            timeout=30,
        )
        assert r.status_code == 200
        assert gw.config.keys is not None
        spent = asyncio.run(gw.gateway.state.spent_today(gw.config.keys.keys[0]))
    answer = so.count_tokens("one two three", "o200k_base") * pico_out
    prompt = spent - answer
    assert prompt > 0  # the prompt's input tokens are charged too
    assert prompt % pico_in == 0
