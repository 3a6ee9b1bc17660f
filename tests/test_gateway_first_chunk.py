"""The gateway's first chunk: sent in the turn of the event loop its event arrives in.

Each turn of the event loop runs every other stream's ready work first, so
under load every turn between the upstream's first event and the client's
first byte adds to the time to first token (docs/gateway.md, Performance).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from streamops._gateway._app import Gateway, _ClientGone, _EventStream
from streamops._gateway._config import GatewayConfig

START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    ],
}


async def _never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _body(closed: list[bool]) -> AsyncIterator[bytes]:
    try:
        yield b"data: first\n\n"
        await asyncio.Event().wait()  # the upstream's next event never comes
        yield b"data: never\n\n"
    finally:
        closed.append(True)


async def test_the_head_is_written_in_the_first_step_of_the_response() -> None:
    sent: list[dict[str, Any]] = []
    firsts: list[bool] = []
    closed: list[bool] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    response = _EventStream(
        _body(closed),
        send_timeout=30,
        on_slow=lambda: None,
        on_first=lambda: firsts.append(True),
        head_ready=True,
    )
    task = asyncio.ensure_future(response({}, _never, send))
    await asyncio.sleep(0)  # one turn: the response's first step ran, nothing else
    assert sent == [
        START,
        {"type": "http.response.body", "body": b"data: first\n\n", "more_body": True},
    ]
    assert firsts == [True]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [True]


async def test_without_head_ready_the_body_is_sent_from_its_own_task() -> None:
    # The playground's body awaits the upstream before its first event: it must not
    # run in the request's task, where nothing would see the client leave.
    sent: list[dict[str, Any]] = []
    closed: list[bool] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    response = _EventStream(_body(closed), send_timeout=30, on_slow=lambda: None)
    task = asyncio.ensure_future(response({}, _never, send))
    for _ in range(5):
        await asyncio.sleep(0)
    assert sent[0] == START
    assert sent[1]["body"] == b"data: first\n\n"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [True]


async def test_a_head_the_client_never_reads_is_cut_by_the_slow_client_timeout() -> None:
    slow: list[bool] = []
    closed: list[bool] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # the client's socket buffer stays full

    response = _EventStream(
        _body(closed), send_timeout=0.05, on_slow=lambda: slow.append(True), head_ready=True
    )
    await asyncio.wait_for(response({}, _never, send), 5)
    assert slow == [True]
    assert closed == [True]


class _Request:
    def __init__(self, leaves: bool) -> None:
        self.leaves = leaves

    async def receive(self) -> dict[str, Any]:
        if self.leaves:
            await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}
        return await _never()


def _gateway() -> Gateway:
    return Gateway(GatewayConfig(upstreams=["http://127.0.0.1:9/v1"], policy="safe-chat"))


async def test_unless_gone_returns_the_work_s_result_in_the_request_s_task() -> None:
    gateway = _gateway()
    outer = asyncio.current_task()

    async def work() -> Any:
        return asyncio.current_task()

    assert await gateway._unless_gone(_Request(leaves=False), work()) is outer
    assert outer is not None
    assert outer.cancelling() == 0


async def test_unless_gone_raises_client_gone_when_the_client_leaves() -> None:
    gateway = _gateway()
    cancelled: list[bool] = []

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(_ClientGone):
        await asyncio.wait_for(gateway._unless_gone(_Request(leaves=True), work()), 5)
    assert cancelled == [True]
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_unless_gone_lets_the_server_s_cancel_through() -> None:
    gateway = _gateway()
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.ensure_future(gateway._unless_gone(_Request(leaves=False), work()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
