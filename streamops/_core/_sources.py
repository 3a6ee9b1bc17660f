"""What an operator may be called on, and how it is opened and closed.

A source is an iterable, an async iterable, an awaitable of either (an
unawaited SDK call: the wait for response headers then counts as the stream's
first-chunk time) or a zero-argument factory of any of these.
:func:`_open_source` turns it into an iterator plus its *owner* (the SDK stream
object) so that every early end closes the object the provider bills for, not
just the generator an ``__aiter__`` made.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from types import TracebackType
from typing import Any, Self

from ._stages import T

AsyncSource = (
    AsyncIterable[T]
    | Awaitable[AsyncIterable[T] | Iterable[T]]
    | Callable[[], Awaitable[AsyncIterable[T] | Iterable[T]]]
    | Callable[[], AsyncIterable[T]]
)
"""What an operator accepts to give an :class:`AsyncStream`: see ``Operator.__call__``."""
SyncSource = Iterable[T] | Callable[[], Iterable[T]]
"""What an operator accepts to give a :class:`SyncStream`."""


def _close(source: object) -> None:
    """Close a sync iterator or source object (``close()``); nothing if it has none."""
    close = getattr(source, "close", None)
    if close is not None:
        result = close()
        if inspect.iscoroutine(result):  # an async close on a sync-iterated object
            result.close()


async def _aclose(source: object) -> None:
    """Close an async iterator or source object: ``aclose()``, else ``close()`` (awaited)."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    close = getattr(source, "close", None)
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result


class _ClosedOnExit:
    """``with`` support for an object whose ``close()`` stops it (streams, tee branches)."""

    __slots__ = ()
    close: Callable[[], None]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _AclosedOnExit:
    """``async with`` support for an object whose ``aclose()`` stops it."""

    __slots__ = ()
    aclose: Callable[[], Awaitable[None]]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


_CLOSING: set[asyncio.Task[None]] = set()  # closes of dropped streams, kept alive while running


def _close_all(*objs: object) -> None:
    """Close each object in turn (``None`` and objects without ``close`` are skipped)."""
    for obj in objs:
        _close(obj)


async def _aclose_all(*objs: object) -> None:
    """Close each object in turn, the async way (see :func:`_aclose`)."""
    for obj in objs:
        await _aclose(obj)


class _Awaited:
    """The async iterator of a source that must first be awaited (a request in flight).

    The awaitable is awaited at the first pull, inside whatever shells wrap the
    source, so a first-chunk or total limit covers the wait for the response
    headers and cancelling the stream cancels the request. ``aclose`` closes
    what the awaitable gave (iterator and object) unless it was exhausted, or
    the awaitable itself if it never ran (no "never awaited" warning).
    """

    __slots__ = ("_exhausted", "_it", "_obj", "_pending")

    def __init__(self, pending: Any) -> None:
        self._pending: Any = pending
        self._it: AsyncIterator[Any] | None = None
        self._obj: object = None
        self._exhausted = False

    def __aiter__(self) -> _Awaited:
        return self

    async def __anext__(self) -> Any:
        it = self._it
        if it is None:
            pending, self._pending = self._pending, None
            if pending is None:  # closed before it started, or already exhausted
                raise StopAsyncIteration
            obj = await pending
            self._obj = obj
            it = self._it = _async_iter_of(obj)
        try:
            return await it.__anext__()
        except StopAsyncIteration:
            self._exhausted = True
            raise

    def __del__(self) -> None:
        # Dropped before the first pull: close the request that never started
        # (a coroutine left unawaited would warn when collected).
        if inspect.iscoroutine(self._pending):
            self._pending.close()

    async def aclose(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            if inspect.iscoroutine(pending):
                pending.close()
            elif isinstance(pending, asyncio.Future):
                pending.cancel()
        it, self._it = self._it, None
        if it is not None and not self._exhausted:
            await _aclose(it)
            if self._obj is not it:
                await _aclose(self._obj)


async def _iterate_sync(it: Iterator[Any]) -> AsyncGenerator[Any, None]:
    try:
        for item in it:
            yield item
    finally:
        _close(it)


def _async_iter_of(obj: object) -> AsyncIterator[Any]:
    """The async iterator over what an awaitable source gave."""
    if isinstance(obj, (str, bytes, bytearray)):
        raise TypeError(
            f"the awaited source gave a bare {type(obj).__name__}, expected an iterable of chunks"
        )
    if hasattr(obj, "__aiter__"):
        it: AsyncIterator[Any] = obj.__aiter__()
        return it
    if hasattr(obj, "__iter__"):
        return _iterate_sync(iter(obj))
    raise TypeError(
        f"the awaited source gave {type(obj).__name__}, expected an iterable or async"
        " iterable of chunks"
    )


def _open_source(source: Any) -> tuple[Any, object, bool]:
    """Return ``(iterator, owner, is_async)`` for a source; see ``Operator.__call__``.

    ``owner`` is the object to close on an early end besides the iterator
    (``None`` when the iterator is the object itself).
    """
    if isinstance(source, asyncio.Future):  # (a Future also defines __iter__)
        return _Awaited(source), None, True
    if not hasattr(source, "__aiter__") and not hasattr(source, "__iter__"):
        if inspect.isawaitable(source):
            return _Awaited(source), None, True
        if callable(source):
            try:
                inspect.signature(source).bind()
            except TypeError:
                raise TypeError(
                    "a callable source must take no arguments (a factory of the stream),"
                    f" got {source!r}"
                ) from None
            except ValueError:  # no signature (some builtins): just call it
                pass
            source = source()
            if isinstance(source, (str, bytes, bytearray)):
                kind = type(source).__name__
                raise TypeError(
                    f"the source factory returned a bare {kind}, expected an iterable of chunks"
                )
            if inspect.isawaitable(source) and not hasattr(source, "__aiter__"):
                return _Awaited(source), None, True
    if hasattr(source, "__aiter__"):
        it = source.__aiter__()
        return it, (None if it is source else source), True
    if hasattr(source, "__iter__"):
        it = iter(source)
        return it, (None if it is source else source), False
    raise TypeError(
        "expected an iterable or async iterable of chunks, an awaitable giving one, or a"
        f" zero-argument factory, got {type(source).__name__}"
    )
