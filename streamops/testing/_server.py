"""An OpenAI- and Anthropic-compatible fake server driven by :class:`~streamops.FakeStreamingModel`.

Point a real ``openai`` or ``anthropic`` client at it to test an app end to
end, without a network or a key. Three wires, one fake model behind them:

- ``POST /v1/chat/completions``: with ``stream=true`` OpenAI's SSE wire format
  (``data: {json}`` events, ``data: [DONE]`` last;
  ``stream_options.include_usage`` adds the usage chunk), with
  ``stream=false`` a ``chat.completion`` JSON body;
- ``POST /v1/responses`` (OpenAI Responses): ``event:``/``data:`` pairs
  ``response.created``, ``response.in_progress``, ``response.output_item.added``,
  ``response.content_part.added``, ``response.output_text.delta`` ...,
  ``response.output_text.done``, ``response.content_part.done``,
  ``response.output_item.done``, ``response.completed`` (``response.incomplete``
  after a ``length`` finish), each with its ``sequence_number``; or a
  ``response`` JSON body;
- ``POST /v1/messages`` (Anthropic Messages): ``message_start``,
  ``content_block_start``, ``ping``, ``content_block_delta`` (``text_delta``)
  ..., ``content_block_stop``, ``message_delta`` (stop reason and usage),
  ``message_stop``; or a ``message`` JSON body.

The fake model decides the text, its chunking, the delays and the faults (it
streams OpenAI chunk dicts; the other wires are translated from them);
``events`` scripts raw wire events per route instead (reasoning, thinking,
tool-call arguments: what the model does not produce); ``GET /v1/models``
lists the model. ``http_errors`` makes chosen requests fail with an HTTP
status (429, 500, ...) before the model is called, and ``headers_delay``
holds the response headers back (a slow request: what
``await client.create(...)`` waits for).

Every request leaves a :class:`ServedRequest` in :attr:`FakeOpenAIServer.served`:
when each chunk was produced, how many body messages were sent, when the
client disconnected and when generation stopped (``time.monotonic()`` times,
comparable with the test's own clock). A client that goes away stops the
generation at once: before the headers, the wait is raced against the
``http.disconnect`` message; while streaming, Starlette (uvicorn speaks ASGI
2.3) listens for it and cancels the body, and the body generator closes the
model's stream in its ``finally``.

Two ways to run it:

- in a background thread on a real socket (uvicorn on ``127.0.0.1``, a free
  port by default): ``with FakeOpenAIServer(model) as server:`` then
  ``AsyncOpenAI(base_url=server.base_url, api_key="x")`` or
  ``AsyncAnthropic(base_url=server.root_url, api_key="x")``;
- in process, no socket: ``http_client=server.async_client()`` (an
  ``httpx.AsyncClient`` on ``httpx.ASGITransport``). The transport delivers
  the body once the response is complete, so use the socket mode to observe
  timing and disconnects; in process, the model's delays run on the caller's
  loop (instant under virtual time).

Needs ``starlette``, ``uvicorn`` and ``httpx`` (``pip install 'streamops[server]'``).
Loopback only unless ``allow_remote=True``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ipaddress
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._core._extras import require
from .._providers._sse import _event_stream_response, sse_format
from .._providers._wire import anthropic_error
from .._serving import ServedInThread, ThreadedServer, bind
from ._fake import FakeCall, FakeReply, FakeStreamingModel, _check_delay, _count_tokens

__all__ = ["FakeOpenAIServer", "serve"]

_IN_PROCESS_URL = "http://fake-openai.local/v1"
_CREATED = 1_700_000_000  # the fake model's fixed creation time
Route = Literal["chat.completions", "responses", "messages"]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _wire(chunk: Any) -> dict[str, Any]:
    if isinstance(chunk, dict):
        return chunk
    dumped: dict[str, Any] = chunk.model_dump(mode="json", exclude_unset=True)
    return dumped


def _text_of(content: Any) -> str:
    """The prompt in a message's content: text as is, text parts joined, else JSON."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(isinstance(p, dict) for p in content):
        texts = [p.get("text") for p in content]
        if all(isinstance(t, str) for t in texts):
            return "".join(t for t in texts if isinstance(t, str))
    return _compact(content)


