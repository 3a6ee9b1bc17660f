"""Provider-reported token usage: read from any provider chunk, recorded in the report.

A lens calls :func:`record_usage` on the chunks where its provider reports
usage (OpenAI's usage chunk, Anthropic's ``message_start``/``message_delta``,
Responses' final event, LangChain's ``usage_metadata``, Gemini's
``usage_metadata``). The counts go to the report's ``"usage"`` section (a
:class:`~streamops.ProviderUsage`, merged as they arrive: Anthropic gives the
prompt first and the completion last) and, when the stream has a budget, to
its :meth:`~streamops.BudgetUsage.record_provider_usage`: the budget then
reports both counts, whether they differ, and the cost of the provider's.
"""

from __future__ import annotations

from typing import Any

__all__ = ("normalize_usage", "record_usage")

# Field names of the prompt, completion and total counts, by provider.
_PROMPT = ("prompt_tokens", "input_tokens", "prompt_token_count", "promptTokenCount")
_COMPLETION = ("completion_tokens", "output_tokens")
_TOTAL = ("total_tokens", "total_token_count", "totalTokenCount")
# Gemini bills thoughts as output tokens besides the candidates'.
_GEMINI_OUTPUT = (
    ("candidates_token_count", "thoughts_token_count"),
    ("candidatesTokenCount", "thoughtsTokenCount"),
)


def _int(data: dict[str, Any], names: tuple[str, ...]) -> int | None:
    for name in names:
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def normalize_usage(data: Any) -> dict[str, int | None] | None:
    """Return ``{prompt_tokens, completion_tokens, total_tokens}`` from a provider's usage.

    ``data`` is a usage dict (or an SDK usage object) of any provider; ``None``
    when it holds no count.

    >>> normalize_usage({"input_tokens": 5, "output_tokens": 7})
    {'prompt_tokens': 5, 'completion_tokens': 7, 'total_tokens': None}
    >>> normalize_usage({"promptTokenCount": 3, "candidatesTokenCount": 4, "thoughtsTokenCount": 2})
    {'prompt_tokens': 3, 'completion_tokens': 6, 'total_tokens': None}
    """
    if data is None:
        return None
    if not isinstance(data, dict):
        dump = getattr(data, "model_dump", None)
        if dump is None:
            return None
        data = dump(exclude_none=True)
    completion = _int(data, _COMPLETION)
    if completion is None:
        for names in _GEMINI_OUTPUT:
            parts = [data.get(n) for n in names]
            if isinstance(parts[0], int):
                completion = sum(p for p in parts if isinstance(p, int))
                break
    found = {
        "prompt_tokens": _int(data, _PROMPT),
        "completion_tokens": completion,
        "total_tokens": _int(data, _TOTAL),
    }
    return found if any(v is not None for v in found.values()) else None


def record_usage(channels: Any, usage: Any) -> None:
    """Record the provider usage ``usage`` in the report of the stream ``channels`` belong to."""
    counts = normalize_usage(usage)
    if counts is None:
        return
    chain = getattr(channels, "_main", None)
    report = getattr(chain, "report", None)
    if report is None:
        return
    from .._budget._processor import (
        ProviderUsage,
    )  # (providers import the budget, never the reverse)

    section = report.section("usage", ProviderUsage)
    for name, value in counts.items():
        if value is not None:
            setattr(section, name, value)
    budget = report.sections.get("budget")
    record = getattr(budget, "record_provider_usage", None)
    if record is not None:
        record(
            prompt_tokens=section.prompt_tokens,
            completion_tokens=section.completion_tokens,
            total_tokens=section.total_tokens,
        )
