"""Pattern analysis for the streaming redaction filter: what a pattern needs to be exact.

Each pattern is compiled once into a :class:`_Compiled` branch of the filter's
alternation. The analysis, all of it done at construction so that a pattern a
stream cannot decide exactly fails there and never mid-stream:

* ``_rewrite`` makes zero-width end assertions (``\\b``, ``$``, ``\\Z``...) read
  one character ahead, so a partial search counts an attempt that ends on one as
  unfinished until that character is there; renames named lists apart; refuses
  numbered group references, ``\\G``, fuzzy constraints and word boundaries
  under the WORD flag.
* ``_refuse_flags`` refuses the flags the ``regex`` module's partial matching
  cannot keep exact (full case folding, POSIX, REVERSE, BESTMATCH, ENHANCEMATCH).
* ``_lookbehind_reach`` bounds how much released text lookbehinds may read
  (the context the filter keeps), from the standard library's parser.
* ``_start_class`` is a first-set analysis: one character class true wherever a
  match may start, the prefilter that lets the filter skip most positions.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import regex

from .._core._errors import RedactPatternError
from ._patterns import PatternSpec

with warnings.catch_warnings():  # the stdlib parser, for widths only (re._parser is private)
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_parse

# A lookahead that always succeeds but tries to read: the partial engine then
# treats the attempt as unfinished at the end of the buffer.
_PEEK1 = r"(?=[\s\S]?)"
_PEEK2 = r"(?=\n?[\s\S]?)"  # `$` also matches before a final newline: read past it
_END_ESCAPES = frozenset("bBZzmM")
_SCOPED_FLAGS = (
    (regex.ASCII, "a"),
    (regex.FULLCASE, "f"),
    (regex.IGNORECASE, "i"),
    (regex.MULTILINE, "m"),
    (regex.DOTALL, "s"),
    (regex.VERBOSE, "x"),
    (regex.WORD, "w"),
)
_STDLIB_FLAGS = (
    (re.IGNORECASE, regex.IGNORECASE),
    (re.MULTILINE, regex.MULTILINE),
    (re.DOTALL, regex.DOTALL),
    (re.VERBOSE, regex.VERBOSE),
    (re.ASCII, regex.ASCII),
)


# The shorthand classes under the ASCII flag, written out (see _rewrite).
_ASCII_SETS = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\x0b\\x0c\\r\\x20"}


def _ascii_set(cls: str) -> str:
    """A character class with its ``\\d``, ``\\w`` and ``\\s`` written out as ASCII ranges.

    Left alone as a range's end (``[\\d-z]`` would become one; a ``-`` first or
    last in the class is a literal) and when negated (``\\D`` inside a class has no
    ASCII spelling without set operations).
    """
    out: list[str] = []
    j, n = 0, len(cls)
    while j < n:
        ch = cls[j]
        if ch != "\\":
            out.append(ch)
            j += 1
            continue
        esc = cls[j : j + 2]
        ranged = (cls[j + 2 : j + 3] == "-" and cls[j + 3 : j + 4] not in ("]", "")) or (
            cls[j - 1 : j] == "-" and cls[: j - 1] not in ("[", "[^")
        )
        if esc[1:] in _ASCII_SETS and not ranged:
            out.append(_ASCII_SETS[esc[1]])
        else:
            out.append(esc)
        j += 2
    return "".join(out)


def _skip_class(src: str, i: int, nested: bool) -> int:
    """Return the index after the character class starting at ``src[i] == '['``."""
    j = i + 1
    depth = 1
    while True:
        if src.startswith("^", j):
            j += 1
        if src.startswith("]", j):  # a leading ']' is a literal
            j += 1
        while j < len(src):
            ch = src[j]
            if ch == "\\":
                j += 2
                continue
            if ch == "[" and src.startswith("[:", j) and (k := src.find(":]", j + 2)) >= 0:
                j = k + 2
                continue
            if ch == "[" and nested:
                depth += 1
                j += 1
                break
            j += 1
            if ch == "]":
                depth -= 1
                if depth == 0:
                    return j
        else:
            return len(src)


def _rewrite(
    src: str,
    *,
    verbose: bool,
    nested_sets: bool,
    word: bool,
    where: str,
    lists: dict[str, str] | None = None,
    inline: list[tuple[str, str]] | None = None,
    ascii: bool = False,
) -> str:
    """Make end assertions read ahead; refuse what a stream cannot decide exactly.

    Refused: numbered group references, ``\\G`` (it matches where a search starts,
    which is a chunk boundary), fuzzy constraints (``{e<=1}``) and, under the WORD
    flag, word boundaries (Unicode word boundaries can depend on any number of
    characters after them). Named lists ``\\L<name>`` are renamed through
    ``lists`` (patterns are combined, and two may use one name for two lists); the
    flags turned on and off by inline groups (``(?i:``, ``(?-f)``) are appended to
    ``inline``.

    With ``ascii`` (the pattern's own ASCII flag, which the combined alternation
    carries scoped: ``(?a:...)``), every group opened with flags or none (``(?:``,
    ``(?i:``) says ``a`` again: ``regex`` drops a scoped ASCII flag inside them, so
    ``(?a:(?:\\w))`` would match ``é`` where the pattern alone does not. And
    ``\\d``, ``\\w``, ``\\s`` and their negations are written out as ASCII sets:
    ``regex`` merges branches that start alike whatever their flags, so in
    ``(?a:\\d+)|\\d+`` the second branch no longer matched ``٣``.
    """

    def refuse(what: str) -> RedactPatternError:
        return RedactPatternError(
            f"{where} uses a numbered group reference ({what}); patterns are combined into"
            " one alternation, so use a named group instead"
        )

    out: list[str] = []
    scope = [ascii]  # per open group: whether the ASCII flag holds in it
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "\\":
            nxt = src[i + 1 : i + 2]
            if nxt == "G":
                raise RedactPatternError(
                    f"{where} uses \\G, which matches where a search starts (a chunk boundary"
                    " in a stream); anchor with a lookbehind instead"
                )
            if word and nxt and nxt in "bBmM":
                raise RedactPatternError(
                    f"{where} uses \\{nxt} with the WORD flag (?w): Unicode word boundaries"
                    " may depend on any number of following characters, which a stream cannot"
                    " bound; drop (?w) or write the boundary as lookarounds:"
                    " (?<!\\w)...(?!\\w)"
                )
            if nxt and nxt in _END_ESCAPES:
                out.append(f"{'(?a:' if scope[-1] else '(?:'}{_PEEK1}\\{nxt})")
            elif scope[-1] and nxt and nxt.lower() in _ASCII_SETS:
                out.append(f"[{'' if nxt.islower() else '^'}{_ASCII_SETS[nxt.lower()]}]")
            elif nxt == "X":
                # A grapheme cluster's end depends on the character after it (a
                # combining mark extends it): read one more before deciding.
                out.append(f"(?:\\X{_PEEK1})")
            elif nxt and nxt in "123456789" and not re.fullmatch(r"[0-7]{3}", src[i + 1 : i + 4]):
                raise refuse(src[i : i + 2])
            elif nxt == "g" and re.match(r"<[+-]?[0-9]", src[i + 2 : i + 5]):
                raise refuse(src[i : src.find(">", i) + 1])
            elif nxt == "L" and lists is not None and (ln := re.match(r"<(\w+)>", src[i + 2 :])):
                out.append(f"\\L<{lists.get(ln.group(1), ln.group(1))}>")
                i += 2 + ln.end()
                continue
            else:
                out.append(src[i : i + 2])
            i += 2
        elif c == "[":
            j = _skip_class(src, i, nested_sets)
            out.append(_ascii_set(src[i:j]) if scope[-1] else src[i:j])
            i = j
        elif c == "$":
            out.append(f"(?:{_PEEK2}$)")
            i += 1
        elif c == "(" and src.startswith("(?#", i):
            j = src.find(")", i)
            j = n if j < 0 else j + 1
            out.append(src[i:j])
            i = j
        elif c == "(" and (ref := re.match(r"\(\?(?:[0-9]+\)|R\)|\([0-9])", src[i : i + 5])):
            raise refuse(ref.group())
        elif c == "{" and (fuzzy := _FUZZY.match(src, i)):
            raise RedactPatternError(
                f"{where} uses fuzzy matching ({fuzzy.group()}...}}): the regex module's partial"
                " matching does not explore fuzzy paths the way a whole-text search does, so"
                " the output would depend on the chunking (and differ from regex.sub); list"
                " the variants instead, or write a literal brace as \\{"
            )
        elif c == "(" and inline is not None and (grp := _INLINE_FLAGS.match(src, i)):
            on, off = grp.group(1), grp.group(2) or ""
            inline.append((on, off))
            opener = grp.group()
            if opener.endswith(":"):
                scope.append(scope[-1] and not set("uL") & set(on))
                if scope[-1] and "a" not in on:
                    opener = f"{src[i : grp.end(1)]}a{src[grp.end(1) : grp.end()]}"
            out.append(opener)
            i = grp.end()
        elif c == "#" and verbose:
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(src[i:j])
            i = j
        else:
            if c == "(":
                scope.append(scope[-1])
            elif c == ")" and len(scope) > 1:
                scope.pop()
            out.append(c)
            i += 1
    return "".join(out)


# A fuzzy constraint after an item: `{e<=1}`, `{1<=e<=2}`, `{2i+2d+1s<=4}`, `{i<=1,d<=1}`
# (a repeat `{m,n}` has no letter; `regex` reads any other brace as one of these).
_FUZZY = re.compile(r"\{[\s0-9<=+]*[eids]")
# An inline flag group: `(?i)`, `(?V1i-f:`; group 1 the flags on, group 2 those off.
_INLINE_FLAGS = re.compile(r"\(\?\^?([a-zA-Z0-9]*)(?:-([a-zA-Z]+))?[:)]")
# An inline flag group that turns the WORD flag on: `(?w)`, `(?iw:`.
_INLINE_WORD = re.compile(r"\(\?\^?[a-zA-Z0-9]*w[a-zA-Z0-9]*[:)]")


def _children(av: object) -> Iterator[sre_parse.SubPattern]:
    """The sub-patterns inside one parsed node's argument."""
    if isinstance(av, sre_parse.SubPattern):
        yield av
    elif isinstance(av, (list, tuple)):
        for item in av:
            yield from _children(item)


def _reach(tree: sre_parse.SubPattern) -> int:
    """How far before a position the lookbehinds of ``tree`` may read (-1: unbounded)."""
    best = 0
    for op, av in tree.data:
        arg: Any = av  # a union of node shapes in the stubs; lookarounds: (direction, body)
        if op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT) and arg[0] < 0:
            body: sre_parse.SubPattern = arg[1]
            width, inner = body.getwidth()[1], _reach(body)
            if width >= sre_parse.MAXREPEAT or inner < 0:
                return -1
            best = max(best, width + inner)
        else:
            for child in _children(av):
                inner = _reach(child)
                if inner < 0:
                    return -1
                best = max(best, inner)
    return best


# `regex`-only escapes of one character, shown to the stdlib parser as "." (same width).
_ONE_CHAR_ESCAPES = re.compile(r"\\\\|\\[pP]\{[^}]*\}|\\[pP][A-Za-z]|\\N\{[^}]*\}")


def _stdlib_flags(group: re.Match[str]) -> str:
    """An inline flag group with only the letters the stdlib parser knows (no V1, f, w...)."""
    on = "".join(c for c in group.group(1) if c in "aimsux")
    off = "".join(c for c in group.group(2) or "" if c in "imsx")
    end = group.group()[-1]
    if not on and not off:
        return "" if end == ")" else "(?:"
    return f"(?{on}{'-' + off if off else ''}{end}"


def _parse(src: str, verbose: bool) -> sre_parse.SubPattern:
    src = _ONE_CHAR_ESCAPES.sub(lambda m: m.group() if m.group() == "\\\\" else ".", src)
    src = _INLINE_FLAGS.sub(_stdlib_flags, src)
    with warnings.catch_warnings():  # "possible nested set": V1 sets only widen the bound
        warnings.simplefilter("ignore", FutureWarning)
        return sre_parse.parse(src, re.VERBOSE if verbose else 0)


def _min_width(src: str, verbose: bool) -> int | None:
    """The fewest characters a match may read, lookarounds being zero-width
    (``None`` when the standard library's parser cannot read the pattern)."""
    try:
        return int(_parse(src, verbose).getwidth()[0])
    except (re.error, ValueError, TypeError, IndexError, KeyError, OverflowError):
        return None


def _lookbehind_reach(src: str, verbose: bool, where: str) -> int:
    """The widest lookbehind of a pattern: the released context it needs to be exact.

    Widths come from the standard library's parser (``\\p{..}`` counts as one
    character); a lookbehind that parser cannot read (``regex``-only syntax such as
    set operations or ``\\X``) or of unbounded width is refused: the context kept
    would then not cover it, and the output would depend on the chunking.
    """
    if "(?<=" not in src and "(?<!" not in src:
        return 0
    try:
        reach = _reach(_parse(src, verbose))
    except (re.error, ValueError, TypeError, IndexError, KeyError):
        raise RedactPatternError(
            f"{where} has a lookbehind whose width cannot be bounded (it is parsed with the"
            " standard library's re syntax); rewrite the lookbehind in re syntax"
        ) from None
    if reach < 0:
        raise RedactPatternError(
            f"{where} has a lookbehind of unbounded width; bound it ({{0,200}} instead of *):"
            " the filter keeps only that much released text"
        )
    return reach


class _NoStarts(Exception):
    """The start analysis cannot bound where a pattern may start."""


# Global flags the start analysis understands; any other (V1 sets, full case folding,
# WORD, VERBOSE, REVERSE, BESTMATCH/ENHANCEMATCH, LOCALE...) means no prefilter.
_STARTS_FLAGS = (
    regex.IGNORECASE | regex.MULTILINE | regex.DOTALL | regex.ASCII | regex.UNICODE | regex.V0
)
# Zero-width assertions that may precede the first character: the first character
# still has to match what follows them. `$`/`\Z` are rewritten to read ahead: refused.
_TRANSPARENT_AT = frozenset(
    (
        sre_parse.AT_BEGINNING,
        sre_parse.AT_BEGINNING_STRING,
        sre_parse.AT_BOUNDARY,
        sre_parse.AT_NON_BOUNDARY,
    )
)
_CATEGORIES = {
    sre_parse.CATEGORY_DIGIT: r"\d",
    sre_parse.CATEGORY_WORD: r"\w",
    sre_parse.CATEGORY_SPACE: r"\s",
}
# Syntax the standard library's parser would read differently from `regex`:
# fuzzy constraints and `\p{..}`/`\N{..}` (letters in braces), POSIX classes.
_FOREIGN_SYNTAX = re.compile(r"\{[^}]*[^0-9,}]|\[:\^?[A-Za-z]+:\]")

_Starts = set[tuple[bool, str]]  # (case-insensitive, a character-class item)


def _first(items: Iterable[tuple[Any, Any]], fold: bool) -> tuple[_Starts, bool]:
    """The class items the first character of a match may match, and whether the
    sequence ``items`` may match the empty string (then what follows it counts too)."""
    out: _Starts = set()
    for op, av in items:
        firsts, nullable = _first_node(op, av, fold)
        out |= firsts
        if not nullable:
            return out, False
    return out, True


def _first_node(op: Any, av: Any, fold: bool) -> tuple[_Starts, bool]:
    if op is sre_parse.LITERAL:
        return {(fold, f"\\U{av:08x}")}, False
    if op is sre_parse.IN:
        out: _Starts = set()
        for kind, arg in av:
            if kind is sre_parse.LITERAL:
                out.add((fold, f"\\U{arg:08x}"))
            elif kind is sre_parse.RANGE:
                out.add((fold, f"\\U{arg[0]:08x}-\\U{arg[1]:08x}"))
            elif kind is sre_parse.CATEGORY and arg in _CATEGORIES:
                out.add((fold, _CATEGORIES[arg]))
            else:  # a negated set or class: about anything
                raise _NoStarts
        return out, False
    if op is sre_parse.BRANCH:
        out, nullable = set(), False
        for branch in av[1]:
            firsts, empty = _first(branch.data, fold)
            out |= firsts
            nullable |= empty
        return out, nullable
    if op is sre_parse.SUBPATTERN:
        _group, add, remove, body = av
        if (add | remove) & ~(re.IGNORECASE | re.MULTILINE | re.DOTALL):
            raise _NoStarts
        return _first(body.data, bool(add & re.IGNORECASE) or (fold and not remove & re.IGNORECASE))
    if op is sre_parse.ATOMIC_GROUP:  # only restricts its body's paths
        return _first(av.data, fold)
    if op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, sre_parse.POSSESSIVE_REPEAT):
        low, high, body = av
        if high == 0:
            return set(), True
        out, nullable = _first(body.data, fold)
        return out, nullable or low == 0
    if op is sre_parse.AT and av in _TRANSPARENT_AT:
        return set(), True
    if op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT) and av[0] < 0:
        return set(), True  # a lookbehind reads released text, never past the position
    # ANY, NOT_LITERAL (about anything), lookaheads (they may read past the end of the
    # buffer before the first character is matched), group references, conditionals.
    raise _NoStarts