def _last_content(messages: Any, name: str) -> str:
    if not isinstance(messages, list) or not messages:
        raise _BadRequest(f"'{name}' must be a non-empty list")
    last = messages[-1]
    return _text_of(last.get("content") if isinstance(last, dict) else last)


def _check_host(host: str, allow_remote: bool) -> None:
    if allow_remote or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"host {host!r} is not a loopback address; the fake server listens on loopback"
            " only unless allow_remote=True"
        )


class _BadRequest(ValueError):
    """A request the wire refuses with a 400."""


# --------------------------------------------------------------------------
# the record of one request
# --------------------------------------------------------------------------


@dataclass
class ServedRequest:
    """What the fake server did for one request: a behaviour record for tests.

    Times are ``time.monotonic()`` readings taken in the server's thread
    (the same clock as ``loop.time()`` on the default event loop), so a test
    can compare them with its own. ``produced_at`` has one entry per chunk
    the model produced (framing chunks included); ``sent`` counts the
    non-empty body messages the server handed to the transport.
    ``disconnected_at`` is set when the client went away before the response
    was complete; ``stopped_at`` when generation stopped for good (the
    model's stream was closed or never opened); ``completed`` when the whole
    response was sent.

    >>> r = ServedRequest(1, "chat.completions", True, started_at=10.0)
    >>> r.produced_at += [10.1, 10.2, 10.3]
    >>> r.produced, r.produced_after(10.15), r.stopped
    (3, 2, False)
    """

    number: int
    """The request's number, 1-based, across all routes."""
    route: Route
    stream: bool
    started_at: float
    """When the request arrived."""
    request_headers: dict[str, str] = field(default_factory=dict)
    """The request's headers (lower-case names): what credential reached the upstream."""
    status: int | None = None
    """The HTTP status answered (``None`` until the headers were sent)."""
    call: FakeCall | None = None
    """The fake model's record of this request (``None``: the model was not called)."""
    headers_at: float | None = None
    produced_at: list[float] = field(default_factory=list)
    sent: int = 0
    disconnected_at: float | None = None
    stopped_at: float | None = None
    completed: bool = False
    _stopped: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def produced(self) -> int:
        """How many chunks the model produced for this request."""
        return len(self.produced_at)

    def produced_after(self, moment: float) -> int:
        """How many chunks were produced after ``moment`` (a ``time.monotonic()`` reading)."""
        return sum(1 for t in list(self.produced_at) if t > moment)

    @property
    def stopped(self) -> bool:
        """True once generation stopped (completed, failed or abandoned)."""
        return self.stopped_at is not None

    def wait_stopped(self, timeout: float) -> bool:
        """Block until generation stopped or ``timeout`` seconds passed; return :attr:`stopped`.

        In async code: ``await asyncio.to_thread(record.wait_stopped, 1.0)``.
        """
        self._stopped.wait(timeout)
        return self.stopped

    def _stop(self) -> None:
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        self._stopped.set()


class _Observed:
    """Wraps an ASGI response to record headers, sent messages and the client's disconnect."""

    def __init__(self, record: ServedRequest, response: Any) -> None:
        self.record = record
        self.response = response

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        record = self.record

        async def observed_receive() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect" and not record.completed:
                record.disconnected_at = record.disconnected_at or time.monotonic()
            return message

        async def observed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.start":
                record.status = message["status"]
                record.headers_at = time.monotonic()
            elif message["type"] == "http.response.body":
                record.sent += bool(message.get("body"))
                if not message.get("more_body", False) and record.disconnected_at is None:
                    record.completed = True

        try:
            await self.response(scope, observed_receive, observed_send)
        finally:
            record._stop()


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    """The ASGI response to a client that is gone: send nothing (uvicorn expects none)."""


