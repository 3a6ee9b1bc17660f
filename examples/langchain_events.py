"""A real LCEL chain whose every event is redacted: ``wrap_chat_model`` + ``astream_events``.

A redactor placed after the model cannot hide what LangChain already emitted
(``on_chat_model_stream`` events, ``on_llm_new_token`` callbacks, traces).
``wrap_chat_model`` puts the policy inside the model, so the chain built on it
is the same chain as before and every event it streams is policy-applied.
``FakeStreamingModel.as_langchain()`` stands in for ``ChatOpenAI`` or
``ChatAnthropic`` (it streams character by character, so each secret spans
many chunks).

Run: ``python examples/langchain_events.py``
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import streamops as so
from streamops.langchain import wrap_chat_model
from streamops.testing import FakeStreamingModel

REPLY = "Ask jane.doe@example.com; the key is sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c."


async def amain() -> list[dict[str, Any]]:
    model = FakeStreamingModel(REPLY, chunking="char").as_langchain()
    safe_model = wrap_chat_model(model, so.redact())
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    chain = prompt | safe_model | StrOutputParser()
    events: list[dict[str, Any]] = []
    async for event in chain.astream_events({"question": "Who can help?"}, version="v2"):
        events.append(dict(event))
        if event["event"] == "on_chat_model_end":
            report = event["data"]["output"].response_metadata["streamops"]
            print("redacted:", report["sections"]["redact"]["redacted"])
    return events


def main() -> list[dict[str, Any]]:
    """Run the chain; return its events."""
    events = asyncio.run(amain())
    print("answer:", events[-1]["data"]["output"])
    return events


if __name__ == "__main__":
    main()
