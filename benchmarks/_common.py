"""Shared benchmark helpers: timing, the result row, and the ratio table.

Every benchmark measures streamops and its baseline in the same process on the
same data, and reports the ratio next to its target. Never used as a timed
assertion in the test suite: the suite only runs each benchmark on a tiny
workload to check that it still works.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class BenchResult:
    """One row of the ratio table.

    ``ratio`` is ``ours / baseline`` unless ``higher_is_better`` (then it is
    ``baseline / ours``, a speed-up). ``target`` is the bound the ratio must stay
    under (or above, for speed-ups).
    """

    operator: str
    workload: str
    ours_s: float
    baseline_s: float
    baseline: str
    target: float | None
    higher_is_better: bool = False
    note: str = ""
    # What ours_s/baseline_s hold: "s" (shown in ms), "s/chunk" (shown in us) or "B"
    # (bytes, shown in KiB); rows that are not timings (memory) say so here.
    unit: str = "s"

    @property
    def ratio(self) -> float:
        if self.higher_is_better:
            return self.baseline_s / self.ours_s if self.ours_s else float("inf")
        return self.ours_s / self.baseline_s if self.baseline_s else float("inf")

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["passed"] = self.passed
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """Rebuild a row from :meth:`as_dict` (the derived ``ratio``/``passed`` are ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def best_of(fn: Callable[[], object], *, repeat: int = 5, min_time: float = 0.0) -> float:
    """Return the best CPU time of ``repeat`` runs of ``fn`` (GC disabled while timing).

    CPU time of this process, not wall time: on a shared 2-core machine the
    wall clock also counts the time other processes held the CPU, which makes
    ratios swing; what we compare is the work each contender does.
    """
    best = float("inf")
    gc.collect()  # once: a full collection can cost 0.1 s with the SDKs imported
    for _ in range(repeat):
        gc.disable()
        try:
            start = time.process_time()
            fn()
            elapsed = time.process_time() - start
        finally:
            gc.enable()
        best = min(best, elapsed)
        if min_time and elapsed > min_time:
            break
    return best


def interleaved(fns: list[Callable[[], object]], *, repeat: int = 5) -> list[float]:
    """Return the best time of each function, running them in turns.

    Alternating the contenders spreads the machine's noise (other processes,
    frequency changes) over all of them instead of penalising whichever ran
    during a busy spell; the minimum is the least disturbed run.
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], best_of(fn, repeat=1))
    return best


HEADER = ("operator", "workload", "streamops", "baseline", "ratio", "target", "ok")


def _amount(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e3:.2f} ms"
    if unit == "s/chunk":
        return f"{value * 1e6:.2f} us/chunk"
    if unit == "B":
        return f"{value / 1024:.1f} KiB"
    return f"{value:.4g} {unit}"


def cells(r: BenchResult) -> tuple[str, ...]:
    """Return the table cells of one row (shared by the text and the Markdown table)."""
    if r.target is None:
        target = "-"
    else:
        target = f">= {r.target:g}x" if r.higher_is_better else f"<= {r.target:g}x"
    ok = {None: "-", True: "pass", False: "FAIL"}[r.passed]
    return (
        r.operator,
        r.workload,
        _amount(r.ours_s, r.unit),
        f"{_amount(r.baseline_s, r.unit)} ({r.baseline})",
        f"{r.ratio:.2f}x" + (" faster" if r.higher_is_better else ""),
        target,
        ok,
    )


def format_table(results: list[BenchResult]) -> str:
    """Format results as a fixed-width table with ratio, target and pass/fail."""
    rows = [HEADER, *(cells(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"note: {r.operator}/{r.workload}: {r.note}" for r in results if r.note]
    return "\n".join(lines + notes)
