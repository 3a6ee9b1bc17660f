"""Several text channels in one stream: content, refusal, reasoning, tool arguments.

A channel lens splits each provider chunk into channel texts; :class:`_Channels`
gives each channel key its own processor chain (forked from the stream's seed
chain, so budgets and collectors stay stream-wide) and hands the processed
texts back to the lens to rebuild the chunk. Tool-call arguments are JSON:
:class:`_JSONStrings` runs only the string values through the text chain and
leaves the structure as it came.
"""

from __future__ import annotations

import json
from typing import (
    TYPE_CHECKING,
    Any,
)

import regex

if TYPE_CHECKING:
    from ._driver import _Chain


class _Halt(Exception):
    """Raised by a chain whose processor said done, carrying the last outputs."""

    def __init__(self, out: list[Any]) -> None:
        super().__init__()
        self.out = out


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

    __slots__ = ("_main", "_main_used", "_stopped", "_subs", "halted")

    def __init__(self, main: _Chain) -> None:
        self._main = main
        self._main_used = False
        self._subs: dict[Any, _Chain | _JSONStrings | _Stopped] = {}
        self._stopped: set[Any] = set()
        self.halted = False

    def _get(self, key: Any, kind: str) -> _Chain | _JSONStrings | _Stopped:
        if key in self._stopped:
            # What stages before a ledger budget flush at its stop (see _Chain.drain)
            # reaches the other channels; the one the stop cut takes nothing more.
            return _STOPPED
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
            self._stopped.add(key)
            self._subs[key] = _STOPPED
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
            self._stopped.add(key)
            out = halt.out
        if report.cuts > cuts:  # a stage stopped the stream as it closed (a block)
            self.halted = True
        return "".join(out)

    def open_keys(self) -> list[Any]:
        """The channels that are open, in the order they opened."""
        return list(self._subs)

    def settle(self) -> None:
        """After the end: the stream's own chain is finished even if no content came.

        So is each stream-wide processor the content chain does not run (a
        budget over other channels only): the channels it forked have ended,
        and it ends with them (its stream-wide count is final then).
        """
        main = self._main
        if not self._main_used:
            self._main_used = True
            main.end()
        for seed, proc in zip(main.seeds, main.procs, strict=True):
            if seed is not proc and hasattr(seed, "fork"):
                seed.close()
        main.finished = True

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
      ``"[CREDIT_CARD]"``), so the document stays valid; a budget releases a
      number whole or not at all (see :meth:`_Chain.fork`);
    - each run of structure between them (``{``, ``": ``, ``, ``, literals),
      complete where a number or a string begins, so a budget counts every
      character the provider billed (per message: within a few tokens of the
      encoding of the whole document) and can stop a long array of numbers.

    A stage that stops the stream (a ``block``, the budget) stops it here too.
    Arguments that turn out not to be JSON (a character no JSON document has
    outside its strings, such as ``'``) are from there on one plain text
    message, so nothing is split apart. An escape that is not valid JSON, or a
    raw control character in a string, ends the string's message and passes
    through unchanged (the consumer's parser reports it); a lone surrogate is
    written as an escape.
    """

    __slots__ = ("_esc", "_high", "_main", "_plain", "_raw", "_sub")

    _SPECIAL = regex.compile(r'["\\\x00-\x1f]')  # a control character is escaped in JSON
    _NUMBER = regex.compile(r"-?[0-9][0-9.eE+-]*")
    _STRUCTURE = regex.compile(r"(?:[\s{}\[\]:,]|true|false|null)*")  # JSON outside strings
    _NUMBER_START = regex.compile(r"[-0-9]")

    def __init__(self, main: _Chain) -> None:
        self._main = main
        self._sub: _Chain | None = None  # the chain of the string being read
        self._plain: _Chain | None = None  # not JSON after all: one plain message
        self._raw = ""  # text outside strings not yet complete
        self._esc = ""  # an escape sequence read in part
        self._high = ""  # a decoded high surrogate waiting for its pair

    def feed(self, text: str) -> list[str]:
        plain = self._plain
        if plain is not None:
            return plain.feed(text)
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
                m = self._SPECIAL.search(text, i, concurrent=False)
                j = n if m is None else m.start()
                if j > i:
                    self._put(text[i:j], out)
                if m is None:
                    break
                if text[j] == "\\":
                    self._esc = "\\"
                    i = j + 1
                    continue
                if text[j] != '"':  # a raw control character: not JSON, passed on as is
                    self._close_string(out, forced=False)
                    out.append(text[j])
                    self._sub = self._main.fork("tool_arguments")
                    i = j + 1
                    continue
                self._close_string(out, forced=False)  # the closing quote
                out.append('"')
                i = j + 1
        except _Halt as halt:
            self._sub = None
            self._raw = ""  # the stream stopped: nothing held is released at the end
            # A string's chain releases decoded text (encode it again); the plain
            # chain of arguments that are not JSON releases them as they came.
            tail = halt.out if self._plain is not None else self._encode(halt.out)
            raise _Halt([*out, *tail]) from None
        return ["".join(out)] if out else []

    def _message(self, text: str, out: list[str], *, number: bool, forced: bool) -> None:
        """Run ``text`` through a chain of its own, start to end, into ``out``.

        A stop (the budget, a ``block``) raises ``_Halt([])``: what was released
        is in ``out``.
        """
        chain = self._main.fork("tool_arguments", number=text if number else None)
        report = chain.report
        cuts = report.cuts
        halted = False
        try:
            released = "".join([*chain.feed(text), *chain.end(forced)])
        except _Halt as halt:
            released, halted = "".join(halt.out), True
        # A block as it closed; or a stage stopped before this message (the
        # budget, cut in another channel): nothing of it is released.
        halted = halted or report.cuts > cuts or chain.halted
        if number and released != text:
            if not halted:  # changed: a JSON string
                released = json.dumps(released, ensure_ascii=False)
            elif chain.renumbered() or not text.startswith(released):
                # Changed and cut: an open JSON string. (A stage that stops the
                # stream and takes numbers whole, the budget, says whether the
                # stages before it changed the number: what it released of it may
                # be no more than a prefix the change left alone, or nothing.)
                released = '"' + _json_body(released)
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
            m = self._NUMBER.match(raw, pos, concurrent=False)
            if m is not None:
                if m.end() == n and not final:
                    break  # the number may go on
                forced = cut and m.end() == n
                self._message(m.group(), out, number=True, forced=forced)
                pos = m.end()
                continue
            if raw[pos] == "-" and pos + 1 == n and not final:
                break  # a minus sign at the end: the number may follow
            # (a minus sign with no digit after it is no JSON: the run below has it)
            s = self._NUMBER_START.search(raw, pos + (raw[pos] == "-"), concurrent=False)
            end = n if s is None else s.start()
            run = raw[pos:end]
            open_end = s is None and not final  # the run may go on ('tr' of true, say)
            if self._STRUCTURE.fullmatch(run, partial=open_end, concurrent=False) is None:
                self._raw = ""  # not JSON: one plain message from here
                plain = self._plain = self._main.fork("tool_arguments")
                out += plain.feed(raw[pos:])
                return plain
            if open_end:
                break
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

    def held(self) -> str:
        """The text outside strings not yet released: it comes as messages of its own at the end.

        (A closing brace, say: no chain has it until the arguments go on or end.)
        """
        return self._raw


class _Stopped:
    """A channel a stage stopped (a budget cut in it): it takes and releases nothing more."""

    __slots__ = ()

    def feed(self, text: str) -> list[str]:
        return []

    def end(self, forced: bool | None = None) -> list[str]:
        return []

    def abort(self) -> None:
        pass


_STOPPED = _Stopped()


class _Echo:
    """Stands in for a chain under :class:`_JSONStrings` when only its split matters.

    Every message passes through as it came, with no stage: a lens reading
    ahead follows with it what the real arguments still hold (:meth:`_JSONStrings.held`).
    """

    __slots__ = ()

    cuts = 0
    halted = False

    @property
    def report(self) -> _Echo:
        return self

    def fork(self, kind: str, *, number: str | None = None) -> _Echo:
        return self

    def renumbered(self) -> bool:
        return False

    def feed(self, text: str) -> list[str]:
        return [text]

    def end(self, forced: bool | None = None) -> list[str]:
        return []

    def abort(self) -> None:
        pass


def follow_arguments() -> _JSONStrings:
    """A reader of tool-call arguments that runs no stage: see :meth:`_JSONStrings.held`."""
    return _JSONStrings(_Echo())  # type: ignore[arg-type]  # (a chain's stand-in)


_SURROGATE = regex.compile("[\ud800-\udfff]")


def _json_body(text: str) -> str:
    """``text`` as the inside of a JSON string (lone surrogates escaped: encodable)."""
    body = json.dumps(text, ensure_ascii=False)[1:-1]
    if _SURROGATE.search(body, concurrent=False) is None:
        return body
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", body, concurrent=False)
