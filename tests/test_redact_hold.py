"""Least hold-back for the built-ins whose keyword is read by a lookbehind.

``regex``'s partial matching misjudges a lookbehind whose greedy quantifier follows
a literal of two or more characters: ``(?<=ok ?)\\S`` reports a partial match at
the ``[`` of ``items: [``, where no text that may still arrive can make it match
(the lookbehind reads only text that is already there). The filter then held
ordinary JSON and prose as a possible secret (``generic_secret`` after
``{"status":``, ``aws_secret_access_key`` likewise). The built-ins' lookbehinds use
lazy quantifiers, which say the same (a lookbehind only tests whether some path
matches) and which ``regex`` judges correctly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import regex

import streamops as so
from streamops._cli import DEMO_ANSWER
from streamops._redact._patterns import _SECRET_KEY
from streamops.testing import FakeStreamingModel

JSON_DOC = '{"status": "ok", "owner": "maria", "items": [{"sku": "A-1001", "qty": 3}]}\n'
PROSE = "Note: the status is ok. Config: see the docs; owner = maria, retries => 3.\n"
DEFAULT = [p.name for p in so.builtin_patterns() if p.category != "network"]
# The built-ins led by a lookbehind that reads a keyword (a key, a scheme) before the value.
KEYWORD_LED = ("generic_secret", "aws_secret_access_key", "connection_string")


def _released(op: so.Operator[str, str], chunks: list[str]) -> list[int]:
    """How many characters ``op`` had released each time it pulled the next chunk."""
    released = 0
    lengths: list[int] = []

    def source() -> Iterator[str]:
        for chunk in chunks:
            lengths.append(released)
            yield chunk

    for piece in op(source()):
        released += len(piece)
    assert released >= len("".join(chunks)) // 2  # a sanity check: the text went through
    return lengths


def _chunkings(text: str) -> dict[str, list[str]]:
    tokens = [str(c) for c in FakeStreamingModel(text, chunking="token").stream("x")]
    assert "".join(tokens) == text
    return {"token": tokens, "char": list(text)}


@pytest.mark.parametrize("name", KEYWORD_LED)
@pytest.mark.parametrize("text", [DEMO_ANSWER, JSON_DOC, PROSE], ids=["demo", "json", "prose"])
@pytest.mark.parametrize("chunking", ["token", "char"])
def test_a_keyword_led_builtin_holds_nothing_without_its_keyword(
    name: str, text: str, chunking: str
) -> None:
    chunks = _chunkings(text)[chunking]
    without = so.redact([n for n in DEFAULT if n != name])
    assert _released(so.redact(), chunks) == _released(without, chunks)


@pytest.mark.parametrize("name", KEYWORD_LED)
def test_alone_it_releases_each_chunk_of_the_demo_answer_as_it_arrives(name: str) -> None:
    # no keyword of a secret in the demo answer: nothing to hold
    chunks = _chunkings(DEMO_ANSWER)["token"]
    arrived = [sum(map(len, chunks[:k])) for k in range(len(chunks))]
    assert _released(so.redact([name]), chunks) == arrived


# Each keyword-led built-in, as its lookbehind's truth: the lookbehind holds at p (it
# reads only text before p, so a plain match decides it) and the rest may still match.
_LEAD = r"(?<=[=:>\"'][ \t]{0,3}[\"']?)"
_GENERIC_PARTS = (
    (_LEAD + r"(?<=" + _SECRET_KEY + r"\")", r"[^\"\n]{8,200}(?=\")"),
    (_LEAD + r"(?<=" + _SECRET_KEY + r"')", r"[^'\n]{8,200}(?=')"),
    (_LEAD + r"(?<=" + _SECRET_KEY + r")", r"[^\s\"'`]{8,200}(?![^\s\"'`])"),
)
_WORDS: tuple[str, ...] = ("password", "pass", "token", "api_key", "apiKey", "secret", "status")
_WORDS += ("ok", ":", "=", "=>", "==", " ", "\t", '"', "'", "x", "Ab3$", "\n", ">", "credentials")
_WORDS += ("_", "key")


def test_generic_secret_is_open_only_where_its_keyword_and_assignment_are() -> None:
    spec = so.builtin_patterns("generic_secret")[0]
    assert isinstance(spec.pattern, str)
    pattern = regex.compile(spec.pattern)
    parts = [(regex.compile(lb), regex.compile(body)) for lb, body in _GENERIC_PARTS]
    rng = random.Random(7)
    wrong = []
    for _ in range(3000):
        text = "".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 12)))
        for p in range(len(text)):
            got = pattern.match(text, p, partial=True) is not None
            want = any(
                lb.match(text, p) is not None and body.match(text, p, partial=True) is not None
                for lb, body in parts
            )
            if got != want:
                wrong.append((text[:p], text[p:], got))
    assert wrong[:5] == []
