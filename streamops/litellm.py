"""A LiteLLM proxy guardrail with chunk-exact redaction: :class:`StreamOpsGuardrail`.

LiteLLM's own streaming guardrails look at each chunk alone (a value split
across two SSE chunks passes: LiteLLM issue #41611) or sample every Nth
chunk. :class:`StreamOpsGuardrail` is a LiteLLM ``CustomGuardrail`` whose
``async_post_call_streaming_iterator_hook`` runs the *whole* stream of
``ModelResponseStream`` chunks through a streamops operator: every channel
(content, reasoning, thinking blocks, tool-call arguments) is redacted
exactly, whatever the chunking, and the client still gets LiteLLM chunks.
A budget in the policy cuts the stream with a ``length`` finish; closing
the stream closes the upstream.

Register it in the proxy's ``config.yaml``::

    guardrails:
      - guardrail_name: streamops
        litellm_params:
          guardrail: my_module.guardrail   # an instance: StreamOpsGuardrail(...)
          mode: post_call
          default_on: true

Needs litellm: ``pip install 'streamops[litellm]'``. Importing this module
sets ``LITELLM_LOCAL_MODEL_COST_MAP`` (unless set) so that importing litellm
does not fetch its price map over the network.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from ._core._extras import raise_missing

try:
    from litellm.integrations.custom_guardrail import CustomGuardrail
    from litellm.types.guardrails import GuardrailEventHooks
except ModuleNotFoundError as exc:
    raise_missing(exc, "litellm", extra="litellm", feature="streamops.litellm")
    raise

from ._core._driver import Operator
from ._core._public import fixup_module_metadata
from ._core._report import StreamReport
from ._providers._litellm import LiteLLMLens

__all__ = ("LiteLLMLens", "StreamOpsGuardrail")


class StreamOpsGuardrail(CustomGuardrail):
    """A LiteLLM guardrail that streams every response through a streamops operator.

    ``policy_or_operator`` is an operator (``so.redact() | so.budget(...)``)
    or a :class:`~streamops.Policy`. Streamed responses go through
    :meth:`async_post_call_streaming_iterator_hook` chunk by chunk (held
    text is only a possible secret's prefix); whole responses through
    :meth:`async_post_call_success_hook` (each choice's content, reasoning
    and tool-call arguments). ``on_report`` is called with each stream's
    :class:`~streamops.StreamReport`. Other options go to ``CustomGuardrail``
    (``default_on`` is true and the hook ``post_call`` unless given).

    >>> import streamops as so
    >>> guard = StreamOpsGuardrail(so.redact(["email"]))
    >>> guard.guardrail_name, guard.default_on
    ('streamops', True)
    >>> StreamOpsGuardrail("redact")
    Traceback (most recent call last):
    ...
    TypeError: expected a streamops operator (e.g. so.redact()) or a streamops.Policy, got str
    """

    def __init__(
        self,
        policy_or_operator: Any,
        /,
        *,
        guardrail_name: str = "streamops",
        on_report: Any = None,
        **kwargs: Any,
    ) -> None:
        self.operator = _operator(policy_or_operator)
        if on_report is not None and not callable(on_report):
            raise TypeError(f"on_report must be callable, got {type(on_report).__name__}")
        self.on_report = on_report
        kwargs.setdefault("default_on", True)
        kwargs.setdefault("event_hook", GuardrailEventHooks.post_call)
        super().__init__(guardrail_name=guardrail_name, **kwargs)

    def _done(self, report: StreamReport) -> None:
        if self.on_report is not None:
            self.on_report(report)

    async def async_post_call_streaming_iterator_hook(
        self,
        user_api_key_dict: Any,
        response: AsyncIterator[Any],
        request_data: dict[str, Any],
    ) -> AsyncGenerator[Any, None]:
        """Yield the response's chunks as the operator releases them."""
        stream = self.operator(response)
        async with stream:
            async for chunk in stream:
                yield chunk
        self._done(stream.report)

    async def async_post_call_success_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: Any,
    ) -> Any:
        """Redact a whole (non-streamed) response in place: each choice's message texts."""
        for choice in getattr(response, "choices", None) or ():
            message = getattr(choice, "message", None)
            if message is None:
                continue
            for field in ("content", "reasoning_content"):
                text = getattr(message, field, None)
                if isinstance(text, str) and text:
                    setattr(message, field, self._whole(text))
            blocks = getattr(message, "thinking_blocks", None)
            if blocks:  # they repeat the reasoning: each block's text on its own
                message.thinking_blocks = [
                    {**block, "thinking": self._whole(block["thinking"])}
                    if isinstance(block, dict) and isinstance(block.get("thinking"), str)
                    else block
                    for block in blocks
                ]
            for call in getattr(message, "tool_calls", None) or ():
                function = getattr(call, "function", None)
                args = getattr(function, "arguments", None)
                if function is not None and isinstance(args, str) and args:
                    function.arguments = self._whole(_tool_chunk(args), tool=True)
        return response

    def _whole(self, text: Any, *, tool: bool = False) -> str:
        if not tool:
            stream = self.operator([text])
            out = "".join(stream)
            self._done(stream.report)
            return out
        # Tool arguments are JSON: through the tool channel, as a stream would carry them.
        stream = self.operator([text])
        chunks = list(stream)
        self._done(stream.report)
        return "".join(
            call["function"].get("arguments") or ""
            for c in chunks
            if c["choices"]
            for call in c["choices"][0]["delta"].get("tool_calls") or ()
        )


def _tool_chunk(args: str) -> dict[str, Any]:
    """A one-chunk OpenAI stream carrying tool arguments ``args`` (the lens reads them as JSON)."""
    call = {"index": 0, "function": {"arguments": args}}
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": "tool_calls"}],
    }


def _operator(policy_or_operator: Any) -> Operator[Any, Any]:
    if isinstance(policy_or_operator, Operator):
        return policy_or_operator
    if callable(getattr(policy_or_operator, "build", None)) and hasattr(
        policy_or_operator, "build_input"
    ):
        built: Operator[Any, Any] = policy_or_operator.build()
        return built
    raise TypeError(
        "expected a streamops operator (e.g. so.redact()) or a streamops.Policy,"
        f" got {type(policy_or_operator).__name__}"
    )


fixup_module_metadata(__name__, globals(), __all__)
