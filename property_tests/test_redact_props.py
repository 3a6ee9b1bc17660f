"""Hypothesis properties of so.redact: chunking invariance, no leak, least hold-back."""

from __future__ import annotations

import dataclasses
from itertools import pairwise

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

import streamops as so
from streamops._core._stages import ProcessorStage
from streamops._redact._filter import _Plan, _Redactor
from streamops._redact._patterns import BUILTIN_STARTS


# Each property draws few examples of its own, and the loaded Hypothesis profile
# (conftest.py: ci, dev) caps them, so this file's runtime stays small in CI.
def examples(n: int) -> int:
    """``n`` examples, or fewer when the loaded profile asks for fewer."""
    loaded = settings.default
    return n if loaded is None else min(n, loaded.max_examples)


# Patterns chosen for the traps: growth, priority, end assertions, lookarounds.
TRAPS = [
    r"sk-[a-z]{3,}",
    r"abc|ab?c?d",
    r"foo\b",
    r"(?<=x)yy",
    r"bar(?!baz)",
    r"q$",
    r"\bkey[0-9]{0,3}",
    r"-|-x-",  # a lower-priority alternative in flight: `-` wins whatever follows
]
PIECES = ["sk-", "ab", "c", "d", "foo", "bar", "baz", "x", "yy", "q", "key", "7", " ", "\n", "-"]
SECRETS = [
    "john.doe@example.com",
    "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34",
    "4111 1111 1111 1111",
    "192.168.10.1",
    "AKIAIOSFODNN7EXAMPLE",
    "+44 20 7946 0958",
    "123-45-6789",
    "ghp_" + "a1" * 18,
]
FILLER = ["the ", "a", "1", ".", " ", "-", "@", "x", "example", "com", "sk", "+", "\n"]


def reference(patterns: list[str], text: str) -> str:
    """regex.sub of the alternation over the whole text; '#' for every match."""
    return regex.sub("|".join(f"(?:{p})" for p in patterns), "#", text)


def chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in pairwise(points)]


def run(op: so.Operator[str, str], chunks: list[str]) -> str:
    return "".join(op(chunks))


trap_text = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)
secret_text = st.lists(
    st.one_of(st.sampled_from(FILLER), st.sampled_from(SECRETS)), max_size=25
).map("".join)
cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=12)


@given(trap_text, cuts)
def test_traps_match_regex_sub_for_every_chunking(text: str, cut: list[int]) -> None:
    op = so.redact(TRAPS, replacement="#")
    expected = reference(TRAPS, text)
    assert run(op, [text]) == expected
    assert run(op, chunked(text, cut)) == expected


BUILTINS = so.builtin_patterns()
BUILTIN_ALTERNATION = regex.compile("|".join(f"(?:{spec.pattern})" for spec in BUILTINS))
BUILTIN_BRANCHES = [(spec, regex.compile(str(spec.pattern))) for spec in BUILTINS]


def ends_at(pattern: str, text: str, p: int, e: int) -> bool:
    """Some path of ``pattern`` matches exactly ``text[p:e]``, seen in the whole text.

    Independent of the filter's own pin: it consumes ``p`` characters from the start
    of the text and asserts the absolute end position with a lookbehind on ``\\A``.
    """
    pinned = rf"[\s\S]{{{p}}}(?:{pattern})(?<=\A[\s\S]{{{e}}})"
    return regex.match(pinned, text) is not None


def builtin_reference(text: str) -> tuple[str, list[str]]:
    """Validated leftmost-longest over the whole text, written out by hand.

    At each position from the left: patterns in order; a pattern's own match
    (``regex.match`` with ``pos=``, so lookbehinds see the text before it), and when
    its validator rejects it, every shorter end it can match, longest first; the
    first accepted one is replaced by the pattern's label. Else one character on.
    Returns the output and the secrets it removed.
    """
    removed: list[str] = []
    out: list[str] = []
    p = 0
    while p < len(text):
        hit: tuple[str, int] | None = None
        for spec, pattern in BUILTIN_BRANCHES:
            m = pattern.match(text, pos=p)
            if m is None:
                continue
            ends = [m.end(), *(e for e in range(m.end() - 1, p, -1))]
            for e in ends:
                if e != m.end() and not ends_at(pattern.pattern, text, p, e):
                    continue
                if spec.accepts(text[p:e]):
                    hit = (spec.placeholder, e)
                    break
            if hit is not None:
                break
        if hit is None:
            out.append(text[p])
            p += 1
        else:
            removed.append(text[p : hit[1]])
            out.append(hit[0])
            p = hit[1]
    return "".join(out), removed


