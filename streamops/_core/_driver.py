"""The core: sans-I/O processors, stages, operators and the one fused driver.

Every text operator is a small synchronous state machine (a *processor*):
``feed(item) -> list[out]``, ``close() -> list[out]`` at the end of input, and
a ``done`` flag meaning "I will accept nothing more, stop pulling upstream".
No asyncio, no clocks, no I/O: the same processor runs over sync and async
streams and is testable on its own.

A pipeline is a tuple of *stages*. Consecutive processor stages are *fused*:
one loop (one generator) drives the whole group, instead of one generator per
stage. *Shell* stages (timeouts, cancellation: things about time and control
flow) wrap the iterator of the stages before them. The outermost group records
the stop reason, the released text and the start/end events in the stream's
:class:`~streamops.StreamReport`.

This module imports no operator and no provider. Integrations plug in through
two registries: *lenses* (how to read and rebuild provider chunk objects) and
*source adapters* (e.g. aiostream streams).
"""

from __future__ import annotations

import abc
import asyncio
import functools
import sys
import inspect
import json
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar, overload, runtime_checkable

import regex

from ._errors import ChunkTypeError, StreamOpsError
from ._report import EventCallback, StopReason, StreamReport

__all__ = (
    "AsyncStream",
    "Lens",
    "Operator",
    "Processor",
    "ProcessorStage",
    "ShellStage",
    "Stage",
    "SyncStream",
    "identity",
    "register_lens",
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


ALL_CHANNELS = frozenset({"content", "refusal", "reasoning", "tool_arguments"})
"""The kinds of text channel a provider chunk may carry.

``content`` is the answer; ``refusal`` a refusal message (OpenAI);
``reasoning`` reasoning or thinking text (OpenAI-compatible
``reasoning_content``, Anthropic thinking, Responses reasoning, LangChain
reasoning blocks); ``tool_arguments`` the JSON arguments of a tool call, whose
string values are what text operators see (so a replacement keeps them valid
JSON). Each channel of a stream (each tool call, each content block) runs
through the text operators with its own state.
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

AsyncSource = (
    AsyncIterable[T]
    | Awaitable[AsyncIterable[T] | Iterable[T]]
    | Callable[[], Awaitable[AsyncIterable[T] | Iterable[T]]]
    | Callable[[], AsyncIterable[T]]
)
"""What an operator accepts to give an :class:`AsyncStream`: see ``Operator.__call__``."""
SyncSource = Iterable[T] | Callable[[], Iterable[T]]
"""What an operator accepts to give a :class:`SyncStream`."""
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


# --------------------------------------------------------------------------
# the fused chain: shared by the sync and the async loop
# --------------------------------------------------------------------------


class _Halt(Exception):
    """Raised by a chain whose processor said done, carrying the last outputs."""

    def __init__(self, out: list[Any]) -> None:
        super().__init__()
        self.out = out


class _WrongChunk(Exception):
    """Raised inside a chain for a chunk no lens handles; the driver adds the index."""

    def __init__(self, chunk: object) -> None:
        super().__init__()
        self.chunk = chunk


def _compile_feed(
    procs: list[Processor[Any, Any]],
    stages: list[ProcessorStage],
    *,
    accepts: type | None,
    record: str,
    rest: Callable[[int, list[Any]], list[Any]],
    lensed: Callable[[Any], list[Any]],
    released: list[Any],
) -> Callable[[Any], list[Any]]:
    """Build the fused per-item function of one chain, unrolled.

    The fast path assumes each processor turns one item into exactly one item
    and polls ``done`` only on stages that may stop; anything else (zero or many
    items, a halt) continues in ``rest(i, out)``. Unrolling removes the loop and
    tuple-unpacking cost per stage, which is what lets one fused loop beat a
    stack of generators. ``record`` is ``"text"`` (record every output as
    released text), ``"check"`` (record if it is text) or ``"none"``.
    """
    names: dict[str, Any] = {"rest": rest, "lensed": lensed, "accepts": accepts}
    names["record"] = released.append
    kinds: list[str] = []
    for i, (proc, stage) in enumerate(zip(procs, stages, strict=True)):
        one = None if stage.can_stop else getattr(proc, "feed_one", None)
        names[f"f{i}"] = proc.feed if one is None else one
        names[f"p{i}"] = proc
        kinds.append("one" if one is not None else "stop" if stage.can_stop else "list")
    return _builder(accepts is not None, record, tuple(kinds))(**names)


@functools.lru_cache(maxsize=256)
def _builder(
    checks_type: bool, record: str, kinds: tuple[str, ...]
) -> Callable[..., Callable[[Any], list[Any]]]:
    """Compile a chain shape once; every stream of that shape reuses the code.

    ``kinds`` per stage: ``"one"`` (its ``feed_one`` maps one item to one
    item, never stops: a plain call, no list), ``"list"`` (``feed``, never
    stops) or ``"stop"`` (``feed``, and ``done`` is polled).
    """
    body = ["def feed(item):"]
    if checks_type:
        body.append("    if not isinstance(item, accepts): return lensed(item)")
    x = "item"  # the one item flowing through, as an expression
    for i, kind in enumerate(kinds):
        if kind == "one":
            body.append(f"    x = f{i}({x})")
        else:
            body.append(f"    out = f{i}({x})")
            halt = f"p{i}.done or " if kind == "stop" else ""
            body.append(f"    if {halt}len(out) != 1: return rest({i}, out)")
            body.append("    x = out[0]")
        x = "x"
    if record == "text":
        body.append(f"    record({x})")
    elif record == "check":
        body.append(f"    if type({x}) is str: record({x})")
    body.append(f"    return [{x}]")
    params = ["rest", "lensed", "accepts", "record"]
    params += [f"{kind}{i}" for i in range(len(kinds)) for kind in ("f", "p")]
    source = f"def build({', '.join(params)}):\n" + "\n".join("    " + line for line in body)
    namespace: dict[str, Any] = {}
    exec(source + "\n    return feed\n", namespace)  # only calls the objects passed in
    build: Callable[..., Callable[[Any], list[Any]]] = namespace["build"]
    return build


class _Chain:
    """The per-stream state of one fused group of processors."""

    __slots__ = (
        "channels",
        "cuts_at_start",
        "feed",
        "find_lens",
        "finished",
        "halted",
        "last",
        "lens",
        "procs",
        "record",
        "report",
        "seeds",
        "stages",
        "text_out",
    )

    def __init__(
        self,
        stages: list[ProcessorStage],
        report: StreamReport,
        *,
        last: bool,
        find_lens: LensFactory | None = None,
        procs: list[Processor[Any, Any]] | None = None,
        record: bool = True,
    ) -> None:
        # Every stage's processor of this stream: the content chain runs those that
        # apply to content, and other channels fork them (a budget over reasoning
        # only is still one budget per stream).
        self.seeds: list[Processor[Any, Any]]
        if procs is None:
            self.seeds = [st.factory(report) for st in stages]
            procs = [
                seed if st.applies_to("content") else _Identity()
                for st, seed in zip(stages, self.seeds, strict=True)
            ]
        else:
            self.seeds = procs
        self.procs: list[Processor[Any, Any]] = procs
        self.stages = stages
        self.report = report
        self.cuts_at_start = report.cuts
        self.last = last
        self.lens: Any = None  # a Lens or a ChannelLens, found at the first chunk
        self.channels: _Channels | None = None
        self.find_lens = _find_lens if find_lens is None else find_lens
        self.halted = self.finished = False
        # A pass-through stage produces whatever the stage before it did.
        kinds = [st.produces for st in stages if st.produces != "same"]
        produces = kinds[-1] if kinds else "same"
        self.text_out = produces is str or produces == "same"
        # Only the outermost chain records the text handed to the consumer.
        if not last or not record:
            self.record = "none"
        else:
            self.record = "text" if produces is str else "check" if produces == "same" else "none"
        self.feed = _compile_feed(
            self.procs,
            stages,
            accepts=stages[0].accepts if stages else None,
            record=self.record,
            rest=self._rest,
            lensed=self._lensed,
            released=report._released,
        )

    def finish(self) -> list[Any]:
        """Flush every processor at the end of input (a halted chain is already flushed).

        The input ended *by force* when this stream was stopped (a budget, a
        quiet timeout or cancel, a block: see :meth:`_cut`) or the provider said
        it cut the message (a lens's ``truncated``): processors are then truncated,
        not closed, so that what they held back is never released as if the
        text were complete.
        """
        lens = self.lens
        channels = self.channels
        if channels is not None:  # a channel lens ends each open channel itself
            if self.halted:  # (and already did, at the halt)
                return []
            out: list[Any] = lens.finish_channels(channels)
            channels.settle()
            self._provider_cut()
            return out
        self._provider_cut()
        forced = self.halted or self._cut() or bool(getattr(lens, "truncated", False))
        out = self.end(forced)
        if lens is not None and self.text_out:
            # A lens may hold part of a unit the cut left incomplete (the bytes of
            # half a character): ``truncate`` drops it where ``finish`` would fail.
            end = getattr(lens, "truncate", None) if forced else None
            final: list[Any] = lens.finish(out) if end is None else end(out)
            return final
        return out

    def _provider_cut(self) -> None:
        """Record a message the provider cut (unless the stream was stopped already)."""
        if getattr(self.lens, "truncated", False):
            self.report.stop(StopReason.TRUNCATED, "the provider cut the message")

    def _cut(self) -> bool:
        """Whether this stream was stopped (a budget, a quiet timeout, a block) so far.

        Counted per stream: a report shared with earlier streams keeps their
        stop reason, which says nothing about this one.
        """
        return self.report.cuts > self.cuts_at_start

    def end(self, forced: bool | None = None) -> list[Any]:
        """Flush every processor; ``forced`` (default: decided as in :meth:`finish`)."""
        if self.halted or self.finished:
            self.finished = True
            return []
        if forced is None:
            forced = self._cut() or bool(getattr(self.lens, "truncated", False))
        out: list[Any] = self._drain(0, [], forced=forced)
        self.finished = True
        self._record(out)
        return out

    def fork(self, kind: str) -> _Chain:
        """A chain of the same stages for another text channel of this stream.

        Each processor that defines ``fork(kind)`` shares its stream-wide state
        with the new one (a budget counts every channel); the others start fresh.
        Stages that do not apply to ``kind`` pass the text through.
        """
        procs: list[Processor[Any, Any]] = []
        for stage, seed in zip(self.stages, self.seeds, strict=True):
            if not stage.applies_to(kind):
                procs.append(_Identity())
                continue
            fork = getattr(seed, "fork", None)
            procs.append(fork(kind) if fork is not None else stage.factory(self.report))
        return _Chain(
            self.stages, self.report, last=self.last, procs=procs, record=kind == "content"
        )

    def _record(self, out: list[Any]) -> None:
        if out and (self.record == "text" or (self.record == "check" and type(out[0]) is str)):
            self.report.record_released(out)

    def _lensed(self, item: Any) -> list[Any]:
        channels = self.channels
        if channels is not None:  # the hot path of a channel lens
            out: list[Any] = self.lens.process(item, channels)
            if channels.halted:
                self._halt_channels(out)
            return out
        lens = self.lens
        if lens is None:
            lens = self.find_lens(item)
            if lens is None:
                raise _WrongChunk(item)
            self.lens = lens
        if not self.text_out:  # values (parsed JSON, say): the lens only reads the text
            return self.feed(lens.unwrap(item))
        if hasattr(lens, "process"):  # a lens with several text channels
            channels = self.channels = _Channels(self)
            out = lens.process(item, channels)
            if channels.halted:
                self._halt_channels(out)
            return out
        try:
            texts = self.feed(lens.unwrap(item))
        except _Halt as halt:
            raise _Halt(lens.wrap(item, halt.out)) from None
        wrapped: list[Any] = lens.wrap(item, texts)
        return wrapped

    def _halt_channels(self, out: list[Any]) -> None:
        """A channel stopped the stream: end the others (truncated), then halt."""
        assert self.channels is not None
        out += self.lens.finish_channels(self.channels)
        self.channels.settle()
        self.halted = True
        raise _Halt(out)

    def _rest(self, i: int, out: list[Any]) -> list[Any]:
        """The general path from processor ``i`` on: zero or many items, or a halt."""
        procs = self.procs
        proc = procs[i]
        while True:
            if proc.done:
                self.halted = True
                out = self._drain(i + 1, out + proc.close(), forced=True)
                self._record(out)
                self._abort(procs[:i])  # cut off before the end of their input
                raise _Halt(out)
            i += 1
            if not out or i == len(procs):
                break
            proc = procs[i]
            if len(out) == 1:
                out = proc.feed(out[0])
            else:
                acc: list[Any] = []
                for x in out:
                    acc += proc.feed(x)
                    if proc.done:
                        break
                out = acc
        self._record(out)
        return out

    def abort(self) -> None:
        """The stream ended early: let processors not yet closed finalise."""
        if self.channels is not None:
            self.channels.abort()
        if not self.halted and not self.finished:
            self._abort(self.procs)

    @staticmethod
    def _abort(procs: list[Processor[Any, Any]]) -> None:
        for proc in procs:
            abort = getattr(proc, "abort", None)
            if abort is not None:
                abort()

    def _drain(self, start: int, items: list[Any], *, forced: bool) -> list[Any]:
        """Feed ``items`` to processors from ``start`` on, ending each in turn.

        ``forced``: the input was cut before its natural end, so a processor
        with a ``truncate()`` hook (redaction masks a live partial match) ends
        with it instead of ``close()``.
        """
        procs = self.procs
        # What truncating processors made of their held text (a mask) skips the
        # later truncating ones: it comes after the text they hold, so it must
        # not decide their live partial match (a mask is not the secret's end).
        masks: list[Any] = []
        for i in range(start, len(procs)):
            proc = procs[i]
            acc: list[Any] = []
            for x in items:
                if proc.done:
                    break
                acc += proc.feed(x)
            # A processor before this one may have cut the text as it closed (a
            # budget reached in its last pieces records its stop reason then).
            forced = forced or self._cut()
            truncate = getattr(proc, "truncate", None) if forced else None
            if truncate is None:
                for x in masks:
                    if proc.done:
                        break
                    acc += proc.feed(x)
                masks = []
                acc += proc.close()
            else:  # its released text goes on; its mask comes before the earlier ones
                ended = truncate()
                acc += [x for x in ended if type(x) is not Masked]
                masks = [x for x in ended if type(x) is Masked] + masks
            if proc.done:
                self.halted = True
            items = acc
        return items + [str(x) for x in masks]


class _Channels:
    """The text channels of one stream read through a channel lens.

    A channel lens (one with ``process(chunk, channels)`` and
    ``finish_channels(channels)``) splits each chunk into the texts of its
    channels, keyed by what makes a channel in that provider's stream (the
    content of choice 0, one tool call, one content block), and feeds each
    with :meth:`feed`. Every key gets its own chain of processors (the first
    content key the stream's own chain, whose processors the others fork), so
    a secret split across two chunks of one tool call is seen whole and a
    secret can never leak because it arrived in another field. The lens ends a
    channel at the provider's own block boundary with :meth:`end`, which
    releases what the channel held, in order, before that boundary.
    Tool-call arguments run through :class:`_JSONStrings`: operators see the
    decoded string values, one string at a time.
    """

    __slots__ = ("_main", "_main_used", "_subs", "halted")

    def __init__(self, main: _Chain) -> None:
        self._main = main
        self._main_used = False
        self._subs: dict[Any, _Chain | _JSONStrings] = {}
        self.halted = False

    def _get(self, key: Any, kind: str) -> _Chain | _JSONStrings:
        sub = self._subs.get(key)
        if sub is None:
            if kind == "content" and not self._main_used:
                self._main_used = True
                sub = self._main
            elif kind == "tool_arguments":
                sub = _JSONStrings(self._main)
            elif kind == "tool_input":  # a tool's input that is free text, not JSON
                sub = self._main.fork("tool_arguments")
            else:
                sub = self._main.fork(kind)
            self._subs[key] = sub
        return sub

    def feed(self, key: Any, kind: str, text: str) -> str:
        """Feed ``text`` to channel ``key`` (of ``kind``); return what it releases now.

        ``kind`` is one of :data:`ALL_CHANNELS`, or ``"tool_input"``: a tool's
        input that is free text (code, a custom tool's input), selected as
        ``"tool_arguments"`` but not read as JSON.
        """
        if not text or self.halted:
            return ""
        sub = self._subs.get(key)
        if sub is None:
            sub = self._get(key, kind)
        try:
            out = sub.feed(text)
        except _Halt as halt:
            self.halted = True
            out = halt.out
        return out[0] if len(out) == 1 else "".join(out)

    def end(self, key: Any, *, forced: bool | None = None) -> str:
        """End channel ``key`` (its message is over): return what it still held.

        ``forced`` defaults to "the stream was cut" (a stop reason is recorded,
        or the lens saw a truncating finish): a live partial secret is masked.
        """
        sub = self._subs.pop(key, None)
        if sub is None:
            return ""
        if forced is None:
            main = self._main
            forced = main._cut() or main.lens.truncated
        report = self._main.report
        cuts = report.cuts
        try:
            out = sub.end(forced)
        except _Halt as halt:  # the end of a tool's arguments met the budget
            self.halted = True
            out = halt.out
        if report.cuts > cuts:  # a stage stopped the stream as it closed (a block)
            self.halted = True
        return "".join(out)

    def open_keys(self) -> list[Any]:
        """The channels that are open, in the order they opened."""
        return list(self._subs)

    def settle(self) -> None:
        """After the end: the stream's own chain is finished even if no content came."""
        if not self._main_used:
            self._main_used = True
            self._main.end()
        self._main.finished = True

    def abort(self) -> None:
        for sub in list(self._subs.values()):
            if sub is not self._main:
                sub.abort()
        self._subs.clear()


class _JSONStrings:
    r"""Run text operators on a streamed JSON document (tool-call arguments).

    Tool-call arguments are JSON: operators must see ``a@b.co`` even when it is
    written ``a\u0040b.co``, a card number even when it is a JSON number, and
    a replacement must leave valid JSON. This splits the JSON text as it
    streams into *messages*, each run through a chain of its own (fed, then
    closed: the usual exactness holds per message):

    - each string value or key, decoded (escapes, surrogate pairs); what the
      chain releases is encoded again, as it is released;
    - each number, complete at the character after it; one the operators
      changed comes out as a JSON string (``4111...1111`` becomes
      ``"[CREDIT_CARD]"``), so the document stays valid;
    - each run of structure between them (``{``, ``": ``, ``, ``, literals),
      complete where a number or a string begins, so a budget counts every
      character the provider billed (per message: within a few tokens of the
      encoding of the whole document) and can stop a long array of numbers.

    A stage that stops the stream (a ``block``, the budget) stops it here too.
    Arguments that turn out not to be JSON (a character no JSON document has
    outside its strings, such as ``'``) are from there on one plain text
    message, so nothing is split apart. An escape that is not valid JSON ends
    the string's message and passes through unchanged (the consumer's parser
    reports it); a lone surrogate is written as an escape.
    """

    __slots__ = ("_esc", "_high", "_main", "_plain", "_raw", "_sub")

    _SPECIAL = regex.compile(r'["\\]')
    _NUMBER = regex.compile(r"-?[0-9][0-9.eE+-]*")
    _STRUCTURE = regex.compile(r"[\s{}\[\]:,]|true|false|null|[tfn]")  # JSON outside strings
    _NUMBER_START = regex.compile(r"[-0-9]")

    def __init__(self, main: _Chain) -> None:
        self._main = main
        self._sub: _Chain | None = None  # the chain of the string being read
        self._plain: _Chain | None = None  # not JSON after all: one plain message
        self._raw = ""  # text outside strings not yet complete
        self._esc = ""  # an escape sequence read in part
        self._high = ""  # a decoded high surrogate waiting for its pair

    def feed(self, text: str) -> list[str]:
        if self._plain is not None:
            return self._plain.feed(text)
        out: list[str] = []
        i, n = 0, len(text)
        try:
            while i < n:
                if self._sub is None:  # outside strings: up to the next opening quote
                    j = text.find('"', i)
                    self._raw += text[i:] if j < 0 else text[i:j]
                    plain = self._outside(out, final=j >= 0)
                    if plain is not None:  # not JSON: the rest is one plain message
                        return ["".join([*out, *plain.feed(text[n if j < 0 else j :])])]
                    if j < 0:
                        break
                    out.append('"')
                    self._sub = self._main.fork("tool_arguments")
                    i = j + 1
                    continue
                if self._esc:
                    i = self._escape(text, i, out)
                    continue
                m = self._SPECIAL.search(text, i)
                j = n if m is None else m.start()
                if j > i:
                    self._put(text[i:j], out)
                if m is None:
                    break
                if text[j] == "\\":
                    self._esc = "\\"
                    i = j + 1
                    continue
                self._close_string(out, forced=False)  # the closing quote
                out.append('"')
                i = j + 1
        except _Halt as halt:
            self._sub = None
            raise _Halt([*out, *self._encode(halt.out)]) from None
        return ["".join(out)] if out else []

    def _message(self, text: str, out: list[str], *, number: bool, forced: bool) -> None:
        """Run ``text`` through a chain of its own, start to end, into ``out``.

        A stop (the budget, a ``block``) raises ``_Halt([])``: what was released
        is in ``out``.
        """
        chain = self._main.fork("tool_arguments")
        report = chain.report
        cuts = report.cuts
        halted = False
        try:
            released = "".join([*chain.feed(text), *chain.end(forced)])
        except _Halt as halt:
            released, halted = "".join(halt.out), True
        halted = halted or report.cuts > cuts  # a block as it closed
        if number and released != text and not (halted and text.startswith(released)):
            released = json.dumps(released, ensure_ascii=False)  # changed: a JSON string
        out.append(released)
        if halted:
            raise _Halt([])

    def _outside(self, out: list[str], *, final: bool, cut: bool = False) -> _Chain | None:
        """Release the complete structure runs and numbers held outside strings.

        ``final``: a string or the end follows, so what is held is complete.
        ``cut``: the arguments end here, so a number still open at their end
        was cut short (the document around it is not closed), as an open string is.
        Returns the plain chain when the text is not JSON (the rest goes to it).
        """
        raw = self._raw
        pos, n = 0, len(raw)
        while pos < n:
            m = self._NUMBER.match(raw, pos)
            if m is not None:
                if m.end() == n and not final:
                    break  # the number may go on
                forced = cut and m.end() == n
                self._message(m.group(), out, number=True, forced=forced)
                pos = m.end()
                continue
            s = self._NUMBER_START.search(raw, pos)
            end = n if s is None else s.start()
            run = raw[pos:end]
            if self._STRUCTURE.sub("", run):  # not JSON: one plain message from here
                self._raw = ""
                plain = self._plain = self._main.fork("tool_arguments")
                out += plain.feed(raw[pos:])
                return plain
            if s is None and not final:
                break  # the run may go on (a literal, say)
            self._message(run, out, number=False, forced=False)
            pos = end
        self._raw = raw[pos:]
        return None

    def _escape(self, text: str, i: int, out: list[str]) -> int:
        esc = self._esc
        if len(esc) == 1:  # the character after the backslash says how long it is
            esc += text[i]
            i += 1
        need = 6 if esc[1] == "u" else 2
        take = text[i : i + need - len(esc)]
        esc += take
        i += len(take)
        if len(esc) < need:
            self._esc = esc
            return i
        self._esc = ""
        try:
            char: str = json.loads(f'"{esc}"')
        except ValueError:  # not JSON: end this string's message, pass the escape on as is
            self._close_string(out, forced=False)
            out.append(esc)
            self._sub = self._main.fork("tool_arguments")
            return i
        if "\ud800" <= char <= "\udbff":
            if self._high:
                self._put("", out)  # two high surrogates in a row: the first is alone
            self._high = char
            return i
        if self._high:
            high, self._high = self._high, ""
            if "\udc00" <= char <= "\udfff":
                char = (high + char).encode("utf-16", "surrogatepass").decode("utf-16")
            else:
                char = high + char
        self._put(char, out)
        return i

    def _put(self, text: str, out: list[str]) -> None:
        if self._high:
            text, self._high = self._high + text, ""
        assert self._sub is not None
        out += self._encode(self._sub.feed(text))

    @staticmethod
    def _encode(pieces: list[Any]) -> list[str]:
        text = "".join(pieces)
        return [_json_body(text)] if text else []

    def _close_string(self, out: list[str], *, forced: bool | None) -> None:
        sub, self._sub = self._sub, None
        if self._high:
            if sub is not None and not forced:  # a lone high surrogate: written escaped
                out += self._encode(sub.feed(self._high))
            self._high = ""  # (cut between the halves of a pair: dropped)
        if sub is not None:
            cuts = sub.report.cuts
            out += self._encode(sub.end(forced))
            if sub.report.cuts > cuts:  # a stage stopped the stream (a block) as it closed
                raise _Halt([])

    def end(self, forced: bool | None = None) -> list[str]:
        """The arguments ended: a string still open was cut, so it is truncated."""
        if self._plain is not None:
            return self._plain.end(forced)
        out: list[str] = []
        self._esc = ""
        try:
            if self._sub is not None:
                self._close_string(out, forced=True)
            elif self._raw:
                plain = self._outside(out, final=True, cut=True)
                if plain is not None:
                    out += plain.end(forced)
        except _Halt:
            raise _Halt(["".join(out)]) from None
        return ["".join(out)] if out else []

    def abort(self) -> None:
        self._raw = ""
        for chain in (self._sub, self._plain):
            if chain is not None:
                chain.abort()
        self._sub = self._plain = None


_SURROGATE = regex.compile("[\ud800-\udfff]")


def _json_body(text: str) -> str:
    """``text`` as the inside of a JSON string (lone surrogates escaped: encodable)."""
    body = json.dumps(text, ensure_ascii=False)[1:-1]
    if _SURROGATE.search(body) is None:
        return body
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", body)


# --------------------------------------------------------------------------
# the loops
# --------------------------------------------------------------------------


def _on_error(report: StreamReport, exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):
        report.stop(StopReason.CANCELLED)
        return
    if isinstance(exc, GeneratorExit):
        report.stop(StopReason.CLOSED)
        return
    report.error = exc
    report.stop(StopReason.ERROR, type(exc).__name__)
    if isinstance(exc, StreamOpsError) and exc.released is None:
        exc.released = report.released_text


def _start(report: StreamReport) -> None:
    report.emit("stream.start")


def _start_async(report: StreamReport) -> None:
    """Start an async stream: its clock becomes the event loop's (virtual time works)."""
    try:
        loop = asyncio.get_running_loop()
        # Not the bound method: virtual-time tools may replace loop.time later.
        report.clock = lambda: loop.time()
    except RuntimeError:  # pragma: no cover - not under asyncio (e.g. trio)
        pass
    _start(report)


def _end(report: StreamReport) -> None:
    report.emit("stream.end", reason=str(report.stop_reason))


def _wrong_chunk(exc: _WrongChunk, index: int) -> ChunkTypeError:
    hint = "register a lens with streamops.register_lens() for this chunk type"
    return ChunkTypeError(index, exc.chunk, "str", hint)


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


def _undelivered(chain: _Chain, batch: list[Any], delivered: int) -> None:
    """Take back the text of a batch the consumer left before receiving all of it."""
    report = chain.report
    lens = chain.lens
    if lens is not None:  # rebuilt provider chunks: their text is what was recorded
        try:
            tail = "".join(lens.unwrap(x) for x in batch[delivered:])
        except Exception:  # never let bookkeeping replace the error being raised
            return
    else:
        tail = "".join(x for x in batch[delivered:] if isinstance(x, str))
    if tail and report.released_text.endswith(tail):
        # (A report shared with other streams may have moved on: leave it be.)
        report.retract_released(tail)


def _drive_sync(
    source: Iterator[Any],
    chain: _Chain,
    *,
    first: bool,
    owner: list[object] | None = None,
    unstarted: list[object] | None = None,
) -> Generator[Any, None, None]:
    report = chain.report
    last = chain.last
    feed = chain.feed
    n = n_out = start = 0
    out: list[Any] = []
    exhausted = closed = False
    if unstarted is not None:
        unstarted.clear()  # from now on this generator's finally closes them
    if last:
        _start(report)
    try:
        try:
            for item in source:
                n += 1
                out = feed(item)
                start = n_out
                for x in out:
                    n_out += 1  # counted before the yield: a consumer that leaves has it
                    yield x
            # A shell that ended the stream quietly (a timeout or cancel with
            # on_timeout="end") recorded why: the source itself is not exhausted.
            exhausted = not chain._cut()
        except _WrongChunk as exc:
            raise _wrong_chunk(exc, n - 1) from None
        except _Halt as halt:
            out = halt.out  # (see _drive_async)
            start = n_out
            closed = True
            _close(source)  # at once: the consumer may hold the last chunk for long
            if owner:
                _close(owner.pop())
            for x in out:
                n_out += 1
                yield x
        out = chain.finish()
        start = n_out
        for x in out:
            n_out += 1
            yield x
        if last:
            report.stop(StopReason.COMPLETE)
    except BaseException as exc:
        chain.abort()
        if last:
            if chain.record != "none":
                _undelivered(chain, out, n_out - start)
            _on_error(report, exc)
        raise
    finally:
        if first:
            report.chunks_in = n
        if last:
            report.chunks_out = n_out
        try:
            if not closed:
                _close(source)
        finally:
            if owner and last and not exhausted:
                _close(owner.pop())
            if last:
                _end(report)


async def _drive_async(
    source: AsyncIterator[Any],
    chain: _Chain,
    *,
    first: bool,
    owner: list[object] | None = None,
    unstarted: list[object] | None = None,
) -> AsyncGenerator[Any, None]:
    report = chain.report
    last = chain.last
    feed = chain.feed
    n = n_out = start = 0
    out: list[Any] = []
    exhausted = closed = False
    batch = False  # `out` is a batch whose delivery `start` tracks (not the fast path's)
    if unstarted is not None:
        unstarted.clear()  # from now on this generator's finally closes them
    if last:
        _start_async(report)
    try:
        try:
            async for item in source:
                n += 1
                out = feed(item)
                if len(out) == 1:
                    n_out += 1  # counted before the yield: a consumer that leaves has it
                    yield out[0]
                else:
                    start = n_out
                    for x in out:
                        n_out += 1
                        yield x
            exhausted = not chain._cut()  # (see _drive_sync)
            batch = True
        except _WrongChunk as exc:
            raise _wrong_chunk(exc, n - 1) from None
        except _Halt as halt:
            # Recorded as released, not yet delivered: a cancellation during the
            # close below takes it back (the consumer never received it).
            out = halt.out
            start = n_out
            batch = closed = True
            await _aclose(source)  # at once: the consumer may hold the last chunk for long
            if owner:
                await _aclose(owner.pop())
            for x in out:
                n_out += 1
                yield x
        out = chain.finish()
        start = n_out
        for x in out:
            n_out += 1
            yield x
        if last:
            report.stop(StopReason.COMPLETE)
    except BaseException as exc:
        chain.abort()
        if last:
            if (batch or len(out) > 1) and chain.record != "none":
                _undelivered(chain, out, n_out - start)
            _on_error(report, exc)
        raise
    finally:
        if first:
            report.chunks_in = n
        if last:
            report.chunks_out = n_out
        try:
            if not closed:
                await _aclose(source)
        finally:
            if owner and last and not exhausted:
                await _aclose(owner.pop())
            if last:
                _end(report)


# --------------------------------------------------------------------------
# streams
# --------------------------------------------------------------------------


class SyncStream(Iterator[T]):
    """The sync stream an operator returns: an iterator with a :attr:`report`.

    Closing it (``close()``, ``with``, or ``break`` and dropping it) closes the
    whole pipeline and the upstream.

    >>> s = identity()(iter(["a", "b"]))
    >>> list(s), s.report.stop_reason
    (['a', 'b'], <StopReason.COMPLETE: 'complete'>)
    """

    __slots__ = ("_it", "_unstarted", "report")

    def __init__(
        self,
        it: Generator[T, None, None],
        report: StreamReport,
        unstarted: list[object] | None = None,
    ) -> None:
        self._it = it
        self.report = report
        # The source objects to close if the stream is closed before it starts
        # (closing a generator that never ran does not run its ``finally``).
        self._unstarted = unstarted

    def __iter__(self) -> Iterator[T]:
        # The generator is handed out (a for loop may drop this object at once):
        # from now on closing its sources is the generator's own business.
        self._unstarted = None
        return self._it

    def __next__(self) -> T:
        return next(self._it)

    def close(self) -> None:
        """Stop the stream and close the upstream; harmless if already closed."""
        self._it.close()
        if self._unstarted:
            sources, self._unstarted = self._unstarted, None
            for obj in sources:
                _close(obj)

    def __del__(self) -> None:
        # Dropped before it started: its generator's finally never runs.
        if self._unstarted:
            self.close()

    def __enter__(self) -> SyncStream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def text(self) -> str:
        """Consume the rest of the stream and return the text it released."""
        for _ in self._it:
            pass
        return self.report.released_text


class AsyncStream(AsyncIterator[T]):
    """The async stream an operator returns: an async iterator with a :attr:`report`.

    Use ``async with`` (or ``aclose()``) to close the pipeline and the upstream
    as soon as you stop early; ``break`` alone leaves closing to the garbage
    collector, as with any async generator.

    >>> import asyncio
    >>> import streamops as so
    >>> async def chunks():
    ...     yield "a"
    ...     yield "b"
    >>> async def main():
    ...     async with so.identity()(chunks()) as s:
    ...         return [x async for x in s], s.report.stop_reason
    >>> asyncio.run(main())
    (['a', 'b'], <StopReason.COMPLETE: 'complete'>)
    """

    __slots__ = ("_it", "_unstarted", "report")

    def __init__(
        self,
        it: AsyncGenerator[T, None],
        report: StreamReport,
        unstarted: list[object] | None = None,
    ) -> None:
        self._it = it
        self.report = report
        self._unstarted = unstarted  # as in SyncStream

    def __aiter__(self) -> AsyncIterator[T]:
        self._unstarted = None  # (see SyncStream.__iter__)
        return self._it

    def __anext__(self) -> Any:  # an awaitable of T, exactly as the generator's
        return self._it.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and close the upstream; harmless if already closed."""
        await self._it.aclose()
        if self._unstarted:
            sources, self._unstarted = self._unstarted, None
            for obj in sources:
                await _aclose(obj)

    def __del__(self) -> None:
        # Dropped before it started: close its source on the running loop, as
        # asyncio does for an abandoned async generator (nothing to do without one).
        if not self._unstarted:
            return
        sources, self._unstarted = self._unstarted, None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            for obj in sources:
                if isinstance(obj, _Awaited):
                    obj.__del__()
            return
        task = loop.create_task(_aclose_all(*sources))
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def text(self) -> str:
        """Consume the rest of the stream and return the text it released."""
        async for _ in self._it:
            pass
        return self.report.released_text


async def _aiter(items: Iterable[T]) -> AsyncGenerator[T, None]:
    """Yield ``items`` asynchronously (a tiny helper for examples)."""
    for item in items:
        yield item


# --------------------------------------------------------------------------
# operators
# --------------------------------------------------------------------------


class Operator(Generic[In, Out]):
    """A reusable stream transformation; ``a | b`` runs ``a`` then ``b``.

    Calling an operator on an iterable of chunks returns a :class:`SyncStream`;
    on an async iterable, an :class:`AsyncStream`. All per-stream state lives in
    the returned stream, so one operator serves any number of streams.

    >>> op = identity() | identity()
    >>> list(op(["He", "llo"]))
    ['He', 'llo']
    >>> op("Hello")
    Traceback (most recent call last):
    ...
    TypeError: expected an iterable of chunks, got a bare str; wrap it: op([text])
    """

    __slots__ = ("stages",)

    def __init__(self, *stages: Stage) -> None:
        for stage in stages:
            if not isinstance(stage, Stage):
                raise TypeError(f"expected Stage objects, got {type(stage).__name__}")
        self.stages: tuple[Stage, ...] = stages

    @classmethod
    def from_processor(
        cls,
        factory: Callable[[StreamReport], Processor[Any, Any]],
        *,
        name: str | None = None,
        accepts: type | None = str,
        produces: type | Literal["same"] | None = str,
        can_stop: bool = True,
    ) -> Operator[Any, Any]:
        """Build an operator from a per-stream processor factory.

        >>> class Upper:
        ...     done = False
        ...     def feed(self, item): return [item.upper()]
        ...     def close(self): return []
        >>> list(Operator.from_processor(lambda report: Upper())(["ab", "c"]))
        ['AB', 'C']
        """
        stage_name = name if name is not None else str(getattr(factory, "__name__", "processor"))
        stage = ProcessorStage(
            stage_name, factory, accepts=accepts, produces=produces, can_stop=can_stop
        )
        return cls(stage)

    def __or__(self, other: Operator[Out, T]) -> Operator[In, T]:
        if not isinstance(other, Operator):
            return NotImplemented
        return Operator(*self.stages, *other.stages)

    def __repr__(self) -> str:
        return " | ".join(stage.name for stage in self.stages) or "identity"

    def as_runnable(self) -> Any:
        """Return this operator as a LangChain runnable that streams chunk by chunk.

        ``model | so.redact().as_runnable() | StrOutputParser()``: see
        :func:`streamops.langchain.as_runnable`. Needs langchain-core
        (``pip install 'streamops[langchain]'``).
        """
        from ..langchain import as_runnable  # (the core imports no integration eagerly)

        return as_runnable(self)

    @overload
    def __call__(
        self,
        source: AsyncSource[In],
        /,
        *,
        on_event: EventCallback | None = ...,
        report: StreamReport | None = ...,
        lens: LensFactory | None = ...,
    ) -> AsyncStream[Out]: ...

    @overload
    def __call__(
        self,
        source: SyncSource[In],
        /,
        *,
        on_event: EventCallback | None = ...,
        report: StreamReport | None = ...,
        lens: LensFactory | None = ...,
    ) -> SyncStream[Out]: ...

    @overload
    def __call__(
        self: Operator[str, str],
        source: AsyncSource[C],
        /,
        *,
        on_event: EventCallback | None = ...,
        report: StreamReport | None = ...,
        lens: LensFactory | None = ...,
    ) -> AsyncStream[C]: ...

    @overload
    def __call__(
        self: Operator[str, str],
        source: SyncSource[C],
        /,
        *,
        on_event: EventCallback | None = ...,
        report: StreamReport | None = ...,
        lens: LensFactory | None = ...,
    ) -> SyncStream[C]: ...

    def __call__(
        self,
        source: SyncSource[Any] | AsyncSource[Any],
        /,
        *,
        on_event: EventCallback | None = None,
        report: StreamReport | None = None,
        lens: LensFactory | None = None,
    ) -> Any:
        """Apply the pipeline to ``source``; see the class docstring.

        ``source`` is an iterable or async iterable of chunks (an OpenAI or
        Anthropic stream object, an httpx response's iterator, a generator...),
        or an awaitable that gives one (``client.chat.completions.create(...,
        stream=True)`` not yet awaited), or a zero-argument callable returning
        either. An awaitable is awaited inside the stream, at the first pull,
        so time limits and the time to first chunk cover the request itself,
        and a timeout or cancellation cancels it. A callable is called at once.
        When the stream ends before the source is exhausted (a budget, a
        ``break``, a timeout, an error, a cancellation), the source *object* is
        closed (``aclose()`` or ``close()``), so the provider stops generating.

        ``on_event`` is called with every event of this stream; ``report`` lets
        several streams share one report; ``lens`` replaces the registered lens
        lookup for non-text chunks: it is called with the first such chunk and
        returns the :class:`Lens` to use (or ``None`` to refuse the chunk).
        """
        if isinstance(source, (str, bytes, bytearray)) or _is_lc_message(source):
            _langchain_misuse(self, source)
            kind = type(source).__name__
            raise TypeError(
                f"expected an iterable of chunks, got a bare {kind}; wrap it: op([text])"
            )
        for match, adapter in _SOURCE_ADAPTERS:
            if match(source):
                return adapter(self, source, {"on_event": on_event, "report": report, "lens": lens})
        it, owner, is_async = _open_source(source)
        if report is None:
            report = StreamReport(on_event=on_event)
        elif on_event is not None:
            report.subscribe(on_event)
        if lens is not None:
            report.lens_factory = lens
        unstarted = [it] if owner is None else [it, owner]
        gen = self._build(it, owner, unstarted, report, lens, is_async=is_async)
        if is_async:
            return AsyncStream(gen, report, unstarted)
        return SyncStream(gen, report, unstarted)

    def _groups(self) -> list[ShellStage | list[ProcessorStage]]:
        """Split the stages into fused groups of processors and the shells between them.

        A group that starts with a stage needing text reads provider chunks
        through a lens at its start, and hands chunks of the source's type on
        (the lens rebuilds them). Inside it, what a stage produces is what the
        next one gets. A stage needing text therefore fuses only into a group
        whose stages so far produce its type; after a shell, or after
        pass-through stages at a group's start (identity, collect), the chunks
        are the source's own again and it starts a new group.
        """
        groups: list[ShellStage | list[ProcessorStage]] = []
        produces: type | Literal["same"] | None = "same"  # what the current group hands on
        for stage in self.stages:
            if isinstance(stage, ShellStage):
                groups.append(stage)
                produces = "same"
                continue
            if not isinstance(stage, ProcessorStage):  # pragma: no cover - guarded in __init__
                raise TypeError(f"unknown stage type {type(stage).__name__}")
            fuses = bool(groups) and isinstance(groups[-1], list)
            if fuses and stage.accepts is not None:
                fuses = isinstance(produces, type) and issubclass(produces, stage.accepts)
            if fuses:
                groups[-1].append(stage)  # type: ignore[union-attr]
            else:
                groups.append([stage])
                produces = "same"
            if stage.produces != "same":
                produces = stage.produces
        if not groups or not isinstance(groups[-1], list):
            groups.append([])  # the outermost driver always runs
        return groups

    def _build(
        self,
        it: Any,
        owner: object,
        unstarted: list[object],
        report: StreamReport,
        lens: LensFactory | None,
        *,
        is_async: bool,
    ) -> Any:
        """Stack the drivers and shells of one stream over the source iterator ``it``.

        ``owner`` is the object the iterator came from when it is another object
        (an SDK stream whose ``__aiter__`` makes a new generator): the outermost
        driver closes it on every early end, after the stages below it.
        ``unstarted`` is emptied when the outermost driver starts: until then,
        closing the stream closes those objects directly.
        """
        groups = self._groups()
        # Any driver that halts closes the owner at once; the outermost one also
        # on every other early end. The cell makes that happen once.
        owner_cell: list[object] = [] if owner is None else [owner]
        # Shells pass chunks through one for one, so the first fused group
        # counts the upstream's chunks even when a shell comes before it.
        first = True
        for n, group in enumerate(groups):
            if isinstance(group, ShellStage):
                it = group.wrap_async(it, report) if is_async else group.wrap_sync(it, report)
            else:
                last = n == len(groups) - 1
                chain = _Chain(group, report, last=last, find_lens=lens)
                drive = _drive_async if is_async else _drive_sync
                if last:
                    it = drive(it, chain, first=first, owner=owner_cell, unstarted=unstarted)
                else:
                    it = drive(it, chain, first=first, owner=owner_cell)
                first = False
        return it  # the last group is always a driver: a generator


def _is_lc_message(obj: object) -> bool:
    """Whether ``obj`` is one LangChain message (an iterable of its fields, not of chunks)."""
    return any(
        c.__name__ == "BaseMessage" and c.__module__.startswith("langchain_core")
        for c in type(obj).__mro__
    )


def _langchain_misuse(op: Operator[Any, Any], source: object) -> None:
    """Raise the right advice when LangChain calls an operator with one whole value.

    ``chain | op`` makes LangChain wrap the operator in a ``RunnableLambda``,
    which calls it once with the whole output of the chain (a ``str`` or a
    message), after buffering the stream.
    """
    caller = sys._getframe(2).f_globals.get("__name__", "")
    if _is_lc_message(source) or caller.startswith("langchain_core"):
        raise TypeError(
            f"LangChain called the operator {op!r} with one whole"
            f" {type(source).__name__}: `chain | op` makes a RunnableLambda, which"
            " buffers the stream and cannot redact what the model already emitted;"
            " use `chain | op.as_runnable()` to stream through it, or wrap the model:"
            " streamops.langchain.wrap_chat_model(model, op)"
        )


def identity() -> Operator[Any, Any]:
    """Return an operator that passes every chunk through unchanged.

    It is the unit of ``|``: ``identity() | op`` behaves like ``op``.

    >>> list(identity()([1, 2, 3]))
    [1, 2, 3]
    """
    stage = ProcessorStage(
        "identity", lambda report: _Identity(), accepts=None, produces="same", can_stop=False
    )
    return Operator(stage)
