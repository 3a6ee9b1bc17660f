"""Unit tests of so.redact: the traps of streaming redaction, split at every position."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import regex

import streamops as so
from streamops._core._stages import ProcessorStage
from streamops._redact._analysis import _pinned
from streamops._redact._filter import RedactMatch, _combined_pattern, _Redactor
from streamops._redact._patterns import BUILTIN_ENDS


def splits(text: str) -> Iterator[list[str]]:
    """Every 2- and 3-piece split, and one character per chunk."""
    n = len(text)
    for i in range(n + 1):
        yield [text[:i], text[i:]]
        for j in range(i, n + 1):
            yield [text[:i], text[i:j], text[j:]]
    yield list(text)


def feed_all(op: so.Operator[str, str], chunks: list[str]) -> str:
    return "".join(op(chunks))


def assert_every_split(op: so.Operator[str, str], text: str, expected: str) -> None:
    assert feed_all(op, [text]) == expected
    for chunks in splits(text):
        assert feed_all(op, chunks) == expected, chunks


def processor(op: so.Operator[str, str], report: so.StreamReport | None = None) -> _Redactor:
    stage = op.stages[0]
    assert isinstance(stage, ProcessorStage)
    proc = stage.factory(report or so.StreamReport())
    assert isinstance(proc, _Redactor)
    return proc


# -- the traps --------------------------------------------------------------


def test_secret_split_across_chunks_never_leaks() -> None:
    op = so.redact(["openai_key"])
    text = "use sk-abcdefghijklmnopqrstuvwx1 now"
    assert_every_split(op, text, "use [OPENAI_KEY] now")


def test_complete_match_at_buffer_end_may_still_grow() -> None:
    op = so.redact([r"sk-[a-z]{3,}"], replacement="#")
    proc = processor(op)
    assert proc.feed("key sk-abcd") == ["key "]  # "sk-abcd" is complete but may grow
    assert proc.held == 7
    assert proc.feed("ef!") == ["#!"]
    assert_every_split(op, "key sk-abcdef! sk-xyz", "key #! #")


def test_higher_priority_alternative_still_in_flight() -> None:
    op = so.redact([r"abc|a"], replacement="#")
    proc = processor(op)
    assert proc.feed("xab") == ["x"]  # `a` matched, but `abc` may still win
    assert proc.feed("c") == ["#"]
    assert_every_split(op, "xabcxabx", "x#x#bx")


def test_lower_priority_alternative_in_flight_does_not_hold() -> None:
    op = so.redact([r"a|abc"], replacement="#")
    proc = processor(op)
    assert proc.feed("xab") == ["x#b"]  # `a` is tried first and matched: `abc` cannot win
    assert proc.held == 0
    assert_every_split(op, "xabcxab", "x#bcx#b")


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"foo\b", "foo foox foo", "# foox #"),
        (r"foo\B", "foo foox foo", "foo #x foo"),
        (r"foo$", "foo foo", "foo #"),
        (r"foo$", "foo foo\n", "foo #\n"),
        (r"(?m)foo$", "foo\nfoo x", "#\nfoo x"),
        (r"foo\Z", "foo foo", "foo #"),
        (r"foo(?!bar)", "foobar foo foob", "foobar # #b"),
        (r"foo(?=bar)", "foobar foo", "#bar foo"),
        (r"foo\M", "foo foox", "# foox"),
    ],
)
def test_end_of_text_assertions_wait_for_more_text(pattern: str, text: str, expected: str) -> None:
    op = so.redact([pattern], replacement="#")
    assert regex.sub(pattern, "#", text) == expected  # the reference semantics
    assert_every_split(op, text, expected)


def test_end_assertion_undecided_until_the_stream_ends() -> None:
    proc = processor(so.redact([r"foo\b"], replacement="#"))
    assert proc.feed("a foo") == ["a "]
    assert proc.held == 3
    assert proc.close() == ["#"]


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"(?<=a)b", "ab cb ab", "a# cb a#"),
        (r"\bkey", "akey key", "akey #"),
        (r"(?<![0-9])42", "142 42", "142 #"),
        (r"^x", "xx", "#x"),
        (r"(?m)^x", "x\nxx", "#\n#x"),
    ],
)
def test_lookbehind_and_start_assertions_see_released_text(
    pattern: str, text: str, expected: str
) -> None:
    op = so.redact([pattern], replacement="#")
    assert regex.sub(pattern, "#", text) == expected
    assert_every_split(op, text, expected)


def test_lookbehind_wider_than_context_raises_the_context() -> None:
    pattern = r"(?<=token:\s{0,200})[a-z]{5}"
    op = so.redact([pattern], replacement="#", context=8)
    text = ("x" * 300 + "token:" + " " * 150 + "abcdefgh ") * 2 + "y" * 400
    expected = regex.sub(pattern, "#", text)
    assert expected.count("#") == 2
    rng = random.Random(5)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 60)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert feed_all(op, chunks) == expected, cuts
    assert feed_all(op, list(text)) == expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(?<=a+)b", "lookbehind of unbounded width"),
        (r"(?<=\X)b", "width cannot be bounded"),
        (r"\Gfoo", r"uses \\G"),
        (r"(?w)\bfoo\b", "WORD flag"),
        (r"(?w:foo\B)", "WORD flag"),
    ],
)
def test_patterns_a_stream_cannot_decide_exactly_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(so.RedactPatternError, match=message):
        so.redact([pattern])


def test_unicode_property_in_a_lookbehind_is_bounded() -> None:
    op = so.redact([r"(?<=\p{L})[0-9]{2}"], replacement="#")
    assert_every_split(op, "é12 12", "é# 12")


def test_word_flag_without_boundaries_is_accepted() -> None:
    assert_every_split(so.redact([r"(?w)foo"], replacement="#"), "foo's", "#'s")


def test_context_is_not_re_emitted_after_trimming() -> None:
    op = so.redact([r"(?<=ab)c"], replacement="#", context=2)
    text = "x" * 1000 + "abc" + "y" * 500 + "abc"
    expected = "x" * 1000 + "ab#" + "y" * 500 + "ab#"
    assert feed_all(op, [text]) == expected
    assert feed_all(op, list(text)) == expected
    assert feed_all(op, [text[i : i + 7] for i in range(0, len(text), 7)]) == expected


def test_nothing_held_when_no_match_is_possible() -> None:
    proc = processor(so.redact(["aws_access_key_id"]))
    assert proc.feed("hello, ") == ["hello, "]
    assert proc.held == 0
    assert proc.feed("AKIA") == []
    assert proc.held == 4
    assert proc.feed(" no") == ["AKIA no"]


@pytest.mark.parametrize(
    "text",
    [
        "call 4111 1111 1111 1111 or 020 7946 0958 now",
        "+44 20 7946 0958x and +442079460958 1",
        "card 4111 1111 1111 1112 123 and 4111 1111 1111 1111 123 ok",
        "iban GB82 WEST 1234 5698 7654 32, ssn 123-45-6789.",
        "(415) 555-2671 2024-01-15 v1.2.3 10.0.0.1 jo@example.com",
        "the model streams tokens to a client, x 3.14 y +1 z. ab-cd (e) sk-no AKIA",
        "word a@b.io, words jo@example.com; the 555-2671 x",
    ],
)
def test_open_attempts_with_a_complete_match_are_held_least(text: str) -> None:
    # Digits that already are a complete match (a phone number that may become a card)
    # are looked at with the `first` probe alone while they stay open, and a held word
    # that ends goes on to the next one in _missed (not _run): after every chunk, as
    # much is held as after the same text in one chunk, and the output is the
    # one-chunk output.
    op = so.redact()
    expected = feed_all(op, [text])
    for size in (1, 2, 3, 4, 5, 8, 12):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        proc, out, read = processor(op), [], ""
        for chunk in chunks:
            out += proc.feed(chunk)
            read += chunk
            whole = processor(op)
            whole.feed(read)
            assert proc.held == whole.held, (size, read)
        assert "".join(out + proc.close()) == expected, size


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["see hold", "s a@b.io, x"], "see holds [EMAIL], x"),
        (["see hold", "s +44 20 7946 0958. x"], "see holds [PHONE]. x"),
        (["see hold", "s 123-45-6789. x"], "see holds [US_SSN]. x"),
        (["see hold", "s 3.14 v1.2 x"], "see holds 3.14 v1.2 x"),
    ],
)
def test_a_held_word_that_ends_before_a_decided_match(chunks: list[str], expected: str) -> None:
    # The word held by the first chunk ends in the second, where the next candidate's
    # match is already complete (or a miss): it is decided there, not held as open.
    op = so.redact()
    proc = processor(op)
    assert proc.feed(chunks[0]) == ["see "]
    out = proc.feed(chunks[1])
    whole = processor(op)
    whole.feed("".join(chunks))
    assert proc.held == whole.held
    assert "".join(out + proc.close()) == expected[len("see ") :]
    assert feed_all(op, chunks) == feed_all(op, ["".join(chunks)]) == expected


def test_attempt_reading_across_a_later_match_is_decided_exactly() -> None:
    # In one chunk, the complete match `y` comes after the attempt at `x`, which reads
    # past it: that attempt is looked at again with the whole buffer (a miss here).
    op = so.redact([r"x[a-z ]*;", r"y"], replacement="#")
    assert_every_split(op, "xa ya. xa y;", "xa #a. #")
    proc = processor(op)
    assert proc.feed("xa ya") == []  # `x[a-z ]*;` may still match all of it
    assert proc.feed(".") == ["xa #a."]


def test_builtin_prefilter_edges_in_every_split() -> None:
    # Digits and "-" right after a word are candidates; letters after one are skipped.
    op = so.redact(["secrets", "pii", "financial", "network"])
    text = "a4111 1111 1111 1111 x-----BEGIN zAKIAIOSFODNN7EXAMPLE _AKIAIOSFODNN7EXAMPLE é1.2.3.4"
    expected = "a[CREDIT_CARD] x-----BEGIN zAKIAIOSFODNN7EXAMPLE _[AWS_ACCESS_KEY_ID] é[IPV4]"
    assert feed_all(op, [text]) == expected
    for i in range(len(text) + 1):
        assert feed_all(op, [text[:i], text[i:]]) == expected, i
    assert feed_all(op, list(text)) == expected


def test_pem_private_key_in_small_chunks() -> None:
    body = "\n".join("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" for _ in range(40))
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    assert len(pem) > 2000
    text = f"here: {pem}\nbye"
    op = so.redact()
    s = op([text[i : i + 3] for i in range(0, len(text), 3)])
    assert s.text() == "here: [PRIVATE_KEY]\nbye"
    assert s.report["redact"].window_overflows == 0  # type: ignore[attr-defined]


# -- the window ---------------------------------------------------------------


def test_window_overflow_fails_closed_by_default() -> None:
    op = so.redact([r"<[a-z]{0,100}>"], replacement="#", max_window=16)
    text = "x <" + "a" * 30 + "> <ab> y"
    # the overflowed attempt goes on to a match: all of it is dropped, then scanning resumes
    assert_every_split(op, text, "x # # y")
    s = op([text])
    s.text()
    section = s.report["redact"]
    assert section.window_overflows == 1  # type: ignore[attr-defined]
    assert section.on_overflow == "redact"  # type: ignore[attr-defined]
    assert any(e.kind == "redact.overflow" for e in s.report.events)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x sk-abcdefghijklmnopqrstuvwxyz y", "x [REDACTED] y"),  # grows to its end
        ("x sk-abcdefghijklmnopqrstuvwxyz", "x [REDACTED]"),  # ends with the text
        ("x sk-abcdefghijklmn0pqrstuvwxyz y", "x [REDACTED]0pqrstuvwxyz y"),  # ended at "0"
    ],
)
def test_window_overflow_never_leaks_the_rest_of_the_secret(text: str, expected: str) -> None:
    op = so.redact([r"sk-[a-z]{3,}"], max_window=16)
    assert_every_split(op, text, expected)


def test_failed_attempt_after_overflow_resumes_at_the_character_that_decided_it() -> None:
    op = so.redact([r"<[a-z]{0,100}>"], replacement="#", max_window=16)
    assert_every_split(op, "x <" + "a" * 20 + "! <ab> y", "x #! # y")


def test_attempt_outgrowing_two_windows_blocks_the_stream() -> None:
    op = so.redact([r"sk-[a-z]{3,}"], max_window=16)
    text = "x sk-" + "a" * 40 + " y"
    assert_every_split(op, text, "x [REDACTED]")
    s = op([text])
    assert s.text() == "x [REDACTED]"
    assert s.report.stop_reason == so.StopReason.BLOCKED


def test_window_must_hold_the_longest_selected_builtin() -> None:
    with pytest.raises(ValueError, match="cannot hold the built-in 'private_key'"):
        so.redact(["private_key"], max_window=4096)
    so.redact(["email"], max_window=1024)  # email matches at most 601 characters


def test_window_overflow_can_fail_open() -> None:
    op = so.redact([r"<[a-z]{0,100}>"], replacement="#", max_window=16, on_overflow="release")
    text = "x <" + "a" * 30 + "> <ab> y"
    assert_every_split(op, text, "x <" + "a" * 30 + "> # y")


def test_held_text_never_exceeds_the_window() -> None:
    proc = processor(so.redact([r"<[a-z]{0,100}>"], max_window=16))
    for ch in "<" + "a" * 40:
        proc.feed(ch)
        assert proc.held < 16


# -- replacements and validators ----------------------------------------------


def test_replacement_modes() -> None:
    text = "a@example.com b@example.com a@example.com."
    assert feed_all(so.redact(["email"], replacement="***"), [text]) == "*** *** ***."
    assert feed_all(so.redact(["email"]), [text]) == "[EMAIL] [EMAIL] [EMAIL]."
    cb = so.redact(["email"], replacement=lambda m: m.group().split("@")[1])
    assert feed_all(cb, [text]) == "example.com example.com example.com."
    hashed = feed_all(so.redact(["email"], replacement=so.KeyedHash(key=b"k")), [text])
    a, b, c = re.findall(r"\[EMAIL:[0-9a-f]{8}\]", hashed)
    assert a == c != b


def test_keyed_hash_key_is_random_per_stream_without_a_key() -> None:
    op = so.redact(["email"], replacement=so.KeyedHash())
    first = feed_all(op, ["a@example.com x"])
    second = feed_all(op, ["a@example.com x"])
    assert first != second
    assert re.fullmatch(r"\[EMAIL:[0-9a-f]{8}\] x", first)


def test_keyed_hash_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="digits"):
        so.KeyedHash(digits=2)
    with pytest.raises(TypeError, match="bytes"):
        so.KeyedHash(key="text")  # type: ignore[arg-type]


def test_callable_must_return_text() -> None:
    op = so.redact(["x"], replacement=lambda m: 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="returned int"):
        feed_all(op, ["x y"])


def test_validator_rejects_and_releases_unchanged() -> None:
    op = so.redact(["credit_card"])
    text = "good 4111 1111 1111 1111 bad 4111 1111 1111 1112."
    s = op(list(text))
    assert s.text() == "good [CREDIT_CARD] bad 4111 1111 1111 1112."
    assert s.report["redact"].rejected == {"credit_card": 1}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("spec", "text", "expected"),
    [
        # the pattern's own match is rejected: shorter ends, longest first
        (so.PatternSpec("n", r"[0-9]{2,6}", validator=lambda s: len(s) % 2 == 0), "12345", "#5"),
        # no end passes: lower-priority patterns at the same start, then one character on
        (so.PatternSpec("n", r"[0-9]{3}", validator=lambda s: s[0] != "1"), "1234", "1#"),
    ],
)
def test_rejected_match_tries_shorter_ends_then_moves_on(
    spec: so.PatternSpec, text: str, expected: str
) -> None:
    assert_every_split(so.redact([spec], replacement="#"), text, expected)


def test_rejected_match_falls_back_to_a_later_pattern_at_the_same_start() -> None:
    first = so.PatternSpec("first", r"[a-z]+", validator=lambda s: False)
    assert_every_split(so.redact([first, r"ab"], replacement="#"), "abc ab", "#c #")


def test_shorter_end_respects_lookarounds_in_the_whole_text() -> None:
    # "1234" would pass, but (?![0-9]) fails there: the digit after it is real text
    spec = so.PatternSpec("n", r"(?<![0-9])[0-9]{3,6}(?![0-9])", validator=lambda s: len(s) == 4)
    assert_every_split(so.redact([spec], replacement="#"), "123456 1234", "123456 #")


def test_custom_spec_with_validator_and_label() -> None:
    spec = so.PatternSpec("ticket", r"T-[0-9]{4}", label="<T>", validator=lambda s: s != "T-0000")
    assert_every_split(so.redact([spec]), "T-1234 T-0000", "<T> T-0000")


# -- actions ----------------------------------------------------------------


def test_block_stops_the_stream_and_closes_upstream() -> None:
    closed = []

    def source() -> Iterator[str]:
        try:
            yield from ["hello ", "sk-abcdefghijkl", "mnopqrstuvwxyz1 and ", "more", "text"]
        finally:
            closed.append(True)

    op = so.redact(["openai_key"], action="block")
    s = op(source())
    assert s.text() == "hello "
    assert s.report.stop_reason == so.StopReason.BLOCKED
    assert s.report["redact"].blocked_by == "openai_key"  # type: ignore[attr-defined]
    assert closed == [True]


def test_block_is_chunking_invariant() -> None:
    op = so.redact(["email"], action="block")
    assert_every_split(op, "hi a@b.io and c@d.io", "hi ")


def test_flag_passes_through_and_records() -> None:
    op = so.redact(["email"], action="flag")
    s = op(["write to a@example.com."])
    assert s.text() == "write to a@example.com."
    assert s.report["redact"].flagged == {"email": 1}  # type: ignore[attr-defined]
    assert [e.data for e in s.report.events if e.kind == "redact.flag"] == [
        {"pattern": "email", "start": 9, "end": 22}
    ]


def test_per_pattern_action_overrides_default() -> None:
    spec = so.PatternSpec("word", r"forbidden", action="block")
    op = so.redact([spec, "email"])
    s = op(["a@b.io then forbidden then c@d.io"])
    assert s.text() == "[EMAIL] then "
    assert s.report.stop_reason == so.StopReason.BLOCKED


# -- report -------------------------------------------------------------------


def test_report_counts_and_events_never_carry_the_secret() -> None:
    text = "x a@example.com y sk-abcdefghijklmnopqrstuvwx1 z a@example.com"
    s = so.redact()([text[i : i + 4] for i in range(0, len(text), 4)])
    out = s.text()
    assert out == "x [EMAIL] y [OPENAI_KEY] z [EMAIL]"
    assert s.report["redact"].redacted == {"email": 2, "openai_key": 1}  # type: ignore[attr-defined]
    events = [e for e in s.report.events if e.kind == "redact.redact"]
    assert [(e.data["pattern"], e.data["offset"], e.data["length"]) for e in events] == [
        ("email", 2, 7),
        ("openai_key", 12, 12),
        ("email", 27, 7),
    ]
    for e in events:
        assert out[e.data["offset"] : e.data["offset"] + e.data["length"]] in {
            "[EMAIL]",
            "[OPENAI_KEY]",
        }
    assert "example" not in s.report.to_json()


def test_max_held_is_reported() -> None:
    s = so.redact(["aws_access_key_id"])(list("key AKIAIOSFODNN7EXAMPLE ok"))
    assert s.text() == "key [AWS_ACCESS_KEY_ID] ok"
    assert isinstance(s.report["redact"], so.RedactReport)
    assert s.report["redact"].max_held == 20


# -- patterns, flags and errors -----------------------------------------------


def test_pattern_kinds_and_flags() -> None:
    pats: list[str | regex.Pattern[str] | re.Pattern[str]] = [
        regex.compile(r"secret", regex.IGNORECASE),
        re.compile(r"tok\d+", re.ASCII),
        "(?x) pass  word  # a verbose comment",
        "email",
    ]
    op = so.redact(pats, replacement="#")
    assert_every_split(op, "SeCrEt tok12 password x@y.io!", "# # # #!")
    # flags stay scoped to their own pattern
    assert feed_all(so.redact([regex.compile("a", regex.I), "b"], replacement="#"), ["AB"]) == "#B"


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"(?a)foo\b", "fooé bar foo"),  # the filter's own group around an end \b
        (r"(?a)x(?:\w)+", "xé xab"),  # a group of the user's
        (r"(?a)x(?i:\w)+", "xé xAB"),  # a scoped flag group of the user's
        (regex.compile(r"foo\b", regex.ASCII), "fooé foo"),
        (re.compile(r"x(?:\w)\b", re.ASCII), "xé xa xaé"),
        (r"(?a)x(?u:\w)", "xé"),  # a group that turns Unicode back on keeps it
    ],
)
def test_the_ascii_flag_holds_inside_groups(
    pattern: str | regex.Pattern[str] | re.Pattern[str], text: str
) -> None:
    """`regex` drops a scoped ``(?a:...)`` inside a nested ``(?:...)`` or ``(?i:...)``
    group (``(?a:(?:\\w))`` matches ``é``). Patterns are combined with their flags
    scoped, so the ASCII flag is carried into every group: the output is ``regex.sub``'s
    with the pattern's own flags, under every chunking."""
    expected = (re if isinstance(pattern, re.Pattern) else regex).sub(pattern, "#", text)
    assert_every_split(so.redact([pattern], replacement="#"), text, expected)


