"""Argument checks shared by the budget family (one wording for every option).

``bool`` is an ``int`` subclass in Python; an option such as ``max_tokens=True``
is a mistake, so every check here refuses it.

>>> check_int("block", 0, least=1)
Traceback (most recent call last):
...
ValueError: block must be a positive int, got 0
"""

from __future__ import annotations

from typing import TypeGuard


def is_int(value: object) -> TypeGuard[int]:
    """Return whether ``value`` is an ``int`` (and not a ``bool``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """Return whether ``value`` is an ``int`` or ``float`` (and not a ``bool``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(name: str, value: object, *, least: int = 0) -> int:
    """Return ``value`` if it is an int of at least ``least``, else raise ``ValueError``."""
    if not is_int(value) or value < least:
        kind = {0: "a non-negative int", 1: "a positive int"}.get(least, f"an int >= {least}")
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def check_number(name: str, value: object, *, least: float = 0) -> float:
    """Return ``value`` if it is a number of at least ``least``, else raise ``ValueError``."""
    if not is_number(value) or value < least:
        kind = "a non-negative number" if least == 0 else f"a number >= {least}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def check_str(name: str, value: object) -> str:
    """Return ``value`` if it is a non-empty ``str``, else raise ``ValueError``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty str, got {value!r}")
    return value
