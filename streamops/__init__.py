"""streamops: composable operators that enforce policies on LLM output streams.

>>> import streamops as so
>>> op = so.redact() | so.budget(max_tokens=50)
>>> "".join(op(["mail ann@exa", "mple.com"]))
'mail [EMAIL]'

This module holds the operators, their reports and every error. Two more
public modules: :mod:`streamops.testing` (the fake model, virtual time, the
fake OpenAI/Anthropic server, the pytest plugin) and :mod:`streamops.lowlevel`
(the extension API: processors, stages, lenses). Everything else
(``streamops._*``) is private and may change in any release.
"""

from __future__ import annotations

import warnings
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any

from ._budget._ledger import (
    Ledger,
    MemoryLedger,
    RedisLedger,
    Reservation,
)
from ._budget._pricing import (
    DEFAULT_PRICES,
    ModelPrice,
    PriceTable,
)
from ._budget._processor import (
    BudgetUsage,
    ProviderUsage,
    budget,
)
from ._budget._tokens import (
    TokenCounter,
    count_tokens,
    get_encoding,
    resolve_encoding,
)
from ._collect import (
    Collected,
    EventLogger,
    StreamMetrics,
    collect,
    events,
)
from ._core._driver import AsyncStream, Operator, SyncStream, identity
from ._core._errors import (
    AsyncioRequiredError,
    BudgetExceededError,
    ChunkTypeError,
    EncodingUnavailableError,
    FakeModelExhaustedError,
    FakeUpstreamError,
    JSONStreamError,
    JSONValidationError,
    LedgerUnavailableError,
    LensError,
    MissingExtraError,
    PolicyError,
    PricingError,
    RedactPatternError,
    RedactTimeoutError,
    SideEffectError,
    SSEError,
    StreamInterruptedError,
    StreamOpsError,
    StreamTimeout,
    TeeOverflowError,
    ToolCallTruncatedError,
)
from ._core._public import fixup_module_metadata
from ._core._report import (
    ChunkEvent,
    Event,
    StopReason,
    StreamReport,
)
from ._json._items import JSONItem
from ._json._operator import (
    JSONReport,
    parse_json,
)
from ._json._parser import (
    JSONDelta,
)
from ._json._tools import (
    ToolCallUpdate,
    parse_tool_calls,
)
from ._policy._policy import (
    PIPELINE_ORDER,
    BudgetPolicy,
    CollectPolicy,
    CustomPattern,
    EventsPolicy,
    JSONPolicy,
    Policy,
    RedactPolicy,
    RetryPolicy,
    TimeoutPolicy,
    load_policy,
    preset_names,
)

# Imported for what they register (never importing aiostream, langchain or litellm):
# the aiostream source adapter, the advice for astream_events() events, the LiteLLM lens.
from ._providers import _aiostream, _langchain_events, _litellm
from ._providers._gemini import GeminiLens
from ._providers._lenses import (
    AnthropicLens,
    BytesLens,
    LangChainLens,
    OpenAIChatLens,
    OpenAIResponsesLens,
)
from ._providers._sse import (
    SSEDecoder,
    SSEEvent,
    sse_decode,
    sse_format,
    sse_json,
    sse_response,
    to_sse,
)
from ._providers._websocket import GeminiLiveLens, to_websocket
from ._redact._filter import (
    KeyedHash,
    RedactMatch,
    RedactReport,
    redact,
)
from ._redact._patterns import (
    PatternSpec,
    builtin_patterns,
    card_valid,
    iban_valid,
    luhn_valid,
)
from ._retry import (
    Backoff,
    RetryAttempt,
    RetryReport,
    is_retryable,
    retry,
)
from ._tee import (
    AsyncTeeBranch,
    TeeBranch,
    tee,
)
from ._timeout import (
    CancelToken,
    cancellable,
    timeout,
)
from .testing._fake import (
    FakeStreamingModel,
)

try:
    __version__: str = _dist_version("streamops")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"

