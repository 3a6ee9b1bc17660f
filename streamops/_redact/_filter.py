"""Sliding-window redaction: secrets never leak across chunk boundaries.

The filter is exact: its output is ``regex.sub`` of the alternation of all
patterns over the *whole* text, leftmost match first, whatever the chunking.
It holds back only text that could still become part of a match, decided with
the ``regex`` module's partial matching:

* A *probe* pattern ``(?>P)(?!)`` can never match, so a partial search with it
  explores, at each position, every path of ``P`` the engine tries up to its
  first match (the atomic group stops there), and reports the leftmost
  position whose attempt read past the end of the buffer. Every position
  before it is decided: its attempt gives the same result whatever text
  follows. This covers greedy growth (``sk-[a-z]{3,}`` on ``"sk-abcd"``),
  alternatives of higher priority still in flight (``abc|a`` on ``"ab"``) and
  lookaheads, and does not wait for lower-priority ones (``a|abc``). Only when
  a validator rejects a match do the other paths matter: then ``(?:P)(?!)``,
  which explores them all, decides.
* Zero-width end assertions (``\\b``, ``\\B``, ``$``, ``\\Z``, ``\\z``, ``\\m``,
  ``\\M``) read no character, so the engine would decide them at the end of
  the buffer as if the text ended there. Each one is prefixed with a lookahead
  that *tries* to read one (``$``: two) characters and always succeeds, which
  makes the attempt count as unfinished until the text is there.
* Lookbehinds and ``\\b`` at the start see a tail of already released *input*
  (``context`` characters, never re-emitted), because searches start at
  ``pos=`` inside a buffer that keeps it.

The window bounds how long one attempt may stay undecided: when the attempt at
position ``p`` is still undecided with ``max_window`` characters after ``p``,
the window overflows (failing closed, the text is then dropped for as long as
that attempt goes on). The decision only depends on the text, not on the
chunking, so the guarantee of chunking invariance holds with overflows too.

Per chunk the work is kept small (the cost that matters with 4-character
chunks is the number of searches, not their length):

* The attempt that was undecided before the chunk is decided first, with one
  anchored ``match``: most chunks only extend it (a word that may still become
  an e-mail address) and nothing else needs looking at. With the built-ins, a
  short attempt (under 64 characters) takes a lean path for that: one partial
  match of the branches that may start at its first character, and when the
  attempt stays open nothing else is done (``_Redactor._lean``); when it is
  decided, the general path goes on from that match.
* Then the next position that may not be a decided miss is found. When every
  pattern has a known start condition, one search of a tiny guard skips the
  positions no pattern can start at: ``BUILTIN_STARTS`` for the built-ins
  (not inside words), a character class from a first-set analysis for user
  patterns (``_start_class``). Otherwise one partial search of the alternation
  (a partial search prefers a complete match anywhere to an earlier partial
  one, so then the probe looks for open attempts before it). That position is
  then decided with the anchored ``match``.

Every ``regex`` call passes ``concurrent=False``: on a ``str`` the module
releases the GIL for each search by default, and taking it back waits up to
``sys.getswitchinterval()`` (5 ms) whenever another thread runs Python code, so
an ordinary answer beside busy threads took seconds and exhausted the CPU budget
(tests/test_redact_review.py, ``test_cpu_budget_holds_beside_busy_threads``).
A search is microseconds; holding the GIL for it costs the other threads nothing.
On the per-chunk path the arguments are passed by position, ``(string, pos, endpos,
concurrent, partial, timeout)``: parsing keywords costs the module ~0.4 us a call, as
much as a short match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import regex
from pydantic import BaseModel, Field

from .._core._driver import Operator
from .._core._errors import RedactPatternError, RedactTimeoutError
from .._core._report import StopReason, StreamReport
from .._core._stages import Masked, ProcessorStage
from .._core._validate import check_choice, check_int, check_optional_number
from ._analysis import (
    _compile,
    _Compiled,
    _leading_lookbehinds,
    _pinned,
    _regex,
    builtin_width,
)
from ._patterns import (
    BUILTIN_ENDS,
    BUILTIN_FIRSTS,
    BUILTIN_HOPELESS,
    BUILTIN_STARTS,
    Action,
    PatternSpec,
    builtin_patterns,
    card_valid,
    closest_builtin,
    iban_valid,
    is_builtin_selector,
    luhn_valid,
)

__all__ = [
    "KeyedHash",
    "PatternSpec",
    "RedactMatch",
    "RedactPatternError",
    "RedactReport",
    "RedactTimeoutError",
    "builtin_patterns",
    "card_valid",
    "iban_valid",
    "luhn_valid",
    "redact",
]

Replacement = str | Callable[["RedactMatch"], str]
OnOverflow = Literal["redact", "release"]
_ACTIONS = ("redact", "block", "flag")
_DEFAULT_LABEL = "[REDACTED]"
_BUILTIN_SET = frozenset(builtin_patterns())
_BUILTIN_ENDS = {name: regex.compile(end) for name, end in BUILTIN_ENDS.items()}
_BUILTIN_HOPELESS = BUILTIN_HOPELESS
_OPT_IN = frozenset({"network"})  # categories only used when named
_CPU_PER_CHAR = 5e-5  # CPU budget seconds added per character read (50 ms per 1,000)
# The normalised view: the invisible characters removed, every Default_Ignorable_Code_Point
# of Unicode (zero-width spaces and joiners, the soft hyphen, bidi marks and controls,
# invisible operators, variation selectors, fillers, tags); the full-width ASCII block
# U+FF01..U+FF5E mapped to ASCII (digits, letters, U+FF20 "@", U+FF0D "-"...); the Unicode spaces
# (NBSP, U+2000..U+200A, narrow NBSP, U+205F, the ideographic space U+3000) mapped to a
# space. A mapped character is one character: only removals move offsets.
_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_ZERO_WIDTH = frozenset(chr(c) for lo, hi in _IGNORABLE_RANGES for c in range(lo, hi + 1))
_SPACES = (0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000)
_VIEW = str.maketrans(
    {
        **dict.fromkeys(map(ord, _ZERO_WIDTH)),
        **{c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)},
        **dict.fromkeys(_SPACES, " "),
    }
)


class RedactReport(BaseModel):
    """The ``report["redact"]`` section: what the filter did, never the secrets.

    ``redacted``/``flagged``/``rejected`` count matches per pattern (rejected:
    its validator refused every match of the pattern at a position). ``on_overflow`` says whether
    the window fails closed (``"redact"``) or open (``"release"``).
    ``truncated_matches`` counts partial matches masked because the stream
    ended by force while they were open (a budget cut, a quiet timeout or
    cancel, a provider's ``length`` finish): they are also in ``redacted``.
    ``max_held``, ``held_mean``, ``held_p99``: characters held back after each
    chunk (the latency redaction adds). ``blocked_by`` names the pattern that
    blocked, or ``"window_overflow"`` / ``"cpu_budget"`` when failing closed
    ended the stream.

    >>> s = redact(["hunter2"])(["a hunter2", " here"])
    >>> s.text()
    'a [REDACTED] here'
    >>> s.report["redact"].redacted
    {'pattern_0': 1}
    """

    redacted: dict[str, int] = Field(default_factory=dict)
    flagged: dict[str, int] = Field(default_factory=dict)
    rejected: dict[str, int] = Field(default_factory=dict)
    blocked_by: str | None = None
    window_overflows: int = 0
    truncated_matches: int = 0
    on_overflow: OnOverflow = "redact"
    max_window: int = 0
    max_held: int = 0
    held_mean: float = 0.0
    held_p99: int = 0


class RedactMatch:
    """The match a replacement callable is given: one secret, at its place in the stream.

    Groups are the pattern's own (``group()``, ``m["name"]``, ``groups()``,
    ``groupdict()``, as on ``regex.Match``); ``start()``, ``end()`` and ``span()``
    are offsets in the whole *input* stream (characters before redaction), the
    same whatever the chunking, where a ``regex.Match`` would only know the
    filter's internal buffer. ``pattern`` is the pattern's name.

    >>> op = redact([PatternSpec("key", r"sk-(?P<id>[0-9]{3})")],
    ...             replacement=lambda m: f"<{m.pattern} {m['id']} at {m.start()}>")
    >>> "".join(op(["a sk-", "123 b"]))
    'a <key 123 at 2> b'
    """

    __slots__ = ("_match", "_where", "pattern")

    def __init__(
        self, match: regex.Match[str], where: Callable[[int, bool], int], pattern: str
    ) -> None:
        self._match = match
        self._where = where  # buffer position (a start, or an end) -> input stream offset
        self.pattern = pattern

    def group(self, *groups: int | str) -> Any:
        """The text of one group (the whole match by default), or a tuple of several."""
        return self._match.group(*groups)

    def __getitem__(self, group: int | str) -> str | Any:
        return self._match[group]

    def groups(self, default: Any = None) -> tuple[str | Any, ...]:
        """The text of every numbered group."""
        return self._match.groups(default)

    def groupdict(self, default: Any = None) -> dict[str, str | Any]:
        """The text of every named group, by name."""
        return self._match.groupdict(default)

    def start(self, group: int | str = 0) -> int:
        """Where ``group`` starts in the input stream (-1 when it did not take part)."""
        at, end = self._match.span(group)
        return at if at < 0 else self._where(at, at == end)

    def end(self, group: int | str = 0) -> int:
        """Where ``group`` ends in the input stream (-1 when it did not take part)."""
        at = self._match.end(group)
        return at if at < 0 else self._where(at, True)

    def span(self, group: int | str = 0) -> tuple[int, int]:
        """``(start(group), end(group))``."""
        return self.start(group), self.end(group)

    def __repr__(self) -> str:
        return f"<RedactMatch {self.pattern} span={self.span()}>"


@dataclass(frozen=True, slots=True)
class KeyedHash:
    """Replace each secret by its label and a keyed hash: ``[EMAIL:3f9a1c2b]``.

    The same secret gets the same placeholder within a stream, so the text
    stays readable. With ``key=None`` every stream draws a random key (the
    placeholders cannot be linked across streams); pass a ``key`` to make them
    stable. HMAC-SHA256, ``digits`` hex digits shown.

    >>> op = redact(["email"], replacement=KeyedHash(key=b"k", digits=6))
    >>> "".join(op(["a@example.com and a@example.com"]))
    '[EMAIL:a05c70] and [EMAIL:a05c70]'
    """

    key: bytes | None = None
    digits: int = 8

    def __post_init__(self) -> None:
        if self.key is not None and not isinstance(self.key, bytes):
            raise TypeError(f"KeyedHash key must be bytes, got {type(self.key).__name__}")
        if not 4 <= self.digits <= 64:
            raise ValueError(f"KeyedHash digits must be between 4 and 64, got {self.digits}")


def _specs(
    patterns: Iterable[str | regex.Pattern[str] | re.Pattern[str] | PatternSpec] | None,
) -> list[PatternSpec]:
    if patterns is None:  # the default set: every category but the opt-in network one
        return [s for s in builtin_patterns() if s.category not in _OPT_IN]
    if isinstance(patterns, (str, bytes, re.Pattern, regex.Pattern, PatternSpec)):
        raise TypeError(
            "patterns must be an iterable of patterns, not a single one; wrap it: redact([pattern])"
        )
    specs: list[PatternSpec] = []
    for i, item in enumerate(patterns):
        if isinstance(item, PatternSpec):
            specs.append(item)
        elif isinstance(item, str) and is_builtin_selector(item):
            specs += builtin_patterns(item)
        elif isinstance(item, str) and (meant := closest_builtin(item)) is not None:
            raise RedactPatternError(
                f"patterns[{i}] {item!r} is not a built-in pattern or category; did you mean"
                f" {meant!r}? To redact the text {item!r} itself, pass"
                f" PatternSpec('my_name', {item!r}) or a regex that is not a bare word,"
                f" such as {f'(?:{item})'!r}"
            )
        elif isinstance(item, (str, re.Pattern, regex.Pattern)):
            specs.append(PatternSpec(f"pattern_{i}", item, label=_DEFAULT_LABEL))
        else:
            raise TypeError(
                f"patterns[{i}] must be a regex string, a compiled pattern, a built-in name"
                f" or a PatternSpec, got {type(item).__name__}"
            )
    if not specs:
        raise ValueError("patterns is empty; pass None for the built-in library")
    unique: dict[str, PatternSpec] = {}
    for spec in specs:  # a built-in selected twice (by name and category) counts once
        if unique.setdefault(spec.name, spec) is not spec:
            raise ValueError(f"two different patterns are named {spec.name!r}")
    return list(unique.values())


class _Undecided:
    """The attempt at a position may still change with more text."""


_UNDECIDED = _Undecided()
_Found = tuple[_Compiled, regex.Match[str]] | None | _Undecided


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything built once per operator and shared by its streams."""

    branches: tuple[_Compiled, ...]
    combined: regex.Pattern[str]
    probe: regex.Pattern[str]  # every path at a position
    first: regex.Pattern[str]  # the paths up to the first match at a position
    guard: regex.Pattern[str] | None
    replacement: Replacement | KeyedHash | None
    action: Action
    window: int
    on_overflow: OnOverflow
    context: int
    timeout: float | None
    stage: str
    version: int  # regex V0/V1 flag of every branch
    hold: int = 0  # the most characters one attempt is held: min(window, max_hold)
    hold_seconds: float | None = None
    cpu_budget: float | None = None
    user: bool = False  # some pattern is not a built-in
    # ``flag`` patterns never change text, so they never hold it: they run in a separate
    # observer (``watch``, a plan of the flag patterns only) that reports their matches
    # with stream offsets while the text is released by the redacting patterns alone.
    observer: bool = False  # this plan is such an observer: it releases nothing
    normalize: bool = False  # match on the normalised view (_VIEW), replace the original
    watch: _Plan | None = None  # the flag patterns' observer plan, if any
    passthrough: bool = False  # no pattern redacts or blocks: every chunk is released
    # With the view: the same redacting patterns on the raw text, run over the view's
    # output once the stream shows a character the view changes (_Redactor._start_raw).
    raw: _Plan | None = None
    # Attempts held for fewer characters than this take the lean path (_Redactor._lean);
    # 0 when it does not apply (a user pattern's per-search guard, a seconds bound).
    lean: int = 0
    # The branches that may start with a given character (a lazily filled cache of their
    # first-set classes): _validated tries only those, not every branch, at a position.
    firsts: tuple[regex.Pattern[str] | None, ...] = ()
    # The lookbehinds each built-in starts with (None for the others): they read only
    # text before a position, so at an attempt's start they tell which branches can
    # still match there at all (_Plan.at).
    gates: tuple[str | None, ...] = ()
    lists: tuple[tuple[str, frozenset[str]], ...] = ()
    by_char: dict[str, _ByChar] = dataclasses.field(default_factory=dict)
    by_set: dict[tuple[int, ...], _Sub] = dataclasses.field(default_factory=dict)

    def at(self, buf: str, p: int) -> _Sub:
        """The branches whose match may start at ``buf[p]`` (in order), and their
        alternation and probes: at a position, the others can neither match nor read on,
        so these decide it alone, and much faster (a digit is not tried as ``sk-``, a word
        after a space in prose is not tried as the value of ``password=``).

        Two conditions, both decided by text known when the attempt starts: the first
        character (each branch's first-set class) and, for the built-ins, the lookbehinds
        a branch starts with (one zero-width match of all of them tells which hold).
        """
        char = buf[p]
        entry = self.by_char.get(char)
        if entry is None:
            entry = self._by_char(char)
        gate = entry.gate
        if gate is None:
            return entry.sub
        m = gate.match(buf, p, p, False)  # concurrent=False; always matches (empty)
        assert m is not None
        held = m.groups()  # "" where that branch's lookbehinds hold, None where not
        sub = entry.gated.get(held)
        if sub is None:
            sub = self._sub(
                tuple(
                    i
                    for i in entry.sub.key
                    if (k := entry.index.get(i)) is None or held[k] is not None
                )
            )
            if len(entry.gated) < 64:  # bounded: few combinations occur
                entry.gated[held] = sub
        return sub

    def _by_char(self, char: str) -> _ByChar:
        key = tuple(
            i
            for i, first in enumerate(self.firsts)
            if first is None or first.match(char, concurrent=False)
        )
        gated = tuple(i for i in key if self.gates and self.gates[i] is not None)
        gate = None
        if gated and len(key) > 1:  # (a lone branch's own lookbehinds fail as fast)
            source = "".join(f"(?:{self.gates[i]}()|)" for i in gated)
            gate = _regex(source, self.version, ())
        entry = _ByChar(self._sub(key), gate, {i: k for k, i in enumerate(gated)}, {})
        if len(self.by_char) < 4096:  # bounded: one entry per distinct character seen
            self.by_char[char] = entry
        return entry

    def _sub(self, key: tuple[int, ...]) -> _Sub:
        sub = self.by_set.get(key)
        if sub is None:
            if len(key) == len(self.branches):
                sub = _Sub(key, self.branches, self.combined, self.first, self.probe)
            elif not key:
                sub = _Sub(key, (), None, None, None)
            else:
                alternation = "|".join(self.branches[i].source for i in key)
                lists = dict(self.lists)
                sub = _Sub(
                    key,
                    tuple(self.branches[i] for i in key),
                    _regex(alternation, self.version, lists),
                    _regex(f"(?>{alternation})(?!)", self.version, lists),
                    _regex(f"(?:{alternation})(?!)", self.version, lists),
                )
            self.by_set[key] = sub
        return sub


