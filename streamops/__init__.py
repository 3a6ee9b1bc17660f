"""streamops: composable operators that enforce policies on LLM output streams.

>>> import streamops as so
>>> op = so.identity() | so.identity()
>>> list(op(["Hello, ", "world"]))
['Hello, ', 'world']
"""

from __future__ import annotations

from . import _aiostream  # registers the aiostream source adapter (no import of aiostream)
from ._core import (
    AsyncStream,
    Lens,
    Operator,
    Processor,
    ProcessorStage,
    ShellStage,
    Stage,
    SyncStream,
    identity,
    register_lens,
)
from ._errors import ChunkTypeError, StreamOpsError
from ._report import Event, StopReason, StreamReport

del _aiostream

__version__ = "0.1.0"

__all__ = (
    "AsyncStream",
    "ChunkTypeError",
    "Event",
    "Lens",
    "Operator",
    "Processor",
    "ProcessorStage",
    "ShellStage",
    "Stage",
    "StopReason",
    "StreamOpsError",
    "StreamReport",
    "SyncStream",
    "identity",
    "register_lens",
)
