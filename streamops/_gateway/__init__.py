"""``streamops serve``: an OpenAI- and Anthropic-compatible gateway applying a policy to streams.

Any client in any language points its SDK's base URL at the gateway; every
answer then goes through a streamops policy on its way back (redaction exact
across chunk boundaries in every channel, exact token budgets, timeouts), and
every request through the policy's input rules on its way out. Keys, per-key
policies, daily budgets and rate limits (shared in Redis), Prometheus metrics
and a playground page complete it. The command line, the HTTP contract and the
user guide are in docs/gateway.md.

- :func:`cli_main`: ``streamops serve ARGS`` (the arguments after ``serve``);
- :func:`create_app`: the ASGI app for a :class:`GatewayConfig` (tests, embedding);
- ``python -m streamops._gateway ARGS`` runs :func:`cli_main`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from .._core._extras import require
from .._serving import bind
from ._app import Gateway, UpstreamError
from ._config import (
    UPSTREAM_KEY_ENV,
    GatewayConfig,
    GatewayConfigError,
    GatewayKey,
    KeyStore,
    build_parser,
    config_from_args,
)

__all__ = [
    "Gateway",
    "GatewayConfig",
    "GatewayConfigError",
    "GatewayKey",
    "KeyStore",
    "UpstreamError",
    "app_from_env",
    "cli_main",
    "create_app",
    "load_config",
]

_ARGV_ENV = "STREAMOPS_GATEWAY_ARGV"


def load_config(argv: Sequence[str]) -> GatewayConfig:
    """Parse and validate ``serve`` arguments.

    Raises :class:`GatewayConfigError`, or ``SystemExit`` for usage errors (argparse).
    """
    args = build_parser().parse_args(list(argv))
    return config_from_args(args, argv)


def create_app(config: GatewayConfig, *, own_process: bool = False) -> Any:
    """Return the gateway's ASGI app for ``config`` (its lifespan opens the clients).

    ``own_process``: the app is all its process serves (``streamops serve``), so
    its start-up may warm every pipeline and freeze the heap (see
    :meth:`Gateway.prepare`); leave it off when embedding the app elsewhere.
    """
    return Gateway(config, own_process=own_process).app()


def app_from_env() -> Any:
    """The app of one ``--workers`` process: its arguments come from the parent's environment."""
    argv = json.loads(os.environ[_ARGV_ENV])
    _setup_logging()
    return create_app(load_config(argv), own_process=True)


def _setup_logging() -> None:
    # The process is the gateway's own, and its lines are the message alone: a record
    # need not look up its thread, process name and pid (a syscall) for each request.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logger = logging.getLogger("streamops.gateway")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket (with ``TCP_NODELAY``: see :func:`bind`)."""
    try:
        return bind(host, port)
    except OSError as exc:
        raise GatewayConfigError(f"--host/--port: {exc}") from exc


def _banner(config: GatewayConfig, port: int) -> str:
    keys = (
        f"keys: {len(config.keys)} from {config.keys_file}"
        f" (upstream credential from ${UPSTREAM_KEY_ENV}"
        + ("" if config.upstream_key else ", which is NOT set")
        + ")"
        if config.keys is not None
        else "keys: none (every request accepted; the client's Authorization is forwarded)"
    )
    lines = [
        f"streamops gateway listening on http://{config.host}:{port}/v1 (Ctrl-C to stop)",
        f"  policy: {config.policy}; {keys}",
        f"  upstreams: {', '.join(config.upstreams)}"
        + (f"; anthropic: {config.anthropic_upstream}" if config.anthropic_upstream else ""),
        f"  {config.describe_state()}",
        f"  workers: {config.workers}" + ("; playground: /playground" if config.playground else ""),
    ]
    return "\n".join(lines) + "\n"


async def _check_redis(config: GatewayConfig) -> None:
    from ._state import State

    state = State(config)
    await state.start()
    await state.close()


def _serve_workers(config: GatewayConfig, argv: Sequence[str]) -> int:
    """``--workers N``: N processes serving one socket, bound here with ``TCP_NODELAY``.

    What ``uvicorn.run(..., workers=N)`` does, but on the gateway's own socket
    (:func:`bind`): uvicorn's would leave Nagle's algorithm on every accepted
    connection. A port already in use is one error line, not uvicorn's exit.
    """
    import uvicorn
    import uvicorn.supervisors

    try:
        sock = _bind(config.host, config.port)
    except GatewayConfigError as exc:
        sys.stderr.write(f"streamops serve: error: {exc}\n")
        return 2
    sock.set_inheritable(True)  # the workers are spawned processes
    os.environ[_ARGV_ENV] = json.dumps(list(argv))
    created = None  # the metrics directory made here, removed at shutdown
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        created = tempfile.mkdtemp(prefix="streamops-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    sys.stderr.write(_banner(config, config.port))
    server_config = uvicorn.Config(
        "streamops._gateway:app_from_env",
        factory=True,
        workers=config.workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    try:
        uvicorn.supervisors.Multiprocess(server_config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if created is not None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            shutil.rmtree(created, ignore_errors=True)
    return 0


def cli_main(argv: list[str]) -> int:
    """Run ``streamops serve`` with ``argv`` (the arguments after ``serve``); return the exit code.

    Bad options, an unreadable or invalid keys file or policy, a bad upstream
    URL, an unreachable Redis: one ``streamops serve: error: ...`` line and
    exit status 2, before anything listens.
    """
    import uvicorn

    # The upstream client is imported when the app starts: a missing one is said now.
    require("aiohttp", extra="gateway", feature="streamops serve")
    try:
        config = load_config(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    except GatewayConfigError as exc:
        sys.stderr.write(f"streamops serve: error: {exc}\n")
        return 2
    if config.redis is not None:
        try:
            asyncio.run(_check_redis(config))
        except Exception as exc:
            sys.stderr.write(f"streamops serve: error: {exc}\n")
            return 2
    _setup_logging()
    if config.workers > 1:
        return _serve_workers(config, argv)
    try:
        sock = _bind(config.host, config.port)
    except GatewayConfigError as exc:
        sys.stderr.write(f"streamops serve: error: {exc}\n")
        return 2
    try:
        port = sock.getsockname()[1]
        sys.stderr.write(_banner(config, port))
        sys.stderr.flush()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(config, own_process=True),
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=5,
            )
        )
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            return 0
        if not server.started:
            sys.stderr.write("streamops serve: error: the gateway did not start (see above)\n")
            return 1
    finally:
        sock.close()
    return 0