def _sub_each_alone(patterns: list[str], text: str) -> str:
    """``regex.sub`` of the alternation of ``patterns``, each compiled alone with its own
    flags: at each position the first pattern that matches there wins."""
    compiled = [regex.compile(p) for p in patterns]
    out, pos = [], 0
    while pos < len(text):
        m = next((m for c in compiled if (m := c.match(text, pos)) and m.end() > pos), None)
        out.append("#" if m else text[pos])
        pos = m.end() if m else pos + 1
    return "".join(out)


@pytest.mark.parametrize(
    ("patterns", "text"),
    [
        ([r"(?ax)\d+", r"\d+"], "٣ 3 x"),
        ([r"(?ax)\w", r"\w"], "é a"),
        ([r"(?a)\s+x", r"\s+y"], "\u2003y \u2003x"),
        ([r"(?a)[\d]+", r"[\d]+"], "٣ 3"),
        ([r"(?ax)\d", r"(?ax)x", r"\d"], "٣ x 3"),
        ([r"(?ax)\d+", r"(?i)\d+"], "٣"),
        ([r"\d+", r"(?a)\d+x"], "٣x 3x"),
        ([r"(?a)[\d-z]+", r"[\w]"], "9-z é"),  # a range stays a range
        ([r"(?a)\d+", r"(?ax)[\w-]+", r"[\w-]+"], "-\u2003x3-٣"),  # a last '-' is no range
    ],
)
def test_an_ascii_pattern_beside_a_unicode_one_keeps_each_ones_classes(
    patterns: list[str], text: str
) -> None:
    """``regex`` merges alternation branches that start alike whatever their flags:
    ``(?a:\\d+)|\\d+`` does not match ``٣``, so combined with an ASCII pattern a
    Unicode one let text through that it redacts alone (a leak)."""
    expected = _sub_each_alone(patterns, text)
    assert_every_split(so.redact(patterns, replacement="#"), text, expected)


