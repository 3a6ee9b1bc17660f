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

import asyncio
import functools
import sys
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from typing import Any, Generic, Literal, overload

from ._channels import _Channels, _Halt
from ._errors import ChunkTypeError, StreamOpsError
from ._report import EventCallback, StopReason, StreamReport, _report_for
from ._sources import (
    _CLOSING,
    AsyncSource,
    SyncSource,
    _aclose,
    _aclose_all,
    _AclosedOnExit,
    _Awaited,
    _close,
    _ClosedOnExit,
    _open_source,
)
from ._stages import (
    _NOTHING,
    _SOURCE_ADAPTERS,
    C,
    In,
    LensFactory,
    Masked,
    Out,
    Processor,
    ProcessorStage,
    ShellStage,
    Stage,
    T,
    _find_lens,
    _Identity,
)

__all__ = (
    "AsyncStream",
    "Operator",
    "SyncStream",
    "identity",
)

# --------------------------------------------------------------------------
# the fused chain: shared by the sync and the async loop
# --------------------------------------------------------------------------


class _WrongChunk(Exception):
    """Raised inside a chain for a chunk no lens handles; the driver adds the index."""

    def __init__(self, chunk: object) -> None:
        super().__init__()
        self.chunk = chunk


class _Flush(Exception):
    """Thrown into a driver by the shell after it: end the input here, by force, and flush.

    A shell that stopped the stream (a ledger budget's cut, a block in its
    chain) still owes its consumer what the stages before it hold from
    before the stop (redaction's held tail in another channel, masked), as
    the same stages fused with it release it. The driver hands on the rest
    of the batch it was handing on, closes its source, finishes its chain
    (truncated, the stream being cut) and hands on what that releases; then
    it ends. Thrown at its end (the source ran out), it just goes on.
    """


def _compile_feed(
    procs: list[Processor[Any, Any]],
    stages: list[ProcessorStage],
    *,
    accepts: type | None,
    record: str,
    rest: Callable[[int, list[Any]], list[Any]],
    lensed: Callable[[Any], list[Any]],
    released: list[Any],
    watch: list[Callable[[Any], object]] | None = None,
) -> Callable[[Any], list[Any]]:
    """Build the fused per-item function of one chain, unrolled.

    The fast path assumes each processor turns one item into exactly one item
    and polls ``done`` only on stages that may stop; anything else (zero or many
    items, a halt) continues in ``rest(i, out)``. Unrolling removes the loop and
    tuple-unpacking cost per stage, which is what lets one fused loop beat a
    stack of generators. ``record`` is ``"text"`` (record every output as
    released text), ``"check"`` (record if it is text) or ``"none"``. With
    ``watch``, an item that is not ``accepts`` goes to ``watch[0]`` and then on
    through the chain (instead of to ``lensed``).
    """
    names: dict[str, Any] = {"rest": rest, "lensed": lensed, "accepts": accepts, "watch": watch}
    names["record"] = released.append
    kinds: list[str] = []
    for i, (proc, stage) in enumerate(zip(procs, stages, strict=True)):
        one = None if stage.can_stop else getattr(proc, "feed_one", None)
        names[f"f{i}"] = proc.feed if one is None else one
        names[f"p{i}"] = proc
        kinds.append("one" if one is not None else "stop" if stage.can_stop else "list")
    return _builder(accepts is not None, record, tuple(kinds), watch is not None)(**names)


