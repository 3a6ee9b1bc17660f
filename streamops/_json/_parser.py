"""The sans-I/O incremental JSON parser behind :func:`streamops.parse_json`.

One pass over the text: every character is looked at once, by a state machine
that keeps one live value and mutates it in place (containers are appended to
and set in place; a growing string is re-set in its parent once per chunk).
Runs of plain string characters and of whitespace are consumed with compiled
regular expressions, so the per-character work happens in C; a string, key,
or container that is whole within a chunk is handed to json's own C scanner.
So are, in big chunks, the members of an object: the rest of one left open by
an earlier chunk when it closes in this one (_rest), and those of one open at
the chunk's end up to its last whole member (_members); the state machine
takes the text they do not (the error, if any, is reported by it).

With small chunks (LLMs stream a few characters at a time) the cost that
matters is the fixed Python work per chunk, so feed() screens each chunk with
str methods first: a chunk that is all plain string text is one append.
Small chunks of generated JSON repeat (indentation, '": "', '",\n  '), so in
snapshot mode what a chunk of a common shape does in a given state (go on
with or end a string or key, escapes decoded; skip glue; take a whole string,
number or literal where a value is expected; open the next string or key, or
start a number or literal cut by the chunk's end) is worked out once by _plan
and replayed from a per-state cache; an escape or literal carried from the
last chunk is put in front of the chunk and takes the same path. A chunk of
another shape (brackets, several values) is split once into tokens by
_program, cached likewise, and _run
replays them against the parser's state; it stops at the first token the
state does not take as it is, and the general loop goes on from there (so
errors are reported by one path, at their exact offset). Only what neither
covers enters the loop from the start.

A token split between chunks (a number, a literal, an escape sequence, a
surrogate pair) is *carried*: its few characters are put in front of the next
chunk and parsed again there. Escapes and literals are at most 12 characters;
a number is carried whole, so a single number of L digits split into k chunks
costs O(L*k) — only pathological numbers make that matter.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeVar

from .._core._errors import JSONStreamError

__all__ = ("JSONDelta", "JSONParser", "JSONStreamError")

_WS = re.compile(r"[ \t\n\r]*")
_STR = re.compile(r'[^"\\\x00-\x1f]*')
_NUM = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# Every prefix of a valid number, and nothing else.
_NUM_PREFIX = re.compile(
    r"-?(?:(?:0|[1-9][0-9]*)(?:\.(?:[0-9]+(?:[eE][+-]?[0-9]*)?)?|[eE][+-]?[0-9]*)?)?"
)
_STR_LENIENT = re.compile(r'[^"\\]*')  # allow_control_chars: raw control characters too
_HEX = re.compile(r"[0-9a-fA-F]*")
_LOW = re.compile(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_LOW_PREFIX = re.compile(r"(?:\\(?:u(?:[dD](?:[c-fC-F][0-9a-fA-F]{0,2})?)?)?)?")
_PROSE = re.compile(r"[{\[]")
_MEMBER_NEXT = re.compile(r',[ \t\n\r]*"')  # a ',' before a key (see _members)
_KEY_FOLLOW = '"\n\r\t'  # what may follow a ',' before a key (or ' "')
_MEMBERS_MIN = 64  # shorter rests of a chunk do not pay for _members' copy and scan
_MEMBERS_TRIES = 2  # the ',' _members takes may be in a container inside: one more try
_MEMBERS_LOOK = 4  # ',' not before a key (in prose, in a container inside) looked past
_MEMBERS_WINDOW = 4096  # _members takes at most this much text at a time
_REST_LOOK = 4  # '}' _rest looks at for the one that closes its object
_AFTER_BRACKET = '"-0123456789tfn{[]'  # what may follow '[' (whitespace skipped)
_AFTER_BRACE = '"}'  # what may follow '{'
_NUMCHARS = "0123456789+-.eE"
_VALUE_START = '"-0123456789tfn{['  # what may start a value
_DIGITS = "0123456789"
_NUM_START = "-0123456789"
_NUM_TAIL = "0123456789.eE+-"  # a carried number ending so may take more digits (see feed)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")  # NaN and Infinity are not RFC 8259


# json's C scanner parses a value that is whole within one chunk at C speed;
# its conversions are the ones json.loads uses, so results are identical.
_scan_once: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder(parse_constant=_reject_constant)  # type: ignore[arg-type]  # typeshed: a context
)


def _scanner(nan: bool, ctrl: bool) -> Callable[[str, int], tuple[Any, int]]:
    decoder = json.JSONDecoder(strict=not ctrl)
    if not nan:
        decoder.parse_constant = _reject_constant  # raises: NaN and Infinity are not JSON
    return json.scanner.make_scanner(decoder)  # type: ignore[arg-type]  # typeshed: a context


# The lenient scanners, keyed by (allow_nan, allow_control_chars).
_SCANNERS = {(nan, ctrl): _scanner(nan, ctrl) for nan in (False, True) for ctrl in (False, True)}
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]  # untyped
_WSSTR = " \t\n\r"  # JSON whitespace (a str: `c in _WSSTR` is the cheapest test)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS: dict[str, tuple[str, bool | None]] = {
    "t": ("true", True),
    "f": ("false", False),
    "n": ("null", None),
}

# Parser states. The order matters to feed(): "state <= _ARR_FIRST" means a
# value is expected, "state <= _KEY" (after that) a key, "state >= _STRING"
# inside a string.
_VALUE = 0  # a value is expected
_ARR_FIRST = 1  # after "[": a value or "]"
_OBJ_FIRST = 2  # after "{": a key or "}"
_KEY = 3  # after "," in an object: a key
_COLON = 4  # after a key
_AFTER = 5  # after a value in a container: "," or the closing bracket
_END = 6  # after the top-level value
_PROSE_STATE = 7  # skipping text before the value
_FINISHED = 8  # no more input is parsed
_STRING = 9  # inside a string value
_KEYSTR = 10  # inside an object key

# A plan: what a small chunk without special characters does in one state
# (see JSONParser._plan); False when the chunk needs the general path.
_Plan = tuple[str, tuple[Any] | None, int, int, str | None, str] | Literal[False]
_PLAN_MAX_CHUNK = 16  # longer chunks take the loop: they rarely repeat
_PLAN_MAX_ENTRIES = 2048  # per state: bounds the memory of a stream of novel chunks
_SCAN_BUDGET = 4  # failed scans may cost this many times the chunk (see feed)
_DEEP_SKIP = 256  # levels opened without json's scanner after it ran out of recursion

# A program: the tokens of a chunk of another common shape (see
# JSONParser._program), each (kind, argument, position in the chunk).
_T_TEXT = 0  # decoded text of the open string or key
_T_END = 1  # the quote that ends the open string or key
_T_OPEN = 2  # a '"' that opens a string or key going on in the next chunk
_T_STR = 3  # a whole string (a key or a value): its decoded text
_T_SCALAR = 4  # a whole number or literal: its value
_T_CUT = 5  # a number, literal or escape cut by the chunk's end (carried)
_T_LBRACE = 6
_T_LBRACKET = 7
_T_RBRACE = 8
_T_RBRACKET = 9
_T_COMMA = 10
_T_COLON = 11
_PUNCT = {
    "{": _T_LBRACE,
    "[": _T_LBRACKET,
    "}": _T_RBRACE,
    "]": _T_RBRACKET,
    ",": _T_COMMA,
    ":": _T_COLON,
}
_Token = tuple[int, Any, int]

_EXPECTED = {
    _VALUE: "a value",
    _ARR_FIRST: "a value or ']'",
    _OBJ_FIRST: "'\"' (an object key) or '}'",
    _KEY: "'\"' (an object key)",
    _COLON: "':'",
    _STRING: "'\"' (end of string)",
    _KEYSTR: "'\"' (end of key)",
    _END: "end of input",
    _PROSE_STATE: "'{' or '['",
}


class JSONDelta(NamedTuple):
    """One change to the parsed value, from the parser's own state (``deltas=True``).

    ``op`` is ``"set"`` (a new value appears at ``path``: a container that
    streams in as a new empty ``{}``/``[]`` whose members follow as their own
    events, a string with the text seen so far, anything else complete — a
    value that arrives whole within one chunk is set whole),
    ``"append"`` (``value`` is text added to the string at ``path``) or
    ``"done"`` (the value at ``path`` is complete; ``value`` is it, live).
    ``path`` is an RFC 6901 JSON Pointer (``""`` is the root; ``~`` and ``/``
    in keys are escaped as ``~0`` and ``~1``).

    >>> import streamops as so
    >>> list(so.parse_json(deltas=True)(['{"a/b": "x', 'y"}']))  # doctest: +NORMALIZE_WHITESPACE
    [JSONDelta(op='set', path='', value={}),
     JSONDelta(op='set', path='/a~1b', value='x'),
     JSONDelta(op='append', path='/a~1b', value='y'),
     JSONDelta(op='done', path='/a~1b', value='xy'),
     JSONDelta(op='done', path='', value={'a/b': 'xy'})]
    """

    op: Literal["set", "append", "done"]
    path: str
    value: Any = None


def _escape_key(key: str) -> str:
    if "~" in key or "/" in key:
        return key.replace("~", "~0").replace("/", "~1")
    return key


def _balanced(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` holds as many '{' as '}' and '[' as ']' (strings count too)."""
    return text.count("{", start, end) == text.count("}", start, end) and text.count(
        "[", start, end
    ) == text.count("]", start, end)


