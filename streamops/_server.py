"""An OpenAI-compatible fake server driven by :class:`~streamops.FakeStreamingModel`.

Point a real ``openai`` client at it to test an app end to end, without a
network or a key: ``POST /v1/chat/completions`` with ``stream=true`` answers
in OpenAI's SSE wire format (``data: {json}`` events, ``data: [DONE]`` last;
``stream_options.include_usage`` adds the usage chunk) and with
``stream=false`` a ``chat.completion`` JSON body. The fake model decides the
text, its chunking, the delays and the faults; ``http_errors`` makes chosen
requests fail with an HTTP status (429, 500, ...) before the model is called.

Two ways to run it:

- in a background thread on a real socket (uvicorn on ``127.0.0.1``, a free
  port by default): ``with FakeOpenAIServer(model) as server:`` then
  ``AsyncOpenAI(base_url=server.base_url, api_key="x")``;
- in process, no socket: ``http_client=server.async_client()`` (an
  ``httpx.AsyncClient`` on ``httpx.ASGITransport``). The transport delivers
  the body once the response is complete, so use the socket mode to observe
  timing; in process, the model's delays run on the caller's loop (instant
  under virtual time).

Needs ``starlette``, ``uvicorn`` and ``httpx`` (``pip install 'streamops[server]'``).
Loopback only unless ``allow_remote=True``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from ._fake import FakeReply, FakeStreamingModel
from ._sse import _event_stream_response

__all__ = ["FakeOpenAIServer", "serve"]

_IN_PROCESS_URL = "http://fake-openai.local/v1"
_ERROR_TYPES = {429: "rate_limit_exceeded", 400: "invalid_request_error"}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _error(status: int, message: str) -> Any:
    from starlette.responses import JSONResponse

    kind = _ERROR_TYPES.get(status, "server_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    headers = {"retry-after": "0"} if status == 429 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _wire(chunk: Any) -> dict[str, Any]:
    if isinstance(chunk, dict):
        return chunk
    dumped: dict[str, Any] = chunk.model_dump(mode="json", exclude_unset=True)
    return dumped


def _prompt(messages: list[Any]) -> str:
    """The fake model's prompt: the content of the last message (JSON if not text)."""
    content = messages[-1].get("content") if isinstance(messages[-1], dict) else None
    return content if isinstance(content, str) else _compact(content)


def _bind(host: str, port: int) -> socket.socket:
    """Bind a socket here, not in uvicorn: its bind failure calls ``sys.exit(3)``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


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


class FakeOpenAIServer:
    """An OpenAI-compatible chat-completions server answering from a fake model.

    ``model`` is a :class:`~streamops.FakeStreamingModel` built with
    ``format="openai-dict"`` (or ``"openai"``), or replies to build one from
    (a ``str``, a :class:`~streamops.FakeReply`, an exception, or a list).
    Each request is one call of the model: its prompt is the content of the
    last message. A reply that is an exception, or a fault before the first
    chunk, gives HTTP 500; a fault mid-stream aborts the connection (the
    client sees a broken stream); a disconnect fault ends the stream without
    a finish reason or ``[DONE]``.

    ``http_errors`` maps request numbers (1-based) to an HTTP status returned
    instead of calling the model (429 comes with ``retry-after: 0``). Turn
    off the ``openai`` client's own retries (``max_retries=0``) to let
    :func:`streamops.retry` handle them.

    Use it as a context manager (``with``/``async with``) to serve on a
    socket in a background thread (``host``, ``port=0``: a free port), or
    call :meth:`async_client` to talk to :attr:`app` in process.

    >>> import httpx
    >>> with FakeOpenAIServer("Hello there") as server:
    ...     r = httpx.post(f"{server.base_url}/chat/completions",
    ...                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    >>> r.json()["choices"][0]["message"]["content"], server.requests
    ('Hello there', 1)
    """

    in_process_url = _IN_PROCESS_URL
    """The ``base_url`` to give a client using :meth:`async_client`."""

    def __init__(
        self,
        model: FakeStreamingModel | str | FakeReply | BaseException | Sequence[Any],
        /,
        *,
        http_errors: Mapping[int, int] | None = None,
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
        _check_host(host, allow_remote)
        port_: object = port
        if isinstance(port_, bool) or not isinstance(port_, int) or not 0 <= port_ <= 65535:
            raise ValueError(f"port must be an int in 0..65535, got {port!r}")
        self.host = host
        self.port = port
        self.requests = 0
        """How many chat-completion requests arrived (errors included)."""
        self.app = self._build_app()
        """The ASGI application (Starlette)."""
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    # -- the application -----------------------------------------------------
    def _build_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Any) -> Any:
        self.requests += 1
        status = self.http_errors.get(self.requests)
        if status is not None:
            return _error(status, f"fake server: HTTP {status} on request {self.requests}")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not JSON")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty list")
        if body.get("n", 1) != 1:
            return _error(400, "the fake server streams one choice: n must be 1")
        chunks = self.model.astream(_prompt(messages))
        call = self.model.last_call
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except Exception as exc:
            await chunks.aclose()
            return _error(500, f"fake server: the model failed: {exc}")
        if not body.get("stream"):
            return await self._complete(first, chunks)
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return _event_stream_response(self._events(first, chunks, usage, call))

    async def _events(
        self, first: Any, chunks: AsyncIterator[Any], usage: bool, call: Any
    ) -> AsyncIterator[bytes]:
        try:
            chunk = first
            while chunk is not None:
                data = _wire(chunk)
                if usage:
                    data = {**data, "usage": data.get("usage")}
                elif data.get("choices"):
                    data = {k: v for k, v in data.items() if k != "usage"}
                else:
                    data = {}  # the usage chunk, not asked for
                if data:
                    yield f"data: {_compact(data)}\n\n".encode()
                chunk = await anext(chunks, None)
            if not call.disconnected:
                yield b"data: [DONE]\n\n"
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def _complete(self, first: Any, chunks: Any) -> Any:
        from starlette.responses import JSONResponse

        content: list[str] = []
        head: dict[str, Any] = {}
        finish = usage = None
        try:
            chunk = first
            while chunk is not None:
                data = _wire(chunk)
                head = head or data
                for choice in data.get("choices") or ():
                    content.append(choice["delta"].get("content") or "")
                    finish = choice.get("finish_reason") or finish
                usage = data.get("usage") or usage
                chunk = await anext(chunks, None)
        except Exception as exc:
            return _error(500, f"fake server: the model failed: {exc}")
        finally:
            await chunks.aclose()
        message = {"role": "assistant", "content": "".join(content), "refusal": None}
        return JSONResponse(
            {
                "id": head.get("id"),
                "object": "chat.completion",
                "created": head.get("created"),
                "model": head.get("model"),
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": usage,
            }
        )

    # -- in process ------------------------------------------------------------
    def async_client(self, **options: Any) -> Any:
        """Return an ``httpx.AsyncClient`` that calls :attr:`app` in process (no socket).

        Give it to ``openai.AsyncOpenAI(base_url=FakeOpenAIServer.in_process_url,
        api_key="x", http_client=...)``. ``options`` go to ``httpx.AsyncClient``.
        """
        import httpx

        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url=_IN_PROCESS_URL, **options)

    # -- on a socket -----------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The ``/v1`` URL of the running server (``RuntimeError`` if not started)."""
        if self._server is None:
            raise RuntimeError(
                "the fake server is not running: use `with FakeOpenAIServer(...) as server`"
                " (or start()), or async_client() for in-process calls"
            )
        return f"http://{self.host}:{self.port}/v1"

    def start(self, *, timeout: float = 10.0) -> FakeOpenAIServer:
        """Serve in a background thread; return when it accepts connections."""
        import uvicorn

        if self._server is not None:
            raise RuntimeError("the fake server is already running")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="streamops-fake-server"
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; harmless if not running."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join()
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeOpenAIServer:
        import asyncio

        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)


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

    sock = _bind(fake.host, fake.port)
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


