"""Token and cost budgets: cut a stream exactly at N tokens, locally or against a shared ledger.

``budget()`` counts the tokens of the text passing through with the exact
incremental counter of :mod:`streamops._budget._tokens`, releases text as soon as it
is certain to be within budget, and when the budget runs out emits exactly the
text of the first ``limit`` tokens, stops pulling and closes the upstream.

Without a ledger the operator is one sans-I/O processor (fused, sync and async
streams). With a ledger it is one async shell stage that owns the same
processor for its stream. Before it pulls the first chunk it reserves a first
share (at least one token, so a key with budget left never starves a stream,
and a key with none left ends the stream before the source is even pulled).
For each chunk it pulls, it first tops up the processor's *allowance* by
reserving what the text received so far may need, then feeds the chunk, so
nothing waits for the next chunk. A top-up asks for the exact count of the
text that is final as *required* and for the rest of a whole block as
*extra*; the ledger grants extra only from half of what is left (see
:mod:`streamops._budget._ledger`), and only a shortfall in the required part ends
the stream. A text that comes whole (a tool's output, a whole tool input)
ends its channel as soon as it is fed, so it cannot wait for more: the
shell reads each chunk ahead (``read_ahead`` of its own lens) and requires
the exact count of its whole texts, and everything a chunk that ends a
channel may need. A channel that still ends over its allowance is cut.
However the stream ends it charges the ledger for the tokens its consumer
received, cancels reservations whose answer it never got, and
refunds the rest, in one task shielded from cancellation but bounded by
``cleanup_timeout``. The processor never awaits anything; all ledger I/O
happens in the shell.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import tiktoken
from pydantic import BaseModel, Field, PrivateAttr, computed_field

from .._core._channels import _Halt, _JSONStrings
from .._core._driver import Operator, _Chain, _drive_async, _Flush, _undelivered
from .._core._errors import (
    BudgetExceededError,
    ChunkTypeError,
    LedgerUnavailableError,
    require_asyncio,
)
from .._core._report import StopReason, StreamReport
from .._core._stages import (
    ALL_CHANNELS,
    ChannelLens,
    Lens,
    ProcessorStage,
    ShellStage,
    _check_channels,
    _lens_for,
)
from .._core._validate import check_int, check_number, check_str, is_number
from ._ledger import Ledger, MemoryLedger, RedisLedger, Reservation
from ._pricing import DEFAULT_PRICES, ModelPrice, PriceTable, PricingError
from ._tokens import (
    EncodingUnavailableError,
    TokenCounter,
    _splitter_for,
    count_tokens,
    get_encoding,
    resolve_encoding,
    utf8_len,
)

__all__ = (
    "DEFAULT_PRICES",
    "BudgetExceededError",
    "BudgetUsage",
    "EncodingUnavailableError",
    "Ledger",
    "LedgerUnavailableError",
    "MemoryLedger",
    "ModelPrice",
    "PriceTable",
    "PricingError",
    "ProviderUsage",
    "RedisLedger",
    "Reservation",
    "TokenCounter",
    "budget",
    "count_tokens",
    "get_encoding",
    "resolve_encoding",
)

OnExhausted = Literal["truncate", "raise"]


class ProviderUsage(BaseModel):
    """Token usage as reported by the provider (e.g. on the final chunk).

    >>> ProviderUsage(prompt_tokens=10, completion_tokens=5).total
    15
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    @property
    def total(self) -> int | None:
        """``total_tokens`` if given, else the sum of the two parts when both are known."""
        if self.total_tokens is not None:
            return self.total_tokens
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


class BudgetUsage(BaseModel):
    """The ``"budget"`` section of a stream's report: tokens, cost, limit, ledger.

    ``completion_tokens`` counts the streamed text (capped at ``limit`` when
    the budget cut it; when the stream ended early, because the consumer left,
    an error or a cancellation, it counts the text the budget had released).
    On provider chunks it is the sum over every text channel the budget
    counts (answer, refusal, reasoning, tool-call arguments: what providers
    bill as completion tokens), each channel counted on its own;
    ``channel_tokens`` splits it by kind of channel once the stream ended.
    ``cost`` is ``None`` when no price is known. Integrations
    that see the provider's own usage call :meth:`record_provider_usage`;
    ``usage_mismatch`` then says whether the provider counted differently.

    >>> s = budget(max_tokens=100)(["Hello world"])
    >>> _ = list(s)
    >>> usage = s.report["budget"]
    >>> usage.completion_tokens, usage.limit, usage.exhausted
    (2, 100, False)
    >>> usage.record_provider_usage(prompt_tokens=7, completion_tokens=2)
    >>> usage.usage_mismatch
    False
    """

    encoding: str
    model: str | None = None
    limit: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    exhausted: bool = False
    warned: bool = False
    provider: ProviderUsage | None = None
    ledger_key: str | None = None
    ledger_reserved: int = 0
    ledger_refunded: int = 0
    ledger_error: str | None = None
    channel_tokens: dict[str, int] = Field(default_factory=dict)
    cost_source: Literal["counted", "provider"] = "counted"
    """Whose token counts :attr:`cost` is for: ours, or the usage the provider reported."""
    _live: Callable[[], int] | None = PrivateAttr(default=None)
    _price: ModelPrice | None = PrivateAttr(default=None)
    _pool: Any = PrivateAttr(default=None)  # the stream's _Pool (its channels join it)

    def __eq__(self, other: object) -> bool:
        # The fields only: the private links to a stream's live state differ per stream.
        if not isinstance(other, BudgetUsage):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    def tokens_so_far(self) -> int:
        """Completion tokens streamed so far, for a live display.

        While the stream runs: the exact count of the text the budget has taken
        in up to now (released or still held back near the limit); once it
        ended: :attr:`completion_tokens`.

        >>> s = budget(max_tokens=100)(iter(["Hello world", "!"]))
        >>> _ = next(s)
        >>> s.report["budget"].tokens_so_far()
        2
        """
        return self.completion_tokens if self._live is None else self._live()

    def cost_so_far(self) -> float | None:
        """The cost of the prompt and :meth:`tokens_so_far` (``None`` without a price)."""
        if self._live is None or self._price is None:
            return self.cost
        return self._price.cost(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.tokens_so_far()
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def usage_mismatch(self) -> bool | None:
        """Whether the provider's completion count differs from ours (None if unknown)."""
        if self.provider is None or self.provider.completion_tokens is None:
            return None
        return self.provider.completion_tokens != self.completion_tokens

    def record_provider_usage(
        self,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        total_tokens: int | None = None,
    ) -> None:
        """Record the usage the provider reported (both counts are kept).

        The provider's count is what it bills: with a price, :attr:`cost` is
        then the cost of its counts (:attr:`cost_source` ``"provider"``).
        Lenses call this for the usage a stream carries.
        """
        self.provider = ProviderUsage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
        )
        self._reprice()

    def _reprice(self) -> None:
        """Cost the provider's counts when it reported them (else keep ours)."""
        provider = self.provider
        if self._price is None or provider is None or provider.completion_tokens is None:
            return
        prompt = self.prompt_tokens if provider.prompt_tokens is None else provider.prompt_tokens
        self.cost = self._price.cost(
            prompt_tokens=prompt, completion_tokens=provider.completion_tokens
        )
        self.cost_source = "provider"