def test_named_groups_and_builtin_selection_by_category() -> None:
    op = so.redact([r"(?P<q>['\"])[a-z]+(?P=q)", "network"], replacement="#")
    assert_every_split(op, "'abc' \"d' 10.0.0.1", "# \"d' #")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a(b", r"invalid pattern 'pattern_0' \('a\(b'\): missing \)"),
        ("a*", "matches the empty string"),
        (r"(a)\1", "numbered group reference"),
        (r"(a)(?1)", "numbered group reference"),
        (r"(a)(?(1)b|c)", "numbered group reference"),
        (r"(a)\g<1>", "numbered group reference"),
    ],
)
def test_bad_patterns_fail_at_construction(pattern: str, message: str) -> None:
    with pytest.raises(so.RedactPatternError, match=message) as info:
        so.redact([pattern])
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, so.StreamOpsError)


def test_octal_escape_is_not_a_group_reference() -> None:
    assert feed_all(so.redact([r"\101x"], replacement="#"), ["Ax"]) == "#"


def test_zero_width_match_is_refused_at_construction_not_mid_stream() -> None:
    with pytest.raises(so.RedactPatternError, match="empty string"):
        so.redact([r"(?=q)"])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"patterns": "email"}, TypeError, "not a single one"),
        ({"patterns": []}, ValueError, "patterns is empty"),
        ({"patterns": [3]}, TypeError, r"patterns\[0\] must be"),
        ({"action": "drop"}, ValueError, "action must be one of"),
        ({"max_window": 4}, ValueError, "max_window"),
        ({"context": 0}, ValueError, "context"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"on_overflow": "ignore"}, ValueError, "on_overflow"),
        ({"max_window": "big"}, TypeError, "max_window must be an int, got str"),
        ({"context": 2.5}, TypeError, "context must be an int, got float"),
        ({"timeout": "1"}, TypeError, "timeout must be a number, got str"),
        ({"action": "blok"}, ValueError, "did you mean 'block'"),
        ({"replacement": 3}, TypeError, "replacement must be"),
        (
            {"patterns": [so.PatternSpec("a", "a"), so.PatternSpec("a", "b")]},
            ValueError,
            "named 'a'",
        ),
        ({"patterns": [regex.compile(b"x")]}, TypeError, "bytes pattern"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        so.redact(**kwargs)  # type: ignore[arg-type]


def test_same_builtin_selected_twice_counts_once() -> None:
    op = so.redact(["secrets", "openai_key"])
    assert feed_all(op, ["sk-abcdefghijklmnopqrstuvwx1"]) == "[OPENAI_KEY]"


def test_catastrophic_backtracking_fails_closed() -> None:
    op = so.redact([r"(a|aa)+b"], timeout=0.02)
    s = op(["safe ", "a" * 60])
    with pytest.raises(so.RedactTimeoutError) as info:
        list(s)
    assert isinstance(info.value, TimeoutError)
    assert "a" * 10 not in s.report.released_text


def test_every_default_builtin_is_a_branch_of_one_combined_pattern() -> None:
    """One search per position for the whole library, not one per pattern."""
    combined = _combined_pattern(so.redact()).pattern
    defaults = [spec for spec in so.builtin_patterns() if spec.category != "network"]
    assert defaults
    assert all(str(spec.pattern) in combined for spec in defaults)
    assert not any(str(spec.pattern) in combined for spec in so.builtin_patterns("network"))


# -- streams ----------------------------------------------------------------


def test_async_stream_and_reuse() -> None:
    op = so.redact(["email"])

    async def source() -> AsyncIterator[str]:
        for piece in ["to: jo", "hn@exa", "mple.com!"]:
            yield piece

    async def main() -> str:
        async with op(source()) as s:
            return "".join([x async for x in s])

    assert asyncio.run(main()) == "to: [EMAIL]!"
    assert feed_all(op, ["x@y.io"]) == "[EMAIL]"  # the operator is reusable


def test_close_twice_and_feed_after_block() -> None:
    proc = processor(so.redact(["email"], action="block"))
    assert proc.feed("hi a@b.io ") == ["hi "]
    assert proc.done
    assert proc.feed("more") == []
    assert proc.close() == []
    other = processor(so.redact(["email"]))
    assert other.feed("x a@b.io") == ["x "]
    assert other.close() == ["[EMAIL]"]
    assert other.close() == []


def test_complete_pem_block_is_released_at_its_footer() -> None:
    pem = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq98uK2pGy\n"
        "aGVsbG8gd29ybGQ=\n-----END RSA PRIVATE KEY-----"
    )
    stream = so.redact(["private_key"])(iter([pem, "\nafter"]))
    first = next(stream)
    assert first == "[PRIVATE_KEY]"  # released with the chunk that completed it
    assert "".join(stream) == "\nafter"