@dataclass(frozen=True, slots=True)
class _ByChar:
    """The branches that may start with one character, and how to narrow them by the
    lookbehinds they start with at a position."""

    sub: _Sub  # every branch the character allows
    gate: regex.Pattern[str] | None  # group k: the lookbehinds of branch index[k] hold
    index: dict[int, int]  # branch -> its group in gate
    gated: dict[tuple[str | None, ...], _Sub]  # the gate's groups -> the branches left


@dataclass(frozen=True, slots=True)
class _Sub:
    """The branches that may start at a position, their alternation and probes."""

    key: tuple[int, ...]  # their indices in the plan
    branches: tuple[_Compiled, ...]
    combined: regex.Pattern[str] | None  # None: no branch can start there
    first: regex.Pattern[str] | None
    probe: regex.Pattern[str] | None


def _timeout_message(timeout: float | None) -> str:
    return f"redaction search exceeded {timeout} s (catastrophic backtracking?); held text withheld"


# --------------------------------------------------------------------------
# the per-stream processor
# --------------------------------------------------------------------------


class _Spent:
    """Seconds a stream spent matching: one CPU budget, shared by a redactor and the
    observer of its flag patterns (a stream mixing both never spends twice the budget).

    ``seconds`` is an upper bound of the CPU time of the stream's thread spent
    matching. Reading the thread's CPU clock is a system call (~5 us here, as much as
    a search), so searches are first timed with the wall clock, which never runs
    slower than a thread's CPU time; only when that bound passes the budget is it
    replaced by the thread's CPU time since the stream began (another upper bound:
    it counts no other thread's work), and from then on searches are timed with the
    CPU clock (``exact``). Load elsewhere in the process or on the machine thus
    never ends a stream, and an unloaded stream reads the CPU clock once.
    """

    __slots__ = ("cpu0", "exact", "seconds")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.exact = False
        self.cpu0 = time.thread_time()

    def over(self, budget: float) -> bool:
        """Whether the stream has spent more than ``budget`` seconds of CPU matching."""
        if self.seconds <= budget:
            return False
        if not self.exact:  # a wall-clock bound: look at the CPU time once, then use it
            self.exact = True
            self.seconds = min(self.seconds, max(0.0, time.thread_time() - self.cpu0))
        return self.seconds > budget