# --------------------------------------------------------------------------
# the `streamops fake-server` subcommand
# --------------------------------------------------------------------------

_DEFAULT_REPLY = "Hello! I am a fake model. Point your OpenAI client at me to test your app."


def _http_error(spec: str) -> tuple[int, int]:
    number, sep, status = spec.partition(":")
    if not sep or not number.isdigit() or not status.isdigit():
        raise argparse.ArgumentTypeError(f"expected REQUEST:STATUS such as 1:500, got {spec!r}")
    return int(number), int(status)


def add_fake_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fake-server`` options to ``parser`` (the CLI calls this)."""
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--reply",
        action="append",
        dest="replies",
        metavar="TEXT",
        help="a scripted reply (repeat for successive calls; they cycle)",
    )
    parser.add_argument("--chunking", default="word", help="word, char, token, random or a size")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between chunks")
    parser.add_argument("--first-chunk-delay", type=float, default=0.0, help="seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed for random chunking")
    parser.add_argument("--model-name", default="fake-model", help="model name in the chunks")
    parser.add_argument(
        "--http-error",
        action="append",
        type=_http_error,
        default=[],
        metavar="REQUEST:STATUS",
        help="answer request number REQUEST with HTTP STATUS, e.g. 1:500 (repeatable)",
    )
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")


def fake_server_from_args(args: argparse.Namespace) -> FakeOpenAIServer:
    """Build the server of ``streamops fake-server`` from parsed ``args``.

    Bad values raise ``ValueError`` here, before anything is served.

    >>> parser = argparse.ArgumentParser()
    >>> add_fake_server_arguments(parser)
    >>> fake_server_from_args(parser.parse_args(["--host", "10.0.0.1"]))
    Traceback (most recent call last):
    ...
    ValueError: host '10.0.0.1' is not a loopback address; ...
    """
    chunking: str | int = int(args.chunking) if args.chunking.isdigit() else args.chunking
    model = FakeStreamingModel(
        args.replies or [_DEFAULT_REPLY],
        chunking=chunking,
        delay=args.delay,
        first_chunk_delay=args.first_chunk_delay,
        seed=args.seed,
        model_name=args.model_name,
        format="openai-dict",
    )
    return FakeOpenAIServer(
        model,
        host=args.host,
        port=args.port,
        http_errors=dict(args.http_error),
        allow_remote=args.allow_remote,
    )
