"""What the providers' wire formats say beyond their chunks: error bodies by HTTP status.

Shared by the gateway (which answers in each wire's own error shape) and the
fake server of :mod:`streamops.testing` (which plays the provider).

>>> anthropic_error(429, "slow down")
{'type': 'error', 'error': {'type': 'rate_limit_error', 'message': 'slow down'}}
"""

from __future__ import annotations

from typing import Any

__all__ = ("ANTHROPIC_ERROR_TYPES", "anthropic_error")

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""Anthropic's ``error.type`` for each HTTP status it documents (others: ``api_error``)."""


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """The body Anthropic's API answers with ``status``: ``{"type": "error", "error": ...}``."""
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}
