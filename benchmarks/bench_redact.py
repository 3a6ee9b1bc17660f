"""Benchmark: streaming redaction in 4-character chunks vs one regex.sub of the whole text.

Both sides use the same compiled alternation; the baseline knows the whole text
up front, the stream learns it 4 characters at a time and must decide what it
may release after each chunk. The rows are the targets of issue 16, measured in
one run (docs/redact.md, "Performance"):

* prose with 1% secrets through the built-ins (<= 2x): the per-chunk cost of the
  stream machinery (the built-in guard skips the inside of words);
* digit/PII-heavy text through the built-ins (<= 3x): numbers, dates, phone and
  card numbers, IBANs, addresses; every number is a candidate, and validators
  reject many (cards failing Luhn, then their shorter ends);
* glued international phone digits (<= 3x, as for the other digit-heavy text):
  ``+442079460958`` and longer digit runs after a ``+``; each is a candidate held
  until its digit run ends, and the ones over 15 digits are rejected by the
  validator (then every shorter end is tried). The phone pattern reads a digit run
  one way only, so this costs what other numbers cost;
* space-separated 4-digit numbers (lists of years, tables of amounts; <= 3x, the
  digit-heavy target): a group whose first digits are an issuer range's may begin a
  4-4-4-4 card; the others (a year) are no candidate for one (review finding 10: was
  14-96x, partly because regex.sub then replaced unvalidated 4-4-4-4 runs wholesale);
* prose through 20 gitleaks-style user rules (<= 4x): their literal prefixes are
  the guard;
* 3.2 kB PEM private keys (<= 10x): a long open attempt stays linear;
* doubling max_window with an open attempt (<= 2.2x cost);
* the labelled corpus (benchmarks/redact_corpus): precision and recall of the
  default set.
"""

from __future__ import annotations

import base64
import random
import re
from pathlib import Path

import streamops as so
from streamops._core._stages import ProcessorStage
from streamops._redact._filter import _combined_pattern, _Redactor

from ._common import BenchResult, best_of, format_table

_WORDS = tuple(
    " ".join(
        (
            "the model streams tokens to the client while the filter checks every chunk",
            "for secrets and personal data before anything is released to the user interface",
        )
    ).split(" ")
)
_SECRETS = (
    "john.doe@example.com",
    "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56",
    "4111 1111 1111 1111",
    "192.168.10.20",
    "AKIAIOSFODNN7EXAMPLE",
    "+44 20 7946 0958",
    "ghp_" + "x1" * 18,
)


_PII = (
    "4111 1111 1111 1111",
    "4111 1111 1111 1112",  # Luhn fails
    "4111 1111 1111 1111 123",  # card + CVV: the card is redacted
    "020 7946 0958",
    "+44 20 7946 0958",
    "(415) 555-2671",
    "GB82 WEST 1234 5698 7654 32",
    "123-45-6789",
    "2024-01-15",
    "v1.2.3",
    "10.0.0.1",
    "42",
    "3.14",
    "1999",
    "007",
    "jo@example.com",
)


def _text(size: int, *, pii: bool = False) -> str:
    rng = random.Random(4)
    parts: list[str] = []
    total = 0
    while total < size:
        if pii:
            word = rng.choice(_PII) if rng.random() < 0.5 else rng.choice(_WORDS)
        else:
            word = rng.choice(_SECRETS) if rng.random() < 0.01 else rng.choice(_WORDS)
        parts.append(word)
        total += len(word) + 1
    return " ".join(parts)[:size]


def _glued_text(size: int) -> str:
    """Prose where 30% of the words are international numbers written without spaces:
    ``+`` and 7 to 20 digits (up to 15 are E.164 phone numbers; longer runs are not)."""
    rng = random.Random(6)
    parts: list[str] = []
    total = 0
    while total < size:
        if rng.random() < 0.3:
            digits = rng.randint(6, 19)
            word = f"+{rng.randint(1, 9)}{rng.randrange(10**digits):0{digits}d}"
        else:
            word = rng.choice(_WORDS)
        parts.append(word)
        total += len(word) + 1
    return " ".join(parts)[:size]


