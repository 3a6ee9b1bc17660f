"""Retry before side effects (issue 9): being built; exports nothing yet."""

from __future__ import annotations

__all__: list[str] = []
