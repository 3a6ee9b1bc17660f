"""The exception hierarchy: one base, each error also a builtin it refines."""

from __future__ import annotations

from typing import ClassVar

__all__ = ("ChunkTypeError", "StreamOpsError")


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
