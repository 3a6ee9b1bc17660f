"""The extension API: how to write an operator or teach streamops a new chunk type.

Most users never need this module: the operators in :mod:`streamops` cover the
common policies. Import from here to

- write a text operator as a sans-I/O :class:`Processor` (``feed`` /
  ``close`` / ``done``, optionally ``truncate`` and ``fork``) and make it an
  operator with ``Operator(ProcessorStage(...))``; the driver fuses it with
  the other text stages into one loop and runs it over sync and async sources;
- write a time or control-flow operator as a :class:`ShellStage` (an async
  wrapper around a source, as :func:`streamops.timeout` is);
- teach streamops a provider's chunk type: a :class:`Lens` (one text field) or
  a :class:`ChannelLens` (several text channels: content, refusal, reasoning,
  tool arguments), registered with :func:`register_lens` so that every
  operator finds it by itself (:func:`find_lens`).

``docs/architecture.md`` shows where these fit, and CONTRIBUTING.md how to add
an operator or a lens.

>>> import streamops as so
>>> from streamops.lowlevel import ProcessorStage
>>> class Upper:
...     done = False
...     def feed(self, text):
...         return [text.upper()]
...     def close(self):
...         return []
>>> shout = so.Operator(ProcessorStage("shout", lambda report: Upper()))
>>> "".join((so.redact(["hunter2"]) | shout)(["a hun", "ter2 b"]))
'A [REDACTED] B'
"""

from __future__ import annotations

from ._core._public import fixup_module_metadata
from ._core._stages import (
    ALL_CHANNELS,
    ChannelLens,
    Lens,
    LensFactory,
    Masked,
    Processor,
    ProcessorStage,
    ShellStage,
    Stage,
    register_lens,
)
from ._providers._lenses import find_lens

__all__ = (
    "ALL_CHANNELS",
    "ChannelLens",
    "Lens",
    "LensFactory",
    "Masked",
    "Processor",
    "ProcessorStage",
    "ShellStage",
    "Stage",
    "find_lens",
    "register_lens",
)

fixup_module_metadata(__name__, globals(), __all__)
