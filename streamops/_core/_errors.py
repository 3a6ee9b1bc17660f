"""The exception hierarchy: one base, each error also a builtin it refines."""

from __future__ import annotations

from typing import ClassVar

__all__ = ("AsyncioRequiredError", "ChunkTypeError", "StreamOpsError")


class StreamOpsError(Exception):
    """Base class of every error streamops raises.

    ``released`` is the text the pipeline had already handed to the consumer
    when the error was raised (``None`` when the stream carries no text), so
    that a caller can show or store the partial answer without tracking it.
    Errors from the wrapped upstream are not wrapped in this class: they pass
    through unchanged.

    >>> try:
    ...     raise StreamOpsError("boom")
    ... except StreamOpsError as exc:
    ...     print(exc, exc.released)
    boom None
    """

    released: str | None

    retryable: ClassVar[bool | None] = None
    """Whether :func:`streamops.retry` may retry after this error by default.

    ``False`` marks a policy decision (budget exhausted, content blocked) that
    a retry must never undo; ``True`` marks a transient failure; ``None`` lets
    the error's builtin type decide (a ``TimeoutError`` is retried).
    """

    def __init__(self, *args: object, released: str | None = None) -> None:
        super().__init__(*args)
        self.released = released


class ChunkTypeError(StreamOpsError, TypeError):
    """Raised when a stream yields a chunk of a type the pipeline cannot handle.

    It names the zero-based index of the offending chunk and its type. It is
    not raised for a bare ``str`` passed where a stream was expected: that is
    a plain ``TypeError`` at call time, before anything is pulled.

    >>> err = ChunkTypeError(3, 42, "str")
    >>> print(err)
    chunk 3 has type int, expected str
    """

    def __init__(self, index: int, chunk: object, expected: str, hint: str = "") -> None:
        message = f"chunk {index} has type {type(chunk).__name__}, expected {expected}"
        if hint:
            message = f"{message}; {hint}"
        super().__init__(message)
        self.index = index
        self.chunk_type = type(chunk)


class AsyncioRequiredError(StreamOpsError, RuntimeError):
    """Raised when an async stream that needs asyncio is pulled outside it.

    :func:`~streamops.timeout` and :func:`~streamops.cancellable` (the loop's
    clock, timer handles, ``Task.cancel()``), :func:`~streamops.retry` (its
    backoff sleeps and shielded side effects) and a budget with a ledger (its
    shielded settlement) run on asyncio; under trio (or with no loop at all)
    the first pull raises this error, after closing the upstream. The text
    operators (redact, budget without a ledger, parse_json, collect) need no
    event loop and work under trio too. It is not raised for sync streams.

    >>> print(AsyncioRequiredError("timeout"))
    timeout() needs asyncio: iterate the stream inside an asyncio task ...
    """

    def __init__(self, name: str) -> None:
        call = name if name.endswith(")") else f"{name}()"
        super().__init__(
            f"{call} needs asyncio: iterate the stream inside an asyncio task (e.g. under"
            " asyncio.run()); no asyncio event loop is running in this thread, and trio or"
            " other event loops are not supported"
        )


def require_asyncio(name: str) -> None:
    """Raise :class:`AsyncioRequiredError` unless an asyncio loop runs in this thread."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise AsyncioRequiredError(name) from None