async def _disconnect(receive: Callable[[], Awaitable[Any]]) -> None:
    """Return when the client has gone away (the request body was already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


# --------------------------------------------------------------------------
# the wires: OpenAI chunk dicts in, each wire's events out
# --------------------------------------------------------------------------


@dataclass
class _Tally:
    """What a whole (non-streamed) reply amounts to, read from the model's chunks."""

    text: list[str] = field(default_factory=list)
    finish: str | None = None
    usage: dict[str, Any] | None = None
    head: dict[str, Any] = field(default_factory=dict)

    def add(self, data: dict[str, Any]) -> None:
        self.head = self.head or data
        for choice in data.get("choices") or ():
            self.text.append(choice["delta"].get("content") or "")
            self.finish = choice.get("finish_reason") or self.finish
        self.usage = data.get("usage") or self.usage


class _Encoder(abc.ABC):
    """Turns the model's OpenAI chunk dicts into one wire's SSE bytes, statefully."""

    @abc.abstractmethod
    def feed(self, data: dict[str, Any]) -> list[bytes]:
        """The SSE bytes for one chunk of the fake model."""

    def end(self) -> list[bytes]:
        """The closing events after a natural end (none after a disconnect fault)."""
        return []


class _Wire(abc.ABC):
    """One route's request parsing, error shape, stream encoder and JSON body."""

    route: Route
    path: str

    @abc.abstractmethod
    def prompt(self, body: dict[str, Any]) -> str:
        """The fake model's prompt from the request body."""

    def error(self, status: int, message: str) -> Any:
        from starlette.responses import JSONResponse

        kinds = {429: "rate_limit_exceeded", 400: "invalid_request_error"}
        kind = kinds.get(status, "server_error")
        body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
        headers = {"retry-after": "0"} if status == 429 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @abc.abstractmethod
    def encoder(self, call: FakeCall, body: dict[str, Any]) -> _Encoder:
        """The stateful SSE encoder of one streamed answer."""

    def frame(self, event: dict[str, Any]) -> bytes:
        """One scripted event as this wire's SSE bytes (``event:`` named by its ``type``)."""
        return _anthropic_event(event)

    def closing(self) -> bytes:
        """What follows a scripted stream's last event."""
        return b""

    @abc.abstractmethod
    def complete(self, call: FakeCall, tally: _Tally) -> dict[str, Any]:
        """The JSON body of a non-streamed answer."""


# -- chat completions ------------------------------------------------------


class _ChatEncoder(_Encoder):
    def __init__(self, usage: bool) -> None:
        self.usage = usage

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        if self.usage:
            data = {**data, "usage": data.get("usage")}
        elif data.get("choices"):
            data = {k: v for k, v in data.items() if k != "usage"}
        else:
            return []  # the usage chunk, not asked for
        return [f"data: {_compact(data)}\n\n".encode()]

    def end(self) -> list[bytes]:
        return [b"data: [DONE]\n\n"]


class _Chat(_Wire):
    route: Route = "chat.completions"
    path = "/v1/chat/completions"

    def prompt(self, body: dict[str, Any]) -> str:
        prompt = _last_content(body.get("messages"), "messages")
        if body.get("n", 1) != 1:
            raise _BadRequest("the fake server streams one choice: n must be 1")
        return prompt

    def encoder(self, call: FakeCall, body: dict[str, Any]) -> _Encoder:
        return _ChatEncoder(bool((body.get("stream_options") or {}).get("include_usage")))

    def frame(self, event: dict[str, Any]) -> bytes:
        return f"data: {_compact(event)}\n\n".encode()

    def closing(self) -> bytes:
        return b"data: [DONE]\n\n"

    def complete(self, call: FakeCall, tally: _Tally) -> dict[str, Any]:
        head = tally.head
        message = {"role": "assistant", "content": "".join(tally.text), "refusal": None}
        return {
            "id": head.get("id"),
            "object": "chat.completion",
            "created": head.get("created"),
            "model": head.get("model"),
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": tally.finish}
            ],
            "usage": tally.usage,
        }


# -- Anthropic messages ----------------------------------------------------

_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "refusal",
    "tool_calls": "tool_use",
}


def _anthropic_event(data: dict[str, Any]) -> bytes:
    return sse_format(_compact(data), event=data["type"]).encode()