# -- the prefilter for user patterns ----------------------------------------


def guard_of(op: so.Operator[str, str]) -> regex.Pattern[str] | None:
    return processor(op)._plan.guard


def test_user_patterns_get_a_start_prefilter() -> None:
    guard = guard_of(so.redact([r"TCK-[0-9]{6}", r"(?:x-)?key\b", r"(?i)pass"]))
    assert guard is not None
    text = "aTCK-x-keyPAss\u212a"
    starts = [q for q in range(len(text)) if guard.match(text, q)]
    assert "".join(text[q] for q in starts) == "TxkP"  # not the KELVIN SIGN: `key` is cased
    with_builtins = guard_of(so.redact(["email", r"TCK-[0-9]{6}"]))
    assert with_builtins is not None
    assert with_builtins.match("TCK", 0)
    assert with_builtins.match("ab", 1) is None  # inside a word: neither may start
    assert with_builtins.match(" a", 1)  # after a space: an email may start


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?=a)ab",  # a lookahead may read past the buffer first
        r".x",  # about anything
        r"[^a]x",
        r"\Wx",
        r"x?",  # matches the empty string: refused anyway
        r"(?V1)ab",
        r"(?fi)ab",  # full case folding: "ss" matches "ß"
        r"ab{e<=1}",  # fuzzy: the stdlib parser reads braces as literals
        r"[[:alpha:]]x",
        r"\p{Lu}x",
        r"(?x) a b",
        r"(?r)ab",
    ],
)
def test_patterns_the_start_analysis_gives_up_on_have_no_prefilter(pattern: str) -> None:
    try:
        op = so.redact(["email", r"TCK-[0-9]{6}", pattern])
    except so.RedactPatternError:
        return
    assert guard_of(op) is None