# ---------------------------------------------------------------------------
# the sans-I/O core
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    """Validated options shared by every stream of one budget operator."""

    name: str
    encoding: tiktoken.Encoding
    model: str | None
    max_tokens: int | None
    max_cost: float | None
    limit: int | None
    price: ModelPrice | None
    prompt_tokens: int
    ledger: Ledger | None
    key: str | None
    block: int
    fail_open: bool
    cleanup_timeout: float
    on_exhausted: str
    warn_at: float | None
    channels: frozenset[str]


class _Pool:
    """What the text channels of one stream share: the allowance, the total, the stop, the usage.

    Providers bill reasoning and tool-call tokens as completion tokens, so one
    budget covers every channel of a stream. Each channel is a
    :class:`_BudgetCore` with its own token counter (tokens never span
    channels); the pool adds them up. A channel's room is the allowance less
    what the other channels use: the tokens of the channels that ended, and
    for the open ones their committed tokens plus the exact count of their
    pending text (as if it ended now). The channel that reaches the allowance
    cuts the stream for all; the others then keep the text they took in
    before the cut, which was counted.
    """

    __slots__ = (
        "allowance",
        "arrivals",
        "closed",
        "closed_tokens",
        "done",
        "final",
        "kinds",
        "open",
        "report",
        "spec",
        "stopped",
        "undo",
        "usage",
        "warn_tokens",
    )

    def __init__(self, spec: _Spec, report: StreamReport) -> None:
        self.spec = spec
        self.report = report
        self.open: list[_BudgetCore] = []  # the channels taking text, in the order they came
        self.closed_tokens = 0  # the tokens of the channels that ended
        self.kinds: dict[str, int] = {}  # the same, per kind of channel
        self.arrivals = 0  # channels that got text so far
        self.done = False  # the stream was cut: no channel takes more
        self.stopped = False  # the usage is final for good (cut or aborted)
        self.closed = False  # the usage is final: every channel ended (or stopped)
        # The tokens released before the last output that ended the stream
        # (see retract_last), or None while it runs.
        self.undo: int | None = None
        if spec.ledger is None:
            self.allowance: int | None = spec.limit
            self.final = True
        else:  # the ledger shell grants the allowance block by block
            self.allowance = 0
            self.final = False
        self.warn_tokens = (
            None
            if spec.warn_at is None or spec.limit is None
            else math.ceil(spec.warn_at * spec.limit)
        )
        self.usage = report.section("budget", self._new_usage)
        self.usage._live = self.live
        self.usage._price = spec.price
        self.usage._pool = self

    def _new_usage(self) -> BudgetUsage:
        spec = self.spec
        return BudgetUsage(
            encoding=spec.encoding.name,
            model=spec.model,
            limit=spec.limit,
            max_tokens=spec.max_tokens,
            max_cost=spec.max_cost,
            prompt_tokens=spec.prompt_tokens,
            ledger_key=spec.key,
        )

    # -- channels ------------------------------------------------------------
    def join(self, core: _BudgetCore) -> None:
        self.open.append(core)
        if self.done:
            core.done = True
        if self.closed and not self.stopped:  # a new block after the others ended
            self.closed = False
            self.usage._live = self.live

    def ended(self, core: _BudgetCore) -> None:
        """Channel ``core`` ended: its count is final."""
        try:
            self.open.remove(core)
        except ValueError:  # pragma: no cover - ended twice
            return
        tokens = core.used_now()
        self.closed_tokens += tokens
        self.kinds[core.kind] = self.kinds.get(core.kind, 0) + tokens
        if not self.open and not self.stopped:
            self.finish(self.used())

    def room(self, core: _BudgetCore) -> int | None:
        """The allowance left to ``core``: the allowance less what the other channels use."""
        allowance = self.allowance
        if allowance is None or (len(self.open) == 1 and not self.closed_tokens):
            return allowance
        others = self.closed_tokens + sum(c.used_now() for c in self.open if c is not core)
        return allowance - others

    # -- counts --------------------------------------------------------------
    def used(self) -> int:
        """Tokens delivered: every channel's count, capped at the allowance when cut."""
        total = self.closed_tokens + sum(c.used_now() for c in self.open)
        return total if self.allowance is None else min(total, self.allowance)

    def released(self, *, but: _BudgetCore | None = None) -> int:
        """The tokens of the text released so far (``but`` one channel)."""
        return self.closed_tokens + sum(c.released_tokens() for c in self.open if c is not but)

    def exact_need(self) -> int:
        """The exact token count of the text received so far (changes no state)."""
        return self.closed_tokens + sum(c.exact_count() for c in self.open)

    def live(self) -> int:
        return self.usage.completion_tokens if self.closed else self.exact_need()

    def need_for(self, texts: list[str], into: _BudgetCore | None = None) -> tuple[int, int]:
        """What releasing everything needs once ``texts`` are fed: ``(required, at most)``.

        ``into`` is the channel the texts go to when it is known (a ``str``
        stream); else each text may open a channel or go to any, so it adds
        its bytes to the bound (at least one byte per token).
        """
        required = at_most = self.closed_tokens
        joined = "".join(texts)
        for core in self.open:
            final, most = core.need_for(joined if core is into else "")
            required += final
            at_most += most
        if into is None or into not in self.open:
            at_most += utf8_len(joined)
        return required, at_most

    # -- the allowance -------------------------------------------------------
    def grant(self, tokens: int, *, final: bool) -> None:
        """Raise the allowance by ``tokens``; ``final`` means no more will come."""
        limit = self.spec.limit
        allowance = (self.allowance or 0) + tokens
        if limit is not None and allowance >= limit:
            allowance, final = limit, True
        self.allowance = allowance
        self.final = self.final or final
        self._reclaim()

    def _reclaim(self) -> None:
        # More allowance: the channels waiting for it claim it in the order their
        # text came, a lone one too (a text that comes whole next must not take
        # the room of text that came before it).
        waiting = [c for c in self.open if c.cap is None and c.limit_at is not None]
        for core in sorted(waiting, key=lambda c: c.seq):
            core.limit_at = self.room(core)

    def open_allowance(self) -> None:
        """Stop metering against the ledger (fail open): only static limits apply."""
        self.allowance = self.spec.limit
        self.final = True
        self._reclaim()

    def exhaust(self) -> None:
        """End the stream now, at the allowance it has (the ledger has nothing left)."""
        if not self.done:
            self.undo = self.released()
            self.cut([])

    def cut(self, out: list[str]) -> list[str]:
        """The allowance is reached: every channel stops; ``out`` is the cut channel's last text."""
        self.done = True
        for core in self.open:
            core.done = True
        usage = self.usage
        usage.exhausted = True
        self.report.stop(StopReason.BUDGET)
        self.report.emit("budget.exhausted", stage=self.spec.name, limit=self.allowance)
        self.stopped = True
        self.finish(self.used())
        if self.spec.on_exhausted == "raise":
            raise BudgetExceededError(
                f"token budget of {self.allowance} exhausted",
                limit=self.allowance or 0,
                remainder="".join(out),
            )
        return out

    # -- the end -------------------------------------------------------------
    def abort(self) -> None:
        """The stream ended early: count what was released (the rest never reached anyone)."""
        if not self.closed and not self.stopped:
            self.stopped = True
            self.finish(self.released(), released=True)

    def retract_last(self) -> None:
        """The output that ended the stream never reached the consumer: do not count it."""
        if self.undo is not None and self.closed:
            self.stopped = True
            # The released prefix counted on its own may exceed the whole text's
            # count (' lambd' is 2 tokens, ' lambda' 1): a retraction never raises it.
            self.finish(min(self.undo, self.usage.completion_tokens))

    def finish(self, completion_tokens: int, *, released: bool = False) -> None:
        self.closed = True
        usage = self.usage
        usage._live = None
        usage.completion_tokens = completion_tokens
        kinds = dict(self.kinds)
        for core in self.open:
            n = core.released_tokens() if released else core.used_now()
            kinds[core.kind] = kinds.get(core.kind, 0) + n
        usage.channel_tokens = {k: n for k, n in kinds.items() if n}
        self.check_warn(completion_tokens)
        if self.spec.price is not None:
            usage.cost = self.spec.price.cost(
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
            )
            usage._reprice()  # the provider's own count, when the stream carried it

    def check_warn(self, tokens: int | None = None) -> None:
        warn = self.warn_tokens
        if warn is None or self.usage.warned:
            return
        if tokens is None:
            tokens = self.closed_tokens + sum(c.counter.committed for c in self.open)
        if tokens >= warn:
            self.usage.warned = True
            self.report.emit(
                "budget.warning", stage=self.spec.name, tokens=tokens, limit=self.spec.limit
            )