def _start_class(src: str, flags: int) -> str | None:
    """A one-character pattern true at every position a match of ``src`` may start at
    (partial matches included), or ``None`` when that cannot be bounded exactly.

    First-set analysis over the standard library's parse of the pattern: the guard
    is compiled with the pattern's own case and ASCII flags, so ``\\w`` or a
    case-insensitive letter mean there what they mean in the pattern.
    """
    if flags & ~_STARTS_FLAGS or _FOREIGN_SYNTAX.search(src):
        return None
    try:
        firsts, nullable = _first(_parse(src, False).data, bool(flags & regex.IGNORECASE))
    except (_NoStarts, re.error, ValueError, TypeError, IndexError, KeyError):
        return None
    if nullable or not firsts:
        return None
    scoped = "a" if flags & regex.ASCII else ""
    parts = []
    for fold in (False, True):
        items = "".join(sorted(item for f, item in firsts if f is fold))
        if items:  # (the guards are combined too: ASCII sets written out, see _rewrite)
            cls = _ascii_set(f"[{items}]") if scoped else f"[{items}]"
            parts.append(f"(?{scoped}{'i' if fold else ''}:{cls})")
    return "|".join(parts)


def _leading_lookbehinds(src: str) -> str | None:
    """The lookbehinds ``src`` starts with (``(?<=:)(?<=://...)``, ``(?<![0-9-])``),
    as one source, or ``None`` when it starts with none.

    They read only text before the position, which is known when an attempt starts
    there: where they fail, the pattern can neither match nor read on, whatever text
    follows. Only for the built-ins (V0, no inline flags before them).
    """
    out: list[str] = []
    i, n = 0, len(src)
    while src.startswith(("(?<=", "(?<!"), i):
        depth, j = 0, i
        while j < n:
            c = src[j]
            if c == "\\":
                j += 2
                continue
            if c == "[":
                j = _skip_class(src, j, False)
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if j >= n:
            return None
        out.append(src[i : j + 1])
        i = j + 1
    return "".join(out) or None