class _Redactor:
    """The sans-I/O core: ``feed(text) -> [released]``, ``close() -> [rest]``."""

    __slots__ = (
        "_anchor",
        "_at_pos",
        "_at_sub",
        "_base",
        "_buf",
        "_complete",
        "_emitted",
        "_force",
        "_held_at",
        "_held_since",
        "_holds",
        "_key",
        "_mapped",
        "_obase",
        "_olen",
        "_open",
        "_opending",
        "_orig",
        "_pending",
        "_pending_len",
        "_plan",
        "_probe_at",
        "_raw",
        "_recheck",
        "_replaced",
        "_report",
        "_resync",
        "_scan",
        "_section",
        "_spent",
        "_starts",
        "_timeout",
        "_watch",
        "done",
    )

    def __init__(self, plan: _Plan, report: StreamReport, spent: _Spent | None = None) -> None:
        self._plan = plan
        self._report = report
        section = report.sections.get("redact")
        if section is None:  # (one validation, not three: built with its settings)
            section = RedactReport(on_overflow=plan.on_overflow, max_window=plan.window)
            report.sections["redact"] = section
        else:  # another pass or channel of this stream
            assert isinstance(section, RedactReport)
            section.on_overflow, section.max_window = plan.on_overflow, plan.window
        self._section = section
        rep = plan.replacement
        self._key = (rep.key or secrets.token_bytes(32)) if isinstance(rep, KeyedHash) else b""
        self._buf = ""  # released context tail + held text
        self._base = 0  # the input offset of _buf[0] (offsets a replacement callable sees)
        self._scan = 0  # where the held text starts in _buf
        self._emitted = 0  # characters released so far (offsets of events)
        self._anchor = -1  # after a fail-closed overflow: where the attempt being dropped began
        self._resync = -1  # ... the least resume point known so far (_follow)
        self._probe_at = -1  # ... the first position not yet known to be clear of it
        self._pending: list[str] = []  # text not yet joined to _buf (see feed)
        self._pending_len = 0
        self._recheck = 0  # held length at which the open attempt is looked at again
        self._spent = _Spent() if spent is None else spent  # the stream's CPU budget
        self._timeout = plan.timeout  # per search: the guard, or what is left of the budget
        self._force = False  # the hold time bound is reached: decide the open attempt now
        self._held_at = -1  # the stream offset of the oldest held character ...
        self._held_since = 0.0  # ... and when it became the oldest
        self._holds: dict[int, int] = {}  # held length after each chunk -> how many chunks
        # The branches that may start at the open attempt (_scan) when _run last left it
        # undecided, else None: the next chunk is first matched against them alone (feed).
        self._open: _Sub | None = None
        self._complete = False  # ... and whether its match then was complete
        self._at_pos = -1  # the stream offset of the last position _Plan.at was asked ...
        self._at_sub: _Sub | None = None  # ... and its answer (_sub_at)
        self._watch = None if plan.watch is None else _Redactor(plan.watch, report, self._spent)
        # The normalised view (plan.normalize): _buf holds the normalised text, _orig the
        # original from the same point, and _buf[i] stands for _orig[_starts[i]:_starts[i + 1]]
        # (a removed zero-width character belongs to the next kept one; the last entry is
        # the end of the last kept character: zero-width characters after it wait for the
        # next one). Kept as plain lists/strings: a chunk without zero-width characters
        # extends them in C.
        self._orig = ""
        self._opending: list[str] = []
        self._olen = 0  # len(_orig) + the pending original text
        self._obase = 0  # the input offset of _orig[0]
        self._starts: list[int] = [0]
        self._mapped = False  # the buffer holds a character the view changed: _orig differs
        # The raw pass (plan.raw, started by _start_raw) and, until it starts, the last
        # replacements (input start, input end, text written) to rebuild its context.
        self._raw: _Redactor | None = None
        self._replaced: deque[tuple[int, int, str]] | None = None  # (made on first use)
        self.done = False

    @property
    def held(self) -> int:
        """Characters currently held back (by both passes, with the raw pass)."""
        held = len(self._buf) + self._pending_len - self._scan
        return held if self._raw is None else held + self._raw.held

    def _flush(self) -> None:
        """Join the chunks that arrived while the open attempt was not looked at."""
        if self._pending:
            self._buf += "".join(self._pending)
            self._pending.clear()
            self._pending_len = 0
        if self._opending:
            self._orig += "".join(self._opending)
            self._opending.clear()

    def _normalise(self, text: str) -> str:
        """The normalised view of ``text``; records the original and the offset map.

        While the buffer holds only text the view leaves alone (all ASCII text, most
        text) the view *is* the original: nothing is recorded (no cost per chunk)
        until a character the view changes arrives.
        """
        if not self._mapped:
            if text.isascii():
                return text
            view = text.translate(_VIEW)
            if view == text:
                return text
            self._flush()  # the map starts as the identity over the buffer
            self._orig, self._olen = self._buf, len(self._buf)
            self._starts = list(range(len(self._buf) + 1))
            self._mapped = True
        else:
            view = text.translate(_VIEW)
        at = self._olen
        if len(view) == len(text):
            self._starts.extend(range(at + 1, at + len(text) + 1))
        else:  # zero-width characters removed: they join the next kept character
            self._starts.extend(at + k + 1 for k, c in enumerate(text) if c not in _ZERO_WIDTH)
        self._opending.append(text)
        self._olen += len(text)
        return view

    def _text(self, buf: str, a: int, b: int) -> str:
        """The input text that ``buf[a:b]`` stands for (the original, on the view)."""
        if self._mapped:
            starts = self._starts
            out = self._orig[starts[a] : starts[b]]
        else:
            out = buf[a:b]
        self._emitted += len(out)
        return out

    def _where(self, p: int, end: bool = False) -> int:
        """The input-stream offset of buffer position ``p`` (a start, or with ``end`` an end)."""
        if not self._mapped:
            return self._obase + p
        starts = self._starts
        return self._obase + (starts[p] if end else starts[p + 1] - 1)

    def _cut(self, cut: int) -> None:
        """Drop ``cut`` characters of released text from the front of the buffer."""
        self._buf = self._buf[cut:]
        self._base += cut
        self._scan -= cut
        if not self._mapped:
            self._obase += cut
            return
        self._flush()
        starts = self._starts
        ocut = starts[cut]
        self._orig = self._orig[ocut:]
        self._olen -= ocut
        self._obase += ocut
        if self._orig == self._buf:  # the changed characters are gone: identity again
            self._mapped, self._orig, self._olen, self._starts = False, "", 0, [0]
        else:
            self._starts = [x - ocut for x in starts[cut:]]

    def feed(self, text: str, /) -> list[str]:
        raw = self._raw
        if raw is None:
            sub = self._open
            # The most common chunk (_lean), without the steps of _feed that leave it
            # alone: no observer, and ASCII text outside the view's map is its own view.
            if (
                sub is not None
                and self._watch is None
                and text.isascii()
                and text
                and not self._mapped
                and not self.done
                and (lean := self._lean(sub, text)) is not None
            ):
                return lean
            if self._plan.raw is None or text.isascii() or text.translate(_VIEW) == text:
                return self._feed(text)
            raw = self._start_raw()  # the view starts to differ from the text
        return self._through(raw, self._feed(text))

    def _feed(self, text: str) -> list[str]:
        """``feed`` of the view pass (of the only pass without the view)."""
        if self.done or not text:
            return []
        watch = self._watch
        if watch is not None:
            watch.feed(text)  # its output is the text itself: flag never changes text
            if watch.done:  # the observer ran out of CPU budget: fail closed
                return self._exhausted()
            if self._plan.passthrough:
                self._base += len(text)
                self._observe()
                return [text]
        if self._plan.normalize:
            text = self._normalise(text)
            if not text:  # zero-width characters only: they wait for the next character
                self._observe()
                return []
        sub = self._open
        if sub is not None and (lean := self._lean(sub, text)) is not None:
            return lean
        size = len(self._buf) + self._pending_len
        # An attempt still undecided before this text starts the held text: look at it
        # first (most chunks only extend it) instead of searching from scratch.
        reopen = self._scan < size
        plan = self._plan
        if reopen and plan.hold_seconds is not None:
            self._force = self._report.clock() - self._held_since >= plan.hold_seconds
        start = self._anchor if self._anchor >= 0 else self._scan
        if start < size and not self._force and size + len(text) - start < self._recheck:
            self._pending.append(text)  # joined when looked at: no copy of the buffer
            self._pending_len += len(text)
            # Linear cost: an open attempt (or, after an overflow, the attempt being
            # dropped) is matched again from its start only once the text since its start
            # has doubled (or reaches the hold bound), not on every chunk. Its outcome
            # only depends on the text, so deciding it later changes no output; the text
            # meanwhile is held, not released or dropped.
            out: list[str] = []
        else:
            self._flush()
            self._buf += text
            out = self._timed(final=False, reopen=reopen)
        self._observe()
        return out

    def _lean(self, sub: _Sub, text: str) -> list[str] | None:
        """The common chunk while a short attempt is open: it only extends the attempt.

        Most chunks of digit- and word-heavy text arrive while an attempt is held (a
        word may still become an address, a number a card). Then one partial match of
        the branches that may start there decides whether the attempt is still open
        with ``text``, and if so nothing else can change: no position after it is
        released while it is held (the bookkeeping of ``feed``/``_run``/``_observe``
        for that case is done inline). Otherwise the general path goes on from that
        match (the attempt ended, or a complete match is to be confirmed). Returns
        what ``feed`` returns, or None when the lean path does not apply (a bound, the
        normalised view's map, text waiting to be joined).

        Not timed against the CPU budget: two matches of vetted, bounded built-ins over
        fewer than 64 characters cannot run away (the budget's per-character allowance
        covers them many times), and reading a CPU clock costs a system call here, as
        much as the matches themselves. The same holds for ``_missed``.
        """
        scan = self._scan
        buf = self._buf + text
        n = len(buf)
        if n - scan >= self._plan.lean or self._pending or self._mapped or self._anchor >= 0:
            return None
        assert sub.combined is not None
        assert sub.first is not None
        self._buf = buf
        if self._complete:
            # The attempt has a complete match already (digits that are a phone number and
            # may become a card): the `first` probe alone says whether it is still open
            # (it reads past the end exactly when the attempt is undecided: a partial match
            # or a complete one that a path tried before it may still change), one match
            # instead of two per chunk while it is held; the match is made once decided.
            if sub.first.match(buf, scan, n, False, True) is None:
                out = self._timed(
                    final=False, reopen=True, known=sub.combined.match(buf, scan, n, False, True)
                )
                self._observe()
                return out
        else:
            m = sub.combined.match(buf, scan, n, False, True)  # concurrent=False, partial=True
            if m is None:
                return self._missed(buf, scan, n)
            # A complete match is final only when no path tried before it reads on (_run)
            if not (m.partial or sub.first.match(buf, scan, n, False, True)):
                out = self._timed(final=False, reopen=True, known=m)
                self._observe()
                return out
            self._complete = not m.partial
        # undecided, and n - scan < lean <= the hold bound: held
        holds = self._holds
        size = n - scan
        holds[size] = holds.get(size, 0) + 1
        return []

    def _missed(self, buf: str, scan: int, n: int) -> list[str]:
        """The attempt held at ``scan`` failed with the last chunk (a word ended): the
        most common decided chunk, done here with the steps ``_run`` would take for it.

        The next candidate after ``scan`` is found with the guard; when there is none,
        or its attempt is open over the rest of the buffer (the next word), the text
        before it is released and nothing else can change. Any other outcome (a miss
        or a complete match at the candidate) goes on in ``_run`` from the candidate.
        Untimed like ``_lean``: one search, the lookup's zero-width match and one match
        over fewer than 64 characters.
        """
        plan = self._plan
        guard = plan.guard
        if guard is None:
            out = self._timed(final=False, reopen=True, known=None)
            self._observe()
            return out
        g = guard.search(buf, scan + 1, n, False)
        q = n if g is None else g.start()
        sub = None
        if q < n:
            sub = plan.at(buf, q)
            self._at_pos, self._at_sub = self._base + q, sub
            combined = sub.combined
            m = None if combined is None else combined.match(buf, q, n, False, True)
            if m is None or not m.partial:  # decided at `q`: _run goes on from there
                head = self._text(buf, scan, q)
                self._scan = q
                out = self._timed(final=False, reopen=True, known=None if m is None else _UNDECIDED)
                self._observe()
                return ["".join([head, *out])]
        # (_run's steps: `scan` and what follows up to `q` are decided misses; the attempt
        # at `q`, if any, is still open, n - q < lean <= the window and the hold bound)
        self._open = sub
        self._complete = False
        out = [self._text(buf, scan, q)]
        self._scan = q
        self._trim()
        self._observe()
        return out

    def _timed(
        self, *, final: bool, reopen: bool, known: regex.Match[str] | _Undecided | None = _UNDECIDED
    ) -> list[str]:
        """``_run`` within the stream's CPU budget for matching: past it, fail closed."""
        plan = self._plan
        budget = plan.cpu_budget
        if budget is None:
            return self._run(final=final, reopen=reopen, known=known)
        # The budget grows with the text read: long streams are not cut for their length.
        # (_run keeps _base + len(_buf): trimming the buffer moves its base.)
        budget += _CPU_PER_CHAR * (self._base + len(self._buf))
        spent = self._spent
        guard = plan.timeout
        # A search of a user pattern stops at what is left of the budget, too (built-ins
        # are bounded and run unguarded: the guard would double their cost).
        if plan.user:
            left = max(1e-3, budget - spent.seconds)
            self._timeout = left if guard is None else min(guard, left)
        # CPU time of this thread, not wall time: waiting for the GIL or the OS while
        # other threads run is not matching (a loaded process would cut honest streams).
        # A wall-clock bound until it nears the budget (_Spent: the CPU clock is slow).
        clock = time.thread_time if spent.exact else time.perf_counter
        started = clock()
        try:
            out = self._run(final=final, reopen=reopen, known=known)
        except RedactTimeoutError:
            if self._timeout is not None and (guard is None or self._timeout < guard):
                spent.seconds = budget
                return self._exhausted()
            raise
        finally:
            spent.seconds += clock() - started
        if spent.seconds > budget and not self.done and spent.over(budget):
            return [*out, *self._exhausted()]
        return out

    def _exhausted(self) -> list[str]:
        """The CPU budget ran out: drop the held text and end the stream (fail closed)."""
        budget = self._plan.cpu_budget
        self.done = True
        self._scan = len(self._buf)
        self._anchor = -1
        self._section.blocked_by = "cpu_budget"
        self._report.stop(
            StopReason.BLOCKED,
            f"redact: matching took more than its CPU budget of {budget} s; held text withheld",
        )
        self._report.emit("redact.cpu_budget", stage=self._plan.stage, offset=self._emitted)
        return []

    def _observe(self) -> None:
        """Hold-back bookkeeping after a chunk: statistics, when the open attempt is
        looked at again, and since when the oldest held character has been held."""
        if self.done and not self._plan.observer:
            held = 0
            self._finish_stats()
        else:
            held = len(self._buf) + self._pending_len - self._scan
        holds = self._holds
        holds[held] = holds.get(held, 0) + 1
        span = held if self._anchor < 0 else len(self._buf) + self._pending_len - self._anchor
        if span == 0:
            self._recheck = 0
            return
        at = self._base + self._scan
        # Looked at just now: when the held text reached the point set last time, or when
        # another attempt is held (the one before was decided: its point is not this one's)
        if span >= self._recheck or (at != self._held_at and self._anchor < 0):
            # again once doubled, and at the hold bound
            if self._anchor >= 0:  # (what is not looked at yet is held: bound it too)
                self._recheck = span + min(span, self._plan.hold) if span >= 64 else 0
            else:
                self._recheck = min(2 * span, self._plan.hold) if span >= 64 else 0
        if at != self._held_at:
            self._held_at = at
            if self._plan.hold_seconds is not None:  # (the only reader of _held_since)
                self._held_since = self._report.clock()

    def _finish_stats(self) -> None:
        if self._plan.observer:  # the hold-back is the redacting patterns' (flag holds none)
            return
        section = self._section
        section.max_held, section.held_mean, section.held_p99 = self.hold_stats()

    def hold_stats(self) -> tuple[int, float, int]:
        """Held characters after each chunk so far: maximum, mean and 99th percentile."""
        holds = self._holds
        total = sum(holds.values())
        if not total:
            return 0, 0.0, 0
        mean = sum(k * v for k, v in holds.items()) / total
        rank, p99 = 0.99 * total, 0
        for k in sorted(holds):
            rank -= holds[k]
            p99 = k
            if rank <= 0:
                break
        return max(holds), mean, p99

    def close(self) -> list[str]:
        out = self._close()
        raw = self._raw
        if raw is None:
            return out
        return [*(raw.feed("".join(out)) if out else []), *raw.close()]

    def _close(self) -> list[str]:
        if self.done:
            return []
        if self._watch is not None:
            self._watch.close()
            if self._watch.done:
                return self._exhausted()
        self._flush()
        out = self._timed(final=True, reopen=False)
        self._finish_stats()
        if self._mapped and not self.done:
            # zero-width characters after the last kept one end the text
            # (only when the buffer is the whole view: a truncated one masks the rest)
            whole = len(self._starts) == len(self._buf) + 1
            tail = self._orig[self._starts[-1] :] if whole else ""
            if tail:
                self._emitted += len(tail)
                out = ["".join([*out, tail])]
        self._cut(self._scan)  # nothing held: keeps close() idempotent
        self._mapped, self._orig, self._olen, self._starts = False, "", 0, [0]
        return out

    def truncate(self) -> list[str]:
        """End a message cut by force: mask a live partial secret, never release it.

        With the raw pass, the view pass's text goes through it and the raw pass is
        truncated in turn, before the view pass's mask (always the last piece).
        """
        out = self._truncate()
        raw = self._raw
        if raw is None:
            return out
        text = "".join(piece for piece in out if not isinstance(piece, Masked))
        masks = [piece for piece in out if isinstance(piece, Masked)]
        return [*(raw.feed(text) if text else []), *raw.truncate(), *masks]

    def _through(self, raw: _Redactor, out: list[str]) -> list[str]:
        """What the view pass released, through the raw pass."""
        res = raw.feed("".join(out)) if out else []
        if self.done and not raw.done:  # the view pass ended the stream (a block, the
            res += raw.truncate()  # budget): the text it released ends there
        if raw.done:
            self.done = True
        return res

    def _truncate(self) -> list[str]:
        """``truncate`` of one pass.

        The held text exists because an attempt at its start is still open at
        the end of the text read so far. A complete message would decide it
        with more text; a truncated one never will, and its prefix may be most
        of a secret (``sk-proj-4Ab1...``). So from the first position where a
        pattern's partial match reaches the end and shows that pattern's
        ``evidence`` (the ``@`` of an address, the ``sk-`` of a key), the text
        is replaced as if it had matched, with that pattern's action (``block``
        stops, ``flag`` keeps the text). A callable replacement is not given a
        partial match: the pattern's label is used. The text before that
        position, and held text with no such partial match (the plain word
        ``Paris``, which could only have begun an address), are released as at
        the natural end of a text that ends there.
        """
        if self.done:
            return []
        if self._watch is not None:
            # the observer's matches in the text read so far (the message ends there)
            self._watch.close()
            if self._watch.done:
                return self._exhausted()
        self._flush()
        self._finish_stats()
        buf, scan = self._buf, self._scan
        if self._anchor >= 0:  # dropping an overflowed attempt: it ends here, dropped
            self._anchor = -1
            self._scan = len(buf)
            return []
        if scan >= len(buf):
            return []
        try:
            found = self._live_secret(buf, scan)
        except TimeoutError as exc:
            self.done = True
            raise RedactTimeoutError(_timeout_message(self._plan.timeout)) from exc
        if found is None:
            return self._close()
        cut, branch = found
        spec = branch.spec
        action = spec.action or self._plan.action
        if action == "flag":
            return self._close()
        out: list[str] = []
        if cut > scan:  # the text before the secret, as if the message ended there
            self._buf = buf[:cut]
            out = self._close()
            if self._blocked():
                return out
        self._buf = buf
        self._scan = len(buf)
        self.done = True  # the message is over: nothing may follow a masked end
        section = self._section
        section.truncated_matches += 1
        if action == "block":
            section.blocked_by = spec.name
            self._report.stop(StopReason.BLOCKED, f"redact: {spec.name}")
            self._event(spec.name, "block", 0)
            return out
        section.redacted[spec.name] = section.redacted.get(spec.name, 0) + 1
        rep = self._plan.replacement
        if rep is None or (callable(rep) and not isinstance(rep, KeyedHash)):
            masked = spec.placeholder
        else:
            partial = branch.regex.match(buf, cut, partial=True, concurrent=False)
            assert partial is not None  # found just above
            masked = self._replace(spec, partial)
        self._event(spec.name, "redact", len(masked))
        self._emitted += len(masked)
        return [*out, Masked(masked)]

    def _blocked(self) -> bool:
        return self.done  # (a method: a block while closing must not be narrowed away)

    def _start_raw(self) -> _Redactor:
        """Start the raw pass (finding 2 of a review): the view removes a character
        between a secret and a letter (``AKIA...EXAMPLE\\u200bs``) and the secret, glued,
        no longer matches there, though the raw text shows it. From the first chunk with
        a character the view changes, what this redactor releases goes through the same
        patterns on the raw text. Before that chunk the view was the text itself, so the
        raw pass would have found nothing more; it starts with the released output's
        last ``context`` characters as its lookbehind context (rebuilt from the released
        input and the replacements made in it), as if it had run from the start.
        """
        plan = self._plan
        assert plan.raw is not None
        assert not self._mapped
        self._flush()
        end = self._scan  # released up to here (buffer offsets; input offsets - _base)
        start = max(0, end - plan.context)
        base, buf = self._base, self._buf
        at, pieces = base + start, []
        for s, e, out in self._replaced or ():
            if e <= at or s >= base + end:
                continue
            if s > at:
                pieces.append(buf[at - base : s - base])
            pieces.append(out)
            at = e
        pieces.append(buf[at - base : end])
        context = "".join(pieces)
        raw = _Redactor(plan.raw, self._report, self._spent)
        raw._key = self._key
        raw._buf, raw._scan = context, len(context)  # released: lookbehind context only
        raw._base = raw._obase = base + end - len(context)
        raw._emitted = self._emitted
        self._raw = raw
        self._replaced = None
        return raw

    def _live_secret(self, buf: str, start: int) -> tuple[int, _Compiled] | None:
        """The first position from ``start`` where an open match shows its evidence.

        Open: a partial match, or a complete one that reaches the end of the
        text (it could still grow, or a longer one could still pass the
        validator that rejects it: 15 digits of a card fail Luhn, 16 pass).
        """
        plan = self._plan
        timeout = self._timeout
        q, n = start, len(buf)
        while q < n:
            m = plan.combined.search(buf, q, partial=True, timeout=timeout, concurrent=False)
            if m is None:
                return None
            p = m.start()
            for branch in plan.branches:
                bm = branch.regex.match(buf, p, partial=True, timeout=timeout, concurrent=False)
                if bm is None or not (bm.partial or bm.end() == n):
                    continue
                evidence = branch.evidence
                if evidence is None or evidence.search(bm.group(), concurrent=False) is not None:
                    return p, branch
            q = p + 1
        return None

    def _candidate(self, buf: str, start: int, end: int) -> int:
        """Return the first position in ``[start, end)`` that may not be a decided miss.

        Every position before it is decided: its attempt matches nothing whatever
        text follows. Returns ``end`` when there is none.
        """
        plan = self._plan
        if plan.guard is not None:  # C-level skip over positions no pattern can start at
            g = plan.guard.search(buf, start, end, False)
            return end if g is None else g.start()
        # A partial search prefers a complete match anywhere in the range to an earlier
        # partial one, so a complete match at `c` needs the probe to find open attempts
        # before it. The probe stops at `c` (not `end`: it would try every position of
        # the window); an attempt that reads past `c` is flagged even if more text would
        # decide it, which only makes the caller look at that position exactly.
        m = plan.combined.search(
            buf, start, end, partial=True, timeout=self._timeout, concurrent=False
        )
        if m is None:
            return end
        c = m.start()
        if m.partial or c == start:
            return c
        p = plan.first.search(buf, start, c, partial=True, timeout=self._timeout, concurrent=False)
        return c if p is None else p.start()

    def _run(
        self, *, final: bool, reopen: bool, known: regex.Match[str] | _Undecided | None = _UNDECIDED
    ) -> list[str]:
        """Release what is decided in ``_buf`` from ``_scan`` on; ``reopen``: the attempt at
        ``_scan`` was open before the last text came (``known``: its match, if already
        made over the whole buffer by ``_lean``)."""
        plan = self._plan
        self._open = None
        buf, scan, window, timeout = self._buf, self._scan, plan.hold, self._timeout
        combined, guard = plan.combined, plan.guard
        n = len(buf)
        pieces: list[str] = []
        # Decided misses are released as one run, buf[rel:scan], taken whenever something
        # else is written or dropped (a replacement, an overflow) and at the end.
        rel = scan
        if known is None:  # (from _lean: the open attempt failed, `scan` is a miss)
            scan += 1
            reopen, known = False, _UNDECIDED
        try:
            while scan < n or self._anchor >= 0:
                if self._anchor >= 0:  # dropping an overflowed attempt: is it decided now?
                    if scan > rel:
                        pieces.append(self._text(buf, rel, scan))
                    resumed = self._follow(buf, scan, final)
                    if resumed is None:  # not yet: everything read so far is dropped
                        scan = rel = n
                        if final:
                            self._anchor = -1
                        break
                    scan = rel = resumed
                    if self.done:
                        break
                    continue
                end = scan + window
                if end >= n:
                    end = n
                    if final:  # the true end of the text: no partial matching
                        m = combined.search(buf, scan, None, False, False, timeout)
                        if m is None:
                            scan = n
                            break
                        scan = self._apply(m, self._validated(buf, m.start(), n), buf, rel, pieces)
                        rel = scan
                        if self.done:
                            break
                        continue
                if reopen:
                    reopen = False
                else:
                    if guard is not None:  # (_candidate, inline: the common case)
                        g = guard.search(buf, scan, end, False)
                        scan = end if g is None else g.start()
                    else:
                        scan = self._candidate(buf, scan, end)
                    if scan == end:  # decided misses up to `end`
                        continue
                    end = scan + window
                    if end > n:
                        end = n
                # Decide the attempt at `scan`. A partial match: no complete match yet, but
                # one may come. A complete match is final only if no path tried before it
                # still reads past the buffer (it could grow, or an earlier alternative
                # could still win): the `first` probe explores exactly those.
                probed = False  # `m` is complete and the `first` probe found no open path
                if not isinstance(known, _Undecided):  # (end == n: _lean held < hold)
                    m, known = known, _UNDECIDED
                    if m is not None:
                        sub = self._sub_at(buf, scan)
                        # (_lean passes a match only once its probe found no open path; a
                        # partial one, which that excludes, would be looked at as undecided)
                        probed = not m.partial
                else:
                    at = self._base + scan  # (_sub_at, inline)
                    cached = self._at_sub
                    if cached is not None and at == self._at_pos:
                        sub = cached
                    else:
                        sub = plan.at(buf, scan)
                        self._at_pos, self._at_sub = at, sub
                    combined_at = sub.combined
                    m = (
                        None
                        if combined_at is None
                        else combined_at.match(buf, scan, end, False, True, timeout)
                    )
                if m is None:  # decided: nothing matches here
                    scan += 1
                    continue
                found: _Found = _UNDECIDED
                assert sub.first is not None
                if probed or not (
                    m.partial or sub.first.match(buf, scan, end, False, True, timeout)
                ):
                    found = self._validated(buf, scan, end, partial=True)
                if isinstance(found, _Undecided):
                    if end < scan + window and not self._force:
                        # undecided: wait for more text (the next chunk tries `sub` first)
                        if plan.lean:
                            self._open, self._complete = sub, not m.partial
                        break
                    # undecided after a full window, or held for the hold time bound
                    self._force = False
                    if scan > rel:
                        pieces.append(self._text(buf, rel, scan))
                    scan = rel = self._overflow(buf, scan, end, pieces)
                else:
                    scan = self._apply(m, found, buf, rel, pieces)
                    rel = scan
                    if self.done:
                        break
        except TimeoutError as exc:
            self.done = True
            raise RedactTimeoutError(_timeout_message(timeout)) from exc
        finally:
            if scan > rel and not self.done:
                pieces.append(self._text(buf, rel, scan))
            self._scan = scan
        if self.done:
            self._scan = n
        self._trim()
        if len(pieces) < 2:
            return pieces
        return ["".join(pieces)]

    def _trim(self) -> None:
        """Keep a bounded tail of released input for lookbehinds; trim in batches."""
        ctx = self._plan.context
        keep = self._scan if self._anchor < 0 else self._anchor
        if keep > 2 * ctx + 256:
            cut = keep - ctx
            self._cut(cut)
            if self._anchor >= 0:
                self._anchor -= cut
                self._resync -= cut
                self._probe_at -= cut

    def _apply(
        self, m: regex.Match[str], found: _Found, buf: str, start: int, pieces: list[str]
    ) -> int:
        """Handle the decided attempt where ``m`` (the alternation's match) starts.

        Release ``buf[start:p]``, then the validated match ``found`` at ``p``, or
        one character when every match there was rejected. Return the new scan.
        """
        p, stop = m.span()
        if stop == p:
            self.done = True
            raise RedactPatternError(f"a pattern matched the empty string at buffer offset {p}")
        if p > start:
            pieces.append(self._text(buf, start, p))
        if found is None:  # every match at p was rejected: p is a miss
            pieces.append(self._text(buf, p, p + 1))
            return p + 1
        assert not isinstance(found, _Undecided)
        branch, bm = found
        spec, stop = branch.spec, bm.end()
        section = self._section
        action = spec.action or self._plan.action
        if action == "block":
            self.done = True
            section.blocked_by = spec.name
            self._report.stop(StopReason.BLOCKED, f"redact: {spec.name}")
            self._event(spec.name, "block", 0)
            return stop
        if action == "flag":  # only in the observer: offsets of the input stream
            section.flagged[spec.name] = section.flagged.get(spec.name, 0) + 1
            self._report.record(
                "redact.flag",
                stage=self._plan.stage,
                pattern=spec.name,
                start=self._where(bm.start()),
                end=self._where(stop, end=True),
            )
            pieces.append(self._text(buf, p, stop))
            return stop
        section.redacted[spec.name] = section.redacted.get(spec.name, 0) + 1
        out = self._replace(spec, bm)
        self._event(spec.name, action, len(out))
        pieces.append(out)
        self._emitted += len(out)
        if self._raw is None and self._plan.raw is not None:  # (offsets: not mapped yet)
            if self._replaced is None:
                self._replaced = deque(maxlen=256)
            self._replaced.append((self._base + p, self._base + stop, out))
        return stop

    def _sub_at(self, buf: str, p: int) -> _Sub:
        """``_Plan.at`` for ``buf[p]``, remembered for that stream position: the attempt
        there is often decided over several chunks (the text before it never changes)."""
        at = self._base + p
        sub = self._at_sub
        if sub is None or at != self._at_pos:
            sub = self._plan.at(buf, p)
            self._at_pos, self._at_sub = at, sub
        return sub

    def _validated(
        self, buf: str, p: int, endpos: int, partial: bool = False, count: bool = True
    ) -> _Found:
        """The validated leftmost-longest match at ``p``, whose first match is decided.

        Branches in order; a branch's own match first, and when its validator rejects
        it, every shorter end of that branch at ``p``, longest first. Only after a
        rejection do the other paths at ``p`` matter: with ``partial`` (more text may
        come after ``endpos``), ``_UNDECIDED`` when one of them still reads past it.
        """
        plan = self._plan
        timeout = self._timeout
        checked = not partial
        sub = self._sub_at(buf, p)
        probe = sub.probe
        for branch in sub.branches:
            bm = branch.regex.match(buf, p, endpos, False, False, timeout)
            if bm is None:
                continue
            validator = branch.spec.accepts  # the allowlist, then the validator
            if validator(bm.group()):
                return branch, bm
            if not checked:
                assert probe is not None
                if probe.match(buf, p, endpos, False, True, timeout):
                    return _UNDECIDED
                checked = True
            hopeless = _BUILTIN_HOPELESS.get(branch.spec.name)
            if hopeless is not None and branch.spec in _BUILTIN_SET and hopeless(bm.group()):
                # no shorter end can pass the validator either (a year is no card)
                if count:
                    name = branch.spec.name
                    self._section.rejected[name] = self._section.rejected.get(name, 0) + 1
                continue
            # Shorter ends, pinned by the length left after them in a slice every path
            # at p fits in (found by growing it: a pinned `{K}` is O(K)).
            limit = min(endpos, bm.end() + 1)
            assert probe is not None
            while limit < endpos and probe.match(buf, p, limit, False, True, timeout):
                limit = min(endpos, 2 * limit - p)
            # A built-in's validator is pure and total (digits, checksums), so it runs
            # first: most shorter ends fail it (a card's issuer, a checksum) for the price
            # of a string check, and only the ones it accepts need the pinned match.
            # Where a built-in's match can end at all (BUILTIN_ENDS: after a digit group)
            # is found first, with one search over the slice, so the validator only sees
            # those ends. A user validator only ever sees matches.
            pure = branch.spec in _BUILTIN_SET
            ends = _BUILTIN_ENDS.get(branch.spec.name) if pure else None
            stop = bm.end()
            shorter: Iterable[int] = range(stop - 1, p, -1)
            if ends is not None:  # (the same test as ends.match(buf, e, limit) at each e)
                at_ends = [x.start() for x in ends.finditer(buf, p + 1, limit, concurrent=False)]
                shorter = reversed([e for e in at_ends if e < stop])
            for e in shorter:
                if pure and not validator(buf[p:e]):
                    continue
                pm = _pinned(branch.source, limit - e, plan.version, branch.lists).match(
                    buf, p, limit, False, False, timeout
                )
                if pm is not None and (pure or validator(pm.group())):
                    return branch, pm
            if count:
                name = branch.spec.name
                self._section.rejected[name] = self._section.rejected.get(name, 0) + 1
        return None

    def _replace(self, spec: PatternSpec, m: regex.Match[str]) -> str:
        rep = self._plan.replacement
        if rep is None:
            return spec.placeholder
        if isinstance(rep, str):
            return rep
        if isinstance(rep, KeyedHash):
            # surrogatepass: a lone surrogate (text decoded with errors="surrogateescape",
            # a JSON "\\ud800") is still text to hash, not a crash mid-stream
            secret = m.group().encode("utf-8", "surrogatepass")
            digest = hmac.new(self._key, secret, hashlib.sha256).hexdigest()
            label = spec.placeholder
            tag = digest[: rep.digits]
            return f"{label[:-1]}:{tag}]" if label.endswith("]") else f"{label}:{tag}"
        out = rep(RedactMatch(m, self._where, spec.name))
        if not isinstance(out, str):
            raise TypeError(f"replacement callable returned {type(out).__name__}, expected str")
        return out

    def _overflow(self, buf: str, start: int, end: int, pieces: list[str]) -> int:
        """An attempt still undecided after a full window: fail closed or open.

        The action of the patterns whose attempt at ``start`` is open decides:
        ``block`` blocks, only ``flag`` patterns fail open (``flag`` never deletes
        text), else the text is dropped until no open attempt covers it (``_follow``).
        """
        plan = self._plan
        self._section.window_overflows += 1
        actions = {
            (b.spec.action or plan.action, b.spec.name)
            for b in plan.branches
            if b.regex.match(buf, start, end, partial=True, timeout=self._timeout, concurrent=False)
            is not None
        }
        blocking = sorted(name for action, name in actions if action == "block")
        if blocking and plan.on_overflow == "redact":
            self.done = True
            self._section.blocked_by = blocking[0]
            self._report.stop(StopReason.BLOCKED, f"redact: {blocking[0]} outgrew the window")
            self._report.emit("redact.overflow", stage=plan.stage, offset=self._emitted)
            self._event(blocking[0], "block", 0)
            return len(buf)
        if plan.on_overflow == "release" or all(action == "flag" for action, _ in actions):
            pieces.append(self._text(buf, start, start + 1))  # give up on that start only
            self._report.emit("redact.overflow", stage=plan.stage, offset=self._emitted - 1)
            return start + 1
        out = plan.replacement if isinstance(plan.replacement, str) else _DEFAULT_LABEL
        self._report.emit(
            "redact.overflow", stage=plan.stage, offset=self._emitted, length=len(out)
        )
        pieces.append(out)
        self._emitted += len(out)
        self._anchor = start  # keep dropping while that attempt goes on (_follow)
        self._resync, self._probe_at = end, start
        return end

    def _settle(self, buf: str, q: int, endpos: int, at_end: bool) -> int | None:
        """Where the attempt at ``q`` ends, seeing ``buf[:endpos]``: the end of its
        validated match, ``q`` when it fails, ``None`` while more text may change it
        (the decision ``_run`` makes, first match only: a lazy rule whose match
        ended is decided even though a longer path could still read on)."""
        plan = self._plan
        timeout = self._timeout
        if not at_end:
            m = plan.combined.match(buf, q, endpos, partial=True, timeout=timeout, concurrent=False)
            if m is None:
                return q
            if m.partial or plan.first.match(
                buf, q, endpos, partial=True, timeout=timeout, concurrent=False
            ):
                return None
        found = self._validated(buf, q, endpos, partial=not at_end, count=False)
        if isinstance(found, _Undecided):
            return None
        return q if found is None else found[1].end()

    def _covers(self, buf: str, q: int, r: int, final: bool) -> bool:
        """The attempt at ``q`` may still take ``buf[r]`` into a match: it is undecided
        reading up to ``buf[r]`` (or that is not read yet), or its match runs past ``r``."""
        n = len(buf)
        if r >= n:
            return not final  # the end of the text, or text not read yet
        e = self._settle(buf, q, r + 1, final and r + 1 == n)
        return e is None or e > r

    def _follow(self, buf: str, scan: int, final: bool) -> int | None:
        """Drop text after a fail-closed overflow until no open attempt covers it.

        The attempt at ``a`` was undecided at ``a + window``. Text is dropped up to
        the least ``r >= a + window`` such that no attempt starting in ``[a, r)``
        may take ``buf[r]`` into a match (``_covers``): not the overflowed attempt
        (``r`` is at least the character that decided it, which is the first one
        kept when it failed, and the end of its match), nor a secret that began
        inside the dropped text (resuming inside it would release its tail). Each
        position's least ``r`` is found by bisection (covering is monotone in ``r``),
        positions no pattern can start at are skipped. ``r`` only depends on the
        text. Nothing is held meanwhile: while ``r`` is unknown it lies beyond
        the text read, which is dropped at once. Bounded: an ``r`` more than
        ``2 * window`` characters after ``a`` ends the stream (stop reason
        ``blocked``): where that secret ends cannot be known. Returns ``None``
        while ``r`` is unknown, else ``r`` (the new scan).
        """
        plan = self._plan
        a, n = self._anchor, len(buf)
        cap = a + 2 * plan.window
        r, q = self._resync, self._probe_at
        top = min(cap, n if final else n - 1)  # the largest r that can be checked
        while True:
            q = self._candidate(buf, q, min(n, r + 1)) if q < r else q
            if q >= r:
                break
            if self._covers(buf, q, r, final):
                if top <= r or self._covers(buf, q, top, final):
                    self._resync, self._probe_at = r, q
                    if top < cap:
                        return None  # wait for the text that decides it
                    self.done = True
                    self._anchor = -1
                    self._section.blocked_by = "window_overflow"
                    self._report.stop(
                        StopReason.BLOCKED, "redact: a possible match outgrew the window"
                    )
                    return n
                lo, hi = r, top  # covered at lo, clear at hi
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self._covers(buf, q, mid, final):
                        lo = mid
                    else:
                        hi = mid
                r = hi
            q += 1
        self._anchor = -1
        return max(scan, r)

    def _event(self, name: str, action: str, length: int) -> None:
        self._report.record(
            f"redact.{action}",
            stage=self._plan.stage,
            pattern=name,
            offset=self._emitted,
            length=length,
        )


