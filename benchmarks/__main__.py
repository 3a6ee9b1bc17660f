"""Run every benchmark and print one ratio table: ``python -m benchmarks``.

Each ``benchmarks/bench_*.py`` module (found at run time) runs in a fresh
Python process, one after another: one module's heap, GC state and warm
caches cannot disturb the next one's timings, and a module that crashes or
hangs becomes an error line in the report instead of ending the run. The
child writes its rows as JSON to a temporary file (stdout stays free for
whatever the module prints).

A full run writes ``benchmarks/results/latest.json`` and ``latest.md`` (the
table with the machine it ran on, also copied into ``docs/benchmarks.md``) and
appends the run to ``benchmarks/results/history.jsonl`` (``--only`` runs: the
history only). ``--json PATH`` writes the run there and nothing else;
``--quick`` runs tiny workloads and saves nothing unless ``--json`` is
given. The exit status is 1 when a module failed to run; a ratio over its
target is reported, not fatal (timings on a shared machine are evidence, not a
gate).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import os
import pkgutil
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._common import HEADER, BenchResult, cells, format_table

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
RESULTS = PACKAGE / "results"
HISTORY = RESULTS / "history.jsonl"
DOCS = ROOT / "docs" / "benchmarks.md"
# Per module: a full run of every module must fit in 5 minutes on 2 cores.
DEFAULT_TIMEOUT = {False: 240.0, True: 60.0}


@dataclass
class ModuleRun:
    """What one benchmark module produced in its own process."""

    name: str
    rows: list[BenchResult] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float | None = None
    max_rss_mib: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": None if self.cpu_s is None else round(self.cpu_s, 3),
            "max_rss_mib": self.max_rss_mib,
            "error": self.error,
            "rows": [r.as_dict() for r in self.rows],
        }


def discover() -> list[str]:
    """Return the names of the benchmark modules (``bench_*``), sorted."""
    return sorted(
        m.name for m in pkgutil.iter_modules([str(PACKAGE)]) if m.name.startswith("bench_")
    )


def run_module(name: str, *, quick: bool, timeout: float) -> ModuleRun:
    """Run ``benchmarks.<name>`` in a fresh interpreter; never raises for the module's faults."""
    with tempfile.TemporaryDirectory(prefix="streamops-bench-") as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "benchmarks", "--child", name, "--out", str(out)]
        if quick:
            cmd.append("--quick")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        start = time.perf_counter()
        # A session of its own, so that a timeout also ends the interpreters the
        # module started (bench_scale measures in children): none may outlive it
        # and slow down the next module.
        with subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return ModuleRun(
                    name, wall_s=time.perf_counter() - start, error=f"timed out after {timeout:g} s"
                )
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not out.exists():
            lines = (stderr or stdout).strip().splitlines()
            tail = " | ".join(lines[-3:]) or "no output"
            return ModuleRun(name, wall_s=wall, error=f"exit status {proc.returncode}: {tail}")
        data = json.loads(out.read_text(encoding="utf-8"))
    return ModuleRun(
        name,
        [BenchResult.from_dict(row) for row in data["rows"]],
        wall_s=wall,
        cpu_s=data["cpu_s"],
        max_rss_mib=data["max_rss_mib"],
    )


_WHO = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _child(name: str, out: Path, *, quick: bool) -> int:
    """The child's side: import the module, run it, write its rows as JSON."""
    module = importlib.import_module(f"benchmarks.{name}")
    # CPU of this process and of any interpreter the module starts itself.
    start = time.process_time() + _children_cpu()
    rows = module.run(quick=quick)
    cpu = time.process_time() + _children_cpu() - start
    if not isinstance(rows, list) or not all(isinstance(r, BenchResult) for r in rows):
        raise TypeError(f"{name}.run() must return a list of BenchResult, got {rows!r:.200}")
    data = {
        "rows": [r.as_dict() for r in rows],
        "cpu_s": cpu,
        # ru_maxrss is in KiB on Linux: the peak of this child, or of the largest
        # interpreter it started (bench_scale measures in children).
        "max_rss_mib": round(max(resource.getrusage(who).ru_maxrss for who in _WHO) / 1024, 1),
    }
    out.write_text(json.dumps(data), encoding="utf-8")
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """Describe the machine and the moment: the context every ratio needs."""
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        commit = done.stdout.strip() or None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit,
    }


