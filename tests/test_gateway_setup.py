"""The gateway's per-request costs: what it builds once, and what it keeps open between requests.

Behaviour, not timings (those are ``python -m benchmarks --only gateway``): a
request must not pay for a new upstream connection, a policy's input rules are
built once, and so on.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from helpers import close_sdk_clients  # noqa: F401 - the fixture, used by pytestmark

import streamops as so
from streamops._gateway import load_config
from streamops._gateway._thread import GatewayServer
from streamops.testing import FakeOpenAIServer

pytestmark = pytest.mark.usefixtures("close_sdk_clients")

USER: Any = [{"role": "user", "content": "hi"}]


class _Counting(socketserver.ThreadingTCPServer):
    """A TCP relay to ``target`` that counts the connections it accepted."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.accepted = 0
        super().__init__(("127.0.0.1", 0), _Relay)


class _Relay(socketserver.BaseRequestHandler):
    server: _Counting

    def handle(self) -> None:
        self.server.accepted += 1
        with socket.create_connection(self.server.target) as upstream:

            def pump(src: socket.socket, dst: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while data := src.recv(65536):
                        dst.sendall(data)
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

            back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
            back.start()
            pump(self.request, upstream)
            back.join(5)


@contextlib.contextmanager
def counting_relay(port: int) -> Iterator[_Counting]:
    relay = _Counting(("127.0.0.1", port))
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        relay.shutdown()
        relay.server_close()
        thread.join(5)


@pytest.mark.parametrize("stream", [True, False])
def test_requests_one_after_another_reuse_one_upstream_connection(stream: bool) -> None:
    model = so.FakeStreamingModel("one two three four", format="openai-dict", chunking="word")
    with (
        FakeOpenAIServer(model) as up,
        counting_relay(up.port) as relay,
        GatewayServer(
            load_config(
                [
                    "--upstream",
                    f"http://127.0.0.1:{relay.server_address[1]}/v1",
                    "--policy",
                    "safe-chat",
                    "--port",
                    "0",
                ]
            )
        ) as gw,
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        for _ in range(3):
            if stream:
                chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            else:
                answer = client.chat.completions.create(model="m", messages=USER)
                text = answer.choices[0].message.content or ""
            assert text == "one two three four"
        client.close()
    assert relay.accepted == 1


def test_input_rules_are_built_once_per_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    policy = tmp_path / "in.toml"
    policy.write_text('[input]\npatterns = ["email"]\n', encoding="utf-8")
    built: list[str] = []
    original = so.Policy.build_input

    def counting(self: so.Policy) -> Any:
        built.append("input")
        return original(self)

    monkeypatch.setattr(so.Policy, "build_input", counting)
    model = so.FakeStreamingModel("ok", format="openai-dict")
    with (
        FakeOpenAIServer(model) as up,
        GatewayServer(
            load_config(["--upstream", up.base_url, "--policy", str(policy), "--port", "0"])
        ) as gw,
    ):
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        for _ in range(3):
            messages: Any = [{"role": "user", "content": "mail ann@example.com"}]
            answer = client.chat.completions.create(model="m", messages=messages)
            assert answer.choices[0].message.content == "ok"
        client.close()
        sent = [r.call.prompt for r in up.served if r.call is not None]
    assert len(sent) == 3
    assert all("ann@example.com" not in str(p) and "[EMAIL]" in str(p) for p in sent)
    assert built == ["input"]