def test_case_insensitive_user_pattern_every_split() -> None:
    op = so.redact([r"(?i)k[0-9]{2}\b", r"(?i:(?:x-)?s[a-c])"], replacement="#")
    text = "a \u212a12 K3 k45x \u017fb X-sc Sa"  # KELVIN SIGN, LONG S: they fold to k, s
    expected = regex.sub(r"(?i)k[0-9]{2}\b|(?i:(?:x-)?s[a-c])", "#", text)
    assert expected == "a # K3 k45x # # #"
    assert guard_of(op) is not None
    assert_every_split(op, text, expected)


# -- issue 16: flags a stream cannot decide exactly are refused, the rest kept -----


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?V1i)ssh-rsa\s+AAAA[A-Za-z0-9+/]{8,}",
        r"(?fi)ssh-rsa\s+AAAA[A-Za-z0-9+/]{8,}",
        r"(?V1)x(?i:ssh)",
        r"(?i)x(?f:ss)",
        regex.compile(r"ssh", regex.IGNORECASE | regex.FULLCASE),
        regex.compile(r"ssh", regex.IGNORECASE | regex.V1),
    ],
)
def test_full_case_folding_is_refused_naming_the_flag(pattern: str | regex.Pattern[str]) -> None:
    with pytest.raises(so.RedactPatternError, match=r"full case folding.*FULLCASE"):
        so.redact([pattern])


@pytest.mark.parametrize(
    "pattern", [r"(?V1i-f)ssh-rsa\s+AAAA[A-Za-z0-9+/]{8,}", r"(?V1-f)x (?i:ssh-rsa\s+AAAA\S{8,})"]
)
def test_simple_case_folding_under_v1_is_exact_in_every_split(pattern: str) -> None:
    text = "x SSH-RSA AAAAB3NzaC1yc2EAAAADAQAB y ß ss"
    op = so.redact([pattern], replacement="#")
    expected = regex.sub(pattern, "#", text)
    assert expected in ("x # y ß ss", "# y ß ss")
    assert_every_split(op, text, expected)


def test_v1_case_insensitive_group_keeps_simple_folding_in_the_alternation() -> None:
    # `(?i:...)` inside a V1 alternation would fold fully again: the filter scopes `-f`
    op = so.redact([r"(?V1i-f)ss"], replacement="#")
    assert feed_all(op, ["a ß SS b"]) == "a ß # b"


@pytest.mark.parametrize(
    "pattern", [r"(?:hunter2){e<=1}", r"x{1<=e<=2}", r"ab{2i+2d+1s<=4}", r"(?:pass){i<=1,d<=1}"]
)
def test_fuzzy_matching_is_refused(pattern: str) -> None:
    with pytest.raises(so.RedactPatternError, match="fuzzy"):
        so.redact([pattern])


def test_braces_that_are_not_fuzzy_are_accepted() -> None:
    op = so.redact([r"a{2,3}\{e\}[{e}]"], replacement="#")
    assert feed_all(op, ["xaa{e}e!"]) == "x#!"


@pytest.mark.parametrize(
    ("flag", "name"),
    [
        (regex.POSIX, "POSIX"),
        (regex.REVERSE, "REVERSE"),
        (regex.BESTMATCH, "BESTMATCH"),
        (regex.ENHANCEMATCH, "ENHANCEMATCH"),
    ],
)
def test_compiled_pattern_flags_a_stream_cannot_keep_are_refused(flag: int, name: str) -> None:
    with pytest.raises(so.RedactPatternError, match=name):
        so.redact([regex.compile(r"ab|abc", flag)])
    with pytest.raises(so.RedactPatternError, match=name):  # inline too: (?p), (?r), (?b), (?e)
        so.redact([f"(?{'prbe'['PRBE'.index(name[0])]})ab|abc"])


def test_compiled_pattern_with_named_lists_is_supported() -> None:
    words = regex.compile(r"\b\L<words>\b", words=["foo", "foobar"])
    other = regex.compile(r"<\L<words>>", words=["x"])  # the same list name, another list
    op = so.redact([words, other], replacement="#")
    text = "a foobar foob <x> <foo> foo"
    assert_every_split(op, text, "a # foob # <#> #")


# -- issue 16: fail closed means closed ------------------------------------------


def test_overflow_never_resumes_inside_a_secret_that_began_in_the_dropped_text() -> None:
    # The `key...=` rule overflows and fails at "-"; the key began inside the dropped
    # text: resuming at "-" released "-proj-Ab12..." (regex.sub redacts the whole key).
    pats = [r"(?i)key[a-z0-9 ]*=", r"sk-[A-Za-z0-9-]{10,}"]
    text = "a the key is now in this line sk-proj-Ab12Cd34 zz"
    assert regex.sub("|".join(pats), "#", text) == "a the key is now in this line # zz"
    op = so.redact(pats, replacement="#", max_window=24)
    assert_every_split(op, text, "a the # zz")
    # a secret running past 2 * max_window from the overflow blocks: its end is unknown
    s = so.redact(pats, replacement="#", max_window=16)([text])
    assert s.text() == "a the #"
    assert s.report.stop_reason == so.StopReason.BLOCKED


def test_overflow_resumes_only_where_no_open_attempt_covers_the_text() -> None:
    pats = [r"<[a-z ]{0,100}>", r"sk-[A-Za-z0-9-]{10,}"]
    text = "a <b c d e f g h i j k l sk-proj-Ab12Cd34 zz"
    op = so.redact(pats, replacement="#", max_window=24)
    assert_every_split(op, text, "a # zz")


def test_overflow_of_a_block_pattern_blocks() -> None:
    big = so.PatternSpec("big", r"<[a-z ]{0,100}>", action="block")
    op = so.redact([big], max_window=16)
    text = "x <" + "a" * 30 + "> y"
    assert_every_split(op, text, "x ")
    s = op([text])
    assert s.text() == "x "
    assert s.report.stop_reason == so.StopReason.BLOCKED
    assert s.report["redact"].blocked_by == "big"  # type: ignore[attr-defined]


def test_overflow_of_a_flag_pattern_never_deletes_text() -> None:
    big = so.PatternSpec("big", r"<[a-z ]{0,100}>", action="flag")
    op = so.redact([big], max_window=16)
    text = "x <" + "a" * 30 + "> y <ab> z"
    assert_every_split(op, text, text)
    s = op([text])
    s.text()
    assert s.report["redact"].window_overflows == 1  # type: ignore[attr-defined]