def _number(text: str) -> int | float:
    # The conversions json.loads uses: int() for integers, float() otherwise.
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


_Found = TypeVar("_Found")


def _remember(
    cache: dict[str, _Found | Literal[False]],
    make: Callable[[int, str], _Found | Literal[False]],
    state: int,
    text: str,
) -> _Found | Literal[False]:
    """Work out a plan or program (``make``) for ``text`` in ``state`` and keep it in ``cache``."""
    if len(text) > _PLAN_MAX_CHUNK:  # not kept: long chunks rarely repeat
        return False
    found = make(state, text)
    if len(cache) >= _PLAN_MAX_ENTRIES:  # novel chunks (numbers): start over
        cache.clear()
    cache[text] = found
    return found


class _NoCache(dict[str, Any]):
    """A plan or program cache that holds nothing: every chunk takes the general path."""

    def __missing__(self, key: str) -> Literal[False]:
        return False


def _string_text(text: str, pos: int, plain: re.Pattern[str] = _STR) -> tuple[str, int, str] | None:
    """Decode string text from ``pos`` to an unescaped quote or the end of ``text``.

    Returns the decoded text, where it stopped (the quote's index, or the
    length) and an escape cut by the end ("" if none); None when the text
    holds what the general path must see (a control character, an invalid
    escape, a surrogate, which may pair with the next escape).
    """
    parts: list[str] = []
    n = len(text)
    while True:
        e = plain.match(text, pos).end()  # type: ignore[union-attr]  # always matches
        if e > pos:
            parts.append(text[pos:e])
        if e == n:
            return "".join(parts), n, ""
        c = text[e]
        if c == '"':
            return "".join(parts), e, ""
        if c != "\\":
            return None
        if e + 1 == n:
            return "".join(parts), n, text[e:]
        c = text[e + 1]
        if c != "u":
            r = _ESCAPES.get(c)
            if r is None:
                return None
            parts.append(r)
            pos = e + 2
            continue
        h = _HEX.match(text, e + 2, e + 6).end()  # type: ignore[union-attr]  # always matches
        if h < e + 6:
            if h == n:
                return "".join(parts), n, text[e:]
            return None
        cp = int(text[e + 2 : e + 6], 16)
        if 0xD800 <= cp < 0xE000:
            return None
        parts.append(chr(cp))
        pos = e + 6


