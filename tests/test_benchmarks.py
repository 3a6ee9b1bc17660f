"""Smoke tests of the benchmarks: each module runs on a tiny workload, and so does the runner.

Never a timed assertion: these only check that the benchmarks still work and
report what they should. The timings themselves are `python -m benchmarks`.
"""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path

import pytest

from benchmarks import __main__ as runner
from benchmarks._common import BenchResult, format_table

MODULES = runner.discover()


@functools.cache
def _quick_rows(name: str) -> list[BenchResult]:
    rows: list[BenchResult] = importlib.import_module(f"benchmarks.{name}").run(quick=True)
    return rows


def test_every_module_is_found() -> None:
    names = {p.stem for p in Path(runner.PACKAGE).glob("bench_*.py")}
    assert set(MODULES) == names
    assert {"bench_core", "bench_scale"} <= names


@pytest.mark.parametrize("name", MODULES)
def test_module_runs_quick(name: str) -> None:
    rows = _quick_rows(name)
    assert rows, f"{name}.run() returned no rows"
    for row in rows:
        assert isinstance(row, BenchResult)
        assert row.ours_s == row.ours_s  # not NaN
        assert row.baseline_s == row.baseline_s
        assert all((row.operator, row.workload, row.baseline))
        # A row survives the trip through the runner's JSON unchanged.
        assert BenchResult.from_dict(json.loads(json.dumps(row.as_dict()))) == row
    table = format_table(rows)
    assert all(row.operator in table for row in rows)


def test_scale_rows() -> None:
    rows = _quick_rows("bench_scale")
    assert [(r.operator, r.unit, r.target) for r in rows] == [
        ("scale: CPU per chunk", "s/chunk", 1.3),
        ("scale: memory per stream", "B", 1.0),
    ]
    assert rows[0].ours_s > 0
    assert rows[0].baseline_s > 0


def test_scale_measure_counts_every_chunk() -> None:
    from benchmarks import bench_scale

    got = bench_scale.measure(3, piped=True, concurrent=True)
    assert got["cpu_s"] > 0
    assert got["text_bytes"] > 0  # the collector holds the (redacted) text
    assert got["pipeline"]


def test_runner_quick_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.json"
    assert (
        runner.main(["--quick", "--only", "core", "--only", "bench_retry", "--json", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    for header in ("operator", "streamops", "baseline", "ratio", "target", "ok"):
        assert header in printed
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["quick"] is True
    assert [m["name"] for m in record["modules"]] == ["bench_core", "bench_retry"]
    assert all(m["error"] is None and m["rows"] for m in record["modules"])
    assert {"cpu", "cores", "python", "date"} <= set(record["machine"])
    assert "| operator |" in runner.markdown(record)


def test_runner_reports_a_crashing_module() -> None:
    result = runner.run_module("bench_no_such_module", quick=True, timeout=60)
    assert result.rows == []
    assert result.error is not None
    assert "No module named" in result.error


def test_runner_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        runner.main(["--quick", "--only", "nope"])
    assert exc.value.code == 2
    assert "no benchmark module bench_nope" in capsys.readouterr().err


def test_quick_run_saves_nothing_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runner, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(runner, "HISTORY", tmp_path / "results" / "history.jsonl")
    monkeypatch.setattr(runner, "DOCS", tmp_path / "benchmarks.md")
    monkeypatch.setattr(runner, "run_module", lambda name, **_: runner.ModuleRun(name))
    assert runner.main(["--quick"]) == 0
    assert not (tmp_path / "results").exists()


def test_full_run_writes_latest_and_history(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = BenchResult("op", "work", 2.0, 1.0, "base", 3.0)
    docs = tmp_path / "benchmarks.md"
    docs.write_text("intro\n<!-- latest-table: start -->\nold\n<!-- latest-table: end -->\n")
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    monkeypatch.setattr(runner, "HISTORY", tmp_path / "history.jsonl")
    monkeypatch.setattr(runner, "DOCS", docs)
    monkeypatch.setattr(
        runner, "run_module", lambda name, **_: runner.ModuleRun(name, [row], wall_s=1.0)
    )
    monkeypatch.setattr(runner, "discover", lambda: ["bench_a", "bench_b"])
    assert runner.main(["--label", "before"]) == 0
    assert runner.main(["--only", "a"]) == 0  # partial runs go to the history only
    latest = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    assert [m["name"] for m in latest["modules"]] == ["bench_a", "bench_b"]
    assert latest["label"] == "before"
    md = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert "| op | work | 2000.00 ms | 1000.00 ms (base) | 2.00x | <= 3x | pass |" in md
    text = docs.read_text(encoding="utf-8")
    assert text.startswith("intro\n<!-- latest-table: start -->\n- Date: ")
    assert "old" not in text
    assert "| op | work |" in text
    history = (tmp_path / "history.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(h)["only"] for h in history] == [None, ["a"]]
    assert "2.00x" in capsys.readouterr().out


def test_failed_module_sets_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        runner, "run_module", lambda name, **_: runner.ModuleRun(name, error="exit status 1: boom")
    )
    monkeypatch.setattr(runner, "discover", lambda: ["bench_a"])
    assert runner.main(["--quick"]) == 1


def test_memory_rows_format_in_kib() -> None:
    row = BenchResult("m", "w", 8 * 1024, 32 * 1024, "budget", 1.0, unit="B")
    assert "8.0 KiB" in format_table([row])
    assert row.ratio == 0.25
    assert row.passed is True


def test_runner_ends_a_module_that_runs_too_long() -> None:
    result = runner.run_module("bench_core", quick=True, timeout=0.05)
    assert result.error == "timed out after 0.05 s"
    assert result.rows == []
