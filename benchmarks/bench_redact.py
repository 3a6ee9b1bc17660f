"""Benchmark: streaming redaction in 4-character chunks vs one regex.sub of the whole text.

Both sides use the same compiled alternation of the built-in library; the
baseline knows the whole text up front, the stream learns it 4 characters at a
time and must decide what it may release after each chunk.
"""

from __future__ import annotations

import random

import streamops as so
from streamops._core import ProcessorStage
from streamops._redact import _combined_pattern, _Redactor

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


def _text(size: int) -> str:
    rng = random.Random(4)
    parts: list[str] = []
    total = 0
    while total < size:
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


def run(quick: bool = False) -> list[BenchResult]:
    """Time the built-in library over ~1 MB (20 kB when quick) in 4-character chunks."""
    size = 20_000 if quick else 1_000_000
    text = _text(size)
    chunks = [text[i : i + 4] for i in range(0, len(text), 4)]
    op = so.redact()
    pattern = _combined_pattern(op)
    expected = "".join(op([text]))
    assert "".join(op(chunks)) == expected  # same output, or the timing means nothing
    repeat = 1 if quick else 3
    ours = best_of(lambda: "".join(op(chunks)), repeat=repeat)
    baseline = best_of(lambda: pattern.sub("#", text), repeat=repeat)
    avg_held, max_held = _held_stats(op, chunks)
    return [
        BenchResult(
            operator="redact",
            workload=f"{len(text) // 1000} kB built-ins, 4-char chunks",
            ours_s=ours,
            baseline_s=baseline,
            baseline="regex.sub whole text",
            target=3.0,
            note=f"held back: average {avg_held:.1f} chars, maximum {max_held} chars",
        )
    ]


if __name__ == "__main__":
    print(format_table(run()))
