"""Wrap a Gemini stream (google-genai): answer and thought parts redacted, types kept.

``client.models.generate_content_stream(...)`` yields ``GenerateContentResponse``
objects; the Gemini lens runs each part's text through the operators (thought
summaries in a channel of their own) and gives the same objects back, with
usage and finish reason intact. The fake model's ``format="gemini"`` stands in
for the client here; with a real one, pass ``client.models.generate_content_stream(
model="gemini-2.5-flash", contents=...)`` (or the ``client.aio`` coroutine).

Run: ``python examples/gemini_stream.py``
"""

from __future__ import annotations

from google.genai import types

import streamops as so
from streamops.testing import FakeStreamingModel


def thinking_reply() -> list[types.GenerateContentResponse]:
    """What a thinking model streams: a thought summary first, then the answer."""
    fake = FakeStreamingModel("Your contact is ann.lee@example.com.", format="gemini")
    chunks = list(fake.stream("who?"))
    thought = types.GenerateContentResponse.model_validate(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "The user's mail is ann.lee@example.com", "thought": True}
                        ],
                    }
                }
            ]
        }
    )
    return [thought, *chunks]


def main() -> tuple[str, str]:
    """Run the example; return the answer text and the thought text received."""
    answer: list[str] = []
    thoughts: list[str] = []
    for chunk in so.redact(["email"])(thinking_reply()):
        content = chunk.candidates[0].content if chunk.candidates else None
        for part in (content.parts if content else None) or ():
            if part.text:
                (thoughts if part.thought else answer).append(part.text)
        if chunk.usage_metadata:
            print("usage:", chunk.usage_metadata.total_token_count, "tokens")
    print("".join(answer))
    return "".join(answer), "".join(thoughts)


if __name__ == "__main__":
    main()
