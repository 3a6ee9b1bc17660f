"""Public streamops names the gateway needs, under either spelling.

The error classes are being renamed to end in ``Error`` (ruff N818); the
gateway accepts both spellings until the rename has landed everywhere.
"""

from __future__ import annotations

from typing import Any

import streamops as so

__all__ = ["BudgetExceeded", "LedgerUnavailable", "StreamInterrupted"]


def _public(*names: str) -> Any:
    for name in names:
        found = getattr(so, name, None)
        if found is not None:
            return found
    raise ImportError(f"streamops has none of {names}")


BudgetExceeded: type[Exception] = _public("BudgetExceededError", "BudgetExceeded")
LedgerUnavailable: type[Exception] = _public("LedgerUnavailableError", "LedgerUnavailable")
StreamInterrupted: type[Exception] = _public("StreamInterruptedError", "StreamInterrupted")