_PREFIX_MAX = 8  # characters of a literal prefix worth checking


def _start_prefix(src: str, flags: int) -> str | None:
    """A guard true wherever a match of ``src`` may start: its literal prefix
    (``xk_``, ``api`` of ``(?i)(?<![a-z0-9])api_?key...``), or any prefix of it cut by
    the end of the searched text (``\\Z``: the rest may come with the next chunk).
    ``None`` when the pattern does not start with two literal characters or more.

    A position no built-in or user pattern can start at is skipped with one search
    of these guards, so a rule set whose patterns start with a keyword or a token
    prefix costs a search per chunk in prose, not a match per word.
    """
    if flags & ~_STARTS_FLAGS or _FOREIGN_SYNTAX.search(src):
        return None
    try:
        items: list[tuple[Any, Any]] = list(_parse(src, False).data)
    except (re.error, ValueError, TypeError, IndexError, KeyError):
        return None
    fold = bool(flags & regex.IGNORECASE)
    chars: list[str] = []
    for op, av in items:
        if not chars and (
            (op is sre_parse.AT and av in _TRANSPARENT_AT)
            or (op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT) and av[0] < 0)
        ):
            continue  # zero-width before the first character: the first still follows
        if op is sre_parse.LITERAL:
            chars.append(f"\\U{av:08x}")
        elif op is sre_parse.IN and len(av) == 1 and av[0][0] is sre_parse.LITERAL:
            chars.append(f"\\U{av[0][1]:08x}")
        else:
            break
        if len(chars) == _PREFIX_MAX:
            break
    if len(chars) < 2:
        return None
    guard = chars[-1]
    for char in reversed(chars[:-1]):
        guard = f"{char}(?:{guard}|\\Z)"
    scoped = "a" if flags & regex.ASCII else ""
    return f"(?{scoped}{'i' if fold else ''}:{guard})" if scoped or fold else f"(?:{guard})"