@given(secret_text, cuts)
@settings(max_examples=40)
def test_builtins_are_chunking_invariant_and_leak_nothing(text: str, cut: list[int]) -> None:
    op = so.redact([p.name for p in so.builtin_patterns()])  # network included
    whole = run(op, [text])
    expected, removed = builtin_reference(text)
    assert whole == expected
    assert run(op, chunked(text, cut)) == whole
    assert run(op, list(text)) == whole
    for secret in set(removed):  # every redacted occurrence is gone from the output
        assert whole.count(secret) <= text.count(secret) - removed.count(secret)


@given(st.lists(st.sampled_from([*PIECES, "<", ">", "zz"]), max_size=60).map("".join), cuts)
def test_window_overflow_is_chunking_invariant(text: str, cut: list[int]) -> None:
    for mode in ("redact", "release"):
        op = so.redact(
            [r"<[a-z ]{0,40}>", *TRAPS], replacement="#", max_window=16, on_overflow=mode
        )
        assert run(op, chunked(text, cut)) == run(op, [text])


TRAP_ALTERNATION = regex.compile("|".join(f"(?:{p})" for p in TRAPS))
# Continuations that can decide an attempt (chunks cut pieces, so the rest of a piece
# first): the end of the text, a piece's rest, then a piece, then a last character.
_RESTS = ["", *sorted({p[i:] for p in PIECES for i in range(1, len(p))})]
CONTINUATIONS = sorted(
    {r + a + b for r in _RESTS for a in ["", *PIECES] for b in ["", "c", "x", " "]}
)


def decided_prefix(text: str) -> int:
    """The longest prefix of ``text`` whose matches are the same whatever follows.

    Brute force over continuations, sharing nothing with the filter (no probe, no
    partial matching): position ``q`` is decided when, for every continuation, no
    match straddles ``q`` and the matches before ``q`` are the same.
    """
    spans = [[m.span() for m in TRAP_ALTERNATION.finditer(text + c)] for c in CONTINUATIONS]
    for q in range(len(text), -1, -1):
        before = [s for s in spans[0] if s[1] <= q]
        if all(
            not any(a < q < b for a, b in each) and [s for s in each if s[1] <= q] == before
            for each in spans
        ):
            return q
    return 0


@given(trap_text, cuts)
@settings(max_examples=60)
def test_hold_back_is_the_undecided_suffix_exactly(text: str, cut: list[int]) -> None:
    """Released input == the decided prefix: nothing undecided leaks, nothing decided waits."""
    stage = so.redact(TRAPS, replacement="#").stages[0]
    assert isinstance(stage, ProcessorStage)
    proc = stage.factory(so.StreamReport())
    assert isinstance(proc, _Redactor)
    seen = ""
    for chunk in chunked(text, cut):
        proc.feed(chunk)
        seen += chunk
        assert len(seen) - proc.held == decided_prefix(seen), (seen, proc.held)


# The built-in library skips positions with BUILTIN_STARTS (a letter or digit before,
# no digit or "-" at): texts that glue secrets to letters, digits, "_", "-" and
# non-ASCII word characters hit both sides of that prefilter.
GLUE = ["x", "Z", "_", "9", "0", "-", "é", "٣", ".", ":", "+", "@", " ", "\n", "sk-", "AKIA"]
glued_text = st.lists(st.one_of(st.sampled_from(GLUE), st.sampled_from(SECRETS)), max_size=20).map(
    "".join
)
STARTS = regex.compile(BUILTIN_STARTS)
BUILTIN_PROBE = regex.compile(f"(?:{BUILTIN_ALTERNATION.pattern})(?!)")


@given(glued_text, cuts)
@settings(max_examples=40)
def test_prefilter_edges_match_regex_sub(text: str, cut: list[int]) -> None:
    op = so.redact([p.name for p in so.builtin_patterns()])  # network included
    expected, _ = builtin_reference(text)
    assert run(op, [text]) == expected
    assert run(op, chunked(text, cut)) == expected
    assert run(op, list(text)) == expected


@given(glued_text)
def test_prefilter_skips_only_decided_positions(text: str) -> None:
    """Where BUILTIN_STARTS fails, no built-in matches or reads on, whatever follows."""
    for q in range(len(text)):
        if STARTS.match(text, q) is None:
            assert BUILTIN_PROBE.match(text, q, partial=True) is None, (text, q)
            assert BUILTIN_ALTERNATION.match(text, q) is None, (text, q)


