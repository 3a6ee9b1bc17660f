"""Benchmark: exact incremental token counting vs one tiktoken encode of the whole text.

About 1 MB of LLM-style text (prose, code, numbers, some non-Latin script and
emoji) is fed to :class:`streamops.TokenCounter` in 4-character chunks; the
baseline is one ``enc.encode`` of the whole text (the floor: the counter ends
up encoding every character once). The counts are checked equal. A second row
runs the full ``budget`` operator (stream driver included) over the same
chunks with a budget it never reaches, and a third shows what naive per-chunk
counting would report (it is fast but wrong, which is the point of the
counter).
"""

from __future__ import annotations

import random

from benchmarks._common import BenchResult, best_of, format_table
from streamops import TokenCounter, budget, get_encoding

_WORDS = [
    "the",
    "model",
    "streams",
    "tokens",
    "while",
    "the",
    "policy",
    "checks",
    "every",
    "chunk",
    "and",
    "the",
    "budget",
    "counts",
    "exactly",
    "what",
    "passed",
    "through;",
    "I'll",
    "say",
    "it's",
    "done",
    "when",
    "we're",
    "sure.",
    "naïve",
    "café",
    "résumé",
    "日本語のテキスト",
    "中文",
    "😀",
    "👍🏽",
]
_CODE = "def f(x):\n    return x ** 2  # square\n\n"
_NUMBERS = "3.14159 2024-05-01 12345678 0x1f "


def make_text(size: int, *, seed: int = 5) -> str:
    """Deterministic mixed text of at least ``size`` characters."""
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < size:
        roll = rng.random()
        if roll < 0.9:
            part = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 20))) + ". "
        elif roll < 0.95:
            part = _CODE
        else:
            part = _NUMBERS + "\n\n"
        parts.append(part)
        total += len(part)
    return "".join(parts)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def run(quick: bool = False) -> list[BenchResult]:
    """Time the counter and the operator against one encode of the same text."""
    size = 20_000 if quick else 1_000_000
    repeat = 2 if quick else 5
    enc = get_encoding("cl100k_base")
    text = make_text(size)
    chunks = _chunks(text, 4)
    expected = len(enc.encode(text))

    def whole() -> int:
        return len(enc.encode(text))

    def incremental() -> int:
        counter = TokenCounter(enc)
        feed = counter.feed
        for chunk in chunks:
            feed(chunk)
        return counter.count()

    def operator() -> int:
        stream = budget(max_tokens=10 * expected, warn_at=None)(chunks)
        for _ in stream:
            pass
        return int(stream.report.sections["budget"].model_dump()["completion_tokens"])

    assert incremental() == expected, "incremental count differs from encode"
    assert operator() == expected, "budget count differs from encode"
    naive = sum(len(enc.encode(c)) for c in chunks)
    baseline = best_of(whole, repeat=repeat)
    label = f"{len(text) / 1e6:.2f} MB, 4-char chunks"
    return [
        BenchResult(
            operator="TokenCounter",
            workload=label,
            ours_s=best_of(incremental, repeat=repeat),
            baseline_s=baseline,
            baseline="enc.encode(whole)",
            target=2.0,
            note=f"exact: {expected} tokens; per-chunk counting would say {naive} "
            f"(+{(naive - expected) / expected:.0%})",
        ),
        BenchResult(
            operator="budget()",
            workload=label,
            ours_s=best_of(operator, repeat=repeat),
            baseline_s=baseline,
            baseline="enc.encode(whole)",
            target=None,
            note="full operator through the stream driver, limit never reached",
        ),
    ]


if __name__ == "__main__":
    print(format_table(run()))
