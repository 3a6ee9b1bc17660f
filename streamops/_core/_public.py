"""Make public names show their public path (``streamops.redact``, not a private module).

Each public module (``streamops``, ``streamops.lowlevel``, ``streamops.testing``)
calls :func:`fixup_module_metadata` on its ``__all__`` after importing the
names from the private modules that define them, as trio's ``_util.py`` does:
reprs, tracebacks, ``help()`` and pickles then name the path users import
from. Methods and nested classes follow their class, so doctest still finds
them (it collects a class's doctests in the module its ``__module__`` names).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _is_private(module: str) -> bool:
    return module.startswith("streamops.") and any(
        part.startswith("_") for part in module.split(".")[1:]
    )


def fixup_module_metadata(
    module_name: str, namespace: dict[str, Any], names: Iterable[str]
) -> None:
    """Set ``__module__`` of each name (and its methods) defined privately to ``module_name``."""
    seen: set[int] = set()

    def fix(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str) or not _is_private(module):
            return
        try:
            obj.__module__ = module_name
        except (AttributeError, TypeError):  # builtins and slots that refuse it
            return
        if isinstance(obj, type):
            for value in list(vars(obj).values()):
                fix(value)

    for name in names:
        fix(namespace[name])