# User patterns get a prefilter from a first-set analysis (the characters a match can
# start with). Patterns from a small grammar: literals, classes, alternations, optional
# prefixes, case-insensitive groups, boundaries and lookbehinds (analysed), and
# lookaheads, negated sets, "." (the analysis gives up: no prefilter). The texts mix
# the characters case folding links (K, k, KELVIN SIGN; s, S, LONG S).
_ATOMS = ["a", "b", "k", "s", "K", "-", "1", r"\d", r"\w", r"\s", "[ab]", "[a-c]", "[k1-]"]
_RARE = [".", "[^a]", "(?=a)", "(?<=b)", r"\b", "^", "$"]


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, inner).map("|".join).map(lambda s: f"(?:{s})"),
        inner.map(lambda s: f"(?:{s})?"),
        inner.map(lambda s: f"(?:{s})*"),
        inner.map(lambda s: f"(?:{s}){{0,2}}"),
        inner.map(lambda s: f"(?:{s})+"),
        inner.map(lambda s: f"(?i:{s})"),
    )


# A body that may match the empty string, then an atom that cannot: the atom's first
# characters count then (and the filter refuses patterns matching the empty string).
user_pattern = st.tuples(
    st.sampled_from(["", "(?i)"]),
    st.recursive(st.sampled_from(_ATOMS + _RARE), _grow, max_leaves=6).map(lambda s: f"(?:{s})"),
    st.sampled_from(_ATOMS),
).map("".join)
user_text = st.lists(
    st.sampled_from(["a", "b", "c", "k", "K", "\u212a", "s", "S", "\u017f", "-", "1", " ", "\n"]),
    max_size=16,
).map("".join)


def _plan(op: so.Operator[str, str]) -> _Plan:
    stage = op.stages[0]
    assert isinstance(stage, ProcessorStage)
    proc = stage.factory(so.StreamReport())
    assert isinstance(proc, _Redactor)
    return proc._plan


@given(user_pattern, user_text)
@settings(max_examples=examples(300))
def test_user_prefilter_is_a_necessary_condition(pattern: str, text: str) -> None:
    """Where the guard fails, no match nor partial match of the pattern starts."""
    plan = _plan(so.redact([pattern]))
    if plan.guard is None:
        return
    original = regex.compile(pattern)
    for q in range(len(text)):
        if plan.guard.match(text, q) is None:
            assert original.match(text, q, partial=True) is None, (pattern, text, q)
            assert plan.probe.match(text, q, partial=True) is None, (pattern, text, q)
            assert plan.combined.match(text, q, partial=True) is None, (pattern, text, q)


@given(st.lists(user_pattern, min_size=1, max_size=3), user_text, cuts)
@settings(max_examples=80)
def test_user_patterns_match_regex_sub_for_every_chunking(
    patterns: list[str], text: str, cut: list[int]
) -> None:
    op = so.redact(patterns, replacement="#")
    # The filter scopes each pattern's flags; a `(?i)` inside an alternation is global.
    scoped = [f"(?i:{p[4:]})" if p.startswith("(?i)") else p for p in patterns]
    expected = reference(scoped, text)
    assert run(op, [text]) == expected
    assert run(op, chunked(text, cut)) == expected
    assert run(op, list(text)) == expected


MIXED = ["email", r"(?i)tck-[0-9]{2,4}", r"(?:x-)?key[0-9]?\b", r"(?<![a-z])sk-[a-z]{3,}"]
mixed_text = st.lists(
    st.one_of(
        st.sampled_from(["TCK-", "tck-", "x-", "key", "sk-", "abcd", "12", "K", "\u212a"]),
        st.sampled_from(GLUE),
        st.sampled_from(SECRETS),
    ),
    max_size=20,
).map("".join)


@given(mixed_text, cuts)
@settings(max_examples=60)
def test_builtins_with_user_patterns_match_the_filter_without_prefilter(
    text: str, cut: list[int]
) -> None:
    """With built-ins and analysable user patterns, the combined prefilter changes nothing."""
    op = so.redact(MIXED)
    plan = _plan(op)
    assert plan.guard is not None
    unfiltered = _Redactor(dataclasses.replace(plan, guard=None), so.StreamReport())
    expected = "".join(unfiltered.feed(text) + unfiltered.close())
    assert run(op, [text]) == expected
    assert run(op, chunked(text, cut)) == expected
    assert run(op, list(text)) == expected


