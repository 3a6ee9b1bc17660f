"""Run a gateway in a background thread on a real socket (tests, benchmarks, embedding)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

from ._app import Gateway
from ._config import GatewayConfig

__all__ = ["GatewayServer"]


class GatewayServer:
    """A gateway served by uvicorn in a thread: ``with GatewayServer(config) as gw: gw.base_url``.

    ``config.port = 0`` picks a free port (read it from :attr:`port`).
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.gateway = Gateway(config)
        self.app = self.gateway.app()
        self.port = config.port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def root_url(self) -> str:
        """``http://host:port`` (the ``base_url`` of an ``anthropic`` client)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` (the ``base_url`` of an ``openai`` client)."""
        return self.root_url + "/v1"

    def start(self, *, timeout: float = 10.0) -> GatewayServer:
        import uvicorn

        from . import _bind

        sock = _bind(self.config.host, self.config.port)
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(
                self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=1
            )
        )
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="streamops-gateway"
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the gateway did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join()
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