def markdown(record: dict[str, Any]) -> str:
    """Render a run record as the Markdown table of ``results/latest.md``."""
    m = record["machine"]
    rows = [BenchResult.from_dict(r) for mod in record["modules"] for r in mod["rows"]]
    lines = [
        "# Benchmark results (latest run)",
        "",
        f"- Date: {m['date']} (commit {m['commit'] or 'unknown'})",
        f"- CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable),"
        f" load average {m['load_avg_1m']} at start",
        f"- Python: {m['python']} on {m['platform']}",
        f"- Whole run: {record['total_s']:.0f} s wall"
        + (" (quick workloads)" if record["quick"] else ""),
        "",
        "Times are best-of runs, in CPU time for most modules (each module's docstring"
        " says how it times); the ratio is streamops over the baseline measured in the"
        " same run on the same data (memory rows: the share of the budget used).",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
    notes = [f"- {r.operator} / {r.workload}: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", "| module | wall | CPU | peak RSS | status |", "|---|---|---|---|---|"]
    for mod in record["modules"]:
        cpu = "-" if mod["cpu_s"] is None else f"{mod['cpu_s']:.1f} s"
        rss = "-" if mod["max_rss_mib"] is None else f"{mod['max_rss_mib']:.0f} MiB"
        status = mod["error"] or "ok"
        lines.append(f"| {mod['name']} | {mod['wall_s']:.1f} s | {cpu} | {rss} | {status} |")
    return "\n".join(lines) + "\n"


def _names(only: list[str] | None, parser: argparse.ArgumentParser) -> list[str]:
    found = discover()
    if not only:
        return found
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in only]
    unknown = [n for n in wanted if n not in found]
    if unknown:
        parser.error(f"no benchmark module {', '.join(unknown)}; found: {', '.join(found)}")
    return wanted


def _update_docs(table: str) -> None:
    """Copy the latest table into docs/benchmarks.md, between its two markers."""
    start, end = "<!-- latest-table: start -->\n", "<!-- latest-table: end -->"
    if not DOCS.exists():
        return
    text = DOCS.read_text(encoding="utf-8")
    if start not in text or end not in text:
        return
    body = table.split("\n", 2)[2]  # without the page title
    head, rest = text.split(start, 1)
    DOCS.write_text(head + start + body + rest[rest.index(end) :], encoding="utf-8")


def _save(record: dict[str, Any], args: argparse.Namespace) -> None:
    """Write the run where the options say (see the module docstring)."""
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        return
    if args.quick:
        return
    RESULTS.mkdir(exist_ok=True)
    if not args.only:  # latest.* always show a whole table
        (RESULTS / "latest.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        table = markdown(record)
        (RESULTS / "latest.md").write_text(table, encoding="utf-8")
        _update_docs(table)
    if not args.no_history:
        with HISTORY.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; print the table; return the exit status (1 if a module failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run every streamops benchmark, each in its own process, and print one"
        " table of ratios against baselines measured in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny workloads (a smoke test)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this module (core or bench_core); repeatable",
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="write the run as JSON here (and nothing else)"
    )
    parser.add_argument(
        "--label", default="", help="a note stored with the run (e.g. 'before fix')"
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds allowed per module (default 240, quick 60)"
    )
    parser.add_argument("--no-history", action="store_true", help="do not append to history")
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        return _child(args.child, args.out, quick=args.quick)
    names = _names(args.only, parser)
    if args.list:
        print("\n".join(names))
        return 0

    timeout = args.timeout or DEFAULT_TIMEOUT[args.quick]
    info = machine()
    start = time.perf_counter()
    runs: list[ModuleRun] = []
    for name in names:
        print(f"{name} ...", end=" ", file=sys.stderr, flush=True)
        result = run_module(name, quick=args.quick, timeout=timeout)
        print(f"{result.wall_s:.1f} s{' FAILED' if result.error else ''}", file=sys.stderr)
        runs.append(result)
    total = time.perf_counter() - start

    record = {
        "date": info["date"],
        "label": args.label,
        "quick": args.quick,
        "only": args.only,
        "machine": info,
        "total_s": round(total, 1),
        "modules": [r.as_dict() for r in runs],
    }
    print(format_table([row for r in runs for row in r.rows]))
    print()
    for r in runs:
        cpu = "" if r.cpu_s is None else f", {r.cpu_s:.1f} s CPU"
        print(f"{r.name}: {r.wall_s:.1f} s wall{cpu}" + (f"  ERROR {r.error}" if r.error else ""))
    print(f"total: {total:.1f} s on {info['cpu']} ({info['cores']} cores), {info['python']}")

    _save(record, args)
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