# Issue 16: the flags the filter accepts (i, m, s, x, and V1 with simple case folding;
# full case folding is refused) keep the output equal to regex.sub for every chunking,
# with and without window overflows.
FLAG_BODIES = [*TRAPS, r"^ab", r"x.y", r"c$", r"(?:sk|k)-[a-z]{2}", r"<[a-z ]{0,40}>"]
FLAG_PIECES = [*PIECES, "SK", "K", "X", "Y", "<", ">", "\u017f", "zz ", "sk-QWERTYUIOP"]
flag_text = st.lists(st.sampled_from(FLAG_PIECES), max_size=40).map("".join)
flag_sets = st.sets(st.sampled_from("imsx")).map(lambda s: "".join(sorted(s)))


def flagged(body: str, flags: str, v1: bool) -> tuple[str, str]:
    """The pattern given to the filter, and the same scoped for the reference."""
    off = "-f" if v1 and "i" in flags else ""  # simple case folding under V1
    tail = "\n" if "x" in flags else ""
    inline = f"{'V1' if v1 else ''}{flags}{off}"
    return f"(?{inline}){body}" if inline else body, f"(?{flags}{off}:{body}{tail})"


@given(
    st.lists(st.tuples(st.sampled_from(FLAG_BODIES), flag_sets), min_size=1, max_size=3),
    st.booleans(),
    flag_text,
    cuts,
)
@settings(max_examples=examples(150))
def test_accepted_flag_combinations_match_regex_sub_for_every_chunking(
    bodies: list[tuple[str, str]], v1: bool, text: str, cut: list[int]
) -> None:
    pairs = [flagged(body, flags, v1) for body, flags in bodies]
    op = so.redact([p for p, _ in pairs], replacement="#")
    expected = regex.sub("|".join(r for _, r in pairs), "#", text, flags=regex.V1 if v1 else 0)
    assert run(op, [text]) == expected
    assert run(op, chunked(text, cut)) == expected
    assert run(op, list(text)) == expected


@given(
    st.lists(st.tuples(st.sampled_from(FLAG_BODIES), flag_sets), min_size=1, max_size=3),
    st.booleans(),
    st.sampled_from(["redact", "release"]),
    flag_text,
    cuts,
)
@settings(max_examples=examples(150))
def test_overflow_with_flags_is_chunking_invariant_and_never_leaks_a_key(
    bodies: list[tuple[str, str]], v1: bool, mode: str, text: str, cut: list[int]
) -> None:
    pairs = [flagged(body, flags, v1) for body, flags in bodies]
    key = flagged(r"sk-[A-Z]{10}", "", v1)
    patterns = [p for p, _ in pairs] + [key[0]]
    op = so.redact(patterns, replacement="#", max_window=16, on_overflow=mode)  # type: ignore[arg-type]
    whole = run(op, [text])
    assert run(op, chunked(text, cut)) == whole
    assert run(op, list(text)) == whole
    if mode == "redact":  # fail closed: no part of a key regex.sub redacts is released
        alternation = "|".join([*(r for _, r in pairs), key[1]])
        reference_out = regex.sub(alternation, "#", text, flags=regex.V1 if v1 else 0)
        if "RTYU" not in reference_out:
            assert "RTYU" not in whole


# -- the ASCII flag joins the accepted combinations ----------------------------------
ascii_sets = st.sets(st.sampled_from("aimsx")).map(lambda s: "".join(sorted(s)))


@given(
    st.lists(st.tuples(st.sampled_from(FLAG_BODIES), ascii_sets), min_size=1, max_size=3),
    st.lists(st.sampled_from([*FLAG_PIECES, "\u00e9", "\u212a"]), max_size=30).map("".join),
    cuts,
)
@settings(max_examples=examples(60))
def test_ascii_flag_combinations_match_regex_sub_for_every_chunking(
    bodies: list[tuple[str, str]], text: str, cut: list[int]
) -> None:
    pairs = [flagged(body, flags, False) for body, flags in bodies]
    op = so.redact([p for p, _ in pairs], replacement="#")
    expected = regex.sub("|".join(r for _, r in pairs), "#", text)
    assert run(op, [text]) == expected
    assert run(op, chunked(text, cut)) == expected