def test_lazy_rule_whose_match_ended_is_not_an_overflow() -> None:
    pattern = r"(?s)BEGIN.*?END"
    text = "BEGIN 0123456789012345678901 END and then the rest of a long answer, not blocked"
    expected = regex.sub(pattern, "[REDACTED]", text)
    op = so.redact([pattern], max_window=16)
    s = op([text])
    assert s.text() == expected
    assert s.report.stop_reason != so.StopReason.BLOCKED
    assert_every_split(op, text, expected)


# -- issue 16: names, surrogates, replacement callables --------------------------


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("emial", "email"), ("secret", "secrets"), ("phones", "phone"), ("ipv5", "ipv6")],
)
def test_misspelled_builtin_name_is_an_error_with_a_suggestion(typo: str, meant: str) -> None:
    with pytest.raises(so.RedactPatternError, match=f"did you mean '{meant}'") as info:
        so.redact([typo])
    assert "PatternSpec" in str(info.value)  # how to redact the word on purpose


def test_a_literal_word_on_purpose() -> None:
    assert feed_all(so.redact([so.PatternSpec("w", "emial")], replacement="#"), ["an emial"]) == (
        "an #"
    )
    assert feed_all(so.redact([r"(?:emial)"], replacement="#"), ["an emial"]) == "an #"
    assert feed_all(so.redact(["password"], replacement="#"), ["my password"]) == "my #"


def test_keyed_hash_accepts_lone_surrogates() -> None:
    op = so.redact([r"k[\s\S]{2}"], replacement=so.KeyedHash(key=b"k"))
    out = feed_all(op, ["a k\ud800z and k\ud800z"])
    first, second = out[2:], out.split(" and ")[1]
    assert first.startswith("[REDACTED:")
    assert first.split(" ")[0] == second
    proc = processor(so.redact([r"k[\s\S]{8}"], replacement=so.KeyedHash()))
    assert proc.feed("a k\ud800zzz") == ["a "]
    assert "\ud800" not in "".join(proc.truncate())  # a cut masks it with its hash


def test_replacement_callable_sees_a_stable_view_with_stream_offsets() -> None:
    seen: list[tuple[int, int, str, dict[str, str | None]]] = []

    def rep(m: RedactMatch) -> str:
        seen.append((m.start(), m.end(), m.group(), m.groupdict()))
        return f"<{m.pattern}:{m.start()}-{m.end()}:{m.group('body')}:{m['body']}>"

    text = "x" * 500 + " sk-abc " + "y" * 300 + " sk-def."
    op = so.redact([so.PatternSpec("key", r"sk-(?P<body>[a-z]{3})")], replacement=rep)
    expected = "x" * 500 + " <key:501-507:abc:abc> " + "y" * 300 + " <key:809-815:def:def>."
    assert feed_all(op, [text]) == expected
    for size in (1, 3, 4, 7, 64):
        assert feed_all(op, [text[i : i + size] for i in range(0, len(text), size)]) == expected
    assert seen[0] == (501, 507, "sk-abc", {"body": "abc"})
    m = seen[0]
    assert text[m[0] : m[1]] == m[2]


# -- issue 16: graphemes, long lookbehinds, empty matches ----------------------


def test_grapheme_waits_for_a_following_combining_mark() -> None:
    # `\X` took "e" alone when the chunk ended there; the accent arrived after.
    pattern = r"a\X"
    for text in ("xae\u0301z", "xae\u0301\u0302z", "xa\U0001f44d\U0001f3fdz", "xaez"):
        expected = regex.sub(pattern, "#", text)
        assert_every_split(so.redact([pattern], replacement="#"), text, expected)


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?<=\A[\s\S]{0,70})K",
        r"(?<=^[\s\S]{64,70})K",
        r"(?<=\b.{64})K",
        r"(?m)(?<=^.{64})K",
        r"(?<=\A.{200})K",
    ],
)
def test_long_lookbehind_with_start_assertions_is_chunking_invariant(pattern: str) -> None:
    # The trimmed buffer's first character looked like the start of the text to
    # `\A`/`^`, and like a word boundary to `\b`, when the lookbehind reached it.
    rng = random.Random(pattern)
    for _ in range(30):
        text = "".join(rng.choice("ab K\n.") for _ in range(rng.randrange(60, 700)))
        expected = regex.sub(pattern, "#", text)
        op = so.redact([pattern], replacement="#")
        assert feed_all(op, [text]) == expected
        for size in (1, 3, 4, 7, 64):
            chunks = [text[i : i + size] for i in range(0, len(text), size)]
            assert feed_all(op, chunks) == expected, (size, text)


@pytest.mark.parametrize(
    "pattern", [r"(?<=a)x?", r"x|(?=q)", r"(?<![a-z])\d*", r"\b", r"(?:ab)?(?=c)", r"x{0,3}"]
)
def test_pattern_that_can_match_empty_text_in_context_is_refused(pattern: str) -> None:
    # It passed construction and then ended the stream at the first empty match.
    with pytest.raises(so.RedactPatternError, match="can match the empty string"):
        so.redact([pattern])


# -- issue 16: bounded cost and hold-back ---------------------------------------


def test_cpu_budget_per_stream_fails_closed_with_a_clear_stop_reason() -> None:
    # Each search stayed under its own timeout, so a slow stream never raised.
    slow = r"(?:a|aa)+(?:a|aa)+b"
    op = so.redact([slow], timeout=5.0, cpu_budget=0.2)  # each search far under 5 s
    chunks = ["x " + "a" * 16 + "!"] * 400
    s = op(chunks)
    out = s.text()
    assert s.report.stop_reason == so.StopReason.BLOCKED
    assert s.report["redact"].blocked_by == "cpu_budget"  # type: ignore[attr-defined]
    assert "CPU budget" in (s.report.stop_detail or "")
    assert len(out) < len("".join(chunks))
    # with no per-search timeout the budget still bounds one search
    s = so.redact([slow], timeout=None, cpu_budget=0.2)(["a" * 40 + "!"])
    assert s.text() == ""
    assert s.report["redact"].blocked_by == "cpu_budget"  # type: ignore[attr-defined]


def test_flag_observer_shares_the_streams_cpu_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # The observer of flag patterns had a budget of its own, so a stream mixing flag and
    # redact rules could spend twice cpu_budget. Clocks (wall and the thread's CPU) that
    # advance 10 ms per reading make every timed step cost 10 ms: 60 chunks are ~0.6 s
    # for each side, ~1.2 s in all.
    now = [0.0]

    def clock() -> float:
        now[0] += 0.01
        return now[0]

    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(time, "thread_time", clock)  # the budget counts the thread's CPU
    ticket = so.PatternSpec("ticket", r"TCK-[0-9]{4}", action="flag")
    chunks = ["a b "] * 60
    for patterns in ([ticket], ["email"]):  # each side alone stays within 1 s
        s = so.redact(patterns, cpu_budget=1.0)(chunks)
        assert s.text() == "".join(chunks)
        assert s.report.stop_reason == so.StopReason.COMPLETE
    s = so.redact([ticket, "email"], cpu_budget=1.0)(chunks)
    out = s.text()
    assert s.report["redact"].blocked_by == "cpu_budget"  # type: ignore[attr-defined]
    assert s.report.stop_reason == so.StopReason.BLOCKED
    assert len(out) < len("".join(chunks))


