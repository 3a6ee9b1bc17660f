"""Test helpers for stream code: a fake model, virtual time, clean-stop checks.

- :class:`FakeStreamingModel` (with :class:`FakeReply`, :class:`Chunking`,
  :class:`Fault`, :class:`FakeCall`): a deterministic stand-in for an LLM.
- :func:`run`, :func:`virtual_time`, :class:`VirtualClock`: asyncio with a
  virtual clock (``looptime``), so delays and timeouts take no real time.
- :func:`assert_closed`: every stream of a fake model was closed (its
  ``finally`` ran) and no task was left behind.

The pytest plugin (installed with streamops) offers them as the fixtures
``fake_model``, ``virtual_clock`` and ``assert_closed``.

>>> import asyncio
>>> from streamops.testing import FakeStreamingModel, assert_closed, run
>>> model = FakeStreamingModel("one two three", delay=30.0)
>>> async def main():
...     stream = model.astream("hi")
...     try:
...         async with asyncio.timeout(45):
...             async for chunk in stream:
...                 pass
...     except TimeoutError:
...         await stream.aclose()
...     assert_closed(model, early=True)
...     return model.last_call.texts
>>> run(main())  # 45 virtual seconds, a few real milliseconds
['one', ' two']
"""

from __future__ import annotations

import asyncio

from .._core._errors import FakeModelExhaustedError, FakeUpstreamError
from .._core._public import fixup_module_metadata
from ._clock import VirtualClock, run, virtual_time
from ._fake import Chunking, FakeCall, FakeReply, FakeStreamingModel, Fault
from ._server import FakeOpenAIServer, ServedRequest, serve

__all__ = (
    "Chunking",
    "FakeCall",
    "FakeModelExhaustedError",
    "FakeOpenAIServer",
    "FakeReply",
    "FakeStreamingModel",
    "FakeUpstreamError",
    "Fault",
    "ServedRequest",
    "VirtualClock",
    "assert_closed",
    "run",
    "serve",
    "virtual_time",
)


def _describe(call: FakeCall) -> str:
    return (
        f"call {call.index} ({call.method}, prompt={call.prompt!r}): pulled {call.pulled}"
        f" of {len(call.planned)} chunks"
    )


def assert_closed(
    *targets: FakeStreamingModel | FakeCall,
    early: bool | None = None,
    tasks: bool = True,
) -> None:
    """Assert that every stream of ``targets`` was closed and nothing is left running.

    For each recorded call (all calls of a model, or the given
    :class:`FakeCall`): a stream that was started must have run its
    ``finally`` (a stream never iterated holds nothing and passes). With
    ``early=True`` every call must have been closed before its natural end
    (e.g. by a budget or a timeout); with ``early=False`` none may have been.
    With ``tasks=True`` (the default) and a running loop, no task other than
    the current one may still be pending. A model that was never called
    fails: the check would prove nothing.

    >>> model = FakeStreamingModel("a b c")
    >>> stream = model.stream()
    >>> next(stream)
    'a'
    >>> assert_closed(model)
    Traceback (most recent call last):
    ...
    AssertionError: stream not closed (its finally has not run): call 0 (stream, prompt=''): pulled 1 of 3 chunks
    >>> stream.close()
    >>> assert_closed(model, early=True)
    """  # noqa: E501  - the doctest output is one long line
    calls: list[FakeCall] = []
    for target in targets:
        if isinstance(target, FakeStreamingModel):
            if not target.calls:
                raise AssertionError(f"{target!r} was never called")
            calls += target.calls
        elif isinstance(target, FakeCall):
            calls.append(target)
        else:
            raise TypeError(
                f"assert_closed takes FakeStreamingModel or FakeCall objects,"
                f" got {type(target).__name__}"
            )
    if not calls:
        raise TypeError("assert_closed needs at least one model or call")
    still_open = [_describe(c) for c in calls if c.open]
    if still_open:
        raise AssertionError(
            "stream not closed (its finally has not run): " + "; ".join(still_open)
        )
    if early is not None:
        wrong = [_describe(c) for c in calls if c.started and c.closed_early is not early]
        if wrong:
            expected = "closed early" if early else "run to its end (or its fault)"
            raise AssertionError(f"expected every stream {expected}: " + "; ".join(wrong))
    if tasks:
        _assert_no_tasks()


def _assert_no_tasks() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop, no tasks
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    if left:
        names = ", ".join(sorted(t.get_name() for t in left))
        raise AssertionError(f"{len(left)} task(s) left running: {names}")


# The errors belong to streamops (they are re-exported here for convenience).
fixup_module_metadata(__name__, globals(), [n for n in __all__ if not n.endswith("Error")])
