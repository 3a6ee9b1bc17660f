"""The gateway (`streamops serve`, safe-chat policy) against a minimal pass-through proxy.

Three processes on loopback: the fake upstream (`streamops fake-server`), the
proxy under test, and this client. For 1, 100 and 1,000 concurrent streaming
chat requests the client measures time to first token and the gaps between
chunks, once talking to the upstream directly and once through each proxy;
the proxy's CPU time (user + system, from /proc) is divided by the chunks it
streamed. The floor is a Starlette + httpx pass-through proxy with no policy
(``python -m benchmarks.bench_gateway --floor``). The LiteLLM proxy is run
beside them only when it is installed.

Targets (issue 19): CPU per chunk <= 1.5x the floor; added TTFT p99 <= 5 ms
at 100 streams. Also printed: added inter-chunk p99 and the largest tested
concurrency whose added inter-chunk p99 stays <= 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from benchmarks._common import BenchResult, format_table

SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def _process(args: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------
# the floor: a minimal pass-through proxy
# --------------------------------------------------------------------------


def floor_app(upstream: str) -> Any:
    """Starlette + httpx: forward the request, stream the bytes back, no policy."""
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=None))

    async def chat(request: Request) -> StreamingResponse:
        body = await request.body()
        req = client.build_request(
            "POST",
            upstream + "/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
        )
        answer = await client.send(req, stream=True)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                await answer.aclose()

        return StreamingResponse(relay(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


# --------------------------------------------------------------------------
# the client
# --------------------------------------------------------------------------


@dataclass
class Run:
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    chunks: int = 0
    errors: int = 0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drive(base_url: str, streams: int) -> Run:
    import httpx

    run = Run()
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one() -> None:
            start = time.perf_counter()
            last = None
            try:
                async with client.stream("POST", base_url + "/chat/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if not line.startswith("data: {"):
                            continue
                        if '"content":"' not in line or '"content":""' in line:
                            continue
                        now = time.perf_counter()
                        if last is None:
                            run.ttft.append(now - start)
                        else:
                            run.gaps.append(now - last)
                        last = now
                        run.chunks += 1
            except httpx.HTTPError:
                run.errors += 1

        await asyncio.gather(*(one() for _ in range(streams)))
    return run


def _client(base_url: str, streams: int) -> Run:
    return asyncio.run(_drive(base_url, streams))


# --------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------


@dataclass
class Figures:
    name: str
    streams: int
    cpu_per_chunk: float
    ttft_p50: float
    ttft_p99: float
    gap_p99: float
    errors: int


def _measure(name: str, url: str, pid: int | None, streams: int, direct: Run) -> Figures:
    _client(url, min(streams, 4))  # warm up connections and caches
    before = _cpu(pid) if pid else 0.0
    run = _client(url, streams)
    cpu = (_cpu(pid) - before) if pid else 0.0
    return Figures(
        name,
        streams,
        cpu / max(1, run.chunks),
        _pct(run.ttft, 0.5) - _pct(direct.ttft, 0.5),
        _pct(run.ttft, 0.99) - _pct(direct.ttft, 0.99),
        _pct(run.gaps, 0.99) - _pct(direct.gaps, 0.99),
        run.errors,
    )


def run(quick: bool = False) -> list[BenchResult]:
    """Measure the gateway and the floor at each concurrency; return the ratio rows."""
    levels = [1, 4] if quick else [1, 100, 1000]
    words = 8 if quick else 40
    reply = " ".join(["word"] * (words // 2)) + f" key {SECRET} " + " ".join(["end"] * (words // 2))
    delay = 0.005 if quick else 0.02
    py = sys.executable
    up_port, gw_port, floor_port = _free_port(), _free_port(), _free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    fake = [py, "-m", "streamops", "fake-server", "--port", str(up_port), "--reply", reply]
    fake += ["--delay", str(delay), "--chunking", "word"]
    gateway = [py, "-m", "streamops._gateway", "--upstream", upstream, "--policy", "safe-chat"]
    gateway += ["--port", str(gw_port)]
    floor = [py, "-m", "benchmarks.bench_gateway", "--floor", str(floor_port), upstream]
    results: dict[str, list[Figures]] = {"streamops serve": [], "floor": []}
    with (
        _process(fake, up_port),
        _process(gateway, gw_port) as gw,
        _process(floor, floor_port) as fl,
    ):
        for streams in levels:
            _client(upstream, min(streams, 4))
            direct = _client(upstream, streams)
            results["floor"].append(
                _measure("floor", f"http://127.0.0.1:{floor_port}/v1", fl.pid, streams, direct)
            )
            results["streamops serve"].append(
                _measure(
                    "streamops serve", f"http://127.0.0.1:{gw_port}/v1", gw.pid, streams, direct
                )
            )
    if importlib.util.find_spec("litellm") is None:
        print("LiteLLM proxy: not installed (pip install 'litellm[proxy]'); skipped")
    for name, figures in results.items():
        for f in figures:
            print(
                f"{name:>16} {f.streams:>5} streams: CPU {f.cpu_per_chunk * 1e6:8.1f} us/chunk;"
                f" added TTFT p50 {f.ttft_p50 * 1e3:7.2f} ms, p99 {f.ttft_p99 * 1e3:7.2f} ms;"
                f" added inter-chunk p99 {f.gap_p99 * 1e3:7.2f} ms; errors {f.errors}"
            )
    rows: list[BenchResult] = []
    ours, base = results["streamops serve"], results["floor"]
    for o, b in zip(ours, base, strict=True):
        rows.append(
            BenchResult(
                operator="gateway: CPU per chunk",
                workload=f"safe-chat, {o.streams} streams",
                ours_s=max(o.cpu_per_chunk, 1e-9),
                baseline_s=max(b.cpu_per_chunk, 1e-9),
                baseline="Starlette+httpx pass-through",
                target=1.5,
                unit="s/chunk",
            )
        )
    mid = ours[len(ours) // 2 if quick else 1]
    rows.append(
        BenchResult(
            operator="gateway: added TTFT p99",
            workload=f"safe-chat, {mid.streams} streams",
            ours_s=max(mid.ttft_p99, 1e-9),
            baseline_s=0.005,
            baseline="5 ms target",
            target=1.0,
            note=f"floor adds {base[ours.index(mid)].ttft_p99 * 1e3:.2f} ms",
        )
    )
    passing = [f.streams for f in ours if f.gap_p99 <= 0.05 and not f.errors]
    rows.append(
        BenchResult(
            operator="gateway: added inter-chunk p99",
            workload=f"safe-chat, {ours[-1].streams} streams",
            ours_s=max(ours[-1].gap_p99, 1e-9),
            baseline_s=max(base[-1].gap_p99, 1e-9),
            baseline="Starlette+httpx pass-through",
            target=None,
            note=f"largest tested concurrency with added p99 <= 50 ms: {max(passing, default=0)}",
        )
    )
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--floor":
        import uvicorn

        uvicorn.run(
            floor_app(sys.argv[3]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning"
        )
    else:
        print(format_table(run(quick="--quick" in sys.argv)))
        print(json.dumps({"note": "see docs/gateway.md for how to read these figures"}))