def builtin_width(spec: PatternSpec) -> int:
    """The longest text a built-in pattern can match (they are re-compatible and bounded)."""
    assert isinstance(spec.pattern, str)
    return _parse(spec.pattern, False).getwidth()[1]


_Pattern = regex.Pattern[str]  # (a field of _Compiled is called `regex`)
_Lists = tuple[tuple[str, frozenset[str]], ...]  # named lists (`\\L<name>`) of a pattern


@dataclass(frozen=True, slots=True)
class _Compiled:
    spec: PatternSpec
    regex: regex.Pattern[str]  # the rewritten branch, compiled alone
    source: str  # the rewritten branch, wrapped in its scoped flags
    reach: int  # how many released characters its lookbehinds may read
    starts: str | None  # where a match may start (one character), None if unknown
    evidence: _Pattern | None  # what a partial match needs to be masked at a cut
    lists: _Lists = ()  # its named lists, renamed apart from other patterns' lists
    prefix: str | None = None  # its literal prefix as a guard (_start_prefix), if any


def _source_and_flags(spec: PatternSpec) -> tuple[str, int]:
    pat = spec.pattern
    if isinstance(pat, str):
        return pat, 0
    if isinstance(pat, re.Pattern):
        if not isinstance(pat.pattern, str):
            raise TypeError(f"pattern {spec.name!r} is a bytes pattern; redact works on text")
        flags = 0
        for std, ours in _STDLIB_FLAGS:
            if pat.flags & std:
                flags |= ours
        return pat.pattern, flags
    if isinstance(pat, regex.Pattern):
        if not isinstance(pat.pattern, str):
            raise TypeError(f"pattern {spec.name!r} is a bytes pattern; redact works on text")
        return pat.pattern, pat.flags
    raise TypeError(
        f"pattern {spec.name!r} must be a regex string or a compiled pattern,"
        f" got {type(pat).__name__}"
    )