# --------------------------------------------------------------------------
# the operator
# --------------------------------------------------------------------------


def redact(
    patterns: Iterable[str | regex.Pattern[str] | re.Pattern[str] | PatternSpec] | None = None,
    *,
    replacement: Replacement | KeyedHash | None = None,
    action: Action = "redact",
    max_window: int = 8192,
    on_overflow: OnOverflow = "redact",
    context: int = 64,
    timeout: float | None = 1.0,
    max_hold: int | None = None,
    hold_seconds: float | None = None,
    cpu_budget: float | None = 10.0,
    normalize: bool | None = None,
    channels: Iterable[str] | None = None,
    name: str = "redact",
) -> Operator[str, str]:
    """Return an operator that redacts secrets from a text stream, exactly and early.

    ``patterns``: regex strings, compiled ``regex``/``re`` patterns, names of
    built-ins or categories (see :func:`builtin_patterns`), or
    :class:`PatternSpec` objects; ``None`` means the whole built-in library.
    The output equals ``regex.sub`` of their alternation over the whole text,
    leftmost match first (earlier patterns win at the same start), for every
    chunking; only text that could still become part of a match is held back.

    ``replacement``: ``None`` for each pattern's label (``[EMAIL]``; user
    regexes get ``[REDACTED]``), a fixed string, a :class:`KeyedHash`, or a
    callable taking the pattern's own ``regex.Match``. ``action``: ``"redact"``,
    ``"flag"`` (pass through, record) or ``"block"`` (end the stream at the
    match with stop reason ``blocked``); a :class:`PatternSpec` may override it.
    ``max_window``: the most characters one undecided attempt may hold (at least
    the longest selected built-in); beyond it ``on_overflow="redact"`` fails
    closed (one fixed replacement or ``[REDACTED]``, and the text is dropped for
    as long as that attempt goes on; past ``2 * max_window`` the stream ends,
    stop reason ``blocked``) and ``"release"`` fails open. A validator that
    rejects a match makes shorter matches, then later patterns, be tried
    (validated leftmost-longest, see ``docs/redact.md``).
    ``context``: characters of released input kept for lookbehinds, raised to
    the widest lookbehind of the patterns.
    ``timeout``: seconds per search when any pattern is not a built-in (those
    are vetted and run unguarded), else :class:`RedactTimeoutError`.
    ``max_hold`` / ``hold_seconds``: a latency bound. An attempt still undecided
    after ``max_hold`` characters (default ``max_window``), or whose first
    character has been held ``hold_seconds`` (checked when a chunk arrives, on
    the stream's clock), gets the overflow action at once (``on_overflow``).
    ``cpu_budget``: seconds of matching per stream (CPU time of the thread that
    feeds it, ``time.thread_time``: waiting while other threads run does not
    count), built-ins included, plus
    50 ms per 1,000 characters read (``None``: unbounded); past it the held
    text is dropped and the stream ends (stop reason ``blocked``,
    ``report["redact"].blocked_by == "cpu_budget"``).
    ``normalize``: match on a normalised view of the text (zero-width characters
    removed; full-width digits and letters, NBSP and narrow NBSP as ASCII) and
    replace the original span; default: on when every pattern is a built-in, off
    when any is your own regex (which then matches the raw text, like ``regex.sub``).
    Only ``None``, ``True`` and ``False`` are accepted (``TypeError`` otherwise).
    ``channels``: on provider chunks, which text channels to redact (default:
    all of ``"content"``, ``"refusal"``, ``"reasoning"``, ``"tool_arguments"``;
    see ``docs/providers.md``); each channel has its own state.

    A stream that ends *by force* (a budget cut, a quiet timeout or cancel, a
    provider's ``length`` finish) masks a live partial match instead of
    releasing it (``report["redact"].truncated_matches`` counts them); only a
    complete message releases a prefix that merely looked like a secret.

    >>> op = redact(["email", "openai_key"])
    >>> list(op(["mail me at jo", "e@example.com or use sk-abc", "defghijklmnopqrstuvwxyz0 ok"]))
    ['mail me at ', '[EMAIL] or use ', '[OPENAI_KEY] ', 'ok']

    ``"ok"`` was held to the end: it could have begun ``ok@example.com``.
    """
    specs = _specs(patterns)
    check_choice("action", action, _ACTIONS)
    for spec in specs:
        if spec.action is not None:
            check_choice(f"pattern {spec.name!r}: action", spec.action, _ACTIONS)
    check_choice("on_overflow", on_overflow, ("redact", "release"))
    check_int("max_window", max_window, least=16)
    check_int("context", context, least=1)
    check_optional_number("timeout", timeout, positive=True)
    if max_hold is not None:
        check_int("max_hold", max_hold, least=1)
    check_optional_number("hold_seconds", hold_seconds, positive=True)
    check_optional_number("cpu_budget", cpu_budget, positive=True)
    if normalize is not None and not isinstance(normalize, bool):  # "false" is truthy
        raise TypeError(
            f"normalize must be a bool or None, got {type(normalize).__name__} {normalize!r}"
        )
    if not (replacement is None or isinstance(replacement, (str, KeyedHash))) and not callable(
        replacement
    ):
        raise TypeError(
            "replacement must be None, a str, a KeyedHash or a callable,"
            f" got {type(replacement).__name__}"
        )
    branches = tuple(_compile(spec, i) for i, spec in enumerate(specs))
    versions = {b.regex.flags & (regex.V0 | regex.V1) for b in branches}
    if len(versions) > 1:
        raise RedactPatternError("patterns mix regex versions V0 and V1; use one version")
    version = versions.pop()
    for spec in specs:
        if spec in _BUILTIN_SET and (width := builtin_width(spec)) >= max_window:
            raise ValueError(
                f"max_window={max_window} cannot hold the built-in {spec.name!r} (up to {width}"
                " characters); raise max_window or leave that pattern out"
            )
    # The built-ins are written for the normalised view; user regexes match the raw text
    # (regex.sub-exact) unless asked.
    view = all(s in _BUILTIN_SET for s in specs) if normalize is None else normalize
    flags = tuple(b for b in branches if (b.spec.action or action) == "flag")
    rest = tuple(b for b in branches if (b.spec.action or action) != "flag")

    def build(group: tuple[_Compiled, ...], watch: _Plan | None = None) -> _Plan:
        return _make_plan(
            group,
            replacement=replacement,
            action=action,
            window=max_window,
            on_overflow=on_overflow,
            context=context,
            timeout=timeout,
            stage=name,
            version=version,
            hold=max_window if max_hold is None else min(max_hold, max_window),
            hold_seconds=hold_seconds,
            cpu_budget=cpu_budget,
            observer=watch is None and group is flags,
            watch=watch,
            normalize=view,
        )

    watch = build(flags) if flags else None
    if rest:
        plan = build(rest, watch)
        if view:  # the raw pass: the same patterns on the raw text (_start_raw)
            raw = dataclasses.replace(plan, normalize=False, watch=None, observer=True)
            plan = dataclasses.replace(plan, raw=raw)
    else:
        assert watch is not None
        plan = dataclasses.replace(watch, observer=False, watch=watch, passthrough=True)

    def factory(report: StreamReport) -> _Redactor:
        return _Redactor(plan, report)

    return Operator(ProcessorStage(name, factory, channels=channels))


