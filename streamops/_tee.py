"""Tee: n independent consumers of one upstream, sync or async.

There is no background task: whichever consumer needs an item that is not in
its buffer pulls it from the upstream itself (async: one branch at a time) and appends
it to every other consumer's buffer. Nothing can leak, and the upstream is
pulled exactly once per item.

A branch stops receiving items (it is *deactivated*, so that with
``max_buffer`` and ``on_overflow="wait"`` nobody waits for it any more) when it
ends, is closed, or is garbage collected. The last case needs care in async:
a branch object dropped before it was ever read deactivates in ``__del__``
(there is no generator frame to finalize); one dropped while suspended at a
``yield`` is finalized by the event loop's async-generator hook, whose
``aclose()`` runs the branch's ``finally``, as for any abandoned async
generator. A live branch that is simply never read cannot be told from a
slow one: backpressure waits for it, by design.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Generator
from typing import Any, Generic, Literal, TypeVar, overload

from ._core._errors import StreamOpsError, TeeOverflowError
from ._core._sources import (
    AsyncSource,
    SyncSource,
    _aclose_all,
    _AclosedOnExit,
    _close_all,
    _ClosedOnExit,
    _open_source,
)
from ._core._validate import check_choice, check_int

__all__ = ("AsyncTeeBranch", "TeeBranch", "TeeOverflowError", "tee")

T = TypeVar("T")
Overflow = Literal["wait", "drop_oldest", "error"]
_POLICIES = ("wait", "drop_oldest", "error")


class _Shared:
    """The state the branches of one tee share: buffers, who is still active, the end."""

    __slots__ = (
        "active",
        "buffers",
        "closed",
        "dropped",
        "end",
        "ended",
        "live",
        "max_buffer",
        "overflowed",
        "owner",
        "policy",
        "pulled",
        "pulling",
        "space",
        "started",
        "upstream",
    )

    def __init__(
        self, upstream: Any, n: int, max_buffer: int | None, policy: Overflow, owner: object
    ) -> None:
        self.upstream = upstream
        self.owner = owner  # the source object the iterator came from (an SDK stream)
        self.buffers: list[deque[Any]] = [deque() for _ in range(n)]
        self.active = [True] * n  # still receiving items
        self.started = [False] * n  # the branch's generator has run (async only)
        self.live = n
        self.overflowed = [False] * n
        self.dropped = [0] * n
        self.max_buffer = max_buffer
        self.policy = policy
        self.ended = False
        self.end: BaseException | None = None  # the upstream's error, if it failed
        self.closed = False
        # An async branch pulling sets ``pulling``; the others wait on ``pulled``.
        # A flag rather than an asyncio.Lock: no coroutine call when uncontended.
        self.pulling = False
        self.pulled: asyncio.Event | None = None
        self.space: asyncio.Event | None = None  # set when a full buffer shrank

    def blocker(self, me: int) -> int | None:
        """Return an active branch other than ``me`` whose buffer is full (policy "wait")."""
        limit = self.max_buffer
        if limit is None or self.policy != "wait":
            return None
        for j, buf in enumerate(self.buffers):
            if j != me and self.active[j] and len(buf) >= limit:
                return j
        return None

    def distribute(self, me: int, item: Any) -> None:
        """Append ``item`` to every other active branch, applying the overflow policy."""
        limit = self.max_buffer
        for j, buf in enumerate(self.buffers):
            if j == me or not self.active[j]:
                continue
            if limit is not None and len(buf) >= limit:
                if self.policy == "drop_oldest":
                    buf.popleft()
                    self.dropped[j] += 1
                else:  # "error": that branch is cut off and raises on its next read
                    self.overflowed[j] = True
                    self.deactivate(j)
                    continue
            buf.append(item)

    def fail(self, me: int, exc: BaseException) -> None:
        """Record that the upstream ended with ``exc`` while branch ``me`` pulled it."""
        self.ended = True
        if isinstance(exc, Exception):
            self.end = exc
        else:  # e.g. the puller's task was cancelled: not the other branches' business
            self.end = StreamOpsError(
                f"the tee upstream stopped with {type(exc).__name__} while branch {me} pulled it"
            )

    def deactivate(self, i: int) -> bool:
        """Stop feeding branch ``i``; return True when the upstream must be closed now."""
        if self.active[i]:
            self.active[i] = False
            self.live -= 1
            self.buffers[i].clear()
            if self.space is not None:
                self.space.set()
        if self.live == 0 and not self.closed:
            self.closed = True
            return True
        return False

    def check(self, i: int) -> bool:
        """Raise what branch ``i`` must raise now; return True when it has ended."""
        if self.overflowed[i]:
            limit = self.max_buffer or 0
            raise TeeOverflowError(i, limit, f"fell {limit} items behind the fastest branch")
        if self.ended:
            if self.end is not None:
                raise self.end
            return True
        return False


def _sync_branch(shared: _Shared, i: int) -> Generator[Any, None, None]:
    buf = shared.buffers[i]
    upstream = shared.upstream
    try:
        while True:
            if buf:
                yield buf.popleft()
                continue
            if shared.check(i):
                return
            try:
                item = next(upstream)
            except StopIteration:
                shared.ended = True
                return
            except BaseException as exc:
                shared.fail(i, exc)
                raise
            shared.distribute(i, item)
            yield item
    finally:
        _close_sync(shared, i)


def _to_close(shared: _Shared) -> tuple[object, ...]:
    """The upstream iterator, and the source object too unless it ran to its end."""
    if shared.owner is None or (shared.ended and shared.end is None):
        return (shared.upstream,)
    return (shared.upstream, shared.owner)


def _close_sync(shared: _Shared, i: int) -> None:
    if shared.deactivate(i):
        _close_all(*_to_close(shared))


async def _async_branch(shared: _Shared, i: int) -> AsyncGenerator[Any, None]:
    shared.started[i] = True  # from now on, its finally deactivates it (see the module doc)
    buf = shared.buffers[i]
    upstream = shared.upstream
    try:
        while True:
            if buf:
                item = buf.popleft()
                if shared.space is not None:
                    shared.space.set()
                yield item
                continue
            if shared.check(i):
                return
            if shared.pulling:  # another branch is pulling: its item lands in our buffer
                if shared.pulled is None:
                    shared.pulled = asyncio.Event()
                await shared.pulled.wait()
                continue
            shared.pulling = True
            try:
                while shared.blocker(i) is not None:
                    if shared.space is None:
                        shared.space = asyncio.Event()
                    shared.space.clear()
                    await shared.space.wait()
                try:
                    item = await upstream.__anext__()
                except StopAsyncIteration:
                    shared.ended = True
                    return
                except BaseException as exc:
                    shared.fail(i, exc)
                    raise
                shared.distribute(i, item)
            finally:
                shared.pulling = False
                if shared.pulled is not None:
                    shared.pulled.set()
                    shared.pulled = None
            yield item
    finally:
        await _close_async(shared, i)


async def _close_async(shared: _Shared, i: int) -> None:
    if shared.deactivate(i):
        await _aclose_all(*_to_close(shared))


_closing: set[asyncio.Task[Any]] = set()  # strong references: the loop keeps only weak ones


def _close_dropped(shared: _Shared, i: int) -> None:
    """Deactivate an async branch dropped unread; if it was the last, close the upstream soon.

    ``__del__`` cannot await, so the upstream's ``aclose()`` runs as a task of the
    running loop, as asyncio's own finalizer does for an abandoned async
    generator. With no loop running there is nothing to run it: the upstream
    is left to its own finalizer.
    """
    if not shared.deactivate(i):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    name = "streamops.tee: close the upstream of dropped branches"
    task = loop.create_task(_aclose_all(*_to_close(shared)), name=name)
    _closing.add(task)
    task.add_done_callback(_closed)


def _closed(task: asyncio.Task[Any]) -> None:
    _closing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        task.get_loop().call_exception_handler(
            {
                "message": "streamops.tee: closing the upstream of dropped branches failed",
                "exception": task.exception(),
                "task": task,
            }
        )


class _Branch:
    """What both kinds of branch hold: the shared state, their index, their generator."""

    __slots__ = ("_gen", "_i", "_shared")

    def __init__(self, shared: _Shared, i: int) -> None:
        self._shared = shared
        self._i = i

    @property
    def dropped(self) -> int:
        """How many items this branch lost to the ``drop_oldest`` policy."""
        return self._shared.dropped[self._i]


class TeeBranch(_ClosedOnExit, _Branch, Generic[T]):
    """One consumer of a sync :func:`tee`: an iterator you should close when done.

    ``dropped`` counts the items this branch lost to ``on_overflow="drop_oldest"``.

    >>> a, b = tee(iter("xy"), 2)
    >>> with a, b:
    ...     print(next(a), list(b), list(a))
    x ['x', 'y'] ['y']
    """

    __slots__ = ()

    def __init__(self, shared: _Shared, i: int) -> None:
        super().__init__(shared, i)
        self._gen = _sync_branch(shared, i)

    def __iter__(self) -> TeeBranch[T]:
        return self

    def __next__(self) -> T:
        shared, i = self._shared, self._i
        if shared.active[i] and not shared.buffers[i] and not shared.ended:
            # Checked here, not in the generator: an exception raised inside a
            # generator finishes it, and this branch must stay usable once the
            # other branch has caught up.
            blocker = shared.blocker(i)
            if blocker is not None:
                raise TeeOverflowError(
                    i,
                    shared.max_buffer or 0,
                    f"would wait for branch {blocker}, which is full, and a sync tee cannot"
                    " wait: read that branch first, or raise max_buffer",
                )
        item: T = next(self._gen)
        return item

    def close(self) -> None:
        """Stop this branch; the last branch to close closes the upstream."""
        self._gen.close()
        _close_sync(self._shared, self._i)  # the generator may never have started

    def __del__(self) -> None:
        self.close()


class AsyncTeeBranch(_AclosedOnExit, _Branch, Generic[T]):
    """One consumer of an async :func:`tee`: an async iterator to ``aclose()`` when done.

    ``dropped`` counts the items this branch lost to ``on_overflow="drop_oldest"``.

    >>> import asyncio
    >>> async def source():
    ...     yield 1
    ...     yield 2
    >>> async def main():
    ...     a, b = tee(source(), 2)
    ...     async with a, b:
    ...         return [x async for x in a], [x async for x in b]
    >>> asyncio.run(main())
    ([1, 2], [1, 2])
    """

    __slots__ = ()

    def __init__(self, shared: _Shared, i: int) -> None:
        super().__init__(shared, i)
        self._gen = _async_branch(shared, i)

    def __aiter__(self) -> AsyncTeeBranch[T]:
        return self

    def __anext__(self) -> Any:  # an awaitable of T, exactly as the generator's
        return self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop this branch; the last branch to close closes the upstream."""
        await self._gen.aclose()
        await _close_async(self._shared, self._i)  # the generator may never have started

    def __del__(self) -> None:
        # A started generator is finalized by the event loop (its finally deactivates).
        if not self._shared.started[self._i]:
            _close_dropped(self._shared, self._i)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@overload