# Flags a stream cannot keep exact, and why (inline letters in brackets).
_REFUSED_FLAGS = (
    (regex.POSIX, "POSIX (?p)", "leftmost-longest across the whole alternation"),
    (regex.REVERSE, "REVERSE (?r)", "searches backwards from the end of the text"),
    (regex.BESTMATCH, "BESTMATCH (?b)", "only changes fuzzy matching, which is refused"),
    (regex.ENHANCEMATCH, "ENHANCEMATCH (?e)", "only changes fuzzy matching, which is refused"),
)


def _refuse_flags(flags: int, inline: list[tuple[str, str]], where: str) -> None:
    """Refuse flags whose semantics the streaming filter cannot reproduce exactly.

    Full case folding (``FULLCASE``, ``(?f)``, implied by ``(?i)`` under ``V1``):
    the ``regex`` module's partial search misreports where an attempt starts under
    it (splitting ``ssh-rsa`` after ``ss`` released the key), and a scoped
    ``(?fi:ß)`` no longer matches ``ß``; with no ignore-case anywhere it changes
    nothing and is accepted.
    """
    for flag, name, why in _REFUSED_FLAGS:
        if flags & flag or any(name[-2] in on for on, _off in inline):
            raise RedactPatternError(
                f"{where} uses the {name} flag, which a stream cannot keep exact ({why});"
                " compile the pattern without it"
            )
    folds = flags & regex.IGNORECASE or any("i" in on and "f" not in off for on, off in inline)
    full = flags & regex.FULLCASE or any("f" in on for on, _off in inline)
    if folds and full:
        raise RedactPatternError(
            f"{where} uses full case folding (the FULLCASE flag: (?f), or (?i) under V1):"
            " the regex module's partial matching is not exact under it, so a secret split"
            " across chunks could leak; use simple case folding: (?V1i-f) or (?i) without"
            " (?f), or compile without regex.FULLCASE"
        )


