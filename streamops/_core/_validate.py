"""Argument checks shared by every operator: one wording, one rule for the error type.

Options are validated when an operator is built, never mid-stream. The rule,
the standard library's: a value of the wrong *type* raises ``TypeError``; a
value of the right type that is out of range or not one of the choices raises
``ValueError``. Messages name the option and show the value given.

``bool`` is an ``int`` subclass in Python; an option such as ``max_tokens=True``
is a mistake, so the number checks refuse it (as a ``TypeError``).

>>> check_int("block", 0, least=1)
Traceback (most recent call last):
...
ValueError: block must be a positive int, got 0
>>> check_int("block", "5")
Traceback (most recent call last):
...
TypeError: block must be an int, got str '5'
>>> check_choice("on_timeout", "rise", ("raise", "end"))
Traceback (most recent call last):
...
ValueError: on_timeout must be one of 'raise', 'end', got 'rise' (did you mean 'raise'?)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TypeGuard, TypeVar

__all__ = (
    "check_bool",
    "check_choice",
    "check_int",
    "check_number",
    "check_optional_number",
    "check_str",
    "did_you_mean",
    "is_int",
    "is_number",
)

S = TypeVar("S", bound=str)


def _shown(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def is_int(value: object) -> TypeGuard[int]:
    """Return whether ``value`` is an ``int`` (and not a ``bool``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """Return whether ``value`` is an ``int`` or ``float`` (and not a ``bool``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``.

    >>> did_you_mean("max_tokns", ["max_tokens", "max_cost"])
    " (did you mean 'max_tokens'?)"
    """
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_int(name: str, value: object, *, least: int = 0) -> int:
    """Return ``value`` if it is an int of at least ``least``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {_shown(value)}")
    if value < least:
        kind = {0: "a non-negative int", 1: "a positive int"}.get(least, f"an int >= {least}")
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def check_number(name: str, value: object, *, least: float = 0, positive: bool = False) -> float:
    """Return ``value`` if it is a real number of at least ``least`` (above it if ``positive``)."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {_shown(value)}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < least or (positive and value == least):
        kind = (
            ("a positive number" if least == 0 else f"a number > {least}")
            if positive
            else ("a non-negative number" if least == 0 else f"a number >= {least}")
        )
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def check_optional_number(
    name: str, value: object, *, least: float = 0, positive: bool = False
) -> float | None:
    """Like :func:`check_number`, with ``None`` meaning "no limit"."""
    return None if value is None else check_number(name, value, least=least, positive=positive)


def check_str(name: str, value: object) -> str:
    """Return ``value`` if it is a non-empty ``str``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {_shown(value)}")
    if not value:
        raise ValueError(f"{name} must be a non-empty str")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a ``bool`` (``0``/``1`` are refused: they hide typos)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_shown(value)}")
    return value


def check_choice(name: str, value: object, choices: Iterable[S]) -> S:
    """Return ``value`` if it is one of ``choices``, suggesting the closest one if not."""
    options = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {_shown(value)}")
    for option in options:
        if value == option:
            return option
    listed = ", ".join(repr(o) for o in options)
    raise ValueError(f"{name} must be one of {listed}, got {value!r}{did_you_mean(value, options)}")
