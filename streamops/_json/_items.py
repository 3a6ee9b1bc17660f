"""Element streaming: ``parse_json(items="/results/*")`` yields each element as it closes.

The parser runs in delta mode with live containers: a ``done`` event whose
path matches the selector is an element; it is validated (with ``model``),
yielded as a :class:`JSONItem`, and then removed from its container in the
parser's tree, so memory stays bounded by the largest element, not the
number of elements (ijson's ``items(prefix)`` keeps the same promise).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .._core._errors import JSONValidationError
from ._models import error_pointer

__all__ = ("JSONItem", "check_selector")


@dataclass(frozen=True, slots=True)
class JSONItem:
    """One element of the selected container, yielded by ``parse_json(items=...)`` once complete.

    ``path`` is its JSON Pointer in the document, ``index`` its position in
    its container (an array index, or the how-many-th member of an object),
    ``value`` the element (validated by ``model`` when given).

    >>> import streamops as so
    >>> chunks = ['{"results": [{"id"', ': 1}, {"id": 2}', "]}"]
    >>> for item in so.parse_json(items="/results/*")(chunks):
    ...     print(item.index, item.path, item.value)
    0 /results/0 {'id': 1}
    1 /results/1 {'id': 2}
    """

    path: str
    index: int
    value: Any


def check_selector(items: object) -> tuple[str, ...]:
    """Split a selector (a JSON Pointer whose last step is ``*``) into its steps, or raise.

    Steps keep their RFC 6901 escapes (``~0`` for ``~``, ``~1`` for ``/``), as
    the parser's paths do; a ``~`` followed by anything else is not a JSON
    Pointer and is refused. A ``*`` step matches any key or index, in the
    middle too (in RFC 6901 it would be the literal key ``*``).

    >>> check_selector("/results/*/tags/*")
    ('results', '*', 'tags', '*')
    >>> check_selector("/a~2b/*")
    Traceback (most recent call last):
    ...
    ValueError: items: '~' must be followed by '0' (for '~') or '1' (for '/') ... got '/a~2b/*'
    """
    if not isinstance(items, str):
        raise TypeError(f"items must be a JSON Pointer string such as '/results/*', got {items!r}")
    if not items.startswith("/") or not items.endswith("/*"):
        raise ValueError(
            f"items must be a JSON Pointer to the elements of a container, ending in '/*'"
            f" (e.g. '/results/*' or '/*' for a top-level array), got {items!r}"
        )
    if _BAD_ESCAPE.search(items):
        raise ValueError(
            "items: '~' must be followed by '0' (for '~') or '1' (for '/') in a JSON Pointer"
            f" (RFC 6901), got {items!r}"
        )
    return tuple(items.split("/")[1:])


_BAD_ESCAPE = re.compile(r"~(?![01])")


class _ItemStream:
    """One stream's element selection: match ``done`` events, validate, prune the tree."""

    __slots__ = ("_adapter", "_depth", "_parents", "_steps")

    def __init__(self, steps: tuple[str, ...], adapter: TypeAdapter[Any] | None) -> None:
        self._steps = steps
        self._depth = len(steps)
        self._adapter = adapter
        # Live parent containers seen open: path -> [container, elements yielded, not pruned]
        self._parents: dict[str, list[Any]] = {}

    def _matches(self, path: str, depth: int) -> bool:
        """True if ``path`` (``depth`` steps deep) matches the selector's first steps."""
        if path.count("/") != depth:
            return False
        steps = self._steps
        return all(s in ("*", p) for s, p in zip(steps, path.split("/")[1:], strict=False))

    def events(self, events: list[Any], offset: int) -> list[JSONItem]:
        """The elements completed by one chunk's events, in document order."""
        out: list[JSONItem] = []
        depth = self._depth
        n = len(events)
        i = 0
        while i < n:
            op, path, value = events[i]
            i += 1
            if op == "set" and i < n and events[i].op == "done" and events[i].path == path:
                # Complete within one chunk: its elements made no events of their own.
                i += 1
                d = path.count("/")
                if d == depth:
                    if self._matches(path, depth):
                        out.append(self._element(path, value, offset))
                elif d < depth and type(value) in (dict, list) and self._matches(path, d):
                    self._extract(path, value, d, offset, out)
                continue
            if op == "set":
                if type(value) in (dict, list) and self._matches(path, depth - 1):
                    self._parents[path] = [value, 0, []]
            elif op == "done":
                if self._matches(path, depth):
                    out.append(self._element(path, value, offset))
                elif type(value) in (dict, list):
                    self._parents.pop(path, None)
        self._prune()
        return out

    def _element(self, path: str, value: Any, offset: int) -> JSONItem:
        cut = path.rfind("/")
        parent = self._parents.get(path[:cut])
        index = 0
        if parent is not None:
            index = parent[1]
            parent[1] += 1
            parent[2].append(path[cut + 1 :])
        return JSONItem(path, index, self._validate(path, value, offset))

    def _extract(self, path: str, value: Any, d: int, offset: int, out: list[JSONItem]) -> None:
        """The matching elements inside a value that arrived whole (``d`` steps deep)."""
        step = self._steps[d]
        if type(value) is dict:
            members = list(value.items())
        elif type(value) is list:
            members = [(str(k), v) for k, v in enumerate(value)]
        else:
            return
        last = d + 1 == self._depth
        for index, (key, member) in enumerate(members):
            esc = key.replace("~", "~0").replace("/", "~1")
            if step not in ("*", esc):
                continue
            sub = f"{path}/{esc}"
            if last:
                out.append(JSONItem(sub, index, self._validate(sub, member, offset)))
            else:
                self._extract(sub, member, d + 1, offset, out)

    def _prune(self) -> None:
        for entry in self._parents.values():
            cont, _, done = entry
            if not done:
                continue
            if type(cont) is list:
                del cont[: len(done)]
            else:
                for key in done:
                    cont.pop(key.replace("~1", "/").replace("~0", "~"), None)
            entry[2] = []

    def _validate(self, path: str, value: Any, offset: int) -> Any:
        adapter = self._adapter
        if adapter is None:
            return value
        try:
            return adapter.validate_json(json.dumps(value))
        except ValidationError as exc:
            errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
            where = path + error_pointer(errors[0]["loc"], value, errors[0]["type"])
            message = f"invalid element at {where} (offset {offset}): " + "; ".join(
                f"{path}{error_pointer(e['loc'], value, e['type'])}: {e['msg']}" for e in errors[:3]
            )
            raise JSONValidationError(message, path=where, errors=errors, offset=offset) from exc