class _BudgetCore:
    """Per-channel processor: releases text within the allowance, cuts it exactly at the end.

    One core per text channel of a stream (the first made by the stage, the
    others by :meth:`fork`), all drawing on one :class:`_Pool`. Invariant:
    everything the counter has committed was released (committed tokens
    never exceed the channel's room), so the unreleased text is a suffix of
    the counter's pending text, starting at offset ``rel``.
    """

    __slots__ = (
        "_enc",
        "_pbytes",
        "_prov",
        "_rel",
        "_splitter",
        "cap",
        "counter",
        "done",
        "ended",
        "kind",
        "limit_at",
        "pool",
        "report",
        "seq",
        "spec",
        "usage",
    )

    def __init__(
        self,
        spec: _Spec,
        report: StreamReport,
        *,
        pool: _Pool | None = None,
        kind: str = "content",
    ) -> None:
        self.spec = spec
        self.report = report
        self._enc = spec.encoding
        self._splitter = _splitter_for(spec.encoding)
        # Smaller batches than the counter's default keep the byte bound (and so
        # the hold-back near the limit and the ledger's reservations) tight.
        self.counter = TokenCounter(spec.encoding, batch=1024)
        self.done = False
        self.ended = False  # this channel's text is over
        self._rel = 0  # released characters of the counter's pending text
        self._pbytes = 0  # UTF-8 length of the counter's pending text
        self._prov = -1  # the exact count of the pending text, or -1 when stale
        self.cap: int | None = None  # where the stream was cut in this channel
        # The allowance this channel had when its text last came (see used_now).
        self.limit_at: int | None = None
        self.seq = -1  # when its first text came, among the stream's channels (-1: none yet)
        self.kind = kind
        self.pool = _Pool(spec, report) if pool is None else pool
        self.usage = self.pool.usage
        self.pool.join(self)

    def fork(self, kind: str | None = None) -> _BudgetCore:
        """The core of another text channel of this stream: its own counter, the same budget."""
        return _BudgetCore(self.spec, self.report, pool=self.pool, kind=kind or "other")

    def fork_number(self, number: str) -> _NumberCore:
        """The core of one JSON number of tool-call arguments (see :class:`_NumberCore`)."""
        return _NumberCore(self.spec, self.report, self.pool, number)

    # The stream-wide state, for callers that look at one core.
    @property
    def allowance(self) -> int | None:
        return self.pool.allowance

    @property
    def final(self) -> bool:
        return self.pool.final

    @property
    def closed(self) -> bool:
        return self.pool.closed

    # -- the Processor protocol ---------------------------------------------
    def feed(self, text: str, /) -> list[str]:
        if self.done:
            return []
        self._prov = -1
        counter = self.counter
        pool = self.pool
        if self.seq < 0:
            self.seq = pool.arrivals
            pool.arrivals += 1
        allowance = self.limit_at = pool.room(self)
        before = counter.committed
        self._pbytes += utf8_len(text)
        if allowance is None or before + self._pbytes <= allowance:
            # Every token that can start in the text so far fits: release it all.
            rel = self._rel
            held = counter.pending_text()[rel:] if rel < counter.pending_chars else ""
            counter.feed(text)
            if counter.committed != before:
                self._pbytes = utf8_len(counter.pending_text())
                pool.check_warn()
            self._rel = counter.pending_chars
            return [held + text] if held or text else []
        counter.append(text)
        return self._exact(end_of_input=False)

    def close(self) -> list[str]:
        if self.ended:
            return []
        # A channel cut by another keeps what it took in before the cut (it was
        # counted); the channel that was cut keeps nothing more.
        out = [] if self.cap is not None else self._exact(end_of_input=True)
        self.ended = True
        self.pool.ended(self)
        return out

    def retract_last(self) -> None:
        """The output that ended the stream never reached the consumer: do not count it.

        Called by the ledger shell when the stream is cancelled or fails
        between the budget cut (or the end of input) and handing out its last
        text, e.g. while the upstream closes.
        """
        self.pool.retract_last()

    def abort(self) -> None:
        """The stream ended early: count what was released (the rest never reached anyone)."""
        self.pool.abort()

    def released_tokens(self) -> int:
        """The token count of the text this channel released so far."""
        if self.ended:
            return self.used_now()
        counter = self.counter
        rel = self._rel
        if rel <= 0:
            return counter.committed
        return counter.committed + len(self._enc.encode_ordinary(counter.pending_text()[:rel]))

    def exact_count(self) -> int:
        """The exact token count of this channel's text so far (changes no state)."""
        prov = self._prov
        if prov < 0:
            prov = self._prov = len(self._enc.encode_ordinary(self.counter.pending_text()))
        return self.counter.committed + prov

    def used_now(self) -> int:
        """What this channel claims of the allowance.

        Its count, but no more than the allowance it had when its text came
        (tokens count in the order they arrive: text a channel holds back
        over its room does not take the room of text that came before it in
        another channel), nor more than where it was cut.
        """
        count = self.exact_count()
        limit = self.limit_at if self.cap is None else self.cap
        return count if limit is None or count < limit else limit

    # -- used by the ledger shell -------------------------------------------
    def need_for(self, text: str) -> tuple[int, int]:
        """What releasing this channel needs once ``text`` is fed: ``(required, at most)``.

        ``required`` is the exact count of the text that is final (later text
        cannot change it); ``at most`` adds the tail that may still change,
        counted by its bytes (at least one byte per token), which is what lets
        :meth:`feed` release all of it.
        """
        self.tighten()  # keeps the pending text (and so this encode) short
        counter = self.counter
        pending = counter.pending_text() + text
        cut = self._splitter.final_cut(pending)
        final = counter.committed + (len(self._enc.encode_ordinary(pending[:cut])) if cut else 0)
        return final, final + utf8_len(pending[cut:])

    def tighten(self) -> None:
        """Commit what is final and within the allowance, so :meth:`need_for` is tight."""
        if not self.done:
            self._exact(end_of_input=False, release=False)

    # -- internals -----------------------------------------------------------
    def _release_to(self, end: int) -> list[str]:
        rel = self._rel
        if end <= rel:
            return []
        self._rel = end
        return [self.counter.pending_text()[rel:end]]

    def _exact(self, *, end_of_input: bool, release: bool = True) -> list[str]:
        """Find exactly what is within the allowance; commit and release it."""
        self._prov = -1
        counter = self.counter
        enc = self._enc
        pending = counter.pending_text()
        cut = len(pending) if end_of_input else self._splitter.final_cut(pending)
        if not release and self._rel < cut:
            return []  # committing would leave unreleased text behind the commit point
        tokens = enc.encode_ordinary(pending[:cut]) if cut else []
        pool = self.pool
        allowance = pool.room(self)
        if release:
            self.limit_at = allowance
        room = None if allowance is None else max(0, allowance - counter.committed)
        tail = pending[cut:]
        if room is None or len(tokens) < room or (len(tokens) == room and not tail):
            counter.commit_text(pending[:cut], len(tokens))
            self._rel -= cut
            self._pbytes = utf8_len(tail)
            pool.check_warn()
            if not release:
                return []
            out = [pending[self._rel + cut : cut]] if self._rel < 0 else []
            self._rel = max(self._rel, 0)
            if room is None:
                return _joined(out + self._release_to(len(tail)))
            # A token starting in the tail holds at least one of its bytes.
            spare = room - len(tokens)
            if tail.isascii():
                certain = min(len(tail), spare)
            else:
                head = tail.encode("utf-8", "surrogatepass")[:spare]  # (lone surrogates too)
                certain = len(head.decode("utf-8", "ignore"))
            return _joined(out + self._release_to(certain))
        # The allowance ends inside the final text: the text of its first
        # `room` tokens, backed off to a whole character.
        end = len(enc.decode_bytes(tokens[:room]).decode("utf-8", "ignore"))
        if not release:
            return []
        rel = self._rel
        self._rel = max(rel, end)
        out = [pending[rel:end]] if end > rel else []
        if pool.done:  # another channel cut the stream: keep what fits, no second cut
            self.cap = counter.committed + room
            return out
        if not pool.final and not end_of_input:
            return out  # wait: the ledger shell may grant more
        # (A channel that ended over an allowance the ledger shell could still
        # raise is cut all the same: nothing more can be released from it, and
        # dropping the rest silently would report a complete stream.)
        if pool.undo is None:
            pool.undo = pool.released(but=self) + counter.committed
            pool.undo += len(enc.encode_ordinary(pending[:rel])) if rel > 0 else 0
        self.cap = counter.committed + room
        self.done = True
        return pool.cut(out)


