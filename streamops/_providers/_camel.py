"""Reading and writing fields of Google's SDK objects and of their camelCase wire JSON.

The ``google-genai`` types name fields in snake_case (``finish_reason``) and
their JSON on the wire in camelCase (``finishReason``); a lens reads either
with the SDK's name.
"""

from __future__ import annotations

import functools
from typing import Any

from ._lenses import _get

__all__ = ("camel", "field", "wire_key")


@functools.cache
def camel(name: str) -> str:
    """The wire JSON's name of the SDK field ``name``.

    >>> camel("partial_args"), camel("text")
    ('partialArgs', 'text')
    """
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def field(obj: Any, name: str) -> Any:
    """Field ``name`` of an SDK object, or of its wire-format dict in either spelling.

    >>> field({"willContinue": True}, "will_continue")
    True
    """
    value = _get(obj, name)
    if value is None and type(obj) is dict:
        value = obj.get(camel(name))
    return value


def wire_key(obj: Any, name: str) -> str:
    """The key to write field ``name`` under in ``obj``: camelCase in a wire dict
    unless it already has the SDK's name.

    >>> wire_key({"finishReason": "STOP"}, "finish_reason")
    'finishReason'
    >>> wire_key({"finish_reason": "STOP"}, "finish_reason")
    'finish_reason'
    """
    if type(obj) is dict and name not in obj:
        return camel(name)
    return name
