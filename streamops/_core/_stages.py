"""The extension points of the driver: processors, stages, lenses and their registries.

A *processor* is a sans-I/O state machine (``feed``/``close``/``done``); a
*stage* says how the driver runs one (:class:`ProcessorStage`) or wraps the
iterator before it (:class:`ShellStage`). A *lens* reads the text out of a
provider's chunk objects and puts the processed text back; integrations
register lens factories and source adapters here, so the driver never imports
a provider. The public names are re-exported by :mod:`streamops.lowlevel`.
"""

from __future__ import annotations

import abc
from collections.abc import (
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
)
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    Protocol,
    TypeVar,
    runtime_checkable,
)

from ._report import StreamReport

if TYPE_CHECKING:
    from ._driver import Operator

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
    "register_lens",
    "register_source_adapter",
)

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")
C = TypeVar("C")
In_contra = TypeVar("In_contra", contravariant=True)


@runtime_checkable
class Processor(Protocol[In_contra, Out]):
    """A sans-I/O stream transformer: the logic of one operator for one stream.

    ``feed`` takes one item and returns what can be released now (possibly
    nothing); ``close`` is called once at the end of input and returns what was
    held back. ``done`` becomes true when the processor will take no more input
    (the driver then stops pulling and closes the upstream). A processor that
    is done may still be closed, and must return ``[]`` from ``feed`` after.

    A processor may also define ``abort()``: it is called instead of ``close``
    when the stream ends before the end of input (the consumer left, an error,
    a cancellation, or a later processor said done), so that it can finalise
    its report section. Its output, if any, is discarded.

    A processor that never becomes done and turns every item into exactly one
    item may also define ``feed_one(item) -> out``: the fused chain then calls
    it instead of ``feed`` (no list per item); ``feed`` must agree with it.
    Likewise one that takes text, never becomes done and turns every ``str``
    into at most one item may define ``feed_opt(text)``, returning that item
    or ``_NOTHING`` (a private sentinel: streamops's own processors use it):
    when it is the only stage of its chain and records no text, the driver's
    loop calls it directly for every chunk whose type is exactly ``str``
    (``feed`` must agree with it, and still takes every other chunk).

    And it may define ``truncate()``: called instead of ``close`` when the input
    ended *by force* (a budget cut before it, a quiet timeout or cancel, a
    provider's ``length``/``content_filter`` finish). It returns what may be
    released of the held text of an incomplete message: redaction masks a live
    partial match there rather than releasing it.
    """

    @property
    def done(self) -> bool:
        """True when no more input is wanted."""
        ...

    def feed(self, item: In_contra, /) -> list[Out]:
        """Take one item; return the items that can be released now."""
        ...

    def close(self) -> list[Out]:
        """Signal end of input; return whatever was still held back."""
        ...


class _Nothing:
    """The type of :data:`_NOTHING`: what ``feed_opt`` returns for "no item"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<nothing>"


_NOTHING = _Nothing()


class Masked(str):
    """Text that replaced a live partial secret when a stream was cut by force.

    A processor's ``truncate()`` returns it for its mask (redaction's label),
    so that later truncating processors in the chain see the text before it
    but not the mask itself: a mask is not the end of the secret they may be
    holding. The driver hands it on as a plain ``str``.
    """

    __slots__ = ()


class _Identity:
    """Pass every item through unchanged (the unit of composition)."""

    __slots__ = ()
    done = False

    def feed(self, item: Any, /) -> list[Any]:
        return [item]

    @staticmethod
    def feed_one(item: Any, /) -> Any:
        return item

    def close(self) -> list[Any]:
        return []


# --------------------------------------------------------------------------
# stages
# --------------------------------------------------------------------------


class Stage:
    """One step of a pipeline. Subclassed by :class:`ProcessorStage` and :class:`ShellStage`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class ProcessorStage(Stage):
    """A stage whose logic is a :class:`Processor`, created fresh per stream.

    ``accepts`` is the chunk type the processor needs (``str`` for text
    operators; ``None`` for anything): items of another type are routed through
    a registered :class:`Lens` or rejected with :class:`ChunkTypeError`.
    ``produces`` is ``str`` when the output is text (so it counts as released
    text and can be put back into provider chunks), ``"same"`` for a
    pass-through of whatever comes in, and ``None`` for values that are not
    text (parsed JSON, say). ``can_stop=False`` promises
    that the processor never becomes ``done``, so the driver need not poll it.
    """

    __slots__ = ("accepts", "can_stop", "channels", "factory", "produces")

    def __init__(
        self,
        name: str,
        factory: Callable[[StreamReport], Processor[Any, Any]],
        *,
        accepts: type | None = str,
        produces: type | Literal["same"] | None = str,
        can_stop: bool = True,
        channels: Iterable[str] | None = None,
    ) -> None:
        super().__init__(name)
        self.factory = factory
        self.accepts = accepts
        self.produces = produces
        self.can_stop = can_stop
        if channels is None:
            # Text operators run on every text channel; pass-through stages
            # (collectors) watch the answer only.
            self.channels = ALL_CHANNELS if accepts is str else frozenset({"content"})
        else:
            self.channels = _check_channels(channels)

    def applies_to(self, kind: str) -> bool:
        """Whether this stage runs on text channels of ``kind`` (see ``ALL_CHANNELS``)."""
        return kind in self.channels