class _NumberCore(_BudgetCore):
    """The core of one JSON number of tool-call arguments: released whole or not at all.

    A cut number is another number (``12345`` cut after two tokens is ``123``,
    valid JSON and wrong), and what a cut delivers must be a prefix of what
    the uncut stream delivers. The number comes as one message, fed and ended
    at once: the core takes all of it in and decides at the end, when the
    stages before it have closed. Unless they changed it (redaction makes a
    card number ``[CREDIT_CARD]``, which the arguments carry as a JSON
    string): it is then text like a string's, cut at its tokens, and
    :attr:`renumbered` tells the arguments' reader to write what was released
    of it as an open string (even nothing of it: a ledger budget after the
    redaction reads the string's opening quote before its text).
    """

    __slots__ = ("_number", "renumbered")

    def __init__(self, spec: _Spec, report: StreamReport, pool: _Pool, number: str) -> None:
        super().__init__(spec, report, pool=pool, kind="tool_arguments")
        self._number = number
        self.renumbered = False

    def feed(self, text: str, /) -> list[str]:
        if self.done:
            return []
        pool = self.pool
        if self.seq < 0:
            self.seq = pool.arrivals
            pool.arrivals += 1
        self._prov = -1
        self.limit_at = pool.room(self)
        self._pbytes += utf8_len(text)
        self.counter.append(text)
        return []

    def close(self) -> list[str]:
        if self.ended:
            return []
        counter = self.counter
        out: list[str] = []
        if self.cap is None and counter.pending_chars:
            if counter.pending_text() != self._number:
                self.renumbered = True
                out = self._exact(end_of_input=True)
            else:
                out = self._whole()
        self.ended = True
        self.pool.ended(self)
        return out

    def _whole(self) -> list[str]:
        """All of the number if it fits the allowance, else none of it (and the cut)."""
        pool = self.pool
        room = self.limit_at = pool.room(self)
        self._prov = -1
        if room is None or self.exact_count() <= room:
            return self._exact(end_of_input=True)
        self.cap = self.counter.committed
        if pool.done:  # another channel cut the stream
            return []
        if pool.undo is None:
            pool.undo = pool.released(but=self) + self.counter.committed
        self.done = True
        return pool.cut([])