def _digit_groups(size: int) -> str:
    """Lines of space-separated 4-digit numbers: lists of years and tables of amounts."""
    rng = random.Random(7)
    lines: list[str] = []
    total = 0
    while total < size:
        if rng.random() < 0.5:
            line = " ".join(str(rng.randint(1990, 2030)) for _ in range(12))
        else:
            line = " ".join(str(rng.randint(1000, 9999)) for _ in range(6))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[:size]


def _held_stats(op: so.Operator[str, str], chunks: list[str]) -> tuple[float, int]:
    stage = op.stages[0]
    assert isinstance(stage, ProcessorStage)
    proc = stage.factory(so.StreamReport())
    assert isinstance(proc, _Redactor)
    total = peak = 0
    for chunk in chunks:
        proc.feed(chunk)
        total += proc.held
        peak = max(peak, proc.held)
    proc.close()
    return total / len(chunks), peak


_USER_PATTERNS = [r"TCK-[0-9]{6}", r"(?i)password\s{0,3}[:=]\s{0,3}\S{1,64}"]


def _row(
    op: so.Operator[str, str], text: str, workload: str, target: float | None, repeat: int
) -> BenchResult:
    chunks = [text[i : i + 4] for i in range(0, len(text), 4)]
    pattern = _combined_pattern(op)
    expected = "".join(op([text]))
    assert "".join(op(chunks)) == expected  # same output, or the timing means nothing
    ours = best_of(lambda: "".join(op(chunks)), repeat=repeat)
    baseline = best_of(lambda: pattern.sub("#", text), repeat=repeat)
    avg_held, max_held = _held_stats(op, chunks)
    return BenchResult(
        operator="redact",
        workload=f"{len(text) // 1000} kB {workload}, 4-char chunks",
        ours_s=ours,
        baseline_s=baseline,
        baseline="regex.sub whole text",
        target=target,
        note=f"held back: average {avg_held:.1f} chars, maximum {max_held} chars",
    )


