"""The gateway's ASGI application: authenticate, limit, filter both ways, forward, account.

One request, in order (nothing reaches the upstream until every check passed):

1. the body is read (400 if it is not a JSON object);
2. with ``--keys``, the client's key (``Authorization: Bearer`` or
   ``x-api-key``) is hashed and looked up in constant time (401, in the
   wire's error shape);
3. the key's rate limit and daily budget are checked (429 with ``retry-after``);
4. the key's policy's input rules redact or block the request's texts (400 on
   a block: the secret never leaves);
5. the upstream is asked for a stream (always, also for ``stream: false``),
   and its events run through the key's policy: the policy's operators, with
   the provider lens picked from the first event, plus a ``daily`` budget
   stage on the key's ledger; :func:`streamops.retry` wraps it all, with the
   other ``--upstream`` URLs as fallbacks before the first text;
6. the response's headers wait for the first event the policy releases, so an
   upstream failure before it becomes the wire's HTTP error (429, 502, 504);
   after it, failures become the wire's error event;
7. the stream ends as the provider would (see :mod:`._wires`), the upstream is
   closed the moment the client leaves or stops reading, and one JSON log line
   and the metrics record the request (never its text).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import math
import os
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import streamops as so

from ._config import GatewayConfig, GatewayKey
from ._metrics import Metrics
from ._state import COST_UNITS, CostLedger, State
from ._wires import WIRES, SSEData, Usage, Wire, Writer, json_bytes, read_json

__all__ = ["Gateway", "UpstreamError"]

log = logging.getLogger("streamops.gateway")
_END = object()
_OWN_POLICY: Any = object()
"""The policy of the request's key (the default policy without keys): see ``Gateway._admit``."""


class _ClientGone(Exception):
    """The client disconnected while the gateway waited for the upstream."""


@dataclass
class _Admission:
    """A request that passed the checks: its key, its policy, its model's price (cost keys)."""

    key: GatewayKey | None
    policy_spec: str | None
    price: so.ModelPrice | None


_parse = json.JSONDecoder().decode


class UpstreamError(ConnectionError):
    """The upstream answered with an HTTP error, broke its stream or sent an error event.

    ``retryable`` follows the status: 408, 409, 429 and 5xx (and broken
    streams) are tried again on the next upstream; other 4xx are not.
    """

    def __init__(self, status: int, message: str, upstream: str) -> None:
        super().__init__(f"upstream {upstream} answered {status}: {message}")
        self.status = status
        self.upstream = upstream
        self.detail = message
        self.retryable = status in (408, 409, 429) or status >= 500


@dataclass
class _Request:
    """What one request did: for the log line and the metrics (never text unless asked)."""

    route: str
    started: float = field(default_factory=time.monotonic)
    key: str = "-"
    model: str | None = None
    stream: bool = False
    status: int = 0
    upstream: str | None = None
    attempts: int = 0
    upstream_first: float | None = None
    """When the answering upstream's first event arrived (``time.monotonic()``)."""
    first_out: float | None = None
    """When the policy released its first event."""
    first_sent: float | None = None
    """When the first body bytes were handed to the client's socket (streams)."""
    added: float | None = None
    """The gateway's own share of the TTFT: upstream's first event to the client's first byte."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    provider_usage: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    rejected: str | None = None
    input_redactions: dict[str, int] = field(default_factory=dict)
    raw_item: Any = None
    """The upstream's last event, as parsed; ``raw``: its JSON bytes as received."""
    raw: bytes = b""
    report: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _upstream_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace") or "no body"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return raw[:200].decode("utf-8", "replace")


_MAX_PIPELINES = 512
"""Pipelines kept per gateway process (per policy, key and, for cost budgets, model)."""


def _units(per_million: float) -> int:
    """Picodollars per token at a price of ``per_million`` USD per million tokens, rounded up."""
    return max(1, math.ceil(per_million * COST_UNITS / 1_000_000 - 1e-6))


_GC_YOUNG = 5000
"""The collector's youngest-generation threshold in the gateway's own process (``prepare``)."""


_POOL_IDLE_S = 30.0
"""How long a kept-alive upstream connection may stay unused before it is closed."""


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``).

    Looked up once per upstream URL (:meth:`Gateway.proxy`), not per request:
    aiohttp's own ``trust_env`` reads the environment and ``.netrc`` in a
    worker thread on every request, two thread hops before each is sent.
    """
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    # With the port: a NO_PROXY entry may name one (api.example.com:8443), and urllib
    # matches the host alone and the host with its port (as httpx and requests do).
    host = parts.hostname or ""
    if not proxy or urllib.request.proxy_bypass(f"{host}:{parts.port}" if parts.port else host):
        return None
    return proxy


_DRAIN_S = 0.1
"""How long the end of an upstream's body may take after its ``[DONE]`` event."""


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read what follows ``[DONE]`` (the chunked body's end), so the connection is kept alive.

    Leaving the body unread would make aiohttp close the connection, and every
    request would pay for a new one (connect, and close, on both ends). An
    upstream that keeps the body open after ``[DONE]`` gets ``_DRAIN_S``;
    then the connection is closed as before.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DRAIN_S):
            async for _ in body:
                pass


def _warm_text() -> list[str]:
    """The warm-up answer's text chunks: every printable ASCII character after each kind
    of character before it.

    A redaction plan compiles, on first sight, the patterns that can start at
    a character with what precedes it (``_Plan.at``); a warm-up that showed
    only a few characters left hundreds of such compiles (0.6 s of CPU, every
    stream waiting) to the first real answers with digits and punctuation.
    Paid here, before the port is ready, and then frozen out of the GC's reach.
    """
    shown = string.ascii_letters + string.digits + string.punctuation + " "
    coverage = "".join(before + c for before in " aZ0-_.@:/=+" for c in shown)
    return [*_WARM_SHORT, " ", *(coverage[i : i + 24] for i in range(0, len(coverage), 24))]


_WARM_SHORT = ["Warm", "ing up: ", "mail ann@", "example.com", " done."]