def test_cpu_budget_is_checked() -> None:
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="cpu_budget must be a positive number"):
            so.redact(["email"], cpu_budget=bad)
    with pytest.raises(ValueError, match="max_hold must be a positive int"):
        so.redact(["email"], max_hold=0)
    with pytest.raises(ValueError, match="hold_seconds must be a positive number"):
        so.redact(["email"], hold_seconds=0)


def test_open_attempt_is_not_rematched_on_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 3 kB private key in 4-character chunks was matched again from its start on
    # each of its 800 chunks (quadratic); now again only when the held text doubles.
    body = "".join(random.Random(3).choice("ABCDEFabcdef0123456789+/") for _ in range(3000))
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    text = f"key:\n{pem}\nbye"
    calls = 0
    real = _Redactor._run

    def counting(self: _Redactor, *, final: bool, reopen: bool, **known: Any) -> list[str]:
        nonlocal calls
        calls += 1
        return real(self, final=final, reopen=reopen, **known)

    monkeypatch.setattr(_Redactor, "_run", counting)
    chunks = [text[i : i + 4] for i in range(0, len(text), 4)]
    assert feed_all(so.redact(["private_key"]), chunks) == "key:\n[PRIVATE_KEY]\nbye"
    assert calls < 60  # 16 chunks below the doubling floor, then one per doubling


def test_a_new_attempt_after_a_long_one_is_looked_at_on_every_chunk() -> None:
    # A long attempt is looked at again only when its held text doubles; the attempt
    # found after it was decided inherited that doubling point, so a short key was held
    # until ~128 characters had gone by instead of being released when it ended.
    op = so.redact([r"<[a-z]{0,200}>", r"sk-[a-z]{3,}"], replacement="#")
    key = "sk-" + "k" * 60
    text = "<" + "a" * 70 + "! " + key + " tail of the answer, and more of it"
    proc = processor(op)
    out = ""
    for i, char in enumerate(text):
        out += "".join(proc.feed(char))
        if i == text.index(key) + len(key):  # the space that ends the key
            assert out == "<" + "a" * 70 + "! # ", out
    assert out + "".join(proc.close()) == regex.sub(r"<[a-z]{0,200}>|sk-[a-z]{3,}", "#", text)


def test_hold_bound_in_characters_fails_closed() -> None:
    pattern = r"<[a-z ]{0,500}>"
    text = "a <" + "b" * 100 + "> c"
    op = so.redact([pattern], replacement="#", max_hold=32)
    s = op([text])
    assert s.text() == "a # c"  # nothing of the held attempt released, resumed after it
    assert s.report["redact"].window_overflows == 1  # type: ignore[attr-defined]
    for size in (1, 4, 7):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        proc = processor(op)
        held = 0
        for chunk in chunks:
            proc.feed(chunk)
            held = max(held, proc.held)
        assert held <= 32 + size
    # without the bound the whole attempt is held and redacted
    assert feed_all(so.redact([pattern], replacement="#"), [text]) == "a # c"


def test_hold_bound_in_seconds_fails_closed_on_the_stream_clock() -> None:
    now = [0.0]
    report = so.StreamReport(clock=lambda: now[0])
    proc = processor(so.redact([r"<[a-z ]{0,500}>"], replacement="#", hold_seconds=1.0), report)
    assert proc.feed("a <bb") == ["a "]
    now[0] = 0.5
    assert proc.feed("bb") == []
    now[0] = 1.5
    assert proc.feed("b") == ["#"]  # held a second: failed closed, nothing released
    assert proc.feed("bb> c") == [" c"]  # dropped to the end of that attempt
    assert proc.close() == []


def test_hold_back_statistics_are_reported() -> None:
    s = so.redact(["email"])(["mail jo", "e@exam", "ple.com now", " ok"])
    s.text()
    section = s.report["redact"]
    assert section.max_held == 8  # type: ignore[attr-defined]  # "joe@exam"
    assert section.held_p99 == section.max_held  # type: ignore[attr-defined]
    assert 0 < section.held_mean < section.max_held  # type: ignore[attr-defined]


# -- issue 16: flag never holds text ------------------------------------------


def _flag_spans(report: so.StreamReport) -> list[tuple[str, int, int]]:
    return [
        (e.data["pattern"], e.data["start"], e.data["end"])
        for e in report.events
        if e.kind == "redact.flag"
    ]


FLAG_PATTERNS = [r"sk-[a-z]{3,}", r"abc|ab?c?d", r"foo\b", r"(?<=x)yy", r"q$", r"[0-9]{2,4}"]


@pytest.mark.parametrize(
    "text", ["sk-abcd abd foo foox xyy q", "abcd 12345 sk-ab foo", "xyyq sk-zz 1q"]
)
def test_flag_only_releases_every_chunk_at_once_and_reports_finditer(text: str) -> None:
    op = so.redact(FLAG_PATTERNS, action="flag")
    alternation = regex.compile("|".join(f"(?:{p})" for p in FLAG_PATTERNS))
    expected = [(m.start(), m.end()) for m in alternation.finditer(text)]
    for chunks in splits(text):
        proc = processor(op)
        for chunk in chunks:
            assert proc.feed(chunk) == ([chunk] if chunk else [])  # nothing held, ever
            assert proc.held == 0
        assert proc.close() == []
        s = op(chunks)
        assert s.text() == text
        assert [(a, b) for _, a, b in _flag_spans(s.report)] == expected, chunks


def test_flag_patterns_do_not_hold_a_redacting_stream() -> None:
    ticket = so.PatternSpec("ticket", r"TCK-[0-9]{2,}", action="flag")
    op = so.redact([ticket, "openai_key"])
    proc = processor(op)
    assert proc.feed("see TCK-12") == ["see TCK-12"]  # a ticket may grow: flag waits, text not
    assert proc.feed("34 and sk-") == ["34 and "]
    assert proc.feed("abcdefghijklmnopqrstuvwx1 ok") == ["[OPENAI_KEY] ok"]
    assert proc.close() == []
    s = op(["see TCK-1234 and TCK-5", "6"])
    assert s.text() == "see TCK-1234 and TCK-56"
    assert _flag_spans(s.report) == [("ticket", 4, 12), ("ticket", 17, 23)]
    assert s.report["redact"].flagged == {"ticket": 2}  # type: ignore[attr-defined]


def test_a_flag_match_never_shields_a_secret_from_redaction() -> None:
    # flag patterns are observed apart: a flag match overlapping a secret does not
    # consume it (regex.sub of the redacting patterns, finditer of the flag ones)
    note = so.PatternSpec("note", r"key sk-[a-z]+", action="flag")
    op = so.redact([note, r"sk-[a-z]{5,}"], replacement="#")
    text = "my key sk-abcdefg here"
    assert_every_split(op, text, "my key # here")
    s = op([text])
    assert s.text() == "my key # here"
    assert _flag_spans(s.report) == [("note", 3, 17)]


def test_flag_observer_truncated_stream_reports_finditer_of_the_text_read() -> None:
    op = so.budget(max_tokens=4) | so.redact([r"[0-9]{3,}"], action="flag")
    s = op(["a 12345 b 678 c d e f g h i j k"])
    out = s.text()
    assert s.report.stop_reason == so.StopReason.BUDGET
    expected = [(m.start(), m.end()) for m in regex.finditer(r"[0-9]{3,}", out)]
    assert expected
    assert [(a, b) for _, a, b in _flag_spans(s.report)] == expected