class _MessagesEncoder(_Encoder):
    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message
        self.stop: str | None = None
        self.usage: dict[str, Any] = {}

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        self.usage = data.get("usage") or self.usage
        out: list[dict[str, Any]] = []
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("role"):
                block = {"type": "text", "text": ""}
                out += [
                    {"type": "message_start", "message": self.message},
                    {"type": "content_block_start", "index": 0, "content_block": block},
                    {"type": "ping"},
                ]
            if delta.get("content"):
                text_delta = {"type": "text_delta", "text": delta["content"]}
                out.append({"type": "content_block_delta", "index": 0, "delta": text_delta})
            if choice.get("finish_reason"):
                reason = choice["finish_reason"]
                self.stop = _ANTHROPIC_STOP.get(reason, reason)
                out.append({"type": "content_block_stop", "index": 0})
        return [_anthropic_event(e) for e in out]

    def end(self) -> list[bytes]:
        usage = {"output_tokens": self.usage.get("completion_tokens", 0)}
        delta = {"stop_reason": self.stop, "stop_sequence": None}
        return [
            _anthropic_event({"type": "message_delta", "delta": delta, "usage": usage}),
            _anthropic_event({"type": "message_stop"}),
        ]


class _Messages(_Wire):
    route: Route = "messages"
    path = "/v1/messages"

    def prompt(self, body: dict[str, Any]) -> str:
        return _last_content(body.get("messages"), "messages")

    def error(self, status: int, message: str) -> Any:
        from starlette.responses import JSONResponse

        body = anthropic_error(status, message)
        headers = {"retry-after": "0"} if status == 429 else None
        return JSONResponse(body, status_code=status, headers=headers)

    def _message(self, call: FakeCall, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"msg_fake{call.index}",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": body.get("model") or "fake-model",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": _count_tokens(call.prompt), "output_tokens": 0},
        }

    def encoder(self, call: FakeCall, body: dict[str, Any]) -> _Encoder:
        return _MessagesEncoder(self._message(call, body))

    def complete(self, call: FakeCall, tally: _Tally) -> dict[str, Any]:
        usage = tally.usage or {}
        message = self._message(call, {"model": tally.head.get("model")})
        stop = _ANTHROPIC_STOP.get(tally.finish or "", tally.finish)
        return {
            **message,
            "content": [{"type": "text", "text": "".join(tally.text)}],
            "stop_reason": stop,
            "usage": {
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
            },
        }


