"""Serve an ASGI app with uvicorn on a socket bound here, in a background thread.

Both HTTP servers of streamops use it: the gateway (``streamops serve``, its
:class:`~streamops._gateway._thread.GatewayServer` for tests and embedding) and
the fake OpenAI/Anthropic server of :mod:`streamops.testing`. The socket is
bound before uvicorn starts, because uvicorn's own bind failure calls
``sys.exit(3)``; binding here turns it into an ``OSError`` naming the address
(and lets port ``0`` pick a free port that the caller can read at once).
"""

from __future__ import annotations

import abc
import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

__all__ = ("ServedInThread", "ThreadedServer", "bind")


def bind(host: str, port: int) -> socket.socket:
    """Return a socket bound to ``host:port``; ``OSError`` naming the address if it cannot be.

    It has ``TCP_NODELAY``, which every accepted connection inherits: asyncio
    sets it only on sockets whose ``proto`` says TCP, and an accepted socket's
    says 0. Without it a stream's headers and first chunk, written back to
    back, meet Nagle's algorithm, and the chunk waits for the client's delayed
    ACK (40 ms on Linux) before it leaves.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class ThreadedServer:
    """uvicorn serving ``app`` in a daemon-free thread: :meth:`start`, then :meth:`stop`.

    ``port=0`` picks a free port; :attr:`port` holds the real one once started.
    Stopping asks uvicorn to exit, joins the thread and closes the socket;
    stopping twice is harmless.
    """

    def __init__(
        self, app: Any, host: str, port: int, *, name: str, what: str, **config: Any
    ) -> None:
        self.app = app
        self.what = what  # for messages: "the fake server did not start"
        self.host = host
        self.port = port
        self.name = name
        self.config = {"log_level": "warning", "access_log": False, **config}
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def running(self) -> bool:
        """Whether the server was started and not yet stopped."""
        return self._server is not None

    def start(self, *, timeout: float = 10.0) -> None:
        """Serve in a background thread; return when it accepts connections."""
        import uvicorn

        if self._server is not None:
            raise RuntimeError(f"the {self.what} is already running")
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app, **self.config))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"streamops-{self.name}"
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.what} did not start")
            time.sleep(0.005)

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


class ServedInThread(abc.ABC):
    """``with``/``async with`` support for a server whose ``start()`` returns it running.

    ``with server:`` starts it and stops it on exit; ``async with`` does the
    same from a coroutine, in a worker thread (starting blocks until the
    server accepts connections).
    """

    @abc.abstractmethod
    def start(self) -> Self:
        """Start serving; return when it accepts connections."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving; harmless if not running."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