def _warm_events(route: str) -> list[dict[str, Any]]:
    """A short answer on the wire ``route``, as its upstream's events (start-up warm-up).

    Only chat's shows every character (:func:`_warm_text`): the plan, and what it
    compiled, is the policy's, whatever the wire.
    """
    text = _warm_text() if route == "chat.completions" else _WARM_SHORT
    if route == "messages":
        usage = {"input_tokens": 1, "output_tokens": 0}
        message = {"id": "msg_warm", "type": "message", "role": "assistant", "content": []}
        return [
            {"type": "message_start", "message": {**message, "model": "warm-up", "usage": usage}},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            *(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": t},
                }
                for t in text
            ),
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 9},
            },
            {"type": "message_stop"},
        ]
    if route == "responses":
        response = {"id": "resp_warm", "object": "response", "model": "warm-up", "output": []}
        ids = {"item_id": "msg_warm", "output_index": 0, "content_index": 0}
        return [
            {"type": "response.created", "response": {**response, "status": "in_progress"}},
            *({"type": "response.output_text.delta", **ids, "delta": t} for t in text),
            {"type": "response.output_text.done", **ids, "text": "".join(text)},
            {"type": "response.completed", "response": {**response, "status": "completed"}},
        ]
    head = {"id": "chatcmpl-warm", "object": "chat.completion.chunk", "created": 0, "model": "w"}
    return [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        *({**head, "choices": [{"index": 0, "delta": {"content": t}}]} for t in text),
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]


async def _warm_source(route: str) -> AsyncIterator[dict[str, Any]]:
    for item in _warm_events(route):
        yield item


def _budget_usage(report: Any) -> Any:
    if report is None:
        return None
    sections = report.sections
    return sections.get("budget")


def _with_daily_budget(
    policy: so.Policy,
    ledger: so.Ledger,
    key: str,
    *,
    model: str | None = None,
    price: so.ModelPrice | None = None,
) -> so.Operator[Any, Any]:
    """The policy's pipeline with its budget stage drawing on the key's daily ledger.

    ``model`` and ``price`` (a cost budget: ``ledger`` counts the model's
    output tokens) pick the encoding tokens are counted with and the cost the
    report shows, unless the policy's own budget names a model.

    One budget stage, not two: stages of one stream share the report's
    ``"budget"`` section, so a second budget would mix its counts into the
    first. The section's settings map to :func:`streamops.budget` as
    :meth:`streamops.Policy.build` maps them; the stage keeps its place
    (timeout, redact, budget, collect, parse_json).
    """
    b = policy.budget
    if b is not None and b.ledger is not None:
        raise ValueError("a policy with a budget ledger cannot also take a key's daily_tokens")
    head = policy.model_copy(update={"budget": None, "collect": None, "parse_json": None})
    tail = policy.model_copy(
        update={"timeout": None, "redact": None, "budget": None, "retry": None, "events": None}
    )
    if b is None:
        budget = so.budget(ledger=ledger, key=key, warn_at=None, model=model, pricing=price)
    else:
        budget = so.budget(
            max_tokens=b.max_tokens,
            max_cost=b.max_cost,
            model=b.model,
            encoding=so.resolve_encoding(b.encoding, model=b.model),
            prompt_tokens=b.prompt_tokens,
            on_exhausted=b.on_exhausted,
            warn_at=b.warn_at,
            block=b.block,
            fail_open=b.fail_open,
            ledger=ledger,
            key=key,
        )
    op = head.build() | budget
    if tail.collect is not None or tail.parse_json is not None:
        op = op | tail.build()
    return op


class _EventStream:
    """An SSE response that stops the body when the client leaves or stops reading.

    The body is pulled only as fast as the client reads (each ``send`` waits
    while the transport's buffer is full), so a slow client never makes the
    gateway buffer more than the socket buffers; a client that reads nothing
    for ``send_timeout`` seconds gets its stream cut (the upstream is closed).
    A disconnect cancels the body at once, which closes the upstream request.

    ``head_ready``: the body's first step awaits nothing (its first event is
    already in hand), so the headers and that first chunk are written from
    the request's own task before any other task starts. A task started for
    them would first wait a whole turn of the event loop behind every other
    stream's ready work: under load, that queueing was most of the added time
    to first token. The first sends are bounded by ``send_timeout`` too.
    """

    def __init__(
        self,
        body: AsyncIterator[bytes],
        *,
        send_timeout: float,
        on_slow: Callable[[], None],
        on_first: Callable[[], None] | None = None,
        head_ready: bool = False,
    ) -> None:
        self.body = body
        self.send_timeout = send_timeout
        self.on_slow = on_slow
        self.on_first = on_first
        """Called once the first body bytes went to the client (the added-TTFT clock stops)."""
        self.head_ready = head_ready

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        sending_since: float | None = None  # a body send waiting for the client, since when
        timer: asyncio.TimerHandle | None = None
        first = True
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
            ],
        }

        async def put(chunk: bytes) -> None:
            nonlocal sending_since, first
            sending_since = loop.time()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sending_since = None
            if first:
                first = False
                if self.on_first is not None:
                    self.on_first()

        async def stream(started: bool) -> None:
            nonlocal sending_since
            if not started:
                await send(start)
            async for chunk in self.body:
                if first:
                    await put(chunk)
                    continue
                sending_since = loop.time()  # put's steps, without a call per chunk
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sending_since = None
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        def watchdog() -> None:
            # One timer per stream, re-armed every send_timeout seconds (not one per
            # chunk): a send still waiting for the client after send_timeout is cut.
            nonlocal timer
            since, now = sending_since, loop.time()
            if since is not None and now - since >= self.send_timeout:
                self.on_slow()
                work.cancel()  # the response stays incomplete: the server drops the connection
                return
            timer = loop.call_at((now if since is None else since) + self.send_timeout, watchdog)

        started = False
        if self.head_ready:
            try:
                async with asyncio.timeout(self.send_timeout) as deadline:
                    await send(start)
                    started = True
                    head = await anext(self.body, b"")
                    if head:
                        await put(head)
            except TimeoutError:
                if not deadline.expired():
                    raise
                self.on_slow()  # as the watchdog cuts it: the response stays incomplete
                await self.body.aclose()  # type: ignore[attr-defined]
                return
            except BaseException:
                await self.body.aclose()  # type: ignore[attr-defined]
                raise
        work = asyncio.ensure_future(stream(started))
        watch = asyncio.ensure_future(gone())
        timer = loop.call_later(self.send_timeout, watchdog)
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            for task in (work, watch):
                task.cancel()
            for task in (work, watch):
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
            await self.body.aclose()  # type: ignore[attr-defined]


