"""Sliding-window redaction (issue 4): being built; exports nothing yet."""

from __future__ import annotations

__all__: list[str] = []