# -- lookbehinds, long ones with \A, ^ and \b inside ---------------------------------
LOOKBEHINDS = [
    r"(?<=\A[ab ]{0,70})c",
    r"(?m)(?<=^[ab ]{60,70})c",
    r"(?<=\b[ab]{2} {0,66})q",
    r"(?<![ab]{64})x",
    r"(?<=(?:ab){32})k",
]
lookbehind_text = st.lists(
    st.sampled_from(["ab", "a", "b", " ", "\n", "c", "q", "x", "k", "ab" * 16]), max_size=50
).map("".join)


@given(st.lists(st.sampled_from(LOOKBEHINDS), min_size=1, max_size=3), lookbehind_text, cuts)
@settings(max_examples=examples(80))
def test_long_lookbehinds_match_regex_sub_for_every_chunking(
    patterns: list[str], text: str, cut: list[int]
) -> None:
    op = so.redact(patterns, replacement="#", context=1)  # raised to the widest lookbehind
    scoped = [f"(?m:{p[4:]})" if p.startswith("(?m)") else p for p in patterns]
    expected = reference(scoped, text)
    assert run(op, [text]) == expected
    assert run(op, chunked(text, cut)) == expected
    assert run(op, list(text)) == expected


# -- graphemes: \X waits for a following combining mark ------------------------------
GRAPHEMES = [r"a\X", r"\Xz", r"x\X{2}"]
grapheme_text = st.lists(
    st.sampled_from(["a", "e", "x", "z", "\u0301", "\u0308", "\u200d", "\U0001f44d", "\r", "\n"]),
    max_size=20,
).map("".join)


@given(st.lists(st.sampled_from(GRAPHEMES), min_size=1, max_size=2), grapheme_text, cuts)
@settings(max_examples=examples(80))
def test_grapheme_patterns_match_regex_sub_for_every_chunking(
    patterns: list[str], text: str, cut: list[int]
) -> None:
    op = so.redact(patterns, replacement="#", normalize=False)
    expected = reference(patterns, text)
    assert run(op, [text]) == expected
    assert run(op, chunked(text, cut)) == expected
    assert run(op, list(text)) == expected


# -- overflow with a small window: the text decides, never the chunking ---------------
OVERFLOWING = [r"(?s)BEGIN.*?END", r"<[a-z ]{0,40}>", r"sk-[A-Z]{10}", "TCK-[0-9]{2}"]
overflow_text = st.lists(
    st.sampled_from(["BEGIN", "END", " ", "abc ", "<", ">", "sk-", "QWERTYUIOP", "TCK-", "12"]),
    max_size=40,
).map("".join)


@given(
    st.lists(st.sampled_from(OVERFLOWING), min_size=1, max_size=3, unique=True),
    st.sampled_from(["redact", "flag", "block"]),
    st.integers(min_value=16, max_value=40),
    overflow_text,
    cuts,
)
@settings(max_examples=examples(80))
def test_small_window_overflow_is_chunking_invariant(
    patterns: list[str], action: str, window: int, text: str, cut: list[int]
) -> None:
    specs = [
        so.PatternSpec(f"p{i}", p, action=action if i == 0 else None)  # type: ignore[arg-type]
        for i, p in enumerate(patterns)
    ]
    op = so.redact(specs, replacement="#", max_window=window)
    whole = op([text])
    out = whole.text()
    assert run(op, chunked(text, cut)) == out
    assert run(op, list(text)) == out
    if all(s.action == "flag" for s in specs):
        assert out == text  # flag never deletes text, overflow or not


# -- the normalised view: matched on the view, the original span replaced -------------
# the last one guards its ends like the built-ins: a removed character beside it glues it
VIEW_PATTERNS = [r"ab[0-9]{3}", r"x y", r"[0-9]{2}-[0-9]{2}", r"(?<![a-z0-9])b[0-9]{2}(?![a-z0-9])"]
view_text = st.lists(
    st.sampled_from(
        [
            "a",
            "b",
            "ab",
            "x",
            "y",
            " ",
            "-",
            "1",
            "2",
            "3",
            "\uff11",
            "\uff12",
            "\uff41",
            "\u00a0",
            "\u202f",
            "\u200b",
            "\u200c",
            "\u200d",
            "\u2060",
            "\ufeff",
            "\u00ad",
            "\u2063",
            "\U000e0001",
            "\u3000",
            "\u2007",
            "\uff0d",
        ]
    ),
    max_size=30,
).map("".join)
# Unicode's own property, not the filter's table of ranges
_IGNORABLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")
_SPACES = "\u00a0" + "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000"


