"""A pytest fixture that runs a real ``redis-server`` on a free loopback port.

Import the fixture into a test module (``from redis_server import redis_url``).
When ``redis-server`` is not installed the tests are skipped locally and FAIL
under ``CI=true`` (CI must not silently skip the Redis tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout}s")


# The server process behind each URL the fixture yields (to pause it in tests).
SERVERS: dict[str, subprocess.Popen[bytes]] = {}


def unused_port() -> int:
    """Return a loopback port with nothing listening (for "unreachable" tests)."""
    return _free_port()


def _binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; under CI=true the Redis tests must run", pytrace=False)
        pytest.skip(message)
    return binary


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """Run a ``redis-server`` of its own; yield its URL (``SERVERS[url]`` is its process).

    For tests that kill or reconfigure the server. Skipped (or failed under
    ``CI=true``) like the fixture when ``redis-server`` is missing.
    """
    binary = _binary()
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_ready(port, proc)
            SERVERS[url] = proc
            yield url
        finally:
            SERVERS.pop(url, None)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # (in case a test left it paused)
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """Start ``redis-server`` for the module; yield its ``redis://`` URL; stop it after."""
    with running_redis() as url:
        yield url
