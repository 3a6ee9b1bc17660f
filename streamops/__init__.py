"""streamops: composable operators that enforce policies on LLM output streams.

>>> import streamops as so
>>> op = so.identity() | so.identity()
>>> list(op(["Hello, ", "world"]))
['Hello, ', 'world']
"""

from __future__ import annotations

from . import (
    _aiostream,  # registers the aiostream source adapter (it never imports aiostream itself)
    _budget,
    _collect,
    _core,
    _errors,
    _fake,
    _json,
    _lenses,
    _policy,
    _redact,
    _report,
    _retry,
    _server,
    _sse,
    _tee,
    _timeout,
)
from ._budget import *  # noqa: F403
from ._collect import *  # noqa: F403
from ._core import *  # noqa: F403
from ._errors import *  # noqa: F403
from ._fake import *  # noqa: F403
from ._json import *  # noqa: F403
from ._lenses import *  # noqa: F403
from ._policy import *  # noqa: F403
from ._redact import *  # noqa: F403
from ._report import *  # noqa: F403
from ._retry import *  # noqa: F403
from ._server import *  # noqa: F403
from ._sse import *  # noqa: F403
from ._tee import *  # noqa: F403
from ._timeout import *  # noqa: F403

__version__ = "0.1.0"

# Each family module owns its public names; the package re-exports them all.
__all__: list[str] = []
__all__ += _core.__all__
__all__ += _errors.__all__
__all__ += _report.__all__
__all__ += _fake.__all__
__all__ += _redact.__all__
__all__ += _budget.__all__
__all__ += _timeout.__all__
__all__ += _json.__all__
__all__ += _tee.__all__
__all__ += _collect.__all__
__all__ += _retry.__all__
__all__ += _policy.__all__
__all__ += _lenses.__all__
__all__ += _sse.__all__
__all__ += _server.__all__

del _aiostream