def _first_class(branch: _Compiled) -> str | None:
    """Where a match of ``branch`` may start (one character), None when unknown."""
    if branch.starts is None and branch.spec in _BUILTIN_SET:
        return BUILTIN_FIRSTS.get(branch.spec.name)
    return branch.starts


_ONE_CHAR_GATE = re.compile(r"\(\?<[=!](?:\[[^\]]*\]|\\?.)\)")


def _gate(branch: _Compiled) -> str | None:
    """The lookbehinds a built-in starts with (``_Plan.at``), when they capture nothing."""
    spec = branch.spec
    if spec not in _BUILTIN_SET or not isinstance(spec.pattern, str):
        return None
    if branch.source != f"(?:{spec.pattern})":  # (not rewritten: the gate is its text)
        return None
    gate = _leading_lookbehinds(spec.pattern)
    if gate is None or _ONE_CHAR_GATE.fullmatch(gate) or regex.compile(gate).groups:
        return None  # (one character before: the branch fails as fast in the alternation)
    return gate


def _make_plan(
    branches: tuple[_Compiled, ...],
    *,
    replacement: Replacement | KeyedHash | None,
    action: Action,
    window: int,
    on_overflow: OnOverflow,
    context: int,
    timeout: float | None,
    stage: str,
    version: int,
    hold: int,
    hold_seconds: float | None,
    cpu_budget: float | None,
    observer: bool,
    watch: _Plan | None,
    normalize: bool,
) -> _Plan:
    """Compile the alternation, its probes and its prefilter for ``branches``."""
    specs = [b.spec for b in branches]
    alternation = "|".join(b.source for b in branches)
    lists = {name: items for b in branches for name, items in b.lists}
    builtin_only = all(s in _BUILTIN_SET for s in specs)
    # The prefilter: a position is a candidate when any pattern may start there; the
    # built-ins share one condition, a user pattern needs its own (else no prefilter).
    user = [b.prefix or b.starts for b in branches if b.spec not in _BUILTIN_SET]
    known = [u for u in user if u is not None]
    guard: str | None = None
    if len(known) == len(user):
        guard = "|".join(([BUILTIN_STARTS] if len(user) < len(branches) else []) + known)
    return _Plan(
        branches=branches,
        combined=_regex(alternation, version, lists),
        probe=_regex(f"(?:{alternation})(?!)", version, lists),
        first=_regex(f"(?>{alternation})(?!)", version, lists),
        guard=None if guard is None else regex.compile(guard, version),
        # Lookbehinds must see the same released text whatever the chunking.
        # One more than the widest lookbehind: the buffer's first character is then never
        # read by one, where `\A`/`^` would take it for the start and `\b` see no
        # character before it.
        context=max(context, *(b.reach + 1 for b in branches)),
        # The built-in library is vetted (bounded, no nested quantifiers) and runs
        # unguarded: the guard polls a clock and about doubles the cost of a search.
        timeout=None if builtin_only else timeout,
        replacement=replacement,
        action=action,
        window=window,
        on_overflow=on_overflow,
        stage=stage,
        version=version,
        hold=hold,
        hold_seconds=hold_seconds,
        cpu_budget=cpu_budget,
        user=not builtin_only,
        firsts=tuple(
            None if st is None else regex.compile(st) for st in map(_first_class, branches)
        ),
        gates=tuple(map(_gate, branches)),
        lists=tuple(lists.items()),
        observer=observer,
        watch=watch,
        normalize=normalize,
        # below 64 characters an open attempt is looked at on every chunk (_observe)
        lean=0 if not builtin_only or hold_seconds is not None else min(64, hold),
    )


def _combined_pattern(op: Operator[Any, Any]) -> regex.Pattern[str]:
    """The compiled alternation of a redact operator (for benchmarks and tests)."""
    stage = op.stages[0]
    assert isinstance(stage, ProcessorStage)
    proc = stage.factory(StreamReport())
    assert isinstance(proc, _Redactor)
    return proc._plan.combined