def tee(
    source: AsyncSource[T],
    n: int = ...,
    /,
    *,
    max_buffer: int | None = ...,
    on_overflow: Overflow = ...,
) -> tuple[AsyncTeeBranch[T], ...]: ...


@overload
def tee(
    source: SyncSource[T],
    n: int = ...,
    /,
    *,
    max_buffer: int | None = ...,
    on_overflow: Overflow = ...,
) -> tuple[TeeBranch[T], ...]: ...


def tee(
    source: SyncSource[T] | AsyncSource[T],
    n: int = 2,
    /,
    *,
    max_buffer: int | None = None,
    on_overflow: Overflow = "wait",
) -> tuple[TeeBranch[T], ...] | tuple[AsyncTeeBranch[T], ...]:
    """Split one stream into ``n`` independent branches that each see every item in order.

    Works on sync and async iterables. Like :func:`itertools.tee`, buffers are
    unbounded by default (``max_buffer=None``), so any reading order works,
    including reading one branch to its end before the next; the price is
    that the items one branch has not read yet stay in memory. Give
    ``max_buffer`` to bound that: a branch then buffers at most ``max_buffer``
    items it has not read yet, and when it falls that far behind,
    ``on_overflow`` decides:

    - ``"wait"``: backpressure. An async branch that needs a new item waits
      until the slow branch reads, so run the branches concurrently (read one
      after the other, they would wait forever). A branch you will not read
      must be closed (``aclose()``, ``async with``) or dropped: a closed,
      ended or garbage-collected branch is no longer waited for, but one kept
      alive and never read is a slow consumer, and the others wait for it.
      A sync tee cannot wait in one
      thread: the branch that would have to wait raises
      :class:`TeeOverflowError` and stays usable once the slow branch has read.
    - ``"drop_oldest"``: the slow branch loses its oldest buffered item
      (counted in its ``dropped``).
    - ``"error"``: the slow branch raises :class:`TeeOverflowError` on its next
      read and is detached; the others go on.

    The upstream is pulled once per item, by whichever branch needs it first,
    with no background task, and closed exactly once, when the last branch has
    closed, ended or been garbage collected (an async upstream whose last
    branches were dropped unread is closed by a short task of the running
    loop, as asyncio closes an abandoned async generator). A branch closing
    early or failing does not stop the others; an upstream error is raised by
    every branch once it has read the items before it. If the task pulling for
    an async tee is cancelled, the upstream sees the cancellation, as it would
    without a tee, and the other branches then raise
    :class:`~streamops.StreamOpsError`. Not thread-safe.

    >>> import streamops as so
    >>> user, log = so.tee(["Hel", "lo"], 2)
    >>> list(user), "".join(log)
    (['Hel', 'lo'], 'Hello')
    >>> fast, slow = so.tee(range(5), 2, max_buffer=2)
    >>> next(fast), next(fast)
    (0, 1)
    >>> next(fast)
    Traceback (most recent call last):
    ...
    streamops.TeeOverflowError: tee branch 0: would wait for branch 1, ...
    >>> next(slow), next(slow)  # the slow branch catches up...
    (0, 1)
    >>> list(zip(fast, slow))  # ...and the fast one reads on, nothing lost
    [(2, 2), (3, 3), (4, 4)]
    """
    if isinstance(source, (str, bytes, bytearray)):
        raise TypeError(
            f"expected an iterable of chunks, got a bare {type(source).__name__}; wrap it: [text]"
        )
    check_int("tee(n)", n, least=1)
    if max_buffer is not None:
        check_int("tee(max_buffer=...)", max_buffer, least=1)
    check_choice("tee(on_overflow=...)", on_overflow, _POLICIES)
    # The same sources as an operator's: an SDK stream object (closed with the
    # last branch), an awaitable request (awaited by the first pull), a factory.
    it, owner, is_async = _open_source(source)
    shared = _Shared(it, n, max_buffer, on_overflow, owner)
    if is_async:
        return tuple(AsyncTeeBranch[T](shared, i) for i in range(n))
    return tuple(TeeBranch[T](shared, i) for i in range(n))
