"""A LiteLLM guardrail with chunk-exact redaction, run against a local fake server.

``StreamOpsGuardrail`` is a LiteLLM ``CustomGuardrail``: in a LiteLLM proxy it
goes in ``config.yaml`` (see ``docs/litellm.md``). Here its streaming hook is
called directly on a real ``litellm.acompletion(..., stream=True)`` response
from streamops' fake OpenAI server, which sends the reply one character per
chunk: a guardrail that checks chunks one at a time never sees the address.

Run: ``python examples/litellm_guardrail.py``
"""

from __future__ import annotations

import asyncio

import streamops as so
from streamops.litellm import StreamOpsGuardrail
from streamops.testing import FakeOpenAIServer, FakeStreamingModel

REPLY = "Write to ann.lee@example.com today, please."


async def amain() -> str:
    import litellm  # after streamops.litellm: it keeps litellm's price map offline

    guard = StreamOpsGuardrail(so.redact())
    model = FakeStreamingModel(REPLY, chunking="char", format="openai-dict")
    with FakeOpenAIServer(model) as server:
        response = await litellm.acompletion(
            model="openai/gpt-4o",
            messages=[{"role": "user", "content": "Who do I write to?"}],
            api_base=server.base_url,
            api_key="sk-test",
            stream=True,
        )
        text = []
        async for chunk in guard.async_post_call_streaming_iterator_hook(
            user_api_key_dict=None, response=response, request_data={}
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
    return "".join(text)


def main() -> str:
    """Run the example; return the text the client received."""
    text = asyncio.run(amain())
    print(text)
    return text


if __name__ == "__main__":
    main()
