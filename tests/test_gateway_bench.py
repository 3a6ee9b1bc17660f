"""The gateway benchmark's own smoke test: its rows, their raw figures, and LiteLLM beside them.

Never a timed assertion: the quick run checks that each row carries its own
level's figures and that a LiteLLM proxy, when one is named, is run against
the same upstream and reported beside the gateway. The stand-in "LiteLLM" here
is the floor proxy behind LiteLLM's command line (the real one takes a venv of
its own and 20 s to start; the benchmark never installs it).
"""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path

import pytest

from benchmarks import bench_gateway

ROOT = Path(bench_gateway.ROOT)


def _stand_in(tmp_path: Path) -> Path:
    """An executable taking LiteLLM's options that serves the floor proxy to its api_base."""
    script = tmp_path / "litellm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, re, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "args = sys.argv[1:]\n"
        "config = open(args[args.index('--config') + 1]).read()\n"
        "port = int(args[args.index('--port') + 1])\n"
        "assert args[args.index('--num_workers') + 1] == '1'\n"
        "assert os.environ['LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY'] == 'true'\n"
        "api_base = re.search(r'api_base: (\\S+)', config).group(1)\n"
        "assert 'model_name: m' in config\n"
        "import uvicorn\n"
        "from benchmarks.bench_gateway import floor_app\n"
        "uvicorn.run(floor_app(api_base), host='127.0.0.1', port=port, log_level='warning')\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_quick_run_reports_litellm_beside_the_gateway_and_each_rows_raw_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMOPS_BENCH_LITELLM", str(_stand_in(tmp_path)))
    rows = bench_gateway.run(quick=True)
    printed = capsys.readouterr().out
    assert "LiteLLM proxy: " + str(tmp_path / "litellm") in printed
    # Its figures are printed beside ours, at each level.
    assert re.search(r"LiteLLM proxy +4 streams: CPU +[\d.]+ us/chunk", printed)
    assert not re.search(r"LiteLLM proxy +1 streams", printed)  # only at its levels
    cpu = [r for r in rows if r.operator == "gateway: CPU per chunk"]
    versus = [r for r in rows if r.operator == "gateway: CPU per chunk vs LiteLLM"]
    assert [r.workload for r in cpu] == ["safe-chat, 1 streams", "safe-chat, 4 streams"]
    assert [r.workload for r in versus] == ["safe-chat, 4 streams"]
    assert all(r.target == 0.2 and r.baseline == "LiteLLM proxy, pass-through" for r in versus)
    for row in cpu + versus:
        # Each row's figures are its own level's: CPU over the chunks the upstream sent.
        found = re.match(
            r"CPU ([\d.]+) s \((\d+) ticks\) vs ([\d.]+) s \((\d+) ticks\), over (\d+) upstream",
            row.note,
        )
        assert found is not None, row.note
        ours, _, base, _, chunks = found.groups()
        assert int(chunks) > 0
        assert row.ours_s == pytest.approx(max(float(ours) / int(chunks), 1e-9), rel=0.01, abs=1e-8)
        assert row.baseline_s == pytest.approx(
            max(float(base) / int(chunks), 1e-9), rel=0.01, abs=1e-8
        )


def test_without_a_litellm_proxy_the_run_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STREAMOPS_BENCH_LITELLM", raising=False)
    monkeypatch.setattr(bench_gateway, "LITELLM_VENV", str(tmp_path / "none"))
    assert bench_gateway.litellm_executable() is None
    why = bench_gateway._litellm_status()
    assert why is not None
    assert "pip install 'litellm[proxy]'" in why
    monkeypatch.setenv("STREAMOPS_BENCH_LITELLM", str(_stand_in(tmp_path)))
    assert bench_gateway.litellm_executable() == str(tmp_path / "litellm")