_CORPUS = Path(__file__).parent / "redact_corpus"
_HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}\b")
# Secrets only a keyword makes recognisable are injected with it.
_ANCHORED = (
    (
        "aws_secret_access_key",
        "aws_secret_access_key = ",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("bearer_token", "Authorization: Bearer ", "abcdef0123456789abcdef0123.x-y"),
    ("us_ssn", "SSN: ", "078051120"),
    ("us_ssn", '{"ssn": "', '219099999"}'),
    ("generic_secret", 'password = "', 'Tr0ub4dor&3-correct-horse"'),
    ("generic_secret", "API_KEY=", "3f9a1c2b4d5e6f7a8b9c0d1e2f3a4b5c"),
    ("generic_secret", "client_secret: ", "8Q~xK2mZp9vL4tR7wY1cN6bH3jF5dS0aE"),
)


def _gitleaks_rules() -> list[str]:
    """20 gitleaks-style user rules: a keyword, an assignment, a secret-shaped value."""
    words = ("api", "auth", "client", "db", "deploy", "git", "jenkins", "jira", "npm", "pypi")
    rules = [
        rf"(?i)(?<![a-z0-9]){w}_?(?:key|token)\s{{0,3}}[:=]\s{{0,3}}[A-Za-z0-9_\-]{{16,64}}"
        for w in words
    ]
    rules += [
        rf"{p}[A-Za-z0-9]{{20,40}}"
        for p in (
            "xk_",
            "pk_",
            "tk_",
            "hf_",
            "dop_v1_",
            "shpat_",
            "npm_",
            "pypi-",
            "sq0atp-",
            "EAAC",
        )
    ]
    return rules


def _pem(size: int = 2300) -> str:
    rng = random.Random(5)
    body = base64.encodebytes(bytes(rng.randrange(256) for _ in range(size))).decode()
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\n"


def _cost(op: so.Operator[str, str], text: str, repeat: int) -> float:
    chunks = [text[i : i + 4] for i in range(0, len(text), 4)]
    return best_of(lambda: "".join(op(chunks)), repeat=repeat)


def _window_row(repeat: int) -> BenchResult:
    """An unbounded user rule whose attempt stays open for the whole window, then fails
    closed: the cost of doubling max_window (8192 -> 16384)."""
    costs = []
    for window in (8192, 16384):
        op = so.redact([r"(?s)BEGIN.*?END"], max_window=window, replacement="#")
        text = ("word " * 10 + "BEGIN " + "x y z " * window)[: 3 * window]
        costs.append(_cost(op, text, repeat))
    return BenchResult(
        operator="redact",
        workload="doubling max_window 8192 -> 16384, open attempt, 4-char chunks",
        ours_s=costs[1],
        baseline_s=costs[0],
        baseline="same stream, half the window",
        target=2.2,
    )


def corpus_scores() -> tuple[float, float, int, int]:
    """Precision and recall of the default set on the labelled corpus (see its README).

    Returns precision, recall, false positives (redactions in secret-free text) and
    missed secrets.
    """
    clean = [p.read_text() for p in sorted(_CORPUS.glob("*.txt"))]
    secrets = [
        tuple(line.split("\t", 1)) for line in (_CORPUS / "secrets.tsv").read_text().splitlines()
    ]
    op = so.redact()
    false_pos = 0
    for text in clean:
        s = op([text[i : i + 4] for i in range(0, len(text), 4)])
        s.text()
        false_pos += sum(s.report["redact"].redacted.values())  # type: ignore[attr-defined]
    rng = random.Random(16)
    found = missed = 0
    injected = [(name, "", secret) for name, secret in secrets] + list(_ANCHORED)
    for text in clean:
        words = text.split(" ")
        # A secret is injected as a token of its own: not between a key and its value
        # (``build_id = <secret> 4532...`` or ``build_id <secret> = 4532...`` would make
        # the value no longer the key's), nor inside a hex dump (``ba <secret> dc``: a
        # phone number there is bytes).
        spots = [
            at
            for at in range(len(words))
            if not (at and words[at - 1].endswith(("=", ":")))
            and not words[at].startswith(("=", ":"))
            and not (at and _HEX_PAIR.fullmatch(words[at - 1]) and _HEX_PAIR.match(words[at]))
        ]
        for name, keyword, secret in injected:
            at = rng.choice(spots)
            mixed = " ".join([*words[:at], f"{keyword}{secret}", *words[at:]])
            s = op([mixed[i : i + 4] for i in range(0, len(mixed), 4)])
            out = s.text()
            hits = s.report["redact"].redacted  # type: ignore[attr-defined]
            if secret not in out and hits.get(name, 0) >= 1:
                found += 1
            else:
                missed += 1
            false_pos += sum(hits.values()) - (1 if hits.get(name) else 0)
    precision = found / (found + false_pos) if found + false_pos else 1.0
    recall = found / (found + missed)
    return precision, recall, false_pos, missed


def run(quick: bool = False) -> list[BenchResult]:
    """Time ~1 MB (20 kB when quick) of prose and of PII-heavy text, and ~200 kB
    (4 kB) of glued phone digits and of prose through user patterns, in 4-character
    chunks."""
    size = 20_000 if quick else 1_000_000
    repeat = 1 if quick else 3
    prose = _text(size)
    pem_text = ("Here is the key you asked for:\n" + _pem() + "Keep it safe. ") * (
        1 if quick else 20
    )
    precision, recall, false_pos, missed = corpus_scores()
    rows = [
        _row(so.redact(), prose, "prose, built-ins", 2.0, repeat),
        _row(so.redact(), _text(size, pii=True), "digit/PII-heavy, built-ins", 3.0, repeat),
        _row(
            so.redact(),
            _glued_text(size // 5),
            "glued international phone digits, built-ins",
            3.0,
            repeat,
        ),
        _row(
            so.redact(),
            _digit_groups(size // 5),
            "space-separated 4-digit numbers (years, amounts), built-ins",
            3.0,
            repeat,
        ),
        _row(
            so.redact(_gitleaks_rules()),
            prose[: size // 5],
            "prose, 20 gitleaks-style rules",
            4.0,
            repeat,
        ),
        _row(so.redact(), pem_text, "3.2 kB PEM private keys, built-ins", 10.0, repeat),
        _window_row(repeat),
    ]
    rows.append(
        BenchResult(
            operator="redact",
            workload="labelled corpus (code, prose, logs, JSON + injected secrets), default set",
            ours_s=precision,
            baseline_s=1.0,
            baseline="precision (found / all redactions)",
            target=None,
            unit="ratio",
            note=f"precision {precision:.3f}, recall {recall:.3f}; {false_pos} false"
            f" positives, {missed} missed",
        )
    )
    return rows


if __name__ == "__main__":
    print(format_table(run()))
