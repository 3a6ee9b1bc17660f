"""A FastAPI endpoint that streams a policy-filtered answer as server-sent events.

``GET /chat?q=...`` streams the model's answer through redaction and a token
budget; each text chunk is an SSE ``data:`` event, then an ``event: report``
with the stream report (stop reason, redactions, ...), then ``data: [DONE]``.
If the client disconnects, the stream and the model call are closed at once.

``main()`` calls the app in process (``httpx.ASGITransport``) and decodes the
events with ``streamops``' SSE decoder; serve it for real with
``uvicorn examples.fastapi_sse:app``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.responses import Response

import streamops as so

model = so.FakeStreamingModel(
    "Your account key is sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c; keep it safe.",
    chunking="word",
    delay=0.01,
)
policy = so.redact() | so.budget(max_tokens=100)
app = FastAPI()


@app.get("/chat")
async def chat(q: str) -> Response:
    stream = policy(model.astream(q))
    response: Response = so.sse_response(stream)
    return response


async def amain() -> list[so.SSEEvent]:
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
        client.stream("GET", "/chat", params={"q": "my key?"}) as response,
    ):
        return [event async for event in so.sse_decode(done="[DONE]")(response.aiter_bytes())]


def main() -> list[so.SSEEvent]:
    """Run the example; return the events the client received."""
    events = asyncio.run(amain())
    text = "".join(e.data for e in events if e.event == "message")
    report: dict[str, Any] = events[-1].json()
    print(text)
    redacted = report["sections"]["redact"]["redacted"]
    print("stop reason:", report["stop_reason"], "| redacted:", redacted)
    return events


if __name__ == "__main__":
    main()
