"""Optional dependencies: import one at the point of use, or say which extra installs it.

streamops keeps its install small (pydantic, regex, tiktoken); integrations
need more. :func:`require` imports the module an integration needs and, when
it is missing, raises :class:`~streamops.MissingExtraError` naming the
``pip install 'streamops[extra]'`` that provides it (httpx does the same for
``httpx[cli]``). A module that is installed but fails to import for another
reason raises its own error unchanged.

>>> require("json", extra="none", feature="parsing").__name__
'json'
>>> require("no_such_module_xyz", extra="gateway", feature="serve")
Traceback (most recent call last):
...
streamops.MissingExtraError: serve needs no_such_module_xyz: pip install 'streamops[gateway]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import MissingExtraError

__all__ = ("raise_missing", "require")


def require(module: str, /, *, extra: str, feature: str) -> ModuleType:
    """Import ``module``; if it is not installed, raise :class:`MissingExtraError`."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise_missing(exc, module, extra=extra, feature=feature)
        raise


def raise_missing(exc: ModuleNotFoundError, module: str, /, *, extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` if ``exc`` says ``module`` is not installed.

    For an ``import`` statement at the top of an integration's module, in its
    ``except ModuleNotFoundError`` (followed by a bare ``raise``): a module
    that is there but misses one of *its* dependencies raises its own error.
    """
    top = module.partition(".")[0]
    if exc.name is None or exc.name.partition(".")[0] == top:
        raise MissingExtraError(feature, module, extra) from exc