class Gateway:
    """The gateway of one process: configuration, shared state, metrics, upstream client."""

    def __init__(self, config: GatewayConfig, *, own_process: bool = False) -> None:
        self.config = config
        self.state = State(config)
        self.metrics = Metrics()
        self.client: Any = None
        """The upstream HTTP client (an ``aiohttp.ClientSession``, opened by :meth:`startup`)."""
        self._proxies: dict[str, str | None] = {}
        self.ready = False
        self.own_process = own_process
        """The gateway owns its process (``streamops serve``): at start-up it warms every
        pipeline and freezes the start-up heap out of the GC's reach (:meth:`prepare`),
        which a gateway embedded in another program must not do to its host."""
        self.worker = os.getpid()
        """The process serving (one of ``--workers N``), in each log line."""
        self._pipelines: dict[tuple[str | None, ...], so.Operator[Any, Any]] = {}
        # Per policy, built once: the input rules' operator and the event callback.
        self._inputs: dict[str | None, so.Operator[Any, Any] | None] = {}
        self._events: dict[str | None, Any] = {}

    # -- lifecycle ---------------------------------------------------------
    async def startup(self) -> None:
        import aiohttp
        import httpx

        # aiohttp, not httpx: with its C parser and a protocol that hands each read to
        # the response at once, a streamed chunk costs a fraction of httpx's path
        # (httpx -> httpcore -> h11 -> anyio, each with its own per-read steps). One
        # connection pool: aiohttp takes a kept-alive connection off a per-host stack
        # (httpcore scanned every connection of a pool on each request). The trust
        # store is httpx's (certifi), as before. Timeouts: connecting 10 s, then
        # upstream_timeout for any one read, the response's headers included.
        connector = aiohttp.TCPConnector(
            limit=0, ssl=httpx.create_ssl_context(), keepalive_timeout=_POOL_IDLE_S
        )
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10.0, sock_read=self.config.upstream_timeout
        )
        # No cookies: the upstream client serves every client and key, and a jar would
        # send one answer's cookie with every later request, whoever made it. No
        # trust_env: the environment's proxy is looked up once per URL (see proxy()).
        self.client = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        await self.state.start()
        if self.own_process:
            await self.prepare()
        self.ready = True

    def proxy(self, url: str) -> str | None:
        """The proxy to reach ``url`` through (``None``: directly), from the environment."""
        try:
            return self._proxies[url]
        except KeyError:
            proxy = self._proxies[url] = _env_proxy(url)
            return proxy

    async def _warm_http(self) -> None:
        """One streamed request over loopback through the upstream client.

        aiohttp and the loop build parts of themselves on a first request
        (its connector, the parser, the resolver's thread), which would
        otherwise stall every stream being served at that moment. The server
        is a few lines on a port of its own.
        """

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)  # the body: {}
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                    b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
                )
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with self.client.post(f"http://127.0.0.1:{port}/", data=b"{}") as reply:
                decoder = SSEData()
                async for raw in reply.content.iter_any():
                    decoder.feed(raw)
        finally:
            server.close()
            await server.wait_closed()

    async def prepare(self) -> dict[str, int]:
        """Build every pipeline and run each policy's once per wire, then freeze the heap.

        What a first request would otherwise pay (the lenses' and patterns'
        caches, the tokenizer, the writers) is paid here, before the port is
        ready. Then :func:`gc.freeze` moves everything alive (the modules,
        policies, compiled patterns, encodings: tens of thousands of objects) out
        of the collector's generations: a full collection, which scanned
        them all (30-150 ms on a loaded 2-core machine, with every stream
        waiting), then scans only what requests made since; and the youngest
        generation is collected less often (``_GC_YOUNG``). Returns the counts
        that the start-up log line reports.
        """
        specs: list[str | None] = [None, *self.config.policies]
        for spec in specs:
            self.pipeline(spec, None)
            self._input_op(spec)
            self._on_event(spec)
        for key in self.config.keys.keys if self.config.keys is not None else ():
            if key.daily_cost is None:  # a cost budget's pipelines are per model: built on use
                self.pipeline(key.policy, key)
        runs = 0
        for spec in self.config.policies:  # each policy once (None is the default's name)
            op = self.pipeline(spec, None)
            for wire in WIRES:
                body = {"model": "warm-up", "stream": True, "messages": [], "input": "warm-up"}
                writer = wire.writer(body)
                out = op(_warm_source(wire.route))
                try:
                    async for item in out:
                        for data in writer.feed(item):
                            writer.encode(data)
                except so.StreamOpsError:
                    pass  # the policy's own decision (a block, a budget that raises)
                finally:
                    await out.aclose()
                runs += 1
        await self._warm_http()
        gc.collect()
        gc.freeze()
        # The youngest generation collected every 5,000 net allocations, not 700: a
        # stream's objects (parsed events, their copies, the operators' state) mostly
        # die within a chunk or a request, and with a hundred streams in flight each
        # collection met the same live ones again. At 100 streams the collector took
        # 0.21 s of the gateway's CPU over 8,400 chunks (84 + 7 collections), and 0.05 s
        # at 5,000 (11; the longest 12 ms): about 4% of the CPU per chunk.
        gc.set_threshold(_GC_YOUNG, *gc.get_threshold()[1:])
        counts = {"warmed": runs, "frozen": gc.get_freeze_count(), "gc_young": _GC_YOUNG}
        # The event loop serving (uvloop or asyncio: uvicorn's pick), for whoever reads it.
        loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        line = {"event": "startup", "worker": self.worker, "loop": loop, **counts}
        log.info(json.dumps(line, separators=(",", ":")))
        return counts

    async def shutdown(self) -> None:
        self.ready = False
        if self.client is not None:
            await self.client.close()
        await self.state.close()

    def app(self) -> Any:
        """The ASGI application serving every route.

        A Starlette application, behind one step: a ``POST`` to a wire's path
        goes straight to :meth:`handle`, not through Starlette's router and
        its two middleware, which wrap every ``send`` of a stream in two more
        calls. What the middleware would do for these routes, uvicorn does
        too (an exception before the response starts: 500, logged). Every
        other request, and a ``root_path`` deployment, takes Starlette's way.
        """
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.routing import Route

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            await self.startup()
            try:
                yield
            finally:
                await self.shutdown()

        def endpoint(wire: Wire) -> Callable[[Any], Awaitable[Any]]:
            async def handle(request: Any) -> Any:
                return await self.handle(wire, request)

            return handle

        routes = [Route(w.path, endpoint(w), methods=["POST"]) for w in WIRES]
        routes += [
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ]
        if self.config.playground:
            from ._playground import routes as playground_routes

            routes += playground_routes(self)
        starlette = Starlette(routes=routes, lifespan=lifespan)
        posts = {w.path: w for w in WIRES}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
                wire = posts.get(scope["path"])
                if wire is not None:
                    response = await self.handle(wire, Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
            await starlette(scope, receive, send)

        return app

    # -- small routes ------------------------------------------------------
    async def healthz(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        if not self.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(self, request: Any) -> Any:
        from starlette.responses import Response

        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)

    async def models(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, Response

        wire = WIRES[0]
        if self.config.keys is not None and self._authenticate(wire, request) is None:
            return JSONResponse(wire.error_body(401, "invalid API key", "invalid_api_key"), 401)
        headers = self._upstream_headers(wire, request)
        headers.pop("content-type", None)
        try:
            url = self.config.upstreams[0] + "/models"
            async with self.client.get(url, headers=headers, proxy=self.proxy(url)) as answer:
                content = await answer.read()
        except Exception as exc:
            self.metrics.upstream_errors.labels(self.config.upstreams[0], type(exc).__name__).inc()
            body = wire.error_body(
                502, f"upstream unreachable: {type(exc).__name__}", "upstream_error"
            )
            return JSONResponse(body, 502)
        media = answer.headers.get("content-type", "application/json")
        return Response(content, status_code=answer.status, media_type=media)

    # -- helpers -----------------------------------------------------------
    def _authenticate(self, wire: Wire, request: Any) -> GatewayKey | None:
        assert self.config.keys is not None
        presented = wire.presented_key(request.headers)
        return None if presented is None else self.config.keys.lookup(presented)

    def _upstream_headers(self, wire: Wire, request: Any) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        incoming = request.headers
        for name in (
            "anthropic-version",
            "anthropic-beta",
            "openai-organization",
            "openai-project",
        ):
            if name in incoming:
                headers[name] = incoming[name]
        if wire.route == "messages":
            headers.setdefault("anthropic-version", "2023-06-01")
        if self.config.keys is None:  # no gateway keys: the client's credential goes upstream
            for name in ("authorization", "x-api-key"):
                if name in incoming:
                    headers[name] = incoming[name]
            return headers
        credential = self.config.upstream_key
        if credential:
            if wire.route == "messages":
                headers["x-api-key"] = credential
            if wire.route != "messages" or self.config.anthropic_upstream is None:
                headers["authorization"] = f"Bearer {credential}"
        return headers

    def pipeline(
        self, policy_spec: str | None, key: GatewayKey | None, model: str | None = None
    ) -> so.Operator[Any, Any]:
        """The operator a key's streams run through: its policy, then its daily budget.

        A key with a daily cost budget has one per model (``model``: the
        request's, whose price is known): its budget counts that model's tokens
        at that model's output price.
        """
        cost = key is not None and key.daily_cost is not None
        cache_key = (policy_spec, None if key is None else key.name, model if cost else None)
        op = self._pipelines.get(cache_key)
        if op is None:
            policy = self.config.policy_for(policy_spec)
            ledger = None if key is None else self.state.ledger(key)
            if ledger is None:
                op = policy.build()
            elif cost:
                assert key is not None
                assert model is not None
                price = so.DEFAULT_PRICES.price(model)
                tokens = CostLedger(ledger, per_token=_units(price.output_per_million))
                op = _with_daily_budget(policy, tokens, key.name, model=model, price=price)
                if len(self._pipelines) >= _MAX_PIPELINES:  # models are the client's to name
                    del self._pipelines[next(iter(self._pipelines))]
            else:
                assert key is not None
                op = _with_daily_budget(policy, ledger, key.name)
            self._pipelines[cache_key] = op
        return op

    def _error(
        self, ctx: _Request, wire: Wire, status: int, message: str, code: str, **headers: str
    ) -> Any:
        from starlette.responses import JSONResponse

        ctx.status = status
        ctx.error = ctx.error or code
        return JSONResponse(wire.error_body(status, message, code), status, headers=headers or None)

    def map_error(self, exc: BaseException) -> tuple[int, str, str]:
        """The HTTP status, error code and message of a failure, as the client sees it."""
        import aiohttp

        cause = exc
        if isinstance(exc, so.StreamInterruptedError) and exc.__cause__ is not None:
            cause = exc.__cause__
        if isinstance(cause, UpstreamError):
            status = cause.status
            if status in (401, 403) and self.config.keys is not None:
                return 502, "upstream_auth", "the upstream refused the gateway's credential"
            if status == 429:
                return 429, "upstream_rate_limited", f"upstream rate limit: {cause.detail}"
            if 400 <= status < 500:
                return status, "upstream_rejected", cause.detail
            return 502, "upstream_error", f"upstream error {status}: {cause.detail}"
        if isinstance(cause, TimeoutError):  # aiohttp's timeouts are TimeoutErrors
            return 504, "upstream_timeout", f"the upstream timed out ({type(cause).__name__})"
        if isinstance(cause, so.LedgerUnavailableError):
            return 503, "budget_store_unavailable", "the budget store is unavailable"
        if isinstance(cause, so.BudgetExceededError):
            return 429, "budget_exceeded", "the token budget is exhausted"
        if isinstance(cause, (aiohttp.ClientError, OSError)):
            return 502, "upstream_unreachable", f"the upstream failed: {type(cause).__name__}"
        if isinstance(cause, so.StreamOpsError):
            return (
                502,
                "policy_error",
                f"the gateway's policy stopped the stream: {type(cause).__name__}",
            )
        return 500, "internal_error", f"gateway error: {type(cause).__name__}"

    @staticmethod
    def _price(model: str | None) -> so.ModelPrice | None:
        """The price of ``model`` in :data:`streamops.DEFAULT_PRICES` (``None``: unknown)."""
        if model is None:
            return None
        try:
            return so.DEFAULT_PRICES.price(model)
        except so.PricingError:
            return None

    async def _over_budget(self, key: GatewayKey, price: so.ModelPrice | None) -> bool:
        """Whether ``key``'s daily budget cannot pay for one more token (of ``price``'s model)."""
        left = await self.state.left_today(key)
        if left is None:
            return False
        return left < (1 if price is None else _units(price.output_per_million))

    def _over_error(self, ctx: _Request, wire: Wire, key: GatewayKey) -> Any:
        ctx.rejected = "daily_budget"
        if key.daily_cost is not None:
            what = f"daily cost budget of ${key.daily_cost:g}"
        else:
            what = f"daily token budget of {key.daily_tokens}"
        message = f"{what} exhausted for this key"
        return self._error(
            ctx, wire, 429, message, "daily_budget_exhausted", **{"retry-after": "3600"}
        )

    async def _charge_prompt(self, wire: Wire, body: dict[str, Any], ctx: _Request) -> None:
        """Charge a cost budget's key for the prompt's input tokens, once the answer ended.

        The provider's count when it gave one (``prompt_tokens`` /
        ``input_tokens``), else the request's texts counted with the model's
        encoding. Charged as far as the budget goes (a ledger never grants past
        its limit); a budget store that fails is logged, not the client's problem.
        """
        charge = ctx.extra.pop("prompt_charge", None)
        if charge is None or ctx.upstream_first is None:
            return  # no key with a cost budget, or the upstream never answered
        key, price = charge
        usage = ctx.provider_usage
        tokens = usage.get("prompt_tokens", usage.get("input_tokens"))
        if tokens is None:
            encoding = so.resolve_encoding(None, model=ctx.model)
            tokens = sum(len(encoding.encode_ordinary(ref.text)) for ref in wire.texts(body))
        units = tokens * _units(price.input_per_million)
        ledger = self.state.ledger(key)
        if not units or ledger is None:
            return
        try:
            async with asyncio.timeout(self.config.redis_timeout):
                got = await ledger.reserve(key.name, units)
        except (so.LedgerUnavailableError, TimeoutError) as exc:
            log.warning("could not charge key %s for its prompt: %s", key.name, exc)
            return
        ctx.extra["prompt_cost"] = got.tokens / COST_UNITS

    def _input_op(self, spec: str | None) -> so.Operator[Any, Any] | None:
        """The input rules' operator of the policy ``spec`` (built once; ``None``: no rules)."""
        if spec in self._inputs:
            return self._inputs[spec]
        op = self._inputs[spec] = self.config.policy_for(spec).build_input()
        return op

    def _on_event(self, spec: str | None) -> Any:
        """The event callback of the policy ``spec`` (built once; ``None``: none)."""
        if spec in self._events:
            return self._events[spec]
        callback = self._events[spec] = self.config.policy_for(spec).on_event()
        return callback

    def _apply_input(
        self, spec: str | None, wire: Wire, body: dict[str, Any], ctx: _Request
    ) -> bool:
        """Run the policy's input rules over the request's texts; False if it is blocked."""
        op = self._input_op(spec)
        if op is None:
            return True
        for ref in wire.texts(body):
            stream = op([ref.text])
            text = "".join(stream)
            report = stream.report
            section: Any = report.sections.get("redact")
            if section is not None:
                for rule, count in section.redacted.items():
                    ctx.input_redactions[rule] = ctx.input_redactions.get(rule, 0) + count
                    self.metrics.redactions.labels(rule, "input").inc(count)
            if report.stop_reason == so.StopReason.BLOCKED:
                return False
            ref.text = text
        return True

    async def _read_upstream(
        self, url: str, wire: Wire, payload: dict[str, Any], headers: dict[str, str], ctx: _Request
    ) -> AsyncIterator[dict[str, Any]]:
        """One attempt: the upstream's SSE events as dicts (its connection closed on exit).

        Leaving early (the client went away, the policy cut the stream, an
        error) releases the response with its body unread, which closes the
        connection at once: the upstream stops generating.
        """
        import aiohttp

        ctx.upstream = url
        ctx.attempts += 1
        ctx.upstream_first = None  # this attempt's first event starts the added-TTFT clock
        ctx.raw_item = None
        try:
            async with self.client.post(
                url, data=json_bytes(payload), headers=headers, proxy=self.proxy(url)
            ) as answer:
                if answer.status >= 400:
                    raise UpstreamError(answer.status, _upstream_message(await answer.read()), url)
                decoder = SSEData()
                body = answer.content.iter_any()  # what each read brought (decoded if compressed)
                async for raw in body:
                    for data in decoder.feed(raw):
                        if data == b"[DONE]":
                            await _drain(body)
                            return
                        try:
                            text = data.decode()
                        except UnicodeDecodeError:  # U+FFFD, as SSE decoding does
                            text = data.decode("utf-8", "replace")
                            data = text.encode()
                        try:
                            item = _parse(text)
                        except ValueError:
                            raise UpstreamError(
                                502, "the upstream sent an event that is not JSON", url
                            ) from None
                        if not isinstance(item, dict):
                            raise UpstreamError(
                                502, "the upstream sent an event that is not an object", url
                            )
                        failure = wire.upstream_error(item)
                        if failure is not None:
                            raise UpstreamError(502, failure, url)
                        if ctx.upstream_first is None:
                            ctx.upstream_first = time.monotonic()
                        self._note_usage(item, ctx)
                        # The last event and its bytes: sent as they came if nothing changes it.
                        ctx.raw_item, ctx.raw = item, data
                        yield item
                if not wire.ended(ctx.raw_item):
                    # A broken stream (retryable: before the first text, the next upstream).
                    raise UpstreamError(502, "the upstream ended the answer early", url)
        except UpstreamError as exc:
            self.metrics.upstream_errors.labels(url, f"http_{exc.status}").inc()
            raise
        except (OSError, TimeoutError) as exc:  # aiohttp's connect errors and timeouts too
            self.metrics.upstream_errors.labels(url, type(exc).__name__).inc()
            raise
        except aiohttp.ClientError as exc:
            # A connection dropped or a body broken mid-answer: the upstream broke its
            # stream (retryable before the first text, like any 5xx).
            self.metrics.upstream_errors.labels(url, type(exc).__name__).inc()
            raise UpstreamError(502, f"the connection failed ({type(exc).__name__})", url) from exc

    @staticmethod
    def _note_usage(item: dict[str, Any], ctx: _Request) -> None:
        usage = item.get("usage")
        kind = item.get("type")
        if kind == "message_start":
            usage = (item.get("message") or {}).get("usage")
        elif kind in ("response.completed", "response.incomplete"):
            usage = (item.get("response") or {}).get("usage")
        if isinstance(usage, dict):
            for name, value in usage.items():
                if isinstance(value, int):
                    ctx.provider_usage[name] = value

    def _usage(self, wire: Wire, body: dict[str, Any], ctx: _Request, report: Any) -> Usage:
        """The usage of a cut answer: tokens delivered, and the prompt's count."""
        prompt = ctx.provider_usage.get("input_tokens", ctx.provider_usage.get("prompt_tokens"))
        if prompt is None:
            prompt = so.count_tokens("\n".join(ref.text for ref in wire.texts(body)))
        ctx.prompt_tokens = prompt  # the log line and tokens_in_total report what the client got
        section = _budget_usage(report)
        completion = section.completion_tokens if section is not None else 0
        return Usage(prompt, completion)

    async def _admit(
        self,
        wire: Wire,
        request: Any,
        body: dict[str, Any],
        ctx: _Request,
        policy_spec: Any = _OWN_POLICY,
    ) -> _Admission | Any:
        """The checks before the upstream, in order: key, price, rate limit, daily budget, input.

        Returns the :class:`_Admission`, or the refusal (an error response);
        once admitted, the input rules have rewritten ``body``'s texts.
        ``policy_spec``: the policy to apply (the playground's pick), by
        default the key's own. The API routes and the playground both take
        these steps.
        """
        key: GatewayKey | None = None
        if self.config.keys is not None:
            key = self._authenticate(wire, request)
            if key is None:
                ctx.rejected = "unauthenticated"
                return self._error(ctx, wire, 401, "invalid API key", "invalid_api_key")
            ctx.key = key.name
        if policy_spec is _OWN_POLICY:
            policy_spec = None if key is None else key.policy
        price: so.ModelPrice | None = None
        if key is not None and key.daily_cost is not None:
            price = self._price(ctx.model)
            if price is None:
                message = (
                    f"no price is known for model {ctx.model!r}, and this key's daily budget"
                    " is in USD"
                )
                return self._error(ctx, wire, 400, message, "unknown_model_price")
        if key is not None:
            try:
                allowed, retry_after = await self.state.allow_request(key)
                over = await self._over_budget(key, price)
            except so.LedgerUnavailableError:
                return self._error(
                    ctx, wire, 503, "the budget store is unavailable", "budget_store_unavailable"
                )
            if not allowed:
                ctx.rejected = "rate_limited"
                message = f"rate limit of {key.requests_per_minute} requests per minute reached"
                return self._error(
                    ctx,
                    wire,
                    429,
                    message,
                    "rate_limit_exceeded",
                    **{"retry-after": str(retry_after)},
                )
            if over:
                return self._over_error(ctx, wire, key)
        if not self._apply_input(policy_spec, wire, body, ctx):
            ctx.rejected = "input_blocked"
            message = "the request was blocked by the gateway's input rules"
            return self._error(ctx, wire, 400, message, "input_blocked")

        return _Admission(key, policy_spec, price)

    def _source(
        self,
        wire: Wire,
        request: Any,
        payload: dict[str, Any],
        ctx: _Request,
        admitted: _Admission,
        *,
        tap: Callable[[AsyncIterator[dict[str, Any]]], AsyncIterator[dict[str, Any]]] | None = None,
    ) -> Any:
        """The policy's stream over the upstream's events, with retries and fallbacks.

        ``tap`` wraps each attempt's events before the policy sees them (the
        playground counts the text received).
        """
        key, policy_spec, price = admitted.key, admitted.policy_spec, admitted.price
        headers = self._upstream_headers(wire, request)
        policy = self.config.policy_for(policy_spec)
        op = self.pipeline(policy_spec, key, ctx.model if price is not None else None)
        if key is not None and price is not None:
            ctx.extra["prompt_charge"] = (key, price)
        urls = (
            self.config.anthropic_urls()
            if wire.route == "messages"
            else [u + wire.path.removeprefix("/v1") for u in self.config.upstreams]
        )

        def read(url: str) -> AsyncIterator[dict[str, Any]]:
            events = self._read_upstream(url, wire, payload, headers, ctx)
            return events if tap is None else tap(events)

        def attempt(url: str) -> Any:
            return op(read(url))

        factories = [functools.partial(attempt, url) for url in urls]
        settings = policy.retry
        out: Any
        if len(urls) == 1 and (settings is None or settings.attempts <= 1):
            # Nothing can be retried: no retry layer, which would hold the text-free
            # events (the role chunk, message_start) until the first text is released.
            out = op(read(urls[0]), on_event=self._on_event(policy_spec))
        else:
            out = so.retry(
                factories[0],
                attempts=1 if settings is None else settings.attempts,
                mode="before_first_chunk" if settings is None else settings.mode,
                backoff=None if settings is None else settings.backoff,
                fallbacks=factories[1:],
                on_event=self._on_event(policy_spec),
                kind="async",
            )
        return out

    async def _unless_gone(self, request: Any, work: Awaitable[Any]) -> Any:
        """``await work``, unless the client disconnects first: then cancel it (``_ClientGone``).

        Before the response starts nothing else listens for the client's
        disconnect, so a client that leaves while the gateway waits for the
        first event, or assembles a non-streamed answer, would otherwise leave
        the upstream generating (and billing) to its end.

        ``work`` runs in this task, and a watcher task cancels this task when
        the client leaves (as :func:`asyncio.timeout` does): not ``work`` in a
        task of its own, whose result would reach this task two turns of the
        event loop later (its done callback, then the wait's), each turn behind
        every other stream's ready work: time added to the first token.
        """
        task = asyncio.current_task()
        assert task is not None
        left = False

        async def gone() -> None:
            nonlocal left
            with contextlib.suppress(Exception):  # a failing receive: gone too
                while (await request.receive())["type"] != "http.disconnect":
                    pass
            left = True
            task.cancel()

        watcher = asyncio.ensure_future(gone())
        try:
            return await work
        except asyncio.CancelledError:
            if left and task.uncancel() == 0:  # this watcher's cancel, and no one else's
                raise _ClientGone from None
            raise
        finally:
            watcher.cancel()

    def _gone(self, ctx: _Request, wire: Wire) -> Any:
        ctx.error = "client_gone"
        return self._error(ctx, wire, 499, "the client went away", "client_gone")

    # -- the POST routes ---------------------------------------------------
    async def handle(self, wire: Wire, request: Any) -> Any:
        ctx = _Request(wire.route)
        try:
            response = await self._handle(wire, request, ctx)
        except BaseException:
            self._finish(ctx)
            raise
        if not isinstance(response, _EventStream):
            self._finish(ctx)
        return response

    async def _handle(self, wire: Wire, request: Any, ctx: _Request) -> Any:
        from starlette.responses import Response

        try:
            body = read_json(await request.body())
        except ValueError as exc:
            return self._error(ctx, wire, 400, str(exc), "invalid_json")
        if not isinstance(body, dict):
            return self._error(
                ctx, wire, 400, "the request body must be a JSON object", "invalid_request"
            )
        ctx.model = body.get("model") if isinstance(body.get("model"), str) else None
        ctx.stream = body.get("stream") is True
        problem = wire.invalid(body)
        if problem is not None:
            return self._error(ctx, wire, 400, problem, "invalid_request")
        admitted = await self._admit(wire, request, body, ctx)
        if not isinstance(admitted, _Admission):
            return admitted
        key, price = admitted.key, admitted.price
        payload = wire.upstream_body(body)
        out = self._source(wire, request, payload, ctx, admitted)
        self.metrics.child(self.metrics.active, wire.route).inc()
        ctx.extra["active"] = True
        try:
            first: Any = await self._unless_gone(request, anext(out, _END))
        except _ClientGone:
            await out.aclose()
            ctx.report = out.report
            return self._gone(ctx, wire)
        except Exception as exc:
            await out.aclose()
            await self._charge_prompt(wire, body, ctx)
            ctx.report = out.report
            status, code, message = self.map_error(exc)
            ctx.error = code
            if status == 500:
                log.exception("gateway error before the first event")
            return self._error(ctx, wire, status, message, code)
        except BaseException:
            await out.aclose()
            raise
        ctx.first_out = time.monotonic()
        if first is _END and out.report.stop_reason == so.StopReason.BUDGET and key is not None:
            try:
                over = await self._over_budget(key, price)
            except so.LedgerUnavailableError:
                over = True  # fail closed: the stream was cut by the budget anyway
            if over:
                ctx.report = out.report
                ctx.extra.pop("prompt_charge", None)  # refused: nothing reaches the client
                return self._over_error(ctx, wire, key)
        if ctx.stream:
            writer = wire.writer(body)
            ctx.status = 200
            return _EventStream(
                self._stream(wire, body, ctx, out, first, writer),
                send_timeout=self.config.slow_client_timeout,
                on_slow=functools.partial(self._slow, ctx),
                on_first=functools.partial(self._first_sent, ctx),
                head_ready=first is not _END,
            )
        writer = wire.writer(payload)  # the upstream request: a chat answer keeps its usage
        assembler = wire.assembler(body)

        async def assemble() -> None:
            if first is not _END:
                for data in writer.feed(first):
                    assembler.add(data)
            async for item in out:
                for data in writer.feed(item):
                    assembler.add(data)

        try:
            await self._unless_gone(request, assemble())
        except _ClientGone:
            ctx.report = out.report
            return self._gone(ctx, wire)
        except Exception as exc:
            status, code, message = self.map_error(exc)
            ctx.report = out.report
            return self._error(ctx, wire, status, message, code)
        finally:
            await out.aclose()
            await self._charge_prompt(wire, body, ctx)
        report = ctx.report = out.report
        if report.stop_reason == so.StopReason.BUDGET:
            for data in writer.cut(self._usage(wire, body, ctx, report)):
                assembler.add(data)
        elif report.stop_reason == so.StopReason.BLOCKED:
            return self._error(
                ctx, wire, 400, "the answer was blocked by the gateway's policy", "content_blocked"
            )
        elif not writer.complete:
            return self._error(
                ctx, wire, 502, "the upstream ended the answer early", "upstream_incomplete"
            )
        ctx.status = 200
        return Response(json_bytes(assembler.body()), media_type="application/json")

    @staticmethod
    def _first_sent(ctx: _Request) -> None:
        ctx.first_sent = time.monotonic()

    def _slow(self, ctx: _Request) -> None:
        ctx.error = "slow_client"
        log.warning(
            "cut a stream: the client read nothing for %ss", self.config.slow_client_timeout
        )

    async def _stream(
        self, wire: Wire, body: dict[str, Any], ctx: _Request, out: Any, first: Any, writer: Writer
    ) -> AsyncIterator[bytes]:
        encode, feed = writer.encode, writer.feed

        def frame(item: Any) -> bytes:
            # An event made of the upstream's last one is sent as the upstream's own
            # bytes (not serialised again), with the texts the policy changed spliced
            # in where the writer can; the events of one item go out in one write.
            raw_item, raw = ctx.raw_item, ctx.raw
            parts = []
            for data in feed(item):
                chunk = None if raw_item is None else writer.reuse(data, raw_item, raw)
                parts.append(encode(data) if chunk is None else chunk)
            return parts[0] if len(parts) == 1 else b"".join(parts)

        try:
            try:
                if first is not _END:
                    yield frame(first)  # perhaps b"": the head, with no await before it
                async for item in out:
                    if chunk := frame(item):
                        yield chunk
            except Exception as exc:
                status, code, message = self.map_error(exc)
                ctx.error = code
                yield encode(writer.error(status, message, code))
                return
            # Settled before the last bytes: a client that sends its next request once it
            # has read this answer sees the key's spend with this prompt in it.
            await self._charge_prompt(wire, body, ctx)
            report = out.report
            if report.stop_reason == so.StopReason.BUDGET:
                cut = writer.cut(self._usage(wire, body, ctx, report))
                if chunk := b"".join(map(encode, cut)) + writer.done():
                    yield chunk
            elif report.stop_reason == so.StopReason.BLOCKED:
                ctx.error = "content_blocked"
                message = "the answer was blocked by the gateway's policy"
                yield encode(writer.error(400, message, "content_blocked"))
            elif writer.complete:
                if done := writer.done():
                    yield done
            else:
                ctx.error = "upstream_incomplete"
                yield encode(
                    writer.error(502, "the upstream ended the answer early", "upstream_incomplete")
                )
        finally:
            await out.aclose()
            await self._charge_prompt(wire, body, ctx)
            ctx.report = out.report
            self._finish(ctx)

    # -- accounting --------------------------------------------------------
    def _finish(self, ctx: _Request) -> None:
        if ctx.extra.pop("active", False):
            self.metrics.child(self.metrics.active, ctx.route).dec()
        if ctx.extra.get("finished"):
            return
        ctx.extra["finished"] = True
        m = self.metrics
        m.child(m.requests, ctx.key, ctx.route, str(ctx.status)).inc()
        if ctx.rejected is not None:
            m.child(m.rejected, ctx.key, ctx.route, ctx.rejected).inc()
        report = ctx.report
        line: dict[str, Any] = {
            "event": "request",
            "worker": self.worker,
            "route": ctx.route,
            "key": ctx.key,
            "model": ctx.model,
            "stream": ctx.stream,
            "status": ctx.status,
            "duration_ms": round((time.monotonic() - ctx.started) * 1e3, 2),
        }
        if ctx.rejected:
            line["rejected"] = ctx.rejected
        if ctx.error:
            line["error"] = ctx.error
        if ctx.input_redactions:
            line["input_redactions"] = ctx.input_redactions
        if ctx.upstream is not None:
            line["upstream"] = ctx.upstream
            line["attempts"] = ctx.attempts
        # A stream's first token is out when its bytes reach the client's socket; a
        # non-streamed answer's when the policy released its first event.
        first = ctx.first_sent if ctx.stream else ctx.first_out
        if first is not None:
            ttft = first - ctx.started
            line["ttft_ms"] = round(ttft * 1e3, 2)
            m.child(m.ttft, ctx.route).observe(ttft)
            if ctx.upstream_first is not None:
                ctx.added = max(0.0, first - ctx.upstream_first)
                line["added_ms"] = round(ctx.added * 1e3, 3)
                m.child(m.added, ctx.route).observe(ctx.added)
        if report is not None:
            reason = str(report.stop_reason) if report.stop_reason is not None else "unknown"
            if ctx.error == "slow_client":
                reason = "slow_client"
            m.child(m.stops, ctx.key, ctx.route, reason).inc()
            summary: dict[str, Any] = {
                "stop_reason": reason,
                "chunks_in": report.chunks_in,
                "chunks_out": report.chunks_out,
            }
            redact = report.sections.get("redact")
            if redact is not None:
                summary["redacted"] = dict(redact.redacted)
                if redact.blocked_by:
                    summary["blocked_by"] = redact.blocked_by
                for rule, count in redact.redacted.items():
                    m.child(m.redactions, rule, "output").inc(count)
            usage = _budget_usage(report)
            tokens_out = (
                usage.completion_tokens
                if usage is not None
                else ctx.provider_usage.get(
                    "completion_tokens", ctx.provider_usage.get("output_tokens", 0)
                )
            )
            tokens_in = ctx.provider_usage.get(
                "prompt_tokens", ctx.provider_usage.get("input_tokens", ctx.prompt_tokens or 0)
            )
            summary["tokens_out"] = tokens_out
            summary["tokens_in"] = tokens_in
            m.child(m.tokens_out, ctx.key).inc(tokens_out)
            m.child(m.tokens_in, ctx.key).inc(tokens_in)
            budget = report.sections.get("budget")
            if budget is not None:
                summary["budget_exhausted"] = bool(budget.exhausted)
                if budget.cost is not None:
                    summary["cost_usd"] = budget.cost
                    m.child(m.cost, ctx.key).inc(budget.cost)
            prompt_cost = ctx.extra.get("prompt_cost")
            if prompt_cost is not None:
                summary["prompt_cost_usd"] = prompt_cost
                m.child(m.cost, ctx.key).inc(prompt_cost)
            if report.error is not None:
                summary["error_type"] = type(report.error).__name__
            line["report"] = summary
        log.info(json.dumps(line, separators=(",", ":"), default=str))
