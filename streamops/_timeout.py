"""Timeouts and cancellation (issue 6): being built; exports nothing yet."""

from __future__ import annotations

__all__: list[str] = []