# -- OpenAI Responses ------------------------------------------------------

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _response_object(
    call: FakeCall,
    model: str,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    finish: str | None = None,
) -> dict[str, Any]:
    reason = _INCOMPLETE.get(finish or "")
    return {
        "id": f"resp_fake{call.index}",
        "object": "response",
        "created_at": _CREATED,
        "status": "incomplete" if reason else status,
        "completed_at": _CREATED if status == "completed" and not reason else None,
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": None,
        "metadata": {},
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
        "usage": None
        if usage is None
        else {
            "input_tokens": usage.get("prompt_tokens", 0),
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": usage.get("completion_tokens", 0),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.get("total_tokens", 0),
        },
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _output_message(call: FakeCall, status: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": f"msg_fake{call.index}",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": parts,
    }


class _ResponsesEncoder(_Encoder):
    def __init__(self, call: FakeCall, model: str) -> None:
        self.call = call
        self.model = model
        self.sequence = 0
        self.text: list[str] = []
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return sse_format(_compact(data), event=kind).encode()

    def feed(self, data: dict[str, Any]) -> list[bytes]:
        self.usage = data.get("usage") or self.usage
        out: list[bytes] = []
        where = {"item_id": f"msg_fake{self.call.index}", "output_index": 0}
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("role"):
                started = _response_object(self.call, self.model, status="in_progress", output=[])
                item = _output_message(self.call, "in_progress", [])
                out += [
                    self._event("response.created", response=started),
                    self._event("response.in_progress", response=started),
                    self._event("response.output_item.added", output_index=0, item=item),
                    self._event(
                        "response.content_part.added",
                        **where,
                        content_index=0,
                        part=_output_text(""),
                    ),
                ]
            if delta.get("content"):
                self.text.append(delta["content"])
                out.append(
                    self._event(
                        "response.output_text.delta",
                        **where,
                        content_index=0,
                        delta=delta["content"],
                        logprobs=[],
                    )
                )
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
                text = "".join(self.text)
                out += [
                    self._event(
                        "response.output_text.done",
                        **where,
                        content_index=0,
                        text=text,
                        logprobs=[],
                    ),
                    self._event(
                        "response.content_part.done",
                        **where,
                        content_index=0,
                        part=_output_text(text),
                    ),
                    self._event("response.output_item.done", output_index=0, item=self._item()),
                ]
        return out

    def _item(self) -> dict[str, Any]:
        status = "incomplete" if self.finish in _INCOMPLETE else "completed"
        return _output_message(self.call, status, [_output_text("".join(self.text))])

    def end(self) -> list[bytes]:
        final = _response_object(
            self.call,
            self.model,
            status="completed",
            output=[self._item()],
            usage=self.usage,
            finish=self.finish,
        )
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return [self._event(kind, response=final)]


class _Responses(_Wire):
    route: Route = "responses"
    path = "/v1/responses"

    def prompt(self, body: dict[str, Any]) -> str:
        given = body.get("input")
        if isinstance(given, str):
            return given
        return _last_content(given, "input")

    def encoder(self, call: FakeCall, body: dict[str, Any]) -> _Encoder:
        return _ResponsesEncoder(call, body.get("model") or "fake-model")

    def complete(self, call: FakeCall, tally: _Tally) -> dict[str, Any]:
        text = "".join(tally.text)
        status = "incomplete" if tally.finish in _INCOMPLETE else "completed"
        return _response_object(
            call,
            tally.head.get("model") or "fake-model",
            status="completed",
            output=[_output_message(call, status, [_output_text(text)])],
            usage=tally.usage,
            finish=tally.finish,
        )


_WIRES: tuple[_Wire, ...] = (_Chat(), _Responses(), _Messages())
_ROUTES = tuple(w.route for w in _WIRES)


# --------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------


class FakeOpenAIServer(ServedInThread):
    """An OpenAI- and Anthropic-compatible server answering from a fake model.

    ``model`` is a :class:`~streamops.FakeStreamingModel` built with
    ``format="openai-dict"`` (or ``"openai"``), or replies to build one from
    (a ``str``, a :class:`~streamops.FakeReply`, an exception, or a list).
    Each request (``/v1/chat/completions``, ``/v1/responses`` or
    ``/v1/messages``) is one call of the model: its prompt is the text of the
    last message (or the Responses ``input``). A reply that is an exception,
    or a fault before the first chunk, gives HTTP 500; a fault mid-stream
    aborts the connection (the client sees a broken stream); a disconnect
    fault ends the stream without its closing events (finish reason,
    ``[DONE]``, ``message_stop``, ``response.completed``).

    ``http_errors`` maps request numbers (1-based) to an HTTP status returned
    instead of calling the model (429 comes with ``retry-after: 0``). Turn
    off the client's own retries (``max_retries=0``) to let
    :func:`streamops.retry` handle them. ``headers_delay`` (seconds, also
    settable on a running server) holds every response back before the model
    is called: the client's ``create()`` call waits that long for the headers.
    A client that disconnects meanwhile stops the request; the model is then
    not called.

    ``events`` scripts a route's stream as raw wire events instead: a list
    per route (``"chat.completions"``, ``"responses"``, ``"messages"``) of
    event dicts, framed as that wire frames them (``data: {...}`` then
    ``data: [DONE]`` on chat; ``event: TYPE`` / ``data: {...}`` on the
    others), or ``bytes`` sent verbatim; ``events_delay`` seconds apart. Use
    it for what the model does not produce: reasoning and thinking, tool-call
    arguments, odd chunk shapes. Every streamed request of that route gets
    the whole script (a non-streamed one gets 400). ``GET /v1/models`` lists
    the model (:attr:`models_requests` keeps each request's headers).

    :attr:`served` records what happened to each request
    (:class:`ServedRequest`): chunks produced and when, messages sent, the
    client's disconnect, when generation stopped.

    Use it as a context manager (``with``/``async with``) to serve on a
    socket in a background thread (``host``, ``port=0``: a free port), or
    call :meth:`async_client` to talk to :attr:`app` in process.

    >>> import httpx
    >>> with FakeOpenAIServer("Hello there") as server:
    ...     r = httpx.post(f"{server.base_url}/chat/completions",
    ...                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    >>> r.json()["choices"][0]["message"]["content"], server.requests
    ('Hello there', 1)
    >>> record = server.served[0]
    >>> record.route, record.status, record.completed, record.produced
    ('chat.completions', 200, True, 5)
    """

    in_process_url = _IN_PROCESS_URL
    """The ``base_url`` to give an OpenAI client using :meth:`async_client`."""

    def __init__(
        self,
        model: FakeStreamingModel | str | FakeReply | BaseException | Sequence[Any],
        /,
        *,
        http_errors: Mapping[int, int] | None = None,
        headers_delay: float = 0.0,
        events: Mapping[Route, Sequence[dict[str, Any] | bytes]] | None = None,
        events_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
    ) -> None:
        if not isinstance(model, FakeStreamingModel):
            model = FakeStreamingModel(model, format="openai-dict")
        elif model.format not in ("openai", "openai-dict"):
            raise ValueError(
                f"the fake server needs a model with format='openai-dict' (or 'openai'),"
                f" got format={model.format!r}"
            )
        self.model = model
        self.http_errors = dict(http_errors or {})
        # Checked at run time: callers may not type-check.
        pairs: list[tuple[object, object]] = list(self.http_errors.items())
        for number, status in pairs:
            if not (isinstance(number, int) and number >= 1):
                raise ValueError(f"http_errors keys are request numbers >= 1, got {number!r}")
            if not (isinstance(status, int) and 400 <= status <= 599):
                raise ValueError(f"http_errors values are HTTP error statuses, got {status!r}")
        self.headers_delay = _check_delay("headers_delay", headers_delay)
        """Seconds every response waits before the model is called and the headers sent."""
        self.events: dict[Route, list[dict[str, Any] | bytes]] = {}
        """Scripted wire events per route, streamed verbatim instead of asking the model."""
        for route, script in (events or {}).items():
            if route not in _ROUTES:
                raise ValueError(f"events: unknown route {route!r}; expected one of {_ROUTES}")
            items = list(script)
            for item in items:
                if not isinstance(item, (dict, bytes)):
                    raise TypeError(f"events[{route!r}]: a dict or bytes per event, got {item!r}")
            self.events[route] = items
        self.events_delay = _check_delay("events_delay", events_delay)
        """Seconds between scripted events."""
        _check_host(host, allow_remote)
        port_: object = port
        if isinstance(port_, bool) or not isinstance(port_, int) or not 0 <= port_ <= 65535:
            raise ValueError(f"port must be an int in 0..65535, got {port!r}")
        self.host = host
        self.port = port
        self.requests = 0
        """How many requests arrived, on every route (errors included)."""
        self.served: list[ServedRequest] = []
        """One record per request, in arrival order."""
        self.models_requests: list[dict[str, str]] = []
        """The headers of each ``GET /v1/models`` (it lists the fake model)."""
        self.app = self._build_app()
        """The ASGI application (Starlette)."""
        self._serving: ThreadedServer | None = None

    @property
    def last_served(self) -> ServedRequest:
        """The record of the most recent request (``IndexError`` if none yet)."""
        if not self.served:
            raise IndexError("the fake server has not served a request yet")
        return self.served[-1]

    # -- the application -----------------------------------------------------
    def _build_app(self) -> Any:
        for module in ("starlette", "uvicorn", "httpx"):
            require(module, extra="server", feature="the fake OpenAI server")
        from starlette.applications import Starlette
        from starlette.routing import Route as StarletteRoute

        def endpoint(wire: _Wire) -> Callable[[Any], Awaitable[Any]]:
            async def handle(request: Any) -> Any:
                return await self._handle(wire, request)

            return handle

        routes = [StarletteRoute(w.path, endpoint(w), methods=["POST"]) for w in _WIRES]
        routes.append(StarletteRoute("/v1/models", self._models, methods=["GET"]))
        return Starlette(routes=routes)

    async def _models(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        self.models_requests.append(dict(request.headers))
        model = {
            "id": self.model.model_name,
            "object": "model",
            "created": _CREATED,
            "owned_by": "streamops-fake",
        }
        return JSONResponse({"object": "list", "data": [model]})

    async def _handle(self, wire: _Wire, request: Any) -> Any:
        self.requests += 1
        record = ServedRequest(
            self.requests,
            wire.route,
            False,
            started_at=time.monotonic(),
            request_headers=dict(request.headers),
        )
        self.served.append(record)
        status = self.http_errors.get(record.number)
        if status is not None:
            message = f"fake server: HTTP {status} on request {record.number}"
            return _Observed(record, wire.error(status, message))
        try:
            body = await request.json()
        except ValueError:
            return _Observed(record, wire.error(400, "the request body is not JSON"))
        try:
            if not isinstance(body, dict):
                raise _BadRequest("the request body must be a JSON object")
            prompt = wire.prompt(body)
        except _BadRequest as exc:
            return _Observed(record, wire.error(400, str(exc)))
        record.stream = bool(body.get("stream"))
        script = self.events.get(wire.route)
        if script is not None:
            if not record.stream:
                return _Observed(record, wire.error(400, "scripted events are streamed only"))
            return _Observed(record, _event_stream_response(self._scripted(record, wire, script)))
        opened = await self._open(request, record, prompt)
        if opened is None:  # the client went away before the headers: nothing to send
            return _nothing
        chunks, first = opened
        if isinstance(first, Exception):
            if chunks is not None:
                await chunks.aclose()
            return _Observed(record, wire.error(500, f"fake server: the model failed: {first}"))
        call = record.call
        assert call is not None  # set by _open with the stream
        if not record.stream:
            return _Observed(record, await self._complete(wire, record, call, first, chunks))
        body_bytes = self._events(record, call, first, chunks, wire.encoder(call, body))
        return _Observed(record, _event_stream_response(body_bytes))

    async def _open(
        self, request: Any, record: ServedRequest, prompt: str
    ) -> tuple[Any, Any] | None:
        """Wait ``headers_delay``, call the model and take its first chunk (or error).

        Raced against the client's disconnect: nobody else listens before the
        response starts, so a client gone at this point would otherwise leave
        the request running.
        """
        holder: list[Any] = []

        async def first() -> Any:
            if self.headers_delay:
                await asyncio.sleep(self.headers_delay)
            try:
                chunks = self.model.astream(prompt)
            except Exception as exc:  # e.g. the script is exhausted
                return exc
            holder.append(chunks)
            record.call = self.model.last_call
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return None
            except Exception as exc:
                return exc
            record.produced_at.append(time.monotonic())
            return chunk

        work = asyncio.ensure_future(first())
        gone = asyncio.ensure_future(_disconnect(request.receive))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, gone):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not work.cancelled():
            return (holder[0] if holder else None), work.result()
        record.disconnected_at = time.monotonic()
        if holder:
            await holder[0].aclose()
        record._stop()
        return None

    async def _events(
        self,
        record: ServedRequest,
        call: FakeCall,
        first: Any,
        chunks: AsyncIterator[Any],
        encoder: _Encoder,
    ) -> AsyncIterator[bytes]:
        try:
            chunk = first
            while chunk is not None:
                for piece in encoder.feed(_wire(chunk)):
                    yield piece
                chunk = await anext(chunks, None)
                if chunk is not None:
                    record.produced_at.append(time.monotonic())
            if not call.disconnected:
                for piece in encoder.end():
                    yield piece
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            record._stop()

    async def _scripted(
        self, record: ServedRequest, wire: _Wire, script: list[dict[str, Any] | bytes]
    ) -> AsyncIterator[bytes]:
        """Stream ``script`` as the wire frames it (``bytes`` go out verbatim)."""
        try:
            for number, item in enumerate(script):
                # Always yield to the loop: a client that left cancels the stream here.
                await asyncio.sleep(self.events_delay if number else 0)
                record.produced_at.append(time.monotonic())
                yield item if isinstance(item, bytes) else wire.frame(item)
            closing = wire.closing()
            if closing:
                yield closing
        finally:
            record._stop()

    async def _complete(
        self, wire: _Wire, record: ServedRequest, call: FakeCall, first: Any, chunks: Any
    ) -> Any:
        from starlette.responses import JSONResponse

        tally = _Tally()
        try:
            chunk = first
            while chunk is not None:
                tally.add(_wire(chunk))
                chunk = await anext(chunks, None)
                if chunk is not None:
                    record.produced_at.append(time.monotonic())
        except Exception as exc:
            return wire.error(500, f"fake server: the model failed: {exc}")
        finally:
            await chunks.aclose()
            record._stop()
        return JSONResponse(wire.complete(call, tally))

    # -- in process ------------------------------------------------------------
    def async_client(self, **options: Any) -> Any:
        """Return an ``httpx.AsyncClient`` that calls :attr:`app` in process (no socket).

        Give it to ``openai.AsyncOpenAI(base_url=FakeOpenAIServer.in_process_url,
        api_key="x", http_client=...)`` (an ``anthropic`` client takes the same
        URL without ``/v1``). ``options`` go to ``httpx.AsyncClient``.
        """
        import httpx

        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url=_IN_PROCESS_URL, **options)

    # -- on a socket -----------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The ``/v1`` URL of the running server (``RuntimeError`` if not started)."""
        if self._serving is None:
            raise RuntimeError(
                "the fake server is not running: use `with FakeOpenAIServer(...) as server`"
                " (or start()), or async_client() for in-process calls"
            )
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """The URL without ``/v1``: the ``base_url`` of an ``anthropic`` client."""
        return self.base_url.removesuffix("/v1")

    def start(self, *, timeout: float = 10.0) -> FakeOpenAIServer:
        """Serve in a background thread; return when it accepts connections."""
        if self._serving is not None:
            raise RuntimeError("the fake server is already running")
        serving = ThreadedServer(
            self.app,
            self.host,
            self.port,
            name="fake-server",
            what="fake server",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        serving.start(timeout=timeout)
        self._serving, self.port = serving, serving.port
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; harmless if not running."""
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.stop()


def serve(
    model: FakeStreamingModel | str | Sequence[Any],
    /,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    http_errors: Mapping[int, int] | None = None,
    allow_remote: bool = False,
) -> None:
    """Run the fake OpenAI server in the foreground until interrupted (Ctrl-C).

    ``host`` must be a loopback address unless ``allow_remote=True``. See
    :class:`FakeOpenAIServer` for ``model`` and ``http_errors``. A port that
    cannot be bound raises ``OSError`` naming the address.

    >>> serve("hi", host="0.0.0.0")
    Traceback (most recent call last):
    ...
    ValueError: host '0.0.0.0' is not a loopback address; ...
    """
    fake = FakeOpenAIServer(
        model, host=host, port=port, http_errors=http_errors, allow_remote=allow_remote
    )
    serve_fake_server(fake)


def serve_fake_server(fake: FakeOpenAIServer) -> None:
    """Serve ``fake`` in the foreground until Ctrl-C (:func:`serve` and the CLI use it)."""
    import uvicorn

    sock = bind(fake.host, fake.port)
    try:
        port = sock.getsockname()[1]
        sys.stderr.write(f"fake OpenAI server on http://{fake.host}:{port}/v1 (Ctrl-C to stop)\n")
        server = uvicorn.Server(uvicorn.Config(fake.app, lifespan="off", log_level="info"))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it caught: the normal stop
            return
        if not server.started:
            raise RuntimeError("the fake server did not start (see the log above)")
    finally:
        sock.close()
