"""Collector, metrics and events (issue 8): being built; exports nothing yet."""

from __future__ import annotations

__all__: list[str] = []