@functools.lru_cache(maxsize=256)
def _builder(
    checks_type: bool, record: str, kinds: tuple[str, ...], watches: bool = False
) -> Callable[..., Callable[[Any], list[Any]]]:
    """Compile a chain shape once; every stream of that shape reuses the code.

    ``kinds`` per stage: ``"one"`` (its ``feed_one`` maps one item to one
    item, never stops: a plain call, no list), ``"list"`` (``feed``, never
    stops) or ``"stop"`` (``feed``, and ``done`` is polled).

    Fast paths, each what ``rest`` would do, without its call: an empty list
    from a stage that never stops ends the chunk at once (nothing to feed on,
    nothing to record: ``rest`` returns that same list); the one-item list of
    the last stage is returned as it is (as ``rest`` returns a last stage's
    list of several items), not copied; and when nothing is recorded, the list
    of a last stage that never stops is returned whatever its length (a
    parser's stage yielding zero or one value per chunk: one call, no test).
    """
    body = ["def feed(item):"]
    if checks_type and watches:
        body.append("    if not isinstance(item, accepts): watch[0](item)")
    elif checks_type:
        body.append("    if not isinstance(item, accepts): return lensed(item)")
    x = "item"  # the one item flowing through, as an expression
    last = len(kinds) - 1
    for i, kind in enumerate(kinds):
        if kind == "one":
            body.append(f"    x = f{i}({x})")
            x = "x"
            continue
        if kind == "list" and i == last and record == "none":
            body.append(f"    return f{i}({x})")
            break
        body.append(f"    out = f{i}({x})")
        if kind == "stop":
            body.append(f"    if p{i}.done or len(out) != 1: return rest({i}, out)")
        else:  # never done: zero items end the chunk here
            body.append(f"    if len(out) != 1: return rest({i}, out) if out else out")
        x = "out[0]"
    else:
        if record == "text":
            body.append(f"    record({x})")
        elif record == "check":
            body.append(f"    if type({x}) is str: record({x})")
        body.append("    return out" if x == "out[0]" else f"    return [{x}]")
    params = ["rest", "lensed", "accepts", "record", "watch"]
    params += [f"{kind}{i}" for i in range(len(kinds)) for kind in ("f", "p")]
    source = f"def build({', '.join(params)}):\n" + "\n".join("    " + line for line in body)
    namespace: dict[str, Any] = {}
    exec(source + "\n    return feed\n", namespace)  # only calls the objects passed in
    build: Callable[..., Callable[[Any], list[Any]]] = namespace["build"]
    return build


_PROVIDER_CUT = "the provider cut the message"
_NO_END = "the message ended without its end event"


class _Unread:
    """Channels that keep no text: what an :class:`_EndReader` hands its lens."""

    __slots__ = ()
    halted = False

    def feed(self, key: Any, kind: str, text: str) -> str:
        return text

    def end(self, key: Any, *, forced: bool | None = None) -> str:
        return ""

    def open_keys(self) -> list[Any]:
        return []


_UNREAD = _Unread()
_IGNORE = deque[Any](maxlen=0).append  # takes a chunk, keeps nothing (a C call)


class _EndReader:
    """Whether a provider's message ended, and how, read from its last chunks by a channel lens.

    For a stream no text stage reads (``collect()``, ``identity() | timeout()``,
    retry over a raw SDK stream): at the end, a channel lens reads the last
    :attr:`TAIL` chunks with channels that keep nothing, only to learn whether
    the provider cut the message (a ``length`` finish, an incomplete
    response) or ended it at all. Every provider says so in its last chunks
    (a finish chunk and a usage chunk; ``message_delta`` and
    ``message_stop``; ``response.completed``), so a stream pays one deque
    append per chunk, not a lens's parse. The chunks themselves pass on
    untouched. It is a reader, not a check: a chunk its lens cannot read (a
    helper event it refuses) gives no answer, and the end is then taken as
    natural, as without a reader.
    """

    TAIL = 4

    __slots__ = ("_lens", "read", "tail")

    def __init__(self, lens: Any) -> None:
        self._lens = lens
        self.tail: deque[Any] = deque(maxlen=self.TAIL)
        self.read = self.tail.append  # read(chunk): keep it (the last TAIL are kept)

    @classmethod
    def of(cls, find_lens: LensFactory, chunk: Any) -> _EndReader | None:
        """A reader for the stream whose first non-text chunk is ``chunk`` (``None``: none)."""
        try:
            lens = find_lens(chunk)
        except Exception:  # not a provider chunk this lookup knows: nothing to read
            return None
        if not (hasattr(lens, "process") and hasattr(lens, "finish_channels")):
            return None  # plain-text lenses (bytes) have no end to read
        return cls(lens)

    def cut(self) -> str | None:
        """At the end (once): why the message was cut, as a stop detail; ``None`` if it ended."""
        lens = self._lens
        try:
            for chunk in self.tail:
                lens.process(chunk, _UNREAD)
            said = bool(lens.truncated)
            lens.finish_channels(_UNREAD)  # sets ``truncated`` when no end event came
        except Exception:  # a chunk this lens cannot read: no answer
            return None
        if said:
            return _PROVIDER_CUT
        return _NO_END if lens.truncated else None


