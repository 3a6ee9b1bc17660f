"""Thousands of concurrent streams in one event loop: CPU per chunk and memory per stream.

N streams (1,000 and 10,000; 20 in one process when quick) from ``FakeStreamingModel`` with
zero delay (each chunk still yields to the loop once, as real I/O does), each
of 200 chunks, through the ``safe-chat`` preset pipeline (timeout, redaction,
budget, collector), all started at once with ``asyncio.gather`` in one loop.
Until the preset exists the equivalent pipeline is built by hand (the note
says which one ran).

- **CPU per chunk**: process CPU time of the N concurrent streams over the
  same streams run one at a time (sequentially), per chunk. Target <= 1.3x.
  The sequential baseline runs 250 streams (50,000 chunks; quick: 20): one
  stream at a time costs the same per chunk however many follow it. GC stays on in
  both: collections that walk every live stream are part of what concurrency
  costs.
- **Memory per stream**: peak RSS growth of the N concurrent pipelines, minus
  that of N concurrent bare fake-model streams (the baseline: model, task,
  consumer), minus the text the collectors hold, divided by N. Target <=
  32 KiB. The row shows it against the 32 KiB budget (ratio = share used).

Every measurement runs in a fresh interpreter, so allocator state left by one
cannot shrink or inflate the next one's peak.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import streamops as so
from streamops.testing import FakeReply

from ._common import BenchResult, format_table

CHUNKS = 200
SEQUENTIAL = 250  # streams in the sequential baseline (50,000 chunks)
MAX_TOKENS = 4_096  # far above a 200-chunk reply: the budget counts, never cuts
_ROOT = Path(__file__).resolve().parent.parent
_TEXT = (
    "Sure, here is a summary of the report: the service handled the load well, latency"
    " stayed low and the error rate was under one percent for the whole week"
)


def reply_chunks() -> list[str]:
    """A 200-chunk chat reply, one word per chunk, with one e-mail address to redact."""
    words = _TEXT.split()
    chunks = [" " + words[i % len(words)] for i in range(CHUNKS)]
    chunks[CHUNKS // 2] = " ops@example.com"
    return chunks


def pipeline() -> tuple[so.Operator[Any, Any], str]:
    """The ``safe-chat`` preset, or its hand-built equivalent while the preset is missing."""
    try:
        op: so.Operator[Any, Any] = so.Policy.preset("safe-chat").build()
    except Exception as exc:  # a preset still in progress may fail in any way
        fallback = (
            so.timeout(idle=30.0, total=600.0)
            | so.redact()
            | so.budget(max_tokens=MAX_TOKENS)
            | so.collect()
        )
        return fallback, f"timeout|redact|budget|collect by hand (preset: {exc!r:.80})"
    return op, "safe-chat preset"


async def _drain(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        pass


def _rss() -> int:
    """Current resident set size in bytes."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    """Peak resident set size in bytes (since the last reset, where Linux allows one)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            found = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        if found:
            return int(found.group(1)) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure(streams: int, *, piped: bool, concurrent: bool) -> dict[str, Any]:
    """Run ``streams`` streams once; return CPU seconds, peak RSS growth and text bytes.

    Meant to run in a fresh interpreter (see :func:`run`).
    """
    chunks = reply_chunks()
    op, label = pipeline()
    model = so.FakeStreamingModel(FakeReply(chunks=chunks))

    def open_stream() -> AsyncIterator[Any]:
        source = model.astream()
        return op(source) if piped else source

    async def concurrently() -> None:
        await asyncio.gather(*(_drain(open_stream()) for _ in range(streams)))

    async def one_by_one() -> None:
        for _ in range(streams):
            await _drain(open_stream())

    async def warm_up() -> int:
        # Lazy encodings, compiled patterns and the loop's own structures are
        # allocated here, before the peak is reset. Returns the bytes of the
        # text one collector holds that are not the source's own chunk objects.
        stream = open_stream()
        text = "".join([piece async for piece in stream])
        if not piped:
            return 0
        assert "ops@example.com" not in text, f"{label} did not redact the e-mail address"
        source_ids = {id(c) for c in chunks}
        held = so.Collected.of(stream).chunks  # type: ignore[arg-type]
        return sum(sys.getsizeof(c) for c in held if id(c) not in source_ids)

    loop = asyncio.new_event_loop()
    try:
        text_bytes = loop.run_until_complete(warm_up())
        model.calls.clear()
        gc.collect()
        try:  # reset the kernel's peak-RSS mark (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
        except OSError:
            pass
        start_rss = _rss()
        start = time.process_time()
        loop.run_until_complete(concurrently() if concurrent else one_by_one())
        cpu = time.process_time() - start
        peak = _peak_rss() - start_rss
    finally:
        loop.close()
    pulled = sum(call.pulled for call in model.calls)
    assert pulled == streams * CHUNKS, f"expected {streams * CHUNKS} chunks, pulled {pulled}"
    return {"cpu_s": cpu, "peak_bytes": peak, "text_bytes": text_bytes, "pipeline": label}


def _measure_in_child(streams: int, *, piped: bool, concurrent: bool) -> dict[str, Any]:
    code = (
        "import json, sys; from benchmarks.bench_scale import measure; "
        f"print(json.dumps(measure({streams}, piped={piped}, concurrent={concurrent})))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scale measurement failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool = False) -> list[BenchResult]:
    """Measure N concurrent streams against one-at-a-time; return time and memory rows."""
    sizes = (20,) if quick else (1_000, 10_000)
    sequential_n = 20 if quick else SEQUENTIAL
    # Quick runs are a smoke test: in-process, skipping three interpreter start-ups.
    measure_one = measure if quick else _measure_in_child
    seq = measure_one(sequential_n, piped=True, concurrent=False)
    seq_per_chunk = seq["cpu_s"] / (sequential_n * CHUNKS)
    rows: list[BenchResult] = []
    for n in sizes:
        bare = measure_one(n, piped=False, concurrent=True)
        ours = measure_one(n, piped=True, concurrent=True)
        chunks = n * CHUNKS
        per_chunk = ours["cpu_s"] / chunks
        workload = f"{n:,} streams x {CHUNKS} chunks"
        rows.append(
            BenchResult(
                "scale: CPU per chunk",
                workload,
                per_chunk,
                seq_per_chunk,
                f"1 stream at a time, {sequential_n:,} streams",
                1.3,
                unit="s/chunk",
                note=f"{ours['pipeline']}; concurrent {per_chunk * 1e6:.1f} us/chunk"
                f" ({ours['cpu_s']:.1f} s CPU for {chunks:,} chunks), sequential"
                f" {seq_per_chunk * 1e6:.1f} us/chunk; bare fake streams alone"
                f" {bare['cpu_s'] / chunks * 1e6:.1f} us/chunk concurrently",
            )
        )
        per_stream = (ours["peak_bytes"] - bare["peak_bytes"] - n * ours["text_bytes"]) / n
        rows.append(
            BenchResult(
                "scale: memory per stream",
                f"{n:,} concurrent streams",
                per_stream,
                32 * 1024,
                "32 KiB budget",
                1.0,
                unit="B",
                note=f"peak RSS growth {ours['peak_bytes'] / 2**20:.1f} MiB with the pipeline,"
                f" {bare['peak_bytes'] / 2**20:.1f} MiB bare; text held by the collectors"
                f" {ours['text_bytes']:,} B per stream (subtracted)",
            )
        )
    return rows


if __name__ == "__main__":
    print(format_table(run()))
