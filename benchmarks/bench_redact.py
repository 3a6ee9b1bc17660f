"""Benchmark: streaming redaction in 4-character chunks vs one regex.sub of the whole text.

Both sides use the same compiled alternation; the baseline knows the whole text
up front, the stream learns it 4 characters at a time and must decide what it
may release after each chunk. Three workloads:

* prose (the issue's target, <= 3x): mostly lowercase words with 1% secrets; the
  built-in prefilter skips the inside of words, so this measures the per-chunk
  cost of the stream machinery.
* digit/PII-heavy (informational): half the tokens are numbers, dates, phone and
  card numbers, IBANs, addresses; digits are candidates everywhere, so nearly every
  position runs the whole alternation, plus validators and their retries.
* user patterns (informational): two regexes of your own over the prose text; the
  prefilter derived from their first characters skips most positions, what is left
  is the per-chunk cost (the baseline's literal-prefix scan costs almost nothing).
"""

from __future__ import annotations

import random

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


def run(quick: bool = False) -> list[BenchResult]:
    """Time ~1 MB (20 kB when quick) of prose and of PII-heavy text, and ~200 kB
    (4 kB) of prose through user patterns, in 4-character chunks."""
    size = 20_000 if quick else 1_000_000
    repeat = 1 if quick else 3
    prose = _text(size)
    return [
        _row(so.redact(), prose, "prose, built-ins", 3.0, repeat),
        _row(so.redact(), _text(size, pii=True), "digit/PII-heavy, built-ins", None, repeat),
        _row(so.redact(_USER_PATTERNS), prose[: size // 5], "prose, user patterns", None, repeat),
    ]


if __name__ == "__main__":
    print(format_table(run()))