class _Held:
    """The holder of the item a ``feed_opt`` adapted by :func:`_from_feed_opt` made."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = None


def _from_feed_opt(feed_opt: Callable[[str], Any]) -> tuple[Callable[[str], bool], _Held]:
    """A processor's ``feed_opt`` as a direct feed of the ``feed_live`` form (see _Chain)."""
    held = _Held()

    def flagged(text: str, /) -> bool:
        x = feed_opt(text)
        if x is _NOTHING:
            return False
        held.value = x
        return True

    return flagged, held


def _source_object(it: object, owner: object) -> object:
    """The object an operator was called on (or its awaitable gave), once it is known."""
    if isinstance(it, _Awaited):  # an awaitable that gave the stream: known once awaited
        return it._obj
    return owner


def _provider_stream(obj: object) -> bool:
    """Whether ``obj`` is an OpenAI or Anthropic SDK stream (looked up, never imported).

    Such a stream always ends with an end event: one that ended with no chunk
    at all lost its connection.
    """
    for name in ("openai", "anthropic"):
        sdk = sys.modules.get(name)
        kinds = (getattr(sdk, "Stream", None), getattr(sdk, "AsyncStream", None))
        if any(isinstance(k, type) and isinstance(obj, k) for k in kinds):
            return True
    return False