def _joined(pieces: list[str]) -> list[str]:
    # One piece per feed: a consumer sees adjacent released text as one chunk.
    return ["".join(pieces)] if len(pieces) > 1 else pieces


# ---------------------------------------------------------------------------
# the ledger shell
# ---------------------------------------------------------------------------


class _LedgerBudget(ShellStage):
    """The budget with a ledger: one async stage that owns the stream's processor.

    For each chunk it pulls, it reserves what the text may need *before*
    feeding the chunk, so text is released as soon as it arrives: for a
    provider chunk, what every text it carries may need in all channels
    (``lens.texts``) and the exact count of the texts that come whole in it
    (``lens.read_ahead``), read with a lens of its own. The stream's processors
    run through the core's own chain (``_Chain``), which reads and rebuilds
    provider chunks, gives each channel its core and halts at the cut.

    That chain also runs the text stages right after the budget (see
    :meth:`fused`), as the budget without a ledger runs fused with them. At a
    stop, the driver of the stages before it is asked to flush
    (``_Flush``): what they held from before the stop in other channels
    comes out as the same stages fused with the budget release it.
    """

    __slots__ = ("after", "last", "spec")

    def __init__(
        self, spec: _Spec, after: tuple[ProcessorStage, ...] = (), *, last: bool = False
    ) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.after = after
        self.last = last

    def fused(self, after: list[ProcessorStage], *, last: bool) -> _LedgerBudget:
        """This budget running ``after`` (the text stages after it) in its own chain.

        Channel by channel and message by message, as without a ledger: a block
        after the budget stops the stream where it would there (not after the
        budget counted the rest of the chunk), and a redaction after it sees
        what the budget released of each channel. ``last``: no stage comes
        after them, so the chain records the released text.
        """
        return _LedgerBudget(self.spec, tuple(after), last=last)

    def wrap_async(self, source: AsyncIterator[Any], report: StreamReport) -> AsyncIterator[Any]:
        return self._run(source, _Pool(self.spec, report), report)

    async def _run(
        self, source: AsyncIterator[Any], pool: _Pool, report: StreamReport
    ) -> AsyncGenerator[Any, None]:
        spec = self.spec
        ledger, key = spec.ledger, spec.key
        assert ledger is not None
        assert key is not None  # budget() requires a key with a ledger
        usage = pool.usage
        book = _Book()
        # The stream's processors run through the pool's own chain (str or
        # provider chunks, every channel, forks, halting), as in the fused
        # driver; this loop only reserves before each feed and settles after.
        made: list[_BudgetCore] = []

        def factory(report: StreamReport) -> _BudgetCore:
            # The answer's channel first; the stage makes the channels it does
            # not fork (when the answer is not counted) in the same pool.
            made.append(_BudgetCore(spec, report, pool=pool, kind="other" if made else "content"))
            return made[-1]

        chain = _Chain(
            [ProcessorStage(self.name, factory, channels=spec.channels), *self.after],
            report,
            last=self.last,
            find_lens=report.lens_factory,
        )
        main = made[0] if made else None  # the channel a str chunk goes to

        async def reserve(required: int, at_most: int) -> None:
            """Top the allowance up to ``at_most`` (whole blocks); only ``required`` must come."""
            allowance = pool.allowance or 0
            short = at_most - allowance
            if pool.final or short <= 0:
                return
            need = max(0, required - allowance)
            want = -(-short // spec.block) * spec.block
            if spec.limit is not None:  # never hold more than the local limit allows
                want = max(need, min(want, spec.limit - allowance))
            got = await ask(need, want - need)
            if got is None:
                return
            if got == need < want:
                # No headroom at all: the key has at most one token left beyond
                # what was required. Ask for the rest of ``at_most`` as required,
                # so the allowance is final now if it cannot cover it (a channel
                # over it is cut at once, as without a ledger, not at the end).
                rest = short - got
                more = await ask(rest, 0)
                if more is None:
                    return
                pool.grant(got + more, final=more < rest)
                return
            pool.grant(got, final=got < need)

        async def ask(need: int, extra: int) -> int | None:
            """One reservation; the tokens granted (``None``: the ledger is down, fail open)."""
            # Named before the call: if no answer comes (cancelled, timed out),
            # the settlement cancels it, so an unanswered call charges nothing.
            rid = uuid.uuid4().hex
            book.unsure.append(rid)
            try:
                got = await ledger.reserve(key, need, extra=extra, rid=rid)
            except LedgerUnavailableError as exc:
                usage.ledger_error = str(exc)
                report.emit("budget.ledger_unavailable", stage=self.name, error=str(exc))
                if not spec.fail_open:
                    raise
                pool.open_allowance()
                return None
            book.unsure.remove(rid)
            if got.tokens:
                entry = book.held.setdefault(got.bucket, [got, 0])
                entry[0] = got
                entry[1] += got.tokens
                usage.ledger_reserved += got.tokens
            return got.tokens

        async def settle() -> None:
            # Charge what the consumer received; one task at a time cancels and
            # refunds the rest, shielded: however often the stream is cancelled
            # meanwhile, it completes, but never outlives cleanup_timeout.
            if not pool.closed:
                pool.abort()
            cancelled: asyncio.CancelledError | None = None
            while True:
                task = book.task
                if task is None or task.done():
                    job = self._settlement(ledger, book, usage, report)
                    if job is None:
                        break
                    task = book.task = asyncio.ensure_future(job)
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError as exc:
                    cancelled = cancelled or exc
            if cancelled is not None:
                raise cancelled

        async def settle_first() -> None:
            # Settle at once, before the last text: the consumer may hold it for
            # long. If the stream dies before handing it out, it is not charged.
            try:
                await settle()
            except BaseException:
                pool.retract_last()
                raise

        lens: Lens | ChannelLens | None = None  # reads what each chunk may need

        def need_of(item: Any) -> tuple[int, int]:
            """What feeding ``item`` may need: ``(required, at most)`` (see _Pool.need_for)."""
            nonlocal lens
            if isinstance(item, str):
                return pool.need_for([item], into=main)
            if lens is None:
                lens = _lens_for(report, item)
                if lens is None:
                    raise ChunkTypeError(index, item, "str", _LENS_HINT)
            texts = _texts(lens, item)
            need = pool.need_for(texts)
            if not texts:
                # A chunk without text may end channels (a finish reason, a
                # block stop): what they hold is released now, so it must fit.
                exact = pool.exact_need()
                need = (max(need[0], exact), max(need[1], exact))
            return self._ahead(need, _lens_ahead(lens, item))

        async def flushed() -> list[Any]:
            """At a stop: what the stages before hold from before it, through the chain."""
            if getattr(source, "ag_code", None) is not _drive_async.__code__:
                return []  # (no stage before this one: nothing is held)
            upstream: AsyncGenerator[Any, None] = source  # type: ignore[assignment]
            items: list[Any] = []
            try:
                items.append(await upstream.athrow(_Flush()))
                while True:
                    items.append(await anext(upstream))
            except (StopAsyncIteration, _Flush):
                pass
            out: list[Any] = []
            for item in items:
                if not pool.done:  # a block stopped the stream: the budget still counts
                    await reserve(*need_of(item))
                out += chain.drain(item)
            return out + chain.drained()

        index = 0
        handing: list[Any] = []  # the batch being handed on, ``sent`` of it so far
        sent = 0
        try:
            require_asyncio("budget(ledger=...)")  # its settlement is shielded on asyncio
            # A first share before the first pull: a key with budget left gives
            # every stream some; a key with none ends it without a request.
            await reserve(1, spec.block)
            if pool.final and not pool.allowance:
                pool.exhaust()
                await _aclose(source)
                await settle()
                return
            while True:
                try:
                    item = await anext(source)
                except StopAsyncIteration:
                    exact = pool.exact_need()
                    if lens is not None:  # held boundaries may release whole texts now
                        exact = self._ahead((exact, exact), _lens_ahead(lens, end=True))[0]
                    await reserve(exact, exact)
                    if pool.undo is None:
                        pool.undo = pool.released()
                    handing, sent = chain.finish(), 0
                    await settle_first()
                    for sent, x in enumerate(handing, 1):  # noqa: B007 (read on the way out)
                        yield x
                    return
                need = need_of(item)
                index += 1
                await reserve(*need)
                try:
                    handing, sent = chain.feed(item), 0
                except _Halt as halt:
                    # Recorded as released, not yet delivered (see the except below).
                    handing, sent = halt.out, 0
                    # At once, before the last chunk: the consumer may hold it for long.
                    try:
                        handing += await flushed()
                        await _aclose(source)
                        handing += chain.finish()
                    except BaseException:
                        pool.retract_last()
                        raise
                    await settle_first()
                    for sent, x in enumerate(handing, 1):  # noqa: B007 (read on the way out)
                        yield x
                    return
                # Counted before the yield: a consumer that leaves has it.
                for sent, x in enumerate(handing, 1):  # noqa: B007 (read on the way out)
                    yield x
        except BaseException:
            chain.abort()
            if self.last:  # the text the consumer never received is not released
                _undelivered(chain, handing, sent)
            raise
        finally:
            try:
                await _aclose(source)
            finally:
                await settle()

    def _ahead(self, need: tuple[int, int], ahead: _Ahead) -> tuple[int, int]:
        """``need`` for a chunk, with what it does beyond its streamed texts (``ahead``).

        A text that comes whole ends its channel at once, so it can never wait
        for more allowance: its exact count is required. When the chunk
        carries one, or ends a channel, whatever it releases is final then, so
        all it may need is required (only the streamed tails are counted by
        their bytes): either the ledger grants it, or its allowance is final
        and the cut is exact.
        """
        wholes, ends = ahead
        tokens = 0
        kinds = self.spec.channels
        for kind, text in wholes:
            if _BUDGET_KIND.get(kind, kind) in kinds:
                tokens += self._whole_tokens(kind, text)
        if not tokens and not ends:
            return need
        at_most = need[1] + tokens
        return at_most, at_most

    def _whole_tokens(self, kind: str, text: str) -> int:
        """The exact count a whole text of ``kind`` adds to the stream once fed."""
        enc = self.spec.encoding
        if kind != "tool_arguments":
            return len(enc.encode_ordinary(text))
        # Tool-call arguments are counted message by message (each string
        # value, number and run of structure on its own), as _JSONStrings splits them.
        tally = _Tally(enc)
        doc = _JSONStrings(tally)  # type: ignore[arg-type]  # (a chain's stand-in)
        doc.feed(text)
        doc.end(False)
        return tally.tokens

    def _settlement(
        self, ledger: Ledger, book: _Book, usage: BudgetUsage, report: StreamReport
    ) -> Coroutine[Any, Any, None] | None:
        """The next settling job for what the stream now owes back, or None if nothing is owed."""
        if book.gave_up:
            return None
        spent = min(usage.completion_tokens, usage.ledger_reserved)
        unused = usage.ledger_reserved - usage.ledger_refunded - spent
        unsure, book.unsure = book.unsure, []
        if unused <= 0 and not unsure:
            return None
        return self._settle(ledger, book, unsure, unused, usage, report)

    async def _settle(
        self,
        ledger: Ledger,
        book: _Book,
        unsure: list[str],
        unused: int,
        usage: BudgetUsage,
        report: StreamReport,
    ) -> None:
        try:
            async with asyncio.timeout(self.spec.cleanup_timeout):
                for rid in unsure:
                    await ledger.cancel(rid)
                # The newest bucket first: the tokens not used were reserved last.
                for grant, tokens in reversed(list(book.held.values())):
                    back = min(unused, tokens)
                    if back <= 0:
                        break
                    await ledger.refund(grant, back)
                    unused -= back
                    usage.ledger_refunded += back
                    book.held[grant.bucket][1] -= back
        except BaseException as exc:
            book.gave_up = True
            if not isinstance(exc, (LedgerUnavailableError, TimeoutError)):
                raise
            # Fail closed: what was not refunded stays counted as spent.
            error = str(exc) or f"no answer within cleanup_timeout={self.spec.cleanup_timeout}s"
            usage.ledger_error = error
            report.emit("budget.refund_failed", stage=self.name, tokens=unused, error=error)


def _texts(lens: Lens | ChannelLens, item: Any) -> list[str]:
    """Every text ``item`` carries, read with the shell's own lens (not the chain's)."""
    texts = getattr(lens, "texts", None)
    if texts is not None:  # a channel lens: every channel, read only
        found: list[str] = texts(item)
        return found
    # A one-channel lens (bytes, say): this lens sees every chunk once, in
    # order, so its unwrap keeps its own state (a decoder) right.
    return [lens.unwrap(item)]


# A lens's read_ahead: the texts that come whole as (kind, text), and whether a channel ends.
_Ahead = tuple[list[tuple[str, str]], bool]


def _lens_ahead(lens: Lens | ChannelLens, item: Any = None, *, end: bool = False) -> _Ahead:
    """What feeding ``item`` (or ending the stream) does beyond the texts it streams.

    Read with the lens's ``read_ahead`` (every provider channel lens has
    one); for a lens without one only its ``texts`` are reserved for, and a
    channel it ends over the allowance is cut.
    """
    read_ahead = getattr(lens, "read_ahead", None)
    if read_ahead is None:
        return [], False
    wholes, ends = read_ahead(end=True) if end else read_ahead(item)
    return wholes, ends


# The kind of channel the budget counts a text of a lens's kind as.
_BUDGET_KIND = {"tool_input": "tool_arguments"}


class _Tally:
    """Stands in for a chain under :class:`_JSONStrings`: adds up each message's exact count."""

    __slots__ = ("enc", "tokens")

    cuts = 0  # (read as a chain's report.cuts: a tally never cuts)

    def __init__(self, enc: tiktoken.Encoding) -> None:
        self.enc = enc
        self.tokens = 0

    def fork(self, kind: str, *, number: str | None = None) -> _TallyMessage:
        return _TallyMessage(self)


class _TallyMessage:
    __slots__ = ("_parts", "report")

    halted = False

    def __init__(self, tally: _Tally) -> None:
        self.report = tally
        self._parts: list[str] = []

    def feed(self, text: str) -> list[str]:
        self._parts.append(text)
        return [text]

    def end(self, forced: bool | None = None) -> list[str]:
        tally = self.report
        tally.tokens += len(tally.enc.encode_ordinary("".join(self._parts)))
        self._parts = []
        return []

    def abort(self) -> None:
        self._parts = []

    def renumbered(self) -> bool:
        return False


class _Book:
    """A ledger stream's reservations: what it holds per bucket, and calls never answered."""

    __slots__ = ("gave_up", "held", "task", "unsure")

    def __init__(self) -> None:
        # Per bucket (a window may roll over mid-stream): its last reservation,
        # to refund through, and the tokens still held under it.
        self.held: dict[str, list[Any]] = {}
        self.unsure: list[str] = []  # names of reservations whose answer never came
        self.task: asyncio.Future[None] | None = None
        self.gave_up = False  # a settlement failed: stop trying


_LENS_HINT = "register a lens with streamops.register_lens() for this chunk type"
# What providers bill as completion tokens: every channel but a tool's output.
_BILLED_CHANNELS = ALL_CHANNELS - {"tool_output"}


async def _aclose(source: AsyncIterator[Any]) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()


# ---------------------------------------------------------------------------
# the public operator
# ---------------------------------------------------------------------------


def budget(
    *,
    max_tokens: int | None = None,
    encoding: str | tiktoken.Encoding | None = None,
    model: str | None = None,
    max_cost: float | None = None,
    prompt_tokens: int | None = None,
    prompt: str | None = None,
    pricing: PriceTable | ModelPrice | None = None,
    ledger: Ledger | None = None,
    key: str | None = None,
    block: int = 256,
    fail_open: bool = False,
    cleanup_timeout: float = 5.0,
    on_exhausted: OnExhausted = "truncate",
    warn_at: float | None = 0.8,
    channels: Iterable[str] | None = None,
    name: str = "budget",
) -> Operator[str, str]:
    """Return an operator that cuts a text stream at a token or cost budget, exactly.

    The output is exactly the text of the first ``limit`` tokens of the whole
    text's encoding (``encode_ordinary``: special tokens count as text), backed
    off to a whole character; the limit is ``max_tokens``, or what ``max_cost``
    leaves after the prompt, whichever is smaller. When it is reached the
    stream stops pulling, closes the upstream and records the stop reason
    ``budget``; with ``on_exhausted="raise"`` it raises :class:`BudgetExceededError`.
    Text is released as soon as it is certain to be within budget (only text
    within a few bytes of the limit is held back). ``warn_at`` (a fraction of
    the limit) emits a ``budget.warning`` event once.

    On provider chunks the budget counts every text channel the provider
    bills as completion tokens: the answer, refusals, reasoning or thinking,
    and tool-call arguments (their decoded string values). It is one budget
    per stream: each channel is counted on its own (tokens never span
    channels) against one shared limit, tokens count in the order they
    arrive, and when the total reaches the limit in any channel the stream is
    cut there, at that character, and stops (in tool-call arguments a number
    is released whole or not at all: a cut number is another number).
    ``channels`` selects what is
    counted (default: ``"content"``, ``"refusal"``, ``"reasoning"`` and
    ``"tool_arguments"``; ``"tool_output"``, what a provider-run tool
    returned, is not completion tokens and counts only when named);
    ``report["budget"].channel_tokens`` splits the count by kind.

    ``encoding`` is a tiktoken name or ``tiktoken.Encoding``; by default
    (``None``) the encoding of ``model`` when tiktoken knows it
    (``"o200k_base"`` for gpt-4o, gpt-4.1, gpt-5, o-series; available offline),
    else ``"cl100k_base"``; ``"auto"`` insists on the model's encoding (an
    unknown model fails at once with :class:`EncodingUnavailableError`; see
    :func:`resolve_encoding`). ``model`` also picks the price. Cost needs a
    price: ``pricing`` is a :class:`ModelPrice` or a :class:`PriceTable`
    (default :data:`DEFAULT_PRICES`, a snapshot to override); prompt tokens
    are given as ``prompt_tokens`` or counted from ``prompt``.

    With ``ledger`` and ``key`` the stream also draws on a shared budget
    (async streams only): before releasing text it reserves, up to a
    multiple of ``block`` tokens, what the text may need (less when the key's
    budget runs low, so that concurrent streams all get a share), and however
    the stream ends it is charged for the tokens its consumer received and
    refunds the rest, within ``cleanup_timeout`` seconds even if cancelled
    (a refund that cannot complete by then leaves the tokens counted). A
    ledger that fails raises :class:`LedgerUnavailableError` (``fail_open=True``
    goes on under the local limits instead). Composed with other text
    operators it gives what the budget without a ledger gives: the text
    stages right after it run in its own chain, channel by channel, and at a
    stop the stages before it release what they held from before it.

    >>> list(budget(max_tokens=3)(["Hello, wor", "ld! How are you?"]))
    ['Hello, ', 'world']
    >>> s = budget(max_tokens=3)(["Hello, world! How are you?"])
    >>> s.text(), s.report.stop_reason
    ('Hello, world', <StopReason.BUDGET: 'budget'>)
    """
    check_str("name", name)
    if max_tokens is not None:
        check_int("max_tokens", max_tokens)
    if prompt_tokens is not None:
        check_int("prompt_tokens", prompt_tokens)
    check_int("block", block, least=1)
    check_number("cleanup_timeout", cleanup_timeout)
    if not cleanup_timeout > 0:
        raise ValueError(f"cleanup_timeout must be positive, got {cleanup_timeout!r}")
    if on_exhausted not in ("truncate", "raise"):
        raise ValueError(f"on_exhausted must be 'truncate' or 'raise', got {on_exhausted!r}")
    if warn_at is not None and (not is_number(warn_at) or not 0 < warn_at <= 1):
        raise ValueError(f"warn_at must be a fraction in (0, 1] or None, got {warn_at!r}")
    if max_cost is not None:
        check_number("max_cost", max_cost)
    if prompt is not None and prompt_tokens is not None:
        raise ValueError("give prompt or prompt_tokens, not both")
    if prompt is not None and not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    if ledger is not None:
        if not isinstance(ledger, Ledger):
            raise TypeError(
                f"ledger must implement Ledger (reserve, cancel, refund, spent),"
                f" got {type(ledger).__name__}"
            )
        if not isinstance(key, str) or not key:
            raise ValueError("a ledger needs key=, a non-empty str naming the shared budget")
    elif key is not None:
        raise ValueError("key= is only meaningful with ledger=")
    if max_tokens is None and max_cost is None and ledger is None:
        raise ValueError("budget() needs max_tokens, max_cost or ledger")
    kinds = _BILLED_CHANNELS if channels is None else _check_channels(channels)

    enc = resolve_encoding(encoding, model=model)
    if prompt is not None:
        prompt_tokens = len(enc.encode_ordinary(prompt))
    price: ModelPrice | None
    if isinstance(pricing, ModelPrice):
        price = pricing
    elif pricing is None or isinstance(pricing, PriceTable):
        table = DEFAULT_PRICES if pricing is None else pricing
        try:
            price = None if model is None else table.price(model)
        except PricingError:
            if max_cost is not None:
                raise
            price = None
    else:
        raise TypeError(f"pricing must be a PriceTable or ModelPrice, got {type(pricing).__name__}")
    if max_cost is not None and price is None:
        raise PricingError("max_cost needs a price: pass model= (in the price table) or pricing=")

    limit = max_tokens
    if max_cost is not None and price is not None and price.output_per_million > 0:
        left = max_cost - price.cost(prompt_tokens=prompt_tokens or 0)
        tokens = left * 1_000_000 / price.output_per_million
        if math.isfinite(tokens):  # (a cost so large no token count reaches it: no limit)
            # The epsilon keeps an exact budget from losing its last token to float rounding.
            by_cost = max(0, math.floor(tokens + 1e-9))
            limit = by_cost if limit is None else min(limit, by_cost)

    spec = _Spec(
        name=name,
        encoding=enc,
        model=model,
        max_tokens=max_tokens,
        max_cost=max_cost,
        limit=limit,
        price=price,
        prompt_tokens=prompt_tokens or 0,
        ledger=ledger,
        key=key,
        block=block,
        fail_open=fail_open,
        cleanup_timeout=cleanup_timeout,
        on_exhausted=on_exhausted,
        warn_at=warn_at,
        channels=kinds,
    )
    if ledger is None:

        def factory(report: StreamReport) -> _BudgetCore:
            if "content" not in kinds:
                # The stage makes each counted channel (none is forked from the
                # answer's): they join the stream's pool through its report.
                usage = report.sections.get("budget")
                pool = usage._pool if isinstance(usage, BudgetUsage) else None
                if isinstance(pool, _Pool) and pool.spec is spec:
                    return _BudgetCore(spec, report, pool=pool, kind="other")
            return _BudgetCore(spec, report)

        return Operator(ProcessorStage(name, factory, channels=kinds))
    return Operator(_LedgerBudget(spec))