def view_reference(patterns: list[str], text: str) -> str:
    """An independent statement of the normalised view's rule.

    The view drops every default-ignorable code point and maps the full-width ASCII
    block to ASCII and the Unicode spaces (NBSP, U+2000..U+200A, narrow NBSP, U+205F,
    U+3000) to a space; then ``regex.sub`` of the same patterns runs on the raw text of
    that output. A match of ``view[s:e]`` replaces the original text from just
    after the kept character before ``s`` (its zero-width characters go with it) to the
    end of the kept character ``e - 1``; zero-width characters after it stay.
    """
    kept = [i for i, c in enumerate(text) if not _IGNORABLE.match(c)]
    view = "".join(
        " "
        if text[i] in _SPACES
        else chr(ord(text[i]) - 0xFEE0)
        if "\uff01" <= text[i] <= "\uff5e"
        else text[i]
        for i in kept
    )
    out, last = [], 0
    alternation = "|".join(f"(?:{p})" for p in patterns)
    for m in regex.finditer(alternation, view):
        start = kept[m.start() - 1] + 1 if m.start() else 0
        end = kept[m.end() - 1] + 1
        out += [text[last:start], "#"]
        last = end
    # then the raw pass: the same patterns on the raw text of that output, so that what
    # the raw text shows is never lost to the view (a removed character beside a match)
    return regex.sub(alternation, "#", "".join([*out, text[last:]]))


@given(st.lists(st.sampled_from(VIEW_PATTERNS), min_size=1, max_size=3), view_text, cuts)
@settings(max_examples=examples(100))
def test_normalised_view_replaces_the_original_span_for_every_chunking(
    patterns: list[str], text: str, cut: list[int]
) -> None:
    op = so.redact(patterns, replacement="#", normalize=True)
    expected = view_reference(patterns, text)
    assert run(op, [text]) == expected
    assert run(op, chunked(text, cut)) == expected
    assert run(op, list(text)) == expected


# -- flag patterns: observed, never held, finditer of the flag patterns -------------------
@given(
    st.lists(st.sampled_from(TRAPS), min_size=1, max_size=3, unique=True),
    st.lists(st.sampled_from(TRAPS), max_size=2, unique=True),
    trap_text,
    cuts,
)
@settings(max_examples=examples(80))
def test_flag_patterns_report_finditer_and_hold_nothing(
    flags: list[str], redacting: list[str], text: str, cut: list[int]
) -> None:
    specs = [so.PatternSpec(f"f{i}", p, action="flag") for i, p in enumerate(flags)]
    specs += [so.PatternSpec(f"r{i}", p) for i, p in enumerate(redacting)]
    op = so.redact(specs, replacement="#")
    found = [
        (m.start(), m.end()) for m in regex.finditer("|".join(f"(?:{p})" for p in flags), text)
    ]
    expected_text = reference(redacting, text) if redacting else text
    for chunks in ([text], chunked(text, cut), list(text)):
        s = op(chunks)
        assert s.text() == expected_text
        spans = [
            (e.data["start"], e.data["end"]) for e in s.report.events if e.kind == "redact.flag"
        ]
        assert spans == found
    if not redacting:  # flag only: every chunk is released as it arrives
        stage = op.stages[0]
        assert isinstance(stage, ProcessorStage)
        proc = stage.factory(so.StreamReport())
        for chunk in chunked(text, cut):
            assert proc.feed(chunk) == ([chunk] if chunk else [])


@given(st.one_of(secret_text, glued_text), cuts)
@settings(max_examples=examples(60))
def test_lean_path_holds_and_releases_what_the_general_path_does(text: str, cut: list[int]) -> None:
    """The lean path for chunks that only extend a short open attempt (built-ins) gives,
    after every chunk, the same output and the same held text as the general path."""
    plan = _plan(so.redact([p.name for p in so.builtin_patterns()]))
    assert plan.lean > 0
    general = dataclasses.replace(plan, lean=0)
    for chunks in (chunked(text, cut), list(text)):
        lean, full = _Redactor(plan, so.StreamReport()), _Redactor(general, so.StreamReport())
        for chunk in chunks:
            assert lean.feed(chunk) == full.feed(chunk), (chunks, chunk)
            assert lean.held == full.held, (chunks, chunk)
        assert lean.close() == full.close()
