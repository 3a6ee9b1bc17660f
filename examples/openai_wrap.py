"""Wrap a real OpenAI stream: redact secrets, keep ``ChatCompletionChunk`` objects.

The app below is ordinary OpenAI SDK code; streamops sits between
``client.chat.completions.create(stream=True)`` and the loop that prints the
deltas. Here the client talks to streamops' fake OpenAI server (no network, no
key); point ``base_url`` at the real API and nothing else changes.

Run: ``python examples/openai_wrap.py``
"""

from __future__ import annotations

import asyncio

import openai
from openai.types.chat import ChatCompletionChunk

import streamops as so
from streamops.testing import FakeOpenAIServer

SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
REPLY = f"Set OPENAI_API_KEY={SECRET} and retry. Questions? Write to ops@example.com."


async def ask(client: openai.AsyncOpenAI, prompt: str) -> tuple[str, list[ChatCompletionChunk]]:
    """Stream an answer through the policy; return the text shown and the chunks."""
    policy = so.redact() | so.budget(max_tokens=200)
    upstream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks: list[ChatCompletionChunk] = []
    shown = []
    async with policy(upstream) as stream:
        async for chunk in stream:  # still ChatCompletionChunk objects
            chunks.append(chunk)
            if chunk.choices and chunk.choices[0].delta.content:
                shown.append(chunk.choices[0].delta.content)
    return "".join(shown), chunks


async def amain() -> tuple[str, list[ChatCompletionChunk]]:
    model = so.FakeStreamingModel(REPLY, chunking=6, format="openai-dict")
    async with (
        FakeOpenAIServer(model) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="x") as client,
    ):
        return await ask(client, "How do I call the API?")


def main() -> tuple[str, list[ChatCompletionChunk]]:
    """Run the example; return the text the app showed and the chunks it received."""
    text, chunks = asyncio.run(amain())
    print(text)
    print("finish reason:", chunks[-2].choices[0].finish_reason, "| usage:", chunks[-1].usage)
    return text, chunks


if __name__ == "__main__":
    main()
