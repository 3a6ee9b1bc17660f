"""aiostream interop: ``xs | op`` on an aiostream stream gives an aiostream stream.

aiostream's ``Stream.__or__(func)`` returns ``func(self)``, so an operator
receives the aiostream stream as its source. This adapter iterates it inside
its ``stream()`` context (aiostream warns otherwise) and wraps the result back
with ``aiostream.stream.iterate`` so it chains with ``aiostream.pipe.*``.
aiostream is an optional extra (GPL-3.0-or-later); this module never imports
it unless such a stream is actually passed in.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from ._core import Operator, register_source_adapter


def _is_aiostream(source: Any) -> bool:
    return type(source).__module__.startswith("aiostream.")


async def _iterate_in_context(source: Any) -> AsyncGenerator[Any, None]:
    async with source.stream() as streamer:
        async for item in streamer:
            yield item


def _adapt(op: Operator[Any, Any], source: Any, options: dict[str, Any]) -> Any:
    from aiostream import stream  # optional extra, present since source is one

    return stream.iterate(op(_iterate_in_context(source), **options))


register_source_adapter(_is_aiostream, _adapt)