class JSONParser:
    """Parse JSON text fed in pieces; keep one live, monotonically growing value.

    ``feed(text)`` returns True when :attr:`value` changed as shown (a closing
    bracket, or the quote ending a string whose text was already shown, changes
    nothing), whatever the chunk sizes; :attr:`completed` lists the top-level
    values completed during the last call; :attr:`events` holds the
    :class:`JSONDelta` events of the last call when ``deltas`` (feed() is then
    also True when there are events).
    ``close()`` checks that the input ended cleanly (or, with ``recover``,
    keeps the best partial value and sets :attr:`incomplete`).

    >>> p = JSONParser()
    >>> p.feed('{"n": [1, 2'), p.value
    (True, {'n': [1]})
    >>> p.feed("]}"), p.value, p.completed
    (True, {'n': [1, 2]}, [{'n': [1, 2]}])
    """

    def __init__(
        self,
        *,
        partial_strings: bool = True,
        deltas: bool = False,
        multiple: bool = False,
        trailing: Literal["error", "stop"] = "error",
        skip_prefix: bool = False,
        materialise: bool | None = None,
        live: bool = False,
        string_events: bool = True,
        allow_control_chars: bool = False,
        allow_nan: bool = False,
        allow_trailing_commas: bool = False,
        steps: bool = False,
    ) -> None:
        self.value: Any = None
        self.has_value = False
        self.incomplete = False
        self.values_completed = 0
        self.completed: list[Any] = []
        self.events: list[JSONDelta] = []
        # Called as each top-level value completes, in the middle of the feed()
        # that completes it (after it is in completed): a caller that feeds
        # without looking at completed after each chunk learns of it so.
        self.on_complete: Callable[[], object] | None = None
        self._dirty = deltas  # completed or events may be non-empty
        self._deltas = deltas
        # By default partial strings are kept up to date in the tree only for
        # snapshots: in delta mode a string is re-set in its parent when complete.
        if materialise is None:
            materialise = partial_strings and not deltas
        self._materialise = materialise
        # Snapshot mode (the default), and delta mode that makes no events for
        # growing strings (model mode): feed() may replay cached plans (see _plan).
        self._snapshots = materialise and not (deltas and partial_strings and string_events)
        # Per state: plans and programs by chunk (see feed()); in the other
        # modes, caches that hold nothing and answer False (the general path).
        cache = dict if self._snapshots else _NoCache
        self._plans: tuple[dict[str, _Plan], ...] = tuple(cache() for _ in range(_KEYSTR + 1))
        self._progs: tuple[dict[str, list[_Token] | Literal[False]], ...] = tuple(
            cache() for _ in range(_KEYSTR + 1)
        )
        self._partial_strings = partial_strings
        # The rest of an object from an earlier chunk, or its members up to the
        # chunk's end, may be handed to json's scanner at once (_rest, _members):
        # not in delta mode, whose events are made member by member.
        self._runs = not deltas
        # Opt-in leniency (strict RFC 8259 by default): each one named.
        self._strict_strings = not allow_control_chars
        self._str_re = _STR_LENIENT if allow_control_chars else _STR
        self._allow_nan = allow_nan
        self._literals: dict[str, tuple[str, Any]] = dict(_LITERALS)
        if allow_nan:
            self._literals.update(N=("NaN", float("nan")), I=("Infinity", float("inf")))
        self._trailing_commas = allow_trailing_commas
        self._scanner = (
            _SCANNERS[allow_nan, allow_control_chars]
            if allow_nan or allow_control_chars
            else _scan_once  # (looked up here: a test may patch it)
        )
        # "set"/"append" events of a string still growing (model mode reads the
        # growing string from the tree instead: see open_string).
        self._string_events = deltas and partial_strings and string_events
        self._multiple = multiple
        self._trailing = trailing
        self._fence = False
        self._prose_tail = ""
        self._candidate = ""  # a '{' or '[' in the prose, not yet known to start the value
        self._state = _PROSE_STATE if skip_prefix else _VALUE
        self._base = 0  # offset of the current chunk's first character
        self._carry = ""
        self._stack: list[tuple[Any, bool, Any, str, int]] = []
        self._alen = 0  # items of the innermost array attached so far (its next index)
        # "set" events of containers carry the live container (internal users that
        # follow it, as model mode does) rather than a fresh empty one.
        self._live = live
        # Events name their place by its step (the key, or the index; None at
        # the root) instead of a JSON Pointer, are plain (op, step, value)
        # tuples, and a value complete at once is one "done" (no "set" before
        # it): model mode follows the tree one step at a time and would only
        # split the pointer again. Implies live containers.
        self._steps = steps
        self._scan_depth = 0  # containers at this depth or deeper may try json's scanner
        self._cont: Any = None  # the innermost open container (None at top level)
        self._isobj = False
        self._key: Any = None  # the key of the value being parsed in an object
        self._path = ""  # JSON Pointer of the innermost container (deltas only)
        self._pieces: list[str] = []  # string text not yet materialised
        self._sval = ""  # string text already materialised (snapshot mode)
        # String text already emitted but not materialised (delta mode): a list,
        # joined once when the string ends, so that a long string costs O(length).
        self._sparts: list[str] = []
        self._spath: str | None = None  # the open string's JSON Pointer, made once
        self._sattached = False  # the open string is in the tree
        self._sannounced = False  # a "set" event was made for the open string
        self._scont: Any = None  # the open string's container and key (see _open_string)
        self._skey: Any = None

    @property
    def finished(self) -> bool:
        """True when the parser takes no more input (``trailing="stop"`` or a closing fence)."""
        return self._state == _FINISHED

    def open_string(self) -> tuple[Any, Any, Any] | None:
        """The string still growing, shown in the tree: (its container, its key, its step).

        The key is where the container holds it (``-1`` in an array), the step
        its key or index in the document; None if no string is open and shown
        (at the root the container is None).
        """
        if self._state != _STRING or not self._sattached:
            return None
        cont = self._cont
        if cont is None:
            return None, None, None
        return cont, self._skey, (self._key if self._isobj else self._alen - 1)

    @property
    def offset(self) -> int:
        """Number of characters consumed so far."""
        return self._base

    # -- errors --------------------------------------------------------------
    def _fail(self, chunk: str, pos: int, expected: str | None = None) -> JSONStreamError:
        got = chunk[pos] if pos < len(chunk) else None
        if expected is None:
            expected = _EXPECTED.get(self._state, "a value")
            if self._state == _AFTER:
                expected = "',' or '}'" if self._isobj else "',' or ']'"
        offset = self._base + pos
        where = f"invalid JSON at offset {offset}"
        message = f"{where}: expected {expected}, got {got!r}"
        self._state = _FINISHED
        return JSONStreamError(message, offset=offset, expected=expected, got=got)

    # -- values --------------------------------------------------------------
    def _child_path(self) -> Any:
        # (with steps: the key or index, None at the root; see __init__)
        if self._cont is None:
            return None if self._steps else ""
        if self._isobj:
            return self._key if self._steps else f"{self._path}/{_escape_key(self._key)}"
        return self._alen - 1 if self._steps else f"{self._path}/{self._alen - 1}"

    def _attach(self, v: Any) -> None:
        cont = self._cont
        if cont is None:
            self.value = v
            self.has_value = True
        elif self._isobj:
            cont[self._key] = v
        else:
            cont.append(v)
            self._alen += 1

    def _root_done(self) -> None:
        self._scan_depth = 0
        self.values_completed += 1
        self.completed.append(self.value)
        self._dirty = True
        # With multiple values, "stop" ends at the first text that cannot start one.
        self._state = _FINISHED if self._trailing == "stop" and not self._multiple else _END
        if self.on_complete is not None:
            self.on_complete()

    def _scalar(self, v: Any) -> None:
        cont = self._cont
        if self._steps and cont is not None:  # (model mode's common case, inlined)
            if self._isobj:
                cont[step := self._key] = v
            else:
                cont.append(v)
                step = self._alen
                self._alen = step + 1
            events: list[Any] = self.events
            events.append(("done", step, v))  # one plain event (see __init__)
            self._state = _AFTER
            return
        self._attach(v)
        if self._deltas:
            path = self._child_path()
            if self._steps:  # at the root
                plain: list[Any] = self.events
                plain.append(("done", path, v))
            else:
                self.events += (JSONDelta("set", path, v), JSONDelta("done", path, v))
        if cont is None:
            self._root_done()
        else:
            self._state = _AFTER

    def _string_path(self) -> Any:
        path = self._spath
        if path is None:
            path = self._spath = self._child_path()
        return path

    def _open_string(self) -> bool:
        """Start a string value; return True if it is shown (attached) at once."""
        self._sval = ""
        self._spath = None
        if self._sparts:
            self._sparts = []
        self._sannounced = False
        self._sattached = self._materialise
        # Where the growing string lives, so that updating it is one item assignment.
        cont = self._cont
        if cont is None:
            self._scont, self._skey = self.__dict__, "value"  # the root: self.value
        elif self._isobj:
            self._scont, self._skey = cont, self._key
        else:
            self._scont, self._skey = cont, -1  # the open string is always the last item
        if self._materialise:
            self._attach("")
        return self._materialise

    def _flush_string(self) -> bool:
        """Show the text of the open string gathered so far; True if anything changed."""
        emit = self._string_events
        if not (emit or self._materialise):
            return False
        pieces = self._pieces
        text = ""
        if pieces:
            text = "".join(pieces)
            pieces.clear()
            if self._materialise:
                self._sval += text
            else:
                self._sparts.append(text)
        changed = False
        if not self._sattached:
            self._sattached = True
            # (before the path: a list index counts this item)
            self._attach(self._sval if self._materialise else "".join(self._sparts))
            changed = True
        elif text and self._materialise:
            self._scont[self._skey] = self._sval
            changed = True
        if emit:
            if not self._sannounced:
                self._sannounced = True
                shown = self._sval if self._materialise else "".join(self._sparts)
                self.events.append(JSONDelta("set", self._string_path(), shown))
                changed = True
            elif text:
                self.events.append(JSONDelta("append", self._string_path(), text))
                changed = True
        return changed

    def _end_string(self) -> bool:
        """End the open string; return True if the value shown changed (see feed())."""
        if self._string_events:  # the text since the last flush is an "append" before "done"
            self._flush_string()
        pieces = self._pieces
        if self._sparts:
            s = "".join(self._sparts)
            self._sparts = []
        else:
            s = self._sval
        changed = not self._sattached
        if pieces:
            s += "".join(pieces)
            pieces.clear()
            changed = True
        if self._sattached:  # (in delta mode the tree's copy may be behind: always set)
            self._scont[self._skey] = s
        else:
            self._attach(s)
        if self._deltas:
            path = self._string_path()
            events: list[Any] = self.events
            if self._steps:
                events.append(("done", path, s))
            else:
                if not self._sannounced:
                    events.append(JSONDelta("set", path, s))
                events.append(JSONDelta("done", path, s))
        if self._cont is None:
            self._root_done()
        else:
            self._state = _AFTER
        return changed

    def _open(self, container: dict[str, Any] | list[Any]) -> None:
        self._attach(container)
        path = ""
        if self._deltas:
            path = self._child_path()
            # A fresh empty container: its members follow as events of their own.
            events: list[Any] = self.events
            if self._steps:
                events.append(("set", path, container))
            else:
                events.append(
                    JSONDelta("set", path, container if self._live else type(container)())
                )
        self._stack.append((self._cont, self._isobj, self._key, self._path, self._alen))
        self._alen = 0
        self._cont = container
        self._isobj = type(container) is dict
        self._path = path
        self._state = _OBJ_FIRST if self._isobj else _ARR_FIRST

    def _close_container(self) -> None:
        done = self._cont
        path = self._path
        self._cont, self._isobj, self._key, self._path, self._alen = self._stack.pop()
        if self._deltas:
            events: list[Any] = self.events
            events.append(("done", path, done) if self._steps else JSONDelta("done", path, done))
        if self._cont is None:
            self._root_done()
        else:
            self._state = _AFTER

    # -- the state machine ---------------------------------------------------
    # feed() is the hot loop: with 4-character chunks it runs once per 4
    # characters, so it is written for few Python steps per chunk — common
    # actions are inlined, and str methods (several times cheaper than a regex
    # call on a few characters) screen the chunk first.
    def feed(self, chunk: str) -> bool:
        """Parse ``chunk``; return True if :attr:`value` changed as shown (or events were made)."""
        if self._dirty:
            if self._steps:
                # (model mode reads both lists at once and never hands them
                # on: only a list that was filled is replaced)
                if self.completed:
                    self.completed = []
                if self.events:
                    self.events = []
            else:
                self.completed = []
                self.events = []
            self._dirty = self._deltas
        state = self._state
        if self._carry:
            return self._feed_carried(chunk, state)
        # Hot path of small chunks: the whole chunk is plain string text. A
        # printable chunk without '"' or '\\' holds no character a string
        # must escape; anything else (rare characters included) takes the
        # general path below, which is exact.
        if state >= _STRING and '"' not in chunk and "\\" not in chunk and chunk.isprintable():
            if state == _KEYSTR:
                self._pieces.append(chunk)
                self._base += len(chunk)
                return False
            if self._materialise:
                if not chunk:
                    return False
                s = self._sval = self._sval + chunk
                self._scont[self._skey] = s
                self._base += len(chunk)
                if self._string_events:
                    self.events.append(JSONDelta("append", self._string_path(), chunk))
                return True
        # Small chunks of an LLM's output repeat (indentation, '": "', '",\n  '):
        # what a chunk does in a given state is worked out once (see _plan) and
        # replayed from the cache on every repeat (snapshot mode only: the
        # caches of the other modes are always empty).
        try:
            plan = self._plans[state][chunk]
        except KeyError:
            if len(chunk) > _PLAN_MAX_CHUNK:  # never kept (see _remember): no second miss
                return self._feed_long(chunk, state)
            plan = _remember(self._plans[state], self._plan, state, chunk)
        if plan:
            head, scalar, after_obj, after_arr, opened, cut = plan
            changed = False
            # A plan that starts in a string or key ends it (text alone took
            # the path above).
            if state < _STRING:
                pass
            elif after_obj >= _STRING:
                # The string or key goes on (its text has escapes: plain text
                # took the path above), maybe with an escape cut at the end.
                if cut:
                    self._carry = cut
                self._base += len(chunk)
                if state == _KEYSTR:
                    if head:
                        self._pieces.append(head)
                    return False
                if head:
                    s = self._sval = self._sval + head
                    self._scont[self._skey] = s
                    return True
                return False
            elif state == _STRING:
                if self._cont is None:  # a root string ends: the general path
                    return self._parse(chunk, state, False, 0)
                if self._steps:  # (model mode: _end_string's steps, inline)
                    s = self._sval + head
                    self._scont[self._skey] = s  # (shown: attached when opened)
                    step: Any = self._spath
                    if step is None:
                        step = self._key if self._isobj else self._alen - 1
                    events: list[Any] = self.events
                    events.append(("done", step, s))
                    changed = True  # (events were made: feed() is True)
                elif self._deltas:  # its "done" event (and "set" if unseen)
                    if head:
                        self._pieces.append(head)
                    self._end_string()
                    changed = True
                elif head:
                    s = self._sval = self._sval + head
                    self._scont[self._skey] = s
                    changed = True
            else:
                pieces = self._pieces
                if head:
                    pieces.append(head)
                self._key = "".join(pieces)
                pieces.clear()
            if scalar is not None:  # a whole value where a value is expected
                cont = self._cont
                if cont is None:  # the top-level value (nothing changed yet): the general path
                    return self._parse(chunk, state, False, 0)
                if self._steps:  # (model mode: _scalar's steps, inline)
                    v = scalar[0]
                    if self._isobj:
                        cont[step := self._key] = v
                    else:
                        cont.append(v)
                        step = self._alen
                        self._alen = step + 1
                    made: list[Any] = self.events
                    made.append(("done", step, v))
                elif self._deltas:
                    self._scalar(scalar[0])
                elif self._isobj:
                    cont[self._key] = scalar[0]
                else:
                    cont.append(scalar[0])
                changed = True
            state = after_obj if self._isobj else after_arr
            if opened is not None:
                if state >= _OBJ_FIRST:
                    if opened:
                        self._pieces.append(opened)
                    state = _KEYSTR
                else:
                    self._open_string()
                    if opened:
                        self._sval = opened
                        self._scont[self._skey] = opened
                    changed = True
                    state = _STRING
            if cut:  # a number, literal or escape that goes on in the next chunk
                self._carry = cut
            self._state = state
            self._base += len(chunk)
            return changed  # (events are made only with changed True: see above)
        if chunk.isspace() and state < _PROSE_STATE and not chunk.strip(_WSSTR):
            self._base += len(chunk)
            return False
        # Other common shapes (escapes, brackets, whole scalars) replay a
        # cached program of tokens (see _program and _run).
        try:
            prog = self._progs[state][chunk]
        except KeyError:
            prog = _remember(self._progs[state], self._program, state, chunk)
        if prog:
            return self._run(prog, chunk, state)
        return self._parse(chunk, state, False, 0)

    def _feed_long(self, chunk: str, state: int) -> bool:
        """feed() of a chunk too long to have a plan or a program: blank, or the general path."""
        if chunk.isspace() and state < _PROSE_STATE and not chunk.strip(_WSSTR):
            self._base += len(chunk)
            return False
        return self._parse(chunk, state, False, 0)

    def _feed_carried(self, chunk: str, state: int) -> bool:
        """feed() when a token cut by the last chunk's end is carried."""
        if state == _FINISHED:
            return False
        carry = self._carry
        if state <= _ARR_FIRST and carry[0] in _NUM_START:
            if (
                chunk.isdigit()
                and chunk.isascii()
                and carry[-1] in _NUM_TAIL
                and carry not in ("-", "0", "-0")
            ):
                # More digits of a carried number (the middle of a long float or
                # id): still a valid number prefix (a '-' alone or a leading 0
                # are left to the general path), still not complete.
                self._carry = carry + chunk
                self._base += len(chunk)
                return False
            text = carry + chunk
            if self._snapshots and self._cont is not None:
                # A carried number that ends in this chunk (the common case:
                # floats and ids of a few chunks each): set it, then the rest of
                # the chunk takes the fast paths (a separator and a key, say,
                # replay a plan).
                e = _NUM_PREFIX.match(text).end()  # type: ignore[union-attr]  # always matches
                if e < len(text) and text[e] not in _NUMCHARS and text[e - 1] in _DIGITS:
                    digits = text[:e]
                    if "." in digits or "e" in digits or "E" in digits:
                        num: int | float = float(digits)  # (_number, inline)
                    else:
                        self._base -= len(carry)  # (where an error is reported)
                        num = self._convert(text, 0, e)
                        self._base += len(carry)
                    self._base += e - len(carry)
                    self._carry = ""
                    if self._deltas:
                        self._scalar(num)
                        # The rest's events follow the number's (feed() would
                        # start a new list).
                        self._dirty = False
                        try:
                            self.feed(text[e:])
                        finally:
                            self._dirty = True
                        return True
                    if self._isobj:
                        self._cont[self._key] = num
                    else:
                        self._cont.append(num)
                    self._state = _AFTER
                    self.feed(text[e:])
                    return True
            self._base -= len(carry)
            self._carry = ""
            return self._parse(text, state, False, 0)
        # An escape or literal cut at the last chunk's end: the text from it
        # on repeats as much as chunks do, so it takes feed()'s cached plans
        # and programs (nothing was reset or made yet in this call).
        self._base -= len(carry)
        self._carry = ""
        return self.feed(carry + chunk)

    def _parse(self, chunk: str, state: int, changed: bool, pos: int) -> bool:
        """The general path of feed(): the state machine, from ``chunk[pos]`` on."""
        n = len(chunk)
        # Containers at this depth or above were opened before this chunk (see
        # _rest); -1 once a try of _rest failed in this chunk (no more tries).
        held = len(self._stack) if self._runs else -1
        tail = self._runs  # _members may be tried (False once it failed in this chunk)
        if state == _PROSE_STATE:  # only ever before the first value
            pos = self._skip_prose(chunk, pos)
            state = self._state
            changed = state != _PROSE_STATE  # the value opened
        pieces = self._pieces
        scan_budget = _SCAN_BUDGET * n + 1024  # characters failed scans may cost
        v: Any
        # The state is kept in a local and stored back when the loop exits; the
        # helpers called here that change it set self._state and it is re-read.
        while pos < n:
            if state >= _STRING:
                e = self._str_re.match(chunk, pos).end()  # type: ignore[union-attr]  # always matches
                if e > pos:
                    pieces.append(chunk[pos:e])
                if e == n:
                    pos = n
                    break
                c = chunk[e]
                if c == '"':
                    pos = e + 1
                    if state == _STRING:
                        if self._end_string():
                            changed = True
                        state = self._state
                    else:
                        self._key = "".join(pieces)
                        pieces.clear()
                        if pos < n and chunk[pos] == ":":
                            pos += 1
                            state = _VALUE
                        else:
                            state = _COLON
                elif c == "\\":
                    pos = self._escape(chunk, e)
                    if pos < 0:
                        self._carry = chunk[e:]
                        pos = n
                        break
                else:
                    raise self._fail(
                        chunk, e, "a string character (control characters must be escaped)"
                    )
                continue
            c = chunk[pos]
            if c in _WSSTR:
                pos += 1
                if pos < n and chunk[pos] in _WSSTR:  # a run: let the regex take it
                    pos = _WS.match(chunk, pos).end()  # type: ignore[union-attr]  # always matches
                continue
            if state <= _ARR_FIRST:
                # A value: either opened here (a string or container that streams
                # in), carried to the next chunk (a cut number or literal), or
                # whole in this chunk — then v is attached below.
                if c == '"':
                    e = -1
                    if chunk.find('"', pos + 1) >= 0:
                        # The string may be whole in this chunk: json's C scanner
                        # takes it (escapes included); if it is cut or invalid, the
                        # string state parses it (and reports the exact error).
                        try:
                            v, e = _scanstring(chunk, pos + 1, self._strict_strings)
                        except ValueError:
                            pass
                    if e < 0:
                        pos += 1
                        if self._open_string():  # hidden (not yet shown) otherwise
                            changed = True
                        state = _STRING
                        continue
                    pos = e
                elif c in _NUMCHARS and not (
                    c == "-" and self._allow_nan and chunk.startswith("-I", pos)
                ):
                    e = _NUM_PREFIX.match(chunk, pos).end()  # type: ignore[union-attr]  # always matches
                    if e == n:  # the number may continue in the next chunk
                        self._carry = chunk[pos:]
                        pos = n
                        break
                    if chunk[e] in _NUMCHARS:
                        raise self._fail(chunk, e, "a valid number")
                    if chunk[e - 1] not in _DIGITS:  # a number ends with a digit
                        raise self._fail(chunk, e, "a digit")
                    v = self._convert(chunk, pos, e)
                    pos = e
                elif c in self._literals or c == "-":
                    word, v = self._literals[c] if c != "-" else ("-Infinity", float("-inf"))
                    if not chunk.startswith(word, pos):
                        rest = chunk[pos : pos + len(word)]
                        if len(rest) < len(word) and word.startswith(rest):
                            self._carry = rest
                            pos = n
                            break
                        bad = next(i for i, ch in enumerate(rest) if ch != word[i])
                        raise self._fail(chunk, pos + bad, f"{word!r}")
                    pos += len(word)
                elif c == "{" or c == "[":
                    e = -1
                    if (
                        scan_budget > 0
                        and chunk.find("}" if c == "{" else "]", pos + 1) >= 0
                        and len(self._stack) >= self._scan_depth
                    ):
                        # The container may be whole in this chunk: the C scanner
                        # takes it at json.loads speed; if it is cut or invalid,
                        # the state machine parses it (and reports the exact error).
                        # A failed try (a container open at the chunk's end) cost
                        # the text up to where it failed: once failures cost a few
                        # times the chunk, stop trying in it, so that open nested
                        # containers are not re-scanned once per level (O(n*depth)).
                        try:
                            v, e = self._scanner(chunk, pos)
                        except json.JSONDecodeError as exc:
                            scan_budget -= exc.pos - pos
                        except StopIteration as exc:
                            scan_budget -= exc.value - pos
                        except ValueError:
                            scan_budget -= n - pos
                        except RecursionError:
                            # The scanner recurses: a value nested deeper than the
                            # recursion limit is left to the (iterative) state
                            # machine, so the split never changes the outcome. A
                            # failed try costs ~the limit: retry only deeper down.
                            self._scan_depth = len(self._stack) + _DEEP_SKIP
                    if e < 0:
                        pos += 1
                        if len(self._stack) < held:
                            held = len(self._stack)
                        self._open({} if c == "{" else [])
                        changed = True
                        state = self._state
                        continue
                    pos = e
                elif c == "]" and (
                    state == _ARR_FIRST
                    or (self._trailing_commas and self._cont is not None and not self._isobj)
                ):
                    pos += 1
                    self._close_container()
                    state = self._state
                    continue
                else:
                    self._state = state
                    raise self._fail(chunk, pos)
                changed = True
                cont = self._cont
                if cont is None or self._deltas:
                    self._scalar(v)
                    state = self._state
                elif self._isobj:
                    cont[self._key] = v
                    state = _AFTER
                else:
                    cont.append(v)
                    state = _AFTER
            elif state <= _KEY:  # _OBJ_FIRST or _KEY
                if c == '"':
                    if (
                        n - pos >= _MEMBERS_MIN
                        and (tail or len(self._stack) <= held)
                        and scan_budget > 0
                        and len(self._stack) >= self._scan_depth
                    ):
                        # Runs of members: json's scanner takes them at once.
                        e = 0
                        if len(self._stack) <= held and chunk.find("}", pos + 1) >= 0:
                            # An object opened in an earlier chunk may close in
                            # this one: its remaining members.
                            scan_budget -= n - pos
                            e = self._rest(chunk, pos)
                            if e < 0:
                                held = -1  # (it does not close here: no more tries)
                                e = 0
                        elif tail:
                            # An object that goes on past this chunk (its whole
                            # was not here): its members up to the chunk's last.
                            scan_budget -= n - pos
                            e = self._members(chunk, pos)
                            if e == 0:
                                tail = False  # (tried in a chunk until it fails)
                            elif e > 0:  # the last members' ',' (the object goes on)
                                # What follows is the chunk's last member, unless
                                # the window stopped the run short of the end.
                                tail = pos + _MEMBERS_WINDOW < n
                                pos = e
                                changed = True
                                state = _AFTER
                                continue
                            else:  # it closed after all
                                e = -e
                        if e:  # the object closed at e
                            pos = e
                            changed = True
                            self._close_container()
                            state = self._state
                            continue
                    if chunk.find('"', pos + 1) >= 0:
                        # The key may be whole in this chunk (as for strings above).
                        try:
                            self._key, pos = _scanstring(chunk, pos + 1, self._strict_strings)
                        except ValueError:
                            pass
                        else:
                            if pos < n and chunk[pos] == ":":
                                pos += 1
                                state = _VALUE
                            else:
                                state = _COLON
                            continue
                    pos += 1
                    state = _KEYSTR
                elif c == "}" and (state == _OBJ_FIRST or self._trailing_commas):
                    pos += 1
                    self._close_container()
                    state = self._state
                else:
                    self._state = state
                    raise self._fail(chunk, pos)
            elif state == _AFTER:
                if c == ",":
                    pos += 1
                    state = _KEY if self._isobj else _VALUE
                elif c == ("}" if self._isobj else "]"):
                    pos += 1
                    self._close_container()
                    state = self._state
                else:
                    self._state = state
                    raise self._fail(chunk, pos)
            elif state == _COLON:
                if c != ":":
                    self._state = state
                    raise self._fail(chunk, pos)
                pos += 1
                state = _VALUE
            elif state == _END:
                if self._multiple and (self._trailing != "stop" or c in _VALUE_START):
                    state = _VALUE
                elif self._multiple or (self._fence and c == "`"):
                    state = _FINISHED
                    break
                else:
                    self._state = state
                    raise self._fail(chunk, pos)
            else:  # _FINISHED
                break
        self._state = state
        if state == _STRING:
            if pieces and self._materialise and not self._deltas:
                # _flush_string's common case, inline: show the string's new text.
                s = self._sval = self._sval + "".join(pieces)
                pieces.clear()
                self._scont[self._skey] = s
                changed = True
            elif self._flush_string():
                changed = True
        self._base += pos
        return changed or len(self.events) > 0

    def _rest(self, chunk: str, pos: int) -> int:
        """Add the members of the open object from ``chunk[pos]`` (a key) to its end.

        Where the object closes is guessed first: at the first '}' after
        ``pos`` with as many '{' as '}' and '[' as ']' before it (brackets in
        strings may fool it: the scanner decides). Then the members and the
        closing brace are parsed by json's C scanner, as if the object started
        just before ``pos``; the object is left for the caller to close.
        Returns where it ended in ``chunk``, or -1 (nothing added) when it
        does not close there or anything in it is invalid: the state machine
        then parses it (and reports the exact error).
        """
        k = pos
        for _ in range(_REST_LOOK):
            k = chunk.find("}", k + 1)
            if k < 0:
                return -1
            if _balanced(chunk, pos, k):
                break
        else:
            return -1  # (an object open for long, like a document's root)
        text = f"{{{chunk[pos : k + 1]}"
        try:
            members, e = self._scanner(text, 0)
        except (ValueError, StopIteration, RecursionError):
            return -1
        self._cont.update(members)
        return pos + e - 1

    def _members(self, chunk: str, pos: int) -> int:
        """Add the members of the open object from ``chunk[pos]`` (a key) to the chunk's last one.

        The last ',' followed by a key in ``chunk`` (within _MEMBERS_WINDOW
        characters of ``pos``: the loop comes back for the rest; at most
        _MEMBERS_LOOK others, in strings say, looked past) with as many
        opening as closing brackets before it is taken to end a member of this
        object, and the text up to it is given to json's C scanner as
        the object's members; if that is not whole members of it (the ',' was
        in a string or in a container inside, or something is invalid), the
        one before such one is tried, once. Returns where the members taken
        end (the ','), minus the position after the object's own '}' if it
        closed before that (it is left for the caller to close), or 0
        (nothing added: the state machine then parses the text, and reports
        the exact error if there is one).
        """
        # (a window: a failed try on members nested deep costs only so much)
        q = min(len(chunk), pos + _MEMBERS_WINDOW)
        for _ in range(_MEMBERS_TRIES):
            looked = _MEMBERS_LOOK
            while True:
                q = chunk.rfind(",", pos, q)
                if q <= pos:
                    return 0
                follow = chunk[q + 1 : q + 2]
                if (
                    # (a ',' in prose is followed by ' ' and a letter: no regex)
                    (follow in _KEY_FOLLOW or chunk.startswith(' "', q + 1))
                    and _MEMBER_NEXT.match(chunk, q) is not None
                    and _balanced(chunk, pos, q)
                ):
                    break
                looked -= 1
                if not looked:
                    return 0
            text = f"{{{chunk[pos:q]}}}"
            try:
                members, e = self._scanner(text, 0)
            except (ValueError, StopIteration, RecursionError):
                continue
            self._cont.update(members)
            if e == len(text):  # (the '}' added after the last member)
                return q
            return 1 - pos - e  # (the object's own '}' at text[e - 1])
        return 0

    def _plan(self, state: int, chunk: str) -> _Plan:
        """Work out what ``chunk`` does in ``state``, if it has one of the common shapes.

        The shapes: text of the open string or key that goes on (escapes
        decoded; an escape cut by the chunk's end is carried); or the end of
        the open string or key, then glue (whitespace, at most the one
        separator the state allows), then where a value is expected a whole
        string, number or literal and glue again, then possibly a string or
        key that opens and goes on in the next chunk, or where a value is
        expected, a number or literal that starts and is cut by the chunk's
        end. The result, ``(head, scalar, after_obj, after_arr, opened,
        cut)``, depends on nothing but ``state`` and ``chunk``, so feed()
        caches it: ``head`` is the decoded text that goes on with or ends the
        open string or key, ``scalar`` the whole value as a 1-tuple (None if
        none), the state at the end is ``after_obj`` in an object and
        ``after_arr`` in an array (or at the top level; both the string
        state when the string goes on), ``opened`` the text of the string or
        key opened at the end (None if none), and ``cut`` the number, literal
        or escape to carry ("" if none). Only for snapshot mode (and model
        mode's). Anything else (brackets, a surrogate escape, a control
        character, errors) returns False: the general path parses it.
        """
        pos = 0
        head = ""
        if state >= _STRING:
            found = _string_text(chunk, 0, self._str_re)
            if found is None:
                return False
            head, q, cut = found
            if q == len(chunk):  # the string or key goes on (escapes decoded)
                return head, None, state, state, None, cut
            pos = q + 1
            state = _AFTER if state == _STRING else _COLON
        if state > _END:
            return False
        rest = chunk[pos:].lstrip(_WSSTR)
        after_obj = after_arr = state
        if state == _COLON and rest[:1] == ":":
            after_obj = after_arr = _VALUE
            rest = rest[1:].lstrip(_WSSTR)
        elif state == _AFTER and rest[:1] == ",":
            after_obj, after_arr = _KEY, _VALUE
            rest = rest[1:].lstrip(_WSSTR)
        scalar = None
        if rest and after_obj == after_arr <= _ARR_FIRST:
            whole = self._whole(rest)
            if whole is not None:
                # A whole value (a string, number or literal) and the glue after it.
                scalar = (whole[0],)
                rest = rest[whole[1] :].lstrip(_WSSTR)
                after_obj = after_arr = _AFTER
                if rest[:1] == ",":
                    after_obj, after_arr = _KEY, _VALUE
                    rest = rest[1:].lstrip(_WSSTR)
        if not rest:
            return head, scalar, after_obj, after_arr, None, ""
        if after_obj <= _KEY and rest[0] == '"':
            found = _string_text(rest, 1, self._str_re)
            if found is not None and found[1] == len(rest):
                # A string or key that opens and goes on (an escape may be cut).
                return head, scalar, after_obj, after_arr, found[0], found[2]
        if after_obj == after_arr <= _ARR_FIRST:
            # A number or literal that starts here and goes on in the next chunk:
            # carried, as the general path carries it.
            c = rest[0]
            if c in _NUM_START:
                if _NUM_PREFIX.fullmatch(rest) and not (self._allow_nan and c == "-"):
                    return head, scalar, after_obj, after_arr, None, rest
            elif c in self._literals:
                word = self._literals[c][0]
                if len(rest) < len(word) and word.startswith(rest):
                    return head, scalar, after_obj, after_arr, None, rest
        return False

    def _whole(self, text: str) -> tuple[Any, int] | None:
        """The value that starts ``text`` if it is a string, number or literal whole in it.

        Returns the value (converted as the general path converts it) and
        where it ends; None if it is cut, invalid, or anything else.
        """
        c = text[0]
        if c == '"':
            found = _string_text(text, 1, self._str_re)
            if found is None or found[1] == len(text):
                return None
            return found[0], found[1] + 1
        if c in _NUM_START:
            if self._allow_nan and c == "-":  # (maybe -Infinity: the general path)
                return None
            e = _NUM_PREFIX.match(text).end()  # type: ignore[union-attr]  # always matches
            if e == len(text) or text[e] in _NUMCHARS or text[e - 1] not in _DIGITS:
                return None
            try:
                return _number(text[:e]), e
            except ValueError:  # too many digits: the general path reports it
                return None
        if c in self._literals:
            word, v = self._literals[c]
            if text.startswith(word):
                return v, len(word)
        return None

    def _program(self, state: int, text: str) -> list[_Token] | Literal[False]:
        """Split ``text`` into tokens for :meth:`_run`, if nothing in it needs the general path.

        Tokens are whole strings, numbers and literals (decoded or converted
        once), brackets, separators, the end of the open string or key (with
        its decoded text, escapes included), a string or key opened at the end,
        and a number, literal or escape cut by the end. Whitespace is dropped.
        What they do depends on the parser's state, which :meth:`_run` checks
        token by token; the split depends only on whether ``state`` is inside
        a string, so the result is cached per state like a plan. Anything
        else — a container that may close within the text (the general path
        hands it to json's scanner whole), a surrogate, a control character,
        an invalid token — returns False, and the general path parses it all.
        """
        if _END <= state <= _FINISHED:
            return False
        tokens: list[_Token] = []
        pos = 0
        n = len(text)
        if state >= _STRING:
            found = _string_text(text, 0)
            if found is None:
                return False
            s, pos, cut = found
            if s:
                tokens.append((_T_TEXT, s, 0))
            if cut:
                tokens.append((_T_CUT, cut, pos - len(cut)))
            if pos == n:
                return tokens
            tokens.append((_T_END, None, pos))
            pos += 1
        while pos < n:
            c = text[pos]
            if c in _WSSTR:
                pos += 1
            elif c in _PUNCT:
                if (c == "{" and text.find("}", pos + 1) >= 0) or (
                    c == "[" and text.find("]", pos + 1) >= 0
                ):
                    return False
                tokens.append((_PUNCT[c], None, pos))
                pos += 1
            elif c == '"':
                found = _string_text(text, pos + 1)
                if found is None:
                    return False
                s, e, cut = found
                if e < n:
                    tokens.append((_T_STR, s, pos))
                    pos = e + 1
                    continue
                tokens.append((_T_OPEN, None, pos))
                if s:
                    tokens.append((_T_TEXT, s, pos + 1))
                if cut:
                    tokens.append((_T_CUT, cut, n - len(cut)))
                return tokens
            elif c in _NUM_START:
                e = _NUM_PREFIX.match(text, pos).end()  # type: ignore[union-attr]  # always matches
                if e == n:
                    tokens.append((_T_CUT, text[pos:], pos))
                    return tokens
                if text[e] in _NUMCHARS or text[e - 1] not in _DIGITS:
                    return False
                try:
                    v: Any = _number(text[pos:e])
                except ValueError:
                    return False
                tokens.append((_T_SCALAR, v, pos))
                pos = e
            elif c in _LITERALS:
                word, v = _LITERALS[c]
                if text.startswith(word, pos):
                    tokens.append((_T_SCALAR, v, pos))
                    pos += len(word)
                    continue
                rest = text[pos:]
                if len(rest) < len(word) and word.startswith(rest):
                    tokens.append((_T_CUT, rest, pos))
                    return tokens
                return False
            else:
                return False
        return tokens

    def _run(self, program: list[_Token], chunk: str, state: int) -> bool:
        """Replay ``program`` (see :meth:`_program`) of ``chunk`` from ``state``, as feed() would.

        Stops at the first token the state does not take as it is: the general
        path goes on from there (and reports the error at its exact offset, if
        it is one).
        """
        pieces = self._pieces
        changed = False
        for kind, arg, start in program:
            if kind == _T_TEXT:
                pieces.append(arg)
            elif kind == _T_END:
                if state == _STRING:
                    if self._end_string():
                        changed = True
                    state = self._state
                else:
                    self._key = "".join(pieces)
                    pieces.clear()
                    state = _COLON
            elif kind in (_T_STR, _T_SCALAR):
                if state <= _ARR_FIRST:
                    cont = self._cont
                    if cont is None or self._deltas:
                        self._scalar(arg)
                        state = self._state
                    elif self._isobj:
                        cont[self._key] = arg
                        state = _AFTER
                    else:
                        cont.append(arg)
                        state = _AFTER
                    changed = True
                elif state <= _KEY and kind == _T_STR:
                    self._key = arg
                    state = _COLON
                else:
                    return self._parse(chunk, state, changed, start)
            elif kind == _T_COMMA:
                if state != _AFTER:
                    return self._parse(chunk, state, changed, start)
                state = _KEY if self._isobj else _VALUE
            elif kind == _T_COLON:
                if state != _COLON:
                    return self._parse(chunk, state, changed, start)
                state = _VALUE
            elif kind == _T_OPEN:
                if state <= _ARR_FIRST:
                    if self._open_string():
                        changed = True
                    state = _STRING
                elif state <= _KEY:
                    state = _KEYSTR
                else:
                    return self._parse(chunk, state, changed, start)
            elif kind in (_T_LBRACE, _T_LBRACKET):
                if state > _ARR_FIRST:
                    return self._parse(chunk, state, changed, start)
                self._open({} if kind == _T_LBRACE else [])
                changed = True
                state = self._state
            elif kind in (_T_RBRACE, _T_RBRACKET):
                if state == _AFTER:
                    if self._isobj != (kind == _T_RBRACE):
                        return self._parse(chunk, state, changed, start)
                elif state != (_OBJ_FIRST if kind == _T_RBRACE else _ARR_FIRST):
                    return self._parse(chunk, state, changed, start)
                self._close_container()
                state = self._state
            else:  # _T_CUT: a number or literal where a value may start, or an escape
                if _ARR_FIRST < state < _STRING:
                    return self._parse(chunk, state, changed, start)
                self._carry = arg
        self._state = state
        if state == _STRING:
            if pieces and self._materialise and not self._deltas:
                # (as at the end of _parse: show the string's new text)
                s = self._sval = self._sval + "".join(pieces)
                pieces.clear()
                self._scont[self._skey] = s
                changed = True
            elif self._flush_string():
                changed = True
        self._base += len(chunk)
        return changed or len(self.events) > 0

    def _escape(self, chunk: str, e: int) -> int:
        """Decode the escape at ``chunk[e]`` into the string; return the next position.

        Returns -1 when the escape (or a surrogate pair) continues in the next chunk.
        """
        n = len(chunk)
        if e + 1 >= n:
            return -1
        c = chunk[e + 1]
        if c != "u":
            r = _ESCAPES.get(c)
            if r is None:
                raise self._fail(chunk, e + 1, 'an escape character (one of "\\/bfnrtu)')
            self._pieces.append(r)
            return e + 2
        h = _HEX.match(chunk, e + 2, e + 6).end()  # type: ignore[union-attr]  # always matches
        if h < e + 6:
            if h < n:
                raise self._fail(chunk, h, "a hex digit")
            return -1
        cp = int(chunk[e + 2 : e + 6], 16)
        if 0xD800 <= cp < 0xDC00:
            # A high surrogate is combined with a following low one, as json.loads
            # does; held back until we know, so that half a pair is never shown.
            if _LOW.match(chunk, e + 6):
                low = int(chunk[e + 8 : e + 12], 16)
                self._pieces.append(chr(0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)))
                return e + 12
            if e + 12 > n and _LOW_PREFIX.match(chunk, e + 6).end() == n:  # type: ignore[union-attr]  # always matches
                return -1
        self._pieces.append(chr(cp))
        return e + 6

    def _convert(self, chunk: str, start: int, end: int) -> int | float:
        try:
            return _number(chunk[start:end])
        except ValueError as exc:  # more digits than int() converts (sys.set_int_max_str_digits)
            offset = self._base + start
            raise JSONStreamError(
                f"invalid JSON at offset {offset}: {exc}",
                offset=offset,
                expected="a number json.loads can convert",
                got=chunk[start],
            ) from exc

    def _skip_prose(self, chunk: str, pos: int) -> int:
        """Skip prose before the value; return where the value's parse goes on.

        A '{' or '[' in the prose is only a candidate: it starts the value when
        the next significant character (whitespace skipped, in this chunk or a
        later one) can follow it in JSON — '"' or '}' after '{'; a value's first
        character or ']' after '[' — and is prose otherwise (so "[EMAIL]" or
        "{name}" is skipped). Nothing is shown before that decision, and it
        depends on the text only, not on where the chunks split it.
        """
        n = len(chunk)
        while pos < n:
            opener = self._candidate
            if opener:
                pos = _WS.match(chunk, pos).end()  # type: ignore[union-attr]  # always matches
                if pos == n:
                    return n
                self._candidate = ""
                if chunk[pos] in (_AFTER_BRACKET if opener == "[" else _AFTER_BRACE):
                    self._open([] if opener == "[" else {})
                    return pos
                self._prose_tail = ""  # a rejected candidate breaks a run of backticks
                continue
            m = _PROSE.search(chunk, pos)
            end = n if m is None else m.start()
            seen = self._prose_tail + chunk[pos:end]
            if "```" in seen:
                self._fence = True
            self._prose_tail = seen[-2:]
            if m is None:
                return n
            self._candidate = chunk[end]
            pos = end + 1
        return n

    def close(self, *, recover: bool = False) -> bool:
        """Signal the end of input; return True if :attr:`value` changed.

        Raises :class:`JSONStreamError` if the document is incomplete, unless
        ``recover`` (then :attr:`incomplete` is set and the value is kept as is).
        """
        self.completed = []
        self.events = []
        state = self._state
        carry = self._carry
        top = self._cont is None
        if carry and top and state == _VALUE and _NUM.fullmatch(carry):
            # A top-level number is complete only now, at the end of input.
            self._carry = ""
            self._scalar(self._convert(carry, 0, len(carry)))
            return True
        if not carry and (
            state in (_END, _FINISHED)
            or (self._multiple and top and state in (_VALUE, _PROSE_STATE))
        ):
            return False
        if not recover:
            raise self._eof()
        self.incomplete = True
        if state == _STRING:
            # The best partial value includes the text of a truncated string.
            if not self._materialise:
                self._sval = "".join(self._sparts)
                self._sparts = []
                if self._sattached:  # the tree holds the string's first piece only
                    self._scont[self._skey] = self._sval
            self._materialise = True
            self._flush_string()
            return True
        return False

    def _eof(self) -> JSONStreamError:
        state = self._state
        expected = _EXPECTED.get(state, "a value")
        if state == _AFTER:
            expected = "',' or '}'" if self._isobj else "',' or ']'"
        if self._carry:
            expected = "the rest of " + repr(self._carry)
        offset = self._base  # carried characters are already counted
        self._state = _FINISHED
        return JSONStreamError(
            f"unexpected end of JSON input at offset {offset}: expected {expected}",
            offset=offset,
            expected=expected,
            got=None,
        )