# -- issue 16: matching on a normalised view, replacing the original span ------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-proj-Ab12\u200bCd34Ef56Gh78Ij90Kl12Mn34 ok", "key [OPENAI_KEY] ok"),
        (
            "key \ufeffsk-proj-Ab12Cd34\u2060Ef56Gh78Ij90Kl12Mn34\u200d ok",
            "key [OPENAI_KEY]\u200d ok",
        ),
        (
            "card \uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11"
            " \uff11\uff11\uff11\uff11 ok",
            "card [CREDIT_CARD] ok",
        ),
        ("card 4111\u00a01111\u00a01111\u00a01111 ok", "card [CREDIT_CARD] ok"),
        ("call +44\u202f20\u202f7946\u202f0958.", "call [PHONE]."),
        ("mail \uff4a\uff4f@example.com", "mail [EMAIL]"),
        # no secret: every character comes out as it went in
        ("a\u200bb\u00a0c\ufeff \uff21\uff11 4111\u00a01111 \u200c", None),
        ("\u200b", None),
    ],
)
def test_normalised_view_matches_and_replaces_the_original_span(
    text: str, expected: str | None
) -> None:
    assert_every_split(so.redact(), text, text if expected is None else expected)


def test_normalised_view_is_off_for_raw_patterns_and_can_be_chosen() -> None:
    text = "key sk-proj-Ab12\u200bCd34Ef56Gh78Ij90Kl12Mn34 ok"
    assert feed_all(so.redact(normalize=False), [text]) == text
    # user regexes match the raw text by default (regex.sub-exact) ...
    assert feed_all(so.redact([r"ab[0-9]{3}"], replacement="#"), ["ab1\u200b23"]) == "ab1\u200b23"
    # ... unless asked
    op = so.redact([r"ab[0-9]{3}"], replacement="#", normalize=True)
    assert_every_split(op, "x ab1\u200b2\uff13 y", "x # y")


def test_normalised_view_offsets_are_those_of_the_original_stream() -> None:
    seen: list[tuple[str, tuple[int, int]]] = []

    def keep(m: RedactMatch) -> str:
        seen.append((m.group(), m.span()))
        return "#"

    op = so.redact([r"ab[0-9]{3}"], replacement=keep, normalize=True)
    text = "\u200bx ab1\u200b\u200b2\uff13 y ab456"
    for chunks in splits(text):
        seen.clear()
        assert feed_all(op, chunks) == "\u200bx # y #"
        assert seen == [("ab123", (3, 10)), ("ab456", (13, 18))], chunks
    flag = so.redact([r"ab[0-9]{3}"], action="flag", normalize=True)
    s = flag([text])
    assert s.text() == text
    assert _flag_spans(s.report) == [("pattern_0", 3, 10), ("pattern_0", 13, 18)]


# -- issue 16: a literal-prefix prefilter for user rules --------------------------


RULES = [
    r"(?i)(?<![a-z0-9])api_?(?:key|token)\s{0,3}[:=]\s{0,3}[A-Za-z0-9_\-]{16,64}",
    r"xk_[A-Za-z0-9]{8,40}",
    r"(?<=x)abc",
    r"\bfoo[0-9]",
]


@pytest.mark.parametrize(
    "text",
    [
        "my API_KEY = abcdefghijklmnop0123 and xk_abcdefgh1 ok",
        "xxk_abcdefgh xabc foo1 afoo2 apikey:0123456789abcdefX",
        "x xk_ab xk_abcdefghZ a ap api_ Api",
    ],
)
def test_literal_prefix_prefilter_keeps_user_rules_exact(text: str) -> None:
    op = so.redact(RULES, replacement="#")
    expected = regex.sub("|".join(f"(?:{r})" for r in RULES), "#", text)
    assert_every_split(op, text, expected)


def test_user_rules_with_literal_prefixes_get_a_prefix_guard() -> None:
    proc = processor(so.redact(RULES[:2]))
    assert proc._plan.guard is not None
    assert proc._plan.guard.search("a table of tokens, exactly") is None  # no "api", "xk_"
    assert proc._plan.guard.search("the xk") is not None  # 'xk' at the end may go on


_END_TEXTS = [
    "+44 20 7946 0958 4111 1111 1111 111 x",
    "+4420794609584111-22 +1 415 555 2671+",
    "020 7946 0958 10.0.0.1 06 12 34 56 78 9",
    "(415) 555-2671 415-555-2671-1 030-1234567a",
    "4111 1111 1111 1111 123 4111-1111-1111-1111-",
    "378282246310005 3782 822463 10005 41111111111111111111",
    "+44 (0)20 7946 0958 +3)6744856 +2041172(95 +1(415)555-2671)",
    "+440832313492078318 +8613812345678 +1 2 3 4 5 6 78 9",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +442079460958 now", "call [PHONE] now"),
        ("+8613812345678", "[PHONE]"),
        ("+1 (415) 555-2671.", "[PHONE]."),
        ("+44 (0)20 7946 0958", "[PHONE]"),
        ("+33 6 12 34 56 78 ok", "[PHONE] ok"),
        ("+49 30 1234567 +49.30.1234567", "[PHONE] [PHONE]"),
        # over 15 digits is no E.164 number, and no shorter end of a digit run is one
        ("ref +4408323134920783 ok", "ref +4408323134920783 ok"),
        ("+440832313492078318123456", "+440832313492078318123456"),
        # a last run of one digit (or of two right after a "(") is not where it ends
        ("+44 20 7946 0958 1", "[PHONE] 1"),
        ("+2041172(95", "[PHONE](95"),
    ],
)
def test_glued_international_numbers(text: str, expected: str) -> None:
    # The E.164 part reads each digit run one way (a separator is never empty): glued
    # digits were split into groups every possible way, ~50 us per character.
    assert_every_split(so.redact(["phone"]), text, expected)


@pytest.mark.parametrize("name", sorted(BUILTIN_ENDS))
def test_builtin_ends_are_a_necessary_condition(name: str) -> None:
    """Every end a built-in's pinned match can reach passes its BUILTIN_ENDS check."""
    spec = so.builtin_patterns(name)[0]
    source = spec.pattern if isinstance(spec.pattern, str) else spec.pattern.pattern
    ends = regex.compile(BUILTIN_ENDS[name])
    for text in _END_TEXTS:
        for limit in (len(text), len(text) - 1):
            for p in range(limit):
                for e in range(p + 1, limit + 1):
                    pinned = _pinned(f"(?:{source})", limit - e, regex.V0)
                    if pinned.match(text, p, limit):
                        assert ends.match(text, e, limit), (text, p, e, limit)


def test_builtin_guard_skips_digits_inside_alphanumeric_runs() -> None:
    """A digit between letters starts no built-in (cards, SSNs and IPv4 addresses that may
    follow a letter begin with two digits or a digit and a dot): one long token such as
    ``A1b2A1b2...`` has no candidate position, but a digit at the end may still go on."""
    guard = processor(so.redact())._plan.guard
    assert guard is not None
    assert guard.search("xA1b2" * 200 + "c", 1) is None
    assert guard.search("xA1b2", 1, 3) is not None  # "1" at the end: "12..." may follow
    assert guard.search("xA12b", 1) is not None
    assert guard.search("xA1.b", 1) is not None
    text = "xA1b2A4111111111111111b"  # a card glued to letters is still found
    assert_every_split(so.redact(replacement="#"), text, "xA1b2A#b")
