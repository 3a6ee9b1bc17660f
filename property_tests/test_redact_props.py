"""Hypothesis properties of so.redact: chunking invariance, no leak, least hold-back."""

from __future__ import annotations

from itertools import pairwise

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

import streamops as so
from streamops._core import ProcessorStage
from streamops._patterns import BUILTIN_STARTS
from streamops._redact import _Redactor

# Patterns chosen for the traps: growth, priority, end assertions, lookarounds.
TRAPS = [
    r"sk-[a-z]{3,}",
    r"abc|ab?c?d",
    r"foo\b",
    r"(?<=x)yy",
    r"bar(?!baz)",
    r"q$",
    r"\bkey[0-9]{0,3}",
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


def builtin_reference(text: str) -> tuple[str, list[str]]:
    """regex.sub with the library's labels and validators, and the secrets it removed."""
    removed: list[str] = []

    def replace(m: regex.Match[str]) -> str:
        spec = next(s for s in BUILTINS if regex.match(str(s.pattern), text[m.start() :]))
        secret = m.group()
        if spec.validator is not None and not spec.validator(secret):
            return secret
        removed.append(secret)
        return spec.placeholder

    return BUILTIN_ALTERNATION.sub(replace, text), removed


@given(secret_text, cuts)
@settings(max_examples=40)
def test_builtins_are_chunking_invariant_and_leak_nothing(text: str, cut: list[int]) -> None:
    op = so.redact()
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


TRAP_PROBES = [regex.compile(f"(?:{p})(?!)") for p in TRAPS]
TRAP_ALTERNATION = regex.compile("|".join(f"(?:{p})" for p in TRAPS))


def in_flight(text: str, p: int) -> bool:
    """Could the attempt at ``p`` still change with more text? Either some pattern reads
    past the end (partial), or one more character changes the match (end assertions)."""
    if any(pr.match(text, p, partial=True) is not None for pr in TRAP_PROBES):
        return True
    now = TRAP_ALTERNATION.match(text, p)
    span = None if now is None else now.span()
    for c in "a x\n9-":
        later = TRAP_ALTERNATION.match(text + c, p)
        if (None if later is None else later.span()) != span:
            return True
    return False


def reference_hold(text: str) -> int:
    """The longest possible match in flight: from its earliest possible start to the end."""
    for p in range(len(text)):
        if in_flight(text, p):
            return len(text) - p
    return 0


@given(trap_text, cuts)
def test_hold_back_never_exceeds_the_longest_partial_match(text: str, cut: list[int]) -> None:
    stage = so.redact(TRAPS, replacement="#").stages[0]
    assert isinstance(stage, ProcessorStage)
    proc = stage.factory(so.StreamReport())
    assert isinstance(proc, _Redactor)
    seen = ""
    for chunk in chunked(text, cut):
        proc.feed(chunk)
        seen += chunk
        assert proc.held <= reference_hold(seen), (seen, proc.held)


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
    op = so.redact()
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