__all__ = (
    "DEFAULT_PRICES",
    "PIPELINE_ORDER",
    "AnthropicLens",
    "AsyncStream",
    "AsyncTeeBranch",
    "AsyncioRequiredError",
    "Backoff",
    "BudgetExceededError",
    "BudgetPolicy",
    "BudgetUsage",
    "BytesLens",
    "CancelToken",
    "ChunkEvent",
    "ChunkTypeError",
    "CollectPolicy",
    "Collected",
    "CustomPattern",
    "EncodingUnavailableError",
    "Event",
    "EventLogger",
    "EventsPolicy",
    "FakeModelExhaustedError",
    "FakeStreamingModel",
    "FakeUpstreamError",
    "GeminiLens",
    "GeminiLiveLens",
    "JSONDelta",
    "JSONItem",
    "JSONPolicy",
    "JSONReport",
    "JSONStreamError",
    "JSONValidationError",
    "KeyedHash",
    "LangChainLens",
    "Ledger",
    "LedgerUnavailableError",
    "LensError",
    "MemoryLedger",
    "MissingExtraError",
    "ModelPrice",
    "OpenAIChatLens",
    "OpenAIResponsesLens",
    "Operator",
    "PatternSpec",
    "Policy",
    "PolicyError",
    "PriceTable",
    "PricingError",
    "ProviderUsage",
    "RedactMatch",
    "RedactPatternError",
    "RedactPolicy",
    "RedactReport",
    "RedactTimeoutError",
    "RedisLedger",
    "Reservation",
    "RetryAttempt",
    "RetryPolicy",
    "RetryReport",
    "SSEDecoder",
    "SSEError",
    "SSEEvent",
    "SideEffectError",
    "StopReason",
    "StreamInterruptedError",
    "StreamMetrics",
    "StreamOpsError",
    "StreamReport",
    "StreamTimeout",
    "SyncStream",
    "TeeBranch",
    "TeeOverflowError",
    "TimeoutPolicy",
    "TokenCounter",
    "ToolCallTruncatedError",
    "ToolCallUpdate",
    "budget",
    "builtin_patterns",
    "cancellable",
    "card_valid",
    "collect",
    "count_tokens",
    "events",
    "get_encoding",
    "iban_valid",
    "identity",
    "is_retryable",
    "load_policy",
    "luhn_valid",
    "parse_json",
    "parse_tool_calls",
    "preset_names",
    "redact",
    "resolve_encoding",
    "retry",
    "sse_decode",
    "sse_format",
    "sse_json",
    "sse_response",
    "tee",
    "timeout",
    "to_sse",
    "to_websocket",
)

fixup_module_metadata(__name__, globals(), __all__)
del _aiostream, _langchain_events, _litellm

# Names of 0.1 that moved or were renamed: they still work for one release and
# warn. (module, name) is where the name lives now.
_DEPRECATED: dict[str, tuple[str, str]] = {
    "BudgetExceeded": ("streamops", "BudgetExceededError"),
    "EncodingUnavailable": ("streamops", "EncodingUnavailableError"),
    "FakeModelExhausted": ("streamops", "FakeModelExhaustedError"),
    "LedgerUnavailable": ("streamops", "LedgerUnavailableError"),
    "RedactTimeout": ("streamops", "RedactTimeoutError"),
    "StreamInterrupted": ("streamops", "StreamInterruptedError"),
    "Chunking": ("streamops.testing", "Chunking"),
    "FakeCall": ("streamops.testing", "FakeCall"),
    "FakeOpenAIServer": ("streamops.testing", "FakeOpenAIServer"),
    "FakeReply": ("streamops.testing", "FakeReply"),
    "Fault": ("streamops.testing", "Fault"),
    "serve": ("streamops.testing", "serve"),
    "Lens": ("streamops.lowlevel", "Lens"),
    "Processor": ("streamops.lowlevel", "Processor"),
    "ProcessorStage": ("streamops.lowlevel", "ProcessorStage"),
    "ShellStage": ("streamops.lowlevel", "ShellStage"),
    "Stage": ("streamops.lowlevel", "Stage"),
    "find_lens": ("streamops.lowlevel", "find_lens"),
    "register_lens": ("streamops.lowlevel", "register_lens"),
}


def __getattr__(name: str) -> Any:
    try:
        module, new = _DEPRECATED[name]
    except KeyError:
        raise AttributeError(f"module 'streamops' has no attribute {name!r}") from None
    warnings.warn(
        f"streamops.{name} is deprecated and will be removed in 0.3; use {module}.{new}",
        DeprecationWarning,
        stacklevel=2,
    )
    import importlib

    return getattr(importlib.import_module(module), new)
