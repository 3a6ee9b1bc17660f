"""Serve a redacted model stream over a WebSocket (Starlette/FastAPI), read it with a client.

``so.to_websocket`` sends each chunk as a text frame, then a report message,
then closes with code 1000; a client that disconnects mid-stream closes the
model stream at once. The example runs the app on a loopback port with
uvicorn and reads it with the ``websockets`` client.

Run: ``python examples/websocket_stream.py``
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import streamops as so
from streamops.testing import FakeStreamingModel

REPLY = "Your key is sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c."


async def chat(websocket: WebSocket) -> None:
    model = FakeStreamingModel(REPLY, chunking="char")  # stands in for a provider stream
    await so.to_websocket(websocket, so.redact()(model.astream("hi")))


app = Starlette(routes=[WebSocketRoute("/chat", chat)])


async def amain() -> list[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn has a flag, no event, for it
        await asyncio.sleep(0.01)
    frames: list[str] = []
    try:
        async with connect(f"ws://127.0.0.1:{sock.getsockname()[1]}/chat") as ws:
            try:
                async for frame in ws:
                    frames.append(str(frame))
            except ConnectionClosed:
                pass
    finally:
        server.should_exit = True
        await serving
        sock.close()
    return frames


def main() -> list[str]:
    """Run the server and a client; return the frames the client received."""
    frames = asyncio.run(amain())
    print("".join(frames[:-1]))
    print(frames[-1])
    return frames


if __name__ == "__main__":
    main()
