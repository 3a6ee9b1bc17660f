"""Run a gateway in a background thread on a real socket (tests, benchmarks, embedding)."""

from __future__ import annotations

from .._serving import ServedInThread, ThreadedServer
from ._app import Gateway
from ._config import GatewayConfig

__all__ = ["GatewayServer"]


class GatewayServer(ServedInThread):
    """A gateway served by uvicorn in a thread: ``with GatewayServer(config) as gw: gw.base_url``.

    ``config.port = 0`` picks a free port (read it from :attr:`port`).
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.gateway = Gateway(config)
        self.app = self.gateway.app()
        self._serving = ThreadedServer(
            self.app,
            config.host,
            config.port,
            name="gateway",
            what="gateway",
            timeout_graceful_shutdown=1,
        )

    @property
    def port(self) -> int:
        """The port served (the free one picked for ``port = 0`` once started)."""
        return self._serving.port

    @property
    def root_url(self) -> str:
        """``http://host:port`` (the ``base_url`` of an ``anthropic`` client)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` (the ``base_url`` of an ``openai`` client)."""
        return self.root_url + "/v1"

    def start(self, *, timeout: float = 10.0) -> GatewayServer:
        """Serve in a background thread; return when it accepts connections."""
        self._serving.start(timeout=timeout)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; harmless if not running."""
        self._serving.stop()