class _Chain:
    """The per-stream state of one fused group of processors."""

    __slots__ = (
        "channels",
        "cuts_at_start",
        "direct",
        "feed",
        "find_lens",
        "finished",
        "halted",
        "last",
        "later",
        "lens",
        "procs",
        "reader",
        "record",
        "report",
        "seeds",
        "stages",
        "text_out",
        "upstream",
        "watch",
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
        upstream: Callable[[], object] | None = None,
        watch: bool = False,
        later: list[tuple[_Chain, bool]] | None = None,
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
        # The provider's cuts chains before the outermost read at their end,
        # which the outermost records at its own (see _provider_cut_after).
        self.later = later
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
        # Direct feed: a chain of one stage that takes text, never stops and
        # records nothing, whose processor turns a str into at most one item,
        # is fed by the driver's loop itself for every str chunk (what the
        # compiled feed would do, less a call, a type check and a list per
        # chunk: a parser's per-chunk cost is a few of those). The processor
        # says how as ``feed_live = (flagged, holder)``: ``flagged(text)`` is
        # True when the chunk yields an item, ``holder.value`` (read right
        # after) — so a parser's own feed() and live value serve with no layer
        # between — or as ``feed_opt(text)``, the item or ``_NOTHING`` (see
        # Processor), adapted to that form. Anything else takes ``feed``, as in
        # every other chain.
        self.direct: tuple[Callable[[str], bool], Any] | None = None
        if len(stages) == 1 and self.record == "none" and not watch:
            proc = self.procs[0]
            direct = getattr(proc, "feed_live", None)
            feed_opt = getattr(proc, "feed_opt", None)
            if direct is None and feed_opt is not None:
                direct = _from_feed_opt(feed_opt)
            accepts = stages[0].accepts
            if (
                direct is not None
                and accepts is not None
                and issubclass(str, accepts)
                and not stages[0].can_stop
            ):
                self.direct = direct
        # The object this (first) chain's source is: a streamops stream whose forced
        # end is this stream's, or an SDK stream (see _upstream_cut).
        self.upstream = upstream
        # ``watch``: no stage of the pipeline reads text, so no lens would see
        # a provider cut: non-text chunks also go to an _EndReader (str chunks
        # pay one type check; provider chunks a C call, once it is found).
        self.reader: _EndReader | Literal[False] | None = None if watch else False
        self.watch: list[Callable[[Any], object]] = [self._first_watched] if watch else []
        if watch:
            self.feed = _compile_feed(
                self.procs,
                stages,
                accepts=str,
                record=self.record,
                rest=self._rest,
                lensed=self._lensed,
                released=report._released,
                watch=self.watch,
            )

    def _first_watched(self, item: Any) -> None:
        """The first non-text chunk of a stream no text stage reads: find its end reader."""
        reader = self.reader = _EndReader.of(self.find_lens, item) or False
        self.watch[0] = _IGNORE if reader is False else reader.read
        if reader:
            reader.read(item)

    def _upstream_cut(self, pulled: int) -> None:
        """Carry over the forced end of the stream this chain's source is.

        ``op2(op1(source))`` ends like ``(op1 | op2)(source)``: a budget cut,
        block, quiet timeout or stop of ``op1``'s stream is a forced end of
        this one too, with its stop reason and detail (its processors are then
        truncated, not closed: a live partial secret is masked). An SDK
        stream that gave no chunk at all (``pulled``) ended without its end event.
        """
        if self.upstream is None:
            return
        source = self.upstream()
        inner = getattr(source, "report", None)
        if isinstance(inner, StreamReport):
            reason = inner.stop_reason
            if inner is not self.report and reason not in (None, StopReason.COMPLETE):
                self.report.stop(reason, inner.stop_detail)  # (a shared report has it)
        elif not pulled and _provider_stream(source):
            self.report.stop(StopReason.TRUNCATED, _NO_END)

    def finish(self, pulled: int = 1) -> list[Any]:
        """Flush every processor at the end of input (a halted chain is already flushed).

        The input ended *by force* when this stream was stopped (a budget, a
        quiet timeout or cancel, a block: see :meth:`_cut`) or the provider said
        it cut the message (a lens's ``truncated``): processors are then truncated,
        not closed, so that what they held back is never released as if the
        text were complete. So did the input of a chain whose source is a
        streamops stream that was stopped (:meth:`_upstream_cut`); ``pulled``
        counts the items it had.
        """
        self._upstream_cut(pulled)
        lens = self.lens
        channels = self.channels
        if channels is not None:  # a channel lens ends each open channel itself
            said = lens.truncated
            out: list[Any] = []
            if not self.halted:  # (a halted chain's did, at the halt)
                out = lens.finish_channels(channels)
                channels.settle()
            # Masking a partial secret at the provider's cut halts the chain: the cut
            # is still the stream's end (a stop recorded before it stays).
            self._provider_cut_after(said)
            self._record_later()
            return out
        reader = self.reader
        if reader:
            cut = reader.cut()
            if cut is not None:
                self.report.stop(StopReason.TRUNCATED, cut)
        self._provider_cut_after()
        forced = self.halted or self._cut() or bool(getattr(lens, "truncated", False))
        out = self.end(forced)
        self._record_later()
        if lens is not None and self.text_out:
            # A lens may hold part of a unit the cut left incomplete (the bytes of
            # half a character): ``truncate`` drops it where ``finish`` would fail.
            end = getattr(lens, "truncate", None) if forced else None
            final: list[Any] = lens.finish(out) if end is None else end(out)
            return final
        return out

    def _provider_cut_after(self, said: bool = True) -> None:
        """Record a provider's cut now, or at the end of the outermost chain (``later``).

        What a chain before the outermost releases at its end goes on to later
        stages that may stop the stream in it, at their own end (a ledger
        budget's chain holds a closing bracket until its arguments end): as
        when they run fused with this chain, their stop comes first.
        """
        if self.later is None or self.last:
            self._provider_cut(said)
        else:
            self.later.append((self, said))

    def _record_later(self) -> None:
        """The outermost chain at its end: record the provider's cuts chains before it read."""
        if self.last and self.later:
            for chain, said in self.later:
                chain._provider_cut(said)

    def _provider_cut(self, said: bool = True) -> None:
        """Record a message the provider cut (unless the stream was stopped already).

        ``said``: whether the provider said so (a ``length`` finish) before the
        end; otherwise the lens found no end event at all.
        """
        if getattr(self.lens, "truncated", False):
            self.report.stop(StopReason.TRUNCATED, _PROVIDER_CUT if said else _NO_END)

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

    def fork(self, kind: str, *, number: str | None = None) -> _Chain:
        """A chain of the same stages for another text channel of this stream.

        Each processor that defines ``fork(kind)`` shares its stream-wide state
        with the new one (a budget counts every channel); the others start fresh.
        Stages that do not apply to ``kind`` pass the text through.

        ``number``: the channel is one JSON number of tool-call arguments,
        written so, fed at once and ended (see ``_JSONStrings``). A processor
        that defines ``fork_number(number)`` makes its processor for it with
        that (the budget's takes a number whole or not at all: a cut number is
        another number); :meth:`renumbered` then tells whether the stages
        before it changed the number.
        """
        procs: list[Processor[Any, Any]] = []
        for stage, seed in zip(self.stages, self.seeds, strict=True):
            if not stage.applies_to(kind):
                procs.append(_Identity())
                continue
            fork_number = None if number is None else getattr(seed, "fork_number", None)
            if fork_number is not None:
                procs.append(fork_number(number))
                continue
            fork = getattr(seed, "fork", None)
            procs.append(fork(kind) if fork is not None else stage.factory(self.report))
        return _Chain(
            self.stages, self.report, last=self.last, procs=procs, record=kind == "content"
        )

    def renumbered(self) -> bool:
        """Whether a processor made by ``fork_number`` saw a number the stages before it changed."""
        return any(getattr(proc, "renumbered", False) for proc in self.procs)

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

    def drain(self, item: Any) -> list[Any]:
        """After a halt: ``item``, flushed at the stop by the stages before this chain (see _Flush).

        Its texts arrived before the stop: each goes on in a channel of its own,
        as at the stop the same stages fused with this chain release them: a
        channel whose stages were stopped (the budget's, cut) releases nothing
        more, the others pass them on. A stream without channels has only the
        one that stopped: nothing passes.
        """
        channels = self.channels
        if channels is None or not self.halted:
            return []
        channels.halted = False
        try:
            out: list[Any] = self.lens.process(item, channels)
        finally:
            channels.halted = True
        return out

    def drained(self) -> list[Any]:
        """After :meth:`drain`: end the channels the drained chunks opened (truncated)."""
        channels = self.channels
        if channels is None or not self.halted:
            return []
        channels.halted = False
        try:
            out: list[Any] = self.lens.finish_channels(channels)
            channels.settle()
        finally:
            channels.halted = True
        return out

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
            if chain.direct is not None:  # (see _Chain.direct)
                flagged, holder = chain.direct
                for item in source:
                    n += 1
                    if type(item) is str:
                        if flagged(item):
                            n_out += 1
                            yield holder.value
                        continue
                    out = feed(item)
                    start = n_out
                    for x in out:
                        n_out += 1
                        yield x
            else:
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
                try:
                    yield x
                except _Flush:  # (already at its end: it goes on)
                    pass
        except _Flush:
            out = out[n_out - start :]  # the rest of the batch it was handing on
            start = n_out
            closed = True
            _close(source)
            if owner:
                _close(owner.pop())
            out += chain.finish(n)
            for x in out:
                n_out += 1
                yield x
            return
        out = chain.finish(n)
        start = n_out
        for x in out:
            n_out += 1
            try:
                yield x
            except _Flush:
                pass
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
            if chain.direct is not None:  # (see _Chain.direct and _drive_sync)
                flagged, holder = chain.direct
                async for item in source:
                    n += 1
                    if type(item) is str:
                        if flagged(item):
                            n_out += 1
                            yield holder.value
                        continue
                    out = feed(item)
                    start = n_out
                    for x in out:
                        n_out += 1
                        yield x
            else:
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
                try:
                    yield x
                except _Flush:  # (already at its end: it goes on)
                    pass
        except _Flush:
            # (On the fast path the one item was handed on: ``start`` is older.)
            out = out[n_out - start :]  # the rest of the batch it was handing on
            start = n_out
            batch = closed = True
            await _aclose(source)
            if owner:
                await _aclose(owner.pop())
            out += chain.finish(n)
            for x in out:
                n_out += 1
                yield x
            return
        out = chain.finish(n)
        start = n_out
        for x in out:
            n_out += 1
            try:
                yield x
            except _Flush:
                pass
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


class SyncStream(_ClosedOnExit, Iterator[T]):
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

    def text(self) -> str:
        """Consume the rest of the stream and return the text it released."""
        for _ in self._it:
            pass
        return self.report.released_text


class AsyncStream(_AclosedOnExit, AsyncIterator[T]):
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
        report = _report_for(report, on_event, lens)
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
        # Only when no stage reads text does the first chain read the provider's end.
        reads = any(st.accepts is not None for g in groups if isinstance(g, list) for st in g)
        # The outermost driver records the released text, unless a shell's chain does.
        record = _absorb(groups)
        later: list[tuple[_Chain, bool]] = []  # (see _Chain._provider_cut_after)
        source = it
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
                chain = _Chain(
                    group,
                    report,
                    last=last,
                    record=record,
                    find_lens=lens,
                    upstream=functools.partial(_source_object, source, owner) if first else None,
                    watch=first and not reads,
                    later=later,
                )
                drive = _drive_async if is_async else _drive_sync
                if last:
                    it = drive(it, chain, first=first, owner=owner_cell, unstarted=unstarted)
                else:
                    it = drive(it, chain, first=first, owner=owner_cell)
                first = False
        return it  # the last group is always a driver: a generator


def _absorb(groups: list[ShellStage | list[ProcessorStage]]) -> bool:
    """Let shells that run text stages of their own take the stages right after them.

    A shell with a ``fused(stages, last=...)`` method (a budget with a ledger:
    a chain of its own runs its processor) runs the text stages that follow
    it in that chain, channel by channel and message by message, as they
    would run fused with it without the shell: a block after the budget
    stops the stream where it would there, before the budget counted the
    rest of the chunk. It takes the stages that produce text or pass it on
    (a value stage, ``parse_json``, and what follows stay in their group);
    ``last``: none is left after them, so its chain records the released
    text. Replaces the shells and groups in ``groups``; returns whether the
    outermost driver still records the released text.
    """
    record = True
    for n, group in enumerate(groups):
        fused = getattr(group, "fused", None)
        if fused is None or n + 1 == len(groups) or not isinstance(groups[n + 1], list):
            continue
        following = groups[n + 1]
        assert isinstance(following, list)
        k = 0
        for stage in following:
            if not (stage.produces is str or stage.produces == "same"):
                break
            if k == 0 and stage.accepts is not None and not issubclass(str, stage.accepts):
                break
            k += 1
        last = k == len(following) and n + 2 == len(groups)
        groups[n] = fused(following[:k], last=last)
        groups[n + 1] = following[k:]
        record = record and not last
    return record


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
