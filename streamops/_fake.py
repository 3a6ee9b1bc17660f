"""Deterministic fake streaming model (issue 3): being built; exports nothing yet."""

from __future__ import annotations

__all__: list[str] = []
