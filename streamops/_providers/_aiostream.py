"""aiostream interop: ``xs | op`` on an aiostream stream gives an aiostream stream.

aiostream's ``Stream.__or__(func)`` returns ``func(self)``, so an operator
receives the aiostream stream as its source. This adapter iterates it inside
its ``stream()`` context (aiostream warns otherwise) and wraps the result back
with ``aiostream.stream.iterate`` so it chains with ``aiostream.pipe.*``.
Like any aiostream stream, the result can be iterated more than once: each
iteration builds a fresh pipeline (so per-stream state never leaks between
runs); pass ``report=``/``on_event=`` to the operator call to see the report.
aiostream is an optional extra (GPL-3.0-or-later); this module never imports
it unless such a stream is actually passed in.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from .._core._driver import Operator
from .._core._stages import register_source_adapter


def _is_aiostream(source: Any) -> bool:
    # Only aiostream's re-iterable Stream objects (with a stream() context);
    # the Streamer it yields inside that context is a plain async iterator.
    aiostream_core = sys.modules.get("aiostream.core")
    if aiostream_core is None:
        return False
    return isinstance(source, aiostream_core.Stream) and not isinstance(
        source, aiostream_core.Streamer
    )


async def _iterate_in_context(source: Any) -> AsyncGenerator[Any, None]:
    async with source.stream() as streamer:
        async for item in streamer:
            yield item


class _Rerunnable:
    """An async iterable that runs the operator afresh for every iteration."""

    def __init__(self, op: Operator[Any, Any], source: Any, options: dict[str, Any]) -> None:
        self.op = op
        self.source = source
        self.options = options

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.op(_iterate_in_context(self.source), **self.options).__aiter__()


def _adapt(op: Operator[Any, Any], source: Any, options: dict[str, Any]) -> Any:
    from aiostream import stream  # optional extra, present since source is one

    return stream.iterate(_Rerunnable(op, source, options))


register_source_adapter(_is_aiostream, _adapt)
