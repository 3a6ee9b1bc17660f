"""The ``/playground`` page (``--playground``): try a policy on a prompt in the browser."""

from __future__ import annotations

from typing import Any

__all__ = ["routes"]


def routes(gateway: Any) -> list[Any]:
    """The playground's routes (filled in below)."""
    return []