def _compile(spec: PatternSpec, index: int = 0) -> _Compiled:
    src, flags = _source_and_flags(spec)
    where = f"pattern {spec.name!r} ({src!r})"
    named: dict[str, frozenset[str]] = dict(getattr(spec.pattern, "named_lists", None) or {})
    try:
        flags = _regex(src, flags, named).flags
    except regex.error as exc:
        raise RedactPatternError(f"invalid {where}: {exc}") from None
    verbose = bool(flags & regex.VERBOSE)
    word = bool(flags & regex.WORD) or _INLINE_WORD.search(src) is not None
    rename = {name: f"redact{index}_{name}" for name in named}
    inline: list[tuple[str, str]] = []
    rewritten = _rewrite(
        src,
        verbose=verbose,
        nested_sets=bool(flags & regex.V1),
        word=word,
        where=where,
        lists=rename,
        inline=inline,
        ascii=bool(flags & regex.ASCII),
    )
    _refuse_flags(flags, inline, where)
    lists = tuple(sorted((rename[name], items) for name, items in named.items()))
    scoped = "".join(letter for flag, letter in _SCOPED_FLAGS if flags & flag)
    if flags & regex.V1 and not flags & regex.FULLCASE:
        scoped += "-f"  # a V1 alternation turns full case folding back on in (?i:...)
    tail = "\n" if flags & regex.VERBOSE else ""  # ends a trailing verbose comment
    source = f"(?{scoped}:{rewritten}{tail})"
    compiled = _regex(source, flags & (regex.V0 | regex.V1), lists)
    if compiled.fullmatch("") is not None or _min_width(src, verbose) == 0:
        raise RedactPatternError(
            f"{where} can match the empty string (here or next to some text): a pattern that"
            " matches the empty string would insert its replacement between characters;"
            " make it read at least one character"
        )
    reach = _lookbehind_reach(src, verbose, where)
    evidence = None
    if spec.evidence is not None:
        try:
            evidence = regex.compile(spec.evidence)
        except regex.error as exc:
            raise RedactPatternError(
                f"invalid evidence of pattern {spec.name!r} ({spec.evidence!r}): {exc}"
            ) from None
    starts = _start_class(src, flags)
    prefix = _start_prefix(src, flags) if starts is not None else None
    return _Compiled(spec, compiled, source, reach, starts, evidence, lists, prefix)


def _regex(source: str, flags: int, lists: _Lists | dict[str, frozenset[str]]) -> _Pattern:
    """Compile with named lists (``regex.compile``'s keyword arguments)."""
    compile_: Callable[..., _Pattern] = regex.compile
    return compile_(source, flags, **dict(lists))


@functools.lru_cache(maxsize=512)
def _pinned(source: str, after: int, version: int, lists: _Lists = ()) -> regex.Pattern[str]:
    """``source`` forced to end exactly ``after`` characters before the end of the slice."""
    return _regex(f"(?:{source})(?=[\\s\\S]{{{after}}}\\Z)", version, lists)
