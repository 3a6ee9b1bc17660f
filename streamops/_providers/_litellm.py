"""The LiteLLM lens: ``ModelResponseStream`` chunks (``litellm.completion(..., stream=True)``).

LiteLLM normalises every provider to OpenAI's chunk shape, so this is the
OpenAI chat lens (content, refusal, ``reasoning_content``, tool-call
arguments, each its own channel) with LiteLLM's one addition: Anthropic-style
``thinking_blocks`` in the delta repeat the reasoning text of the same chunk.
They are a mirror, not a channel: each is rewritten to say what the reasoning
channel released for that chunk (the first block carries it, any others
``""``), so no thinking text goes around the operators. litellm is never
imported to detect a chunk.
"""

from __future__ import annotations

from typing import Any

from ..lowlevel import register_lens
from ._lenses import OpenAIChatLens, _get, _replace

__all__ = ("LiteLLMLens",)


def _is_litellm(chunk: Any) -> bool:
    cls = type(chunk)
    return cls.__name__ == "ModelResponseStream" and cls.__module__.startswith("litellm")


class LiteLLMLens(OpenAIChatLens):
    """Lens for LiteLLM ``ModelResponseStream`` chunks (the OpenAI lens, plus thinking blocks).

    >>> import os, warnings
    >>> _ = os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map fetch
    >>> warnings.filterwarnings("ignore", ".*ReadOnly. qualifier", UserWarning)  # litellm's types
    >>> from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices
    >>> import streamops as so
    >>> def chunk(text, finish=None):
    ...     return ModelResponseStream(choices=[StreamingChoices(delta=Delta(content=text),
    ...                                                          finish_reason=finish)])
    >>> out = list(so.redact(["email"])([chunk("Mail ann@exa"), chunk("mple.com", "stop")]))
    >>> [c.choices[0].delta.content for c in out]
    ['Mail ', '[EMAIL]']
    """

    __slots__ = ()

    @classmethod
    def match(cls, chunk: Any, /) -> LiteLLMLens | None:
        """Return a lens for LiteLLM stream chunks, else ``None``."""
        return cls() if _is_litellm(chunk) else None

    def _process(self, chunk: Any, channels: Any) -> list[Any]:
        out = super()._process(chunk, channels)
        choices = _get(chunk, "choices")
        blocks = _get(_get(choices[0], "delta"), "thinking_blocks") if choices else None
        if not blocks:
            return out
        new = out[-1]
        delta = _get(new.choices[0], "delta")
        released = _get(delta, "reasoning_content") or ""
        mirrored = []
        for n, block in enumerate(blocks):
            if isinstance(block, dict) and isinstance(block.get("thinking"), str):
                block = {**block, "thinking": released if n == 0 else ""}
            mirrored.append(block)
        choice = _replace(new.choices[0], delta=_replace(delta, thinking_blocks=mirrored))
        return [*out[:-1], _replace(new, choices=[choice, *new.choices[1:]])]


register_lens(LiteLLMLens.match)