ALL_CHANNELS = frozenset({"content", "refusal", "reasoning", "tool_arguments", "tool_output"})
"""The kinds of text channel a provider chunk may carry.

``content`` is the answer; ``refusal`` a refusal message (OpenAI);
``reasoning`` reasoning or thinking text (OpenAI-compatible
``reasoning_content``, Anthropic thinking, Responses reasoning, LangChain
reasoning blocks); ``tool_arguments`` the JSON arguments of a tool call, whose
string values are what text operators see (so a replacement keeps them valid
JSON); ``tool_output`` what a provider-run tool returned and the provider
shows the client (code-execution output, search results, MCP results,
citations' quoted text), each text a channel that comes whole. Each channel
of a stream (each tool call, each content block) runs through the text
operators with its own state.
"""


def _check_channels(channels: Iterable[str]) -> frozenset[str]:
    if isinstance(channels, str):
        channels = (channels,)
    try:
        kinds = frozenset(channels)
    except TypeError:
        raise TypeError(
            f"channels must be an iterable of channel names, got {type(channels).__name__}"
        ) from None
    unknown = sorted(str(k) for k in kinds - ALL_CHANNELS)
    if unknown:
        raise ValueError(
            f"unknown channel {unknown[0]!r}; channels are {', '.join(sorted(ALL_CHANNELS))}"
        )
    if not kinds:
        raise ValueError("channels must name at least one channel")
    return kinds


class ShellStage(Stage, abc.ABC):
    """A stage about time or control flow that wraps the iterator before it.

    Subclasses implement :meth:`wrap_async` (and :meth:`wrap_sync` when they can
    work on sync streams). A shell must close the iterator it wraps whenever it
    stops early, fails or is cancelled.
    """

    __slots__ = ()

    @abc.abstractmethod
    def wrap_async(self, source: AsyncIterator[Any], report: StreamReport) -> AsyncIterator[Any]:
        """Return an async iterator over ``source`` with this stage applied."""

    def wrap_sync(self, source: Iterator[Any], report: StreamReport) -> Iterator[Any]:
        """Return a sync iterator over ``source``; by default sync is refused."""
        raise TypeError(f"{self.name} works on async streams only; pass an async iterable")


# --------------------------------------------------------------------------
# lenses: reading and rebuilding provider chunk objects
# --------------------------------------------------------------------------


class Lens(Protocol):
    """Per-stream adapter between chunk objects and the text operators see.

    ``unwrap`` extracts the text of one chunk; ``wrap`` rebuilds the outgoing
    chunks for one incoming chunk from the text released while feeding it;
    ``finish`` returns the final chunks given the text released at the end.
    """

    def unwrap(self, chunk: Any, /) -> str:
        """Return the text carried by ``chunk`` (``""`` if none)."""
        ...

    def wrap(self, chunk: Any, texts: list[str], /) -> list[Any]:
        """Return the chunks to emit for ``chunk`` given the released texts."""
        ...

    def finish(self, texts: list[str], /) -> list[Any]:
        """Return the chunks to emit at the end, given the text released then."""
        ...


class ChannelLens(Protocol):
    """A lens for chunks with several text channels (see ``_Channels``).

    ``process`` feeds each text of a chunk to its channel through the
    ``channels`` object it is given and returns the chunks to emit;
    ``finish_channels`` ends the open channels at the end of the stream;
    ``unwrap`` reads the answer text alone (for value operators), ``texts``
    every text of a chunk;
    ``truncated`` is true once the provider said it cut the message.
    """

    truncated: bool

    def unwrap(self, chunk: Any, /) -> str:
        """Return the answer text of ``chunk``."""
        ...

    def texts(self, chunk: Any, /) -> list[str]:
        """Return every text ``chunk`` carries, in all its channels (read only)."""
        ...

    def process(self, chunk: Any, channels: Any, /) -> list[Any]:
        """Return the chunks to emit for ``chunk``."""
        ...

    def finish_channels(self, channels: Any, /) -> list[Any]:
        """Return the chunks to emit at the end of the stream."""
        ...


LensFactory = Callable[[Any], "Lens | ChannelLens | None"]

_LENSES: list[LensFactory] = []


def register_lens(factory: LensFactory) -> None:
    """Register a lens factory: called with the first non-text chunk of a stream.

    It returns a fresh :class:`Lens` for that stream when it recognises the
    chunk, else ``None``. Later registrations are tried first.
    """
    _LENSES.insert(0, factory)


def _find_lens(chunk: Any) -> Lens | ChannelLens | None:
    for factory in _LENSES:
        lens = factory(chunk)
        if lens is not None:
            return lens
    return None


def _lens_for(report: StreamReport, chunk: Any) -> Lens | ChannelLens | None:
    """A fresh lens for ``chunk``: the stream's own ``lens=`` if it was given one."""
    factory = report.lens_factory
    return _find_lens(chunk) if factory is None else factory(chunk)


SourceAdapter = Callable[["Operator[Any, Any]", Any, dict[str, Any]], Any]
_SOURCE_ADAPTERS: list[tuple[Callable[[Any], bool], SourceAdapter]] = []


def register_source_adapter(match: Callable[[Any], bool], adapter: SourceAdapter) -> None:
    """Let an integration handle sources it recognises (e.g. aiostream streams)."""
    _SOURCE_ADAPTERS.append((match, adapter))
