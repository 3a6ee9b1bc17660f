"""Wrap a LangChain chat model's ``astream``: the app still gets ``AIMessageChunk``s.

``GenericFakeChatModel`` stands in for any LangChain chat model (``ChatOpenAI``,
``ChatAnthropic``, ...): their ``astream`` yields ``AIMessageChunk`` objects,
which the LangChain lens reads and rebuilds, so ``chunk + chunk`` merging,
ids and metadata keep working.

Run: ``python examples/langchain_wrap.py``
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk

import streamops as so

REPLY = "Sure. My email is jane.doe@example.com and my card is 4111 1111 1111 1111."


async def amain() -> tuple[AIMessageChunk, list[Any]]:
    model = GenericFakeChatModel(messages=iter([AIMessage(content=REPLY)]))
    policy = so.redact(["email", "credit_card"])
    received: list[Any] = []
    full: AIMessageChunk | None = None
    async with policy(model.astream("Who are you?")) as stream:
        async for chunk in stream:
            received.append(chunk)
            full = chunk if full is None else full + chunk  # LangChain merging still works
    assert full is not None
    return full, received


def main() -> tuple[AIMessageChunk, list[Any]]:
    """Run the example; return the merged message and the chunks received."""
    full, received = asyncio.run(amain())
    print(full.content)
    return full, received


if __name__ == "__main__":
    main()
