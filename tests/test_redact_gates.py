"""The filter narrows the branches tried at a position by the lookbehinds a built-in
starts with (``_Plan.at``) and remembers them per position (``_sub_at``); shorter ends
of a rejected built-in match are looked for only where BUILTIN_ENDS allows. Each only
skips work whose outcome is known: checked here against the branches themselves."""

from __future__ import annotations

import random

import regex

import streamops as so
from streamops._core._report import StreamReport
from streamops._redact._analysis import _leading_lookbehinds
from streamops._redact._filter import _Redactor
from streamops._redact._patterns import BUILTIN_ENDS


def _plan(patterns: list[str] | None = None):  # type: ignore[no-untyped-def]
    op = so.redact(patterns)
    stage = op.stages[0]
    proc = stage.factory(StreamReport())  # type: ignore[attr-defined]
    assert isinstance(proc, _Redactor)
    return proc._plan


def test_leading_lookbehinds_are_cut_at_their_closing_parenthesis() -> None:
    assert _leading_lookbehinds(r"(?<=[:)])(?<!a\))x(?<=y)") == r"(?<=[:)])(?<!a\))"
    assert _leading_lookbehinds(r"(?<=(?:a|b))c") == r"(?<=(?:a|b))"
    assert _leading_lookbehinds(r"x(?<=a)") is None
    assert _leading_lookbehinds(r"(?<=a") is None


def test_narrowed_branches_keep_every_branch_that_can_match_or_read_on() -> None:
    plan = _plan(["secrets", "pii", "financial", "network"])
    assert any(plan.gates)
    rng = random.Random(3)
    pieces = [
        "password = ",
        "aws_secret_access_key=",
        "Bearer ",
        "bearer ",
        "postgres://u:",
        '"apiKey": "',
        "SSN: ",
        " ",
        "x",
        "4111 ",
        "+44 ",
        ":",
        "=",
        "'",
        "Tr0ub4dor&3xyz",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "abcdef0123456789abcdef0123",
        "jo@example.com",
        "\n",
    ]
    for _ in range(400):
        buf = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        for p in range(len(buf)):
            kept = {b.spec.name for b in plan.at(buf, p).branches}
            for branch in plan.branches:
                m = branch.regex.match(buf, p, partial=True, concurrent=False)
                if m is not None:
                    assert branch.spec.name in kept, (buf, p, branch.spec.name)


def test_builtin_ends_found_by_one_search_are_those_found_one_by_one() -> None:
    rng = random.Random(1)
    for src in BUILTIN_ENDS.values():
        ends = regex.compile(src)
        for _ in range(3000):
            buf = "".join(rng.choice("0123456789 -+a") for _ in range(rng.randint(1, 30)))
            p = rng.randrange(len(buf))
            limit = rng.randint(p + 1, len(buf))
            found = [x.start() for x in ends.finditer(buf, p + 1, limit, concurrent=False)]
            one_by_one = [
                e for e in range(p + 1, limit + 1) if ends.match(buf, e, limit, concurrent=False)
            ]
            assert found == one_by_one


def test_same_output_with_keyword_contexts_under_every_split() -> None:
    text = (
        'password = "Tr0ub4dor&3-x" aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'
        " Authorization: Bearer abcdef0123456789abcdef0123.x-y postgres://admin:S3cr3t!@db/app"
        " card 4111 1111 1111 1111 123 ok +44 20 7946 0958"
    )
    op = so.redact()
    whole = "".join(op([text]))
    for label in ("[SECRET]", "[AWS_SECRET_ACCESS_KEY]", "[BEARER_TOKEN]", "[PASSWORD]"):
        assert label in whole
    assert "[CREDIT_CARD] 123" in whole
    for size in (1, 2, 3, 4, 7):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert "".join(op(chunks)) == whole
