"""`streamops serve` as a process: --help, errors at start, metrics, logs, budgets in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import (
    close_sdk_clients,  # noqa: F401 - the fixture, used by pytestmark
    keys_file,
)
from redis_server import running_redis

import streamops as so
from streamops._gateway import cli_main, load_config
from streamops._gateway._thread import GatewayServer
from streamops.testing import FakeOpenAIServer

pytestmark = pytest.mark.usefixtures("close_sdk_clients")

USER: Any = [{"role": "user", "content": "hi"}]
SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------


def test_serve_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--upstream", "--policy", "--port", "--host", "--keys", "--redis"):
        assert option in out
    for option in ("--workers", "--anthropic-upstream", "--playground"):
        assert option in out


def test_serve_help_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamops._gateway", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "usage: streamops serve" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "ftp://x/v1"], "expected an http:// or https:// URL"),
        (["--upstream", "http://127.0.0.1:9"], "ends in /v1"),
        (["--upstream", "http://h:99999/v1"], "out of range"),
        (["--policy", "no-such-preset"], "--policy"),
        (["--redis", "http://localhost"], "--redis"),
        (["--workers", "0"], "--workers"),
        (["--redis-timeout", "0"], "--redis-timeout"),
        (["--redis", "redis+sentinel://s1:26379"], "name the master"),
    ],
)
def test_bad_options_fail_at_start(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"--upstream": "http://127.0.0.1:9/v1", "--policy": "safe-chat"}
    argv: list[str] = []
    given = dict(zip(args[::2], args[1::2], strict=True))
    for option, value in {**base, **given}.items():
        argv += [option, value]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamops serve: error: ")
    assert message in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[keys.a\n", "invalid TOML"),
        ("[keys.a]\nsha256 = 'abc'\n", "expected 64 hex digits"),
        ("[keys.a]\nsha256 = '" + "0" * 64 + "'\ncolour = 1\n", "unknown field(s) ['colour']"),
        ("[keys.a]\nsha256 = '" + "0" * 64 + "'\ndaily_tokens = -5\n", "daily_tokens"),
        ("[keys.a]\nsha256 = '" + "0" * 64 + "'\ndaily_cost = 0\n", "keys.a.daily_cost"),
        ("[keys.a]\nsha256 = '" + "0" * 64 + "'\ndaily_cost = 'ten'\n", "positive number"),
        (
            "[keys.a]\nsha256 = '" + "0" * 64 + "'\ndaily_cost = 1.5\ndaily_tokens = 9\n",
            "daily_tokens and daily_cost cannot combine",
        ),
        ("[keys.a]\nsha256 = '" + "0" * 64 + "'\npolicy = 'nope.toml'\n", "keys.a.policy"),
        ("", "no keys"),
    ],
)
def test_bad_keys_file_fails_at_start(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    argv = ["--upstream", "http://127.0.0.1:9/v1", "--policy", "safe-chat", "--keys", str(path)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert f"--keys {path}" in err
    assert message in err


def test_missing_keys_file_and_bad_policy_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--upstream", "http://127.0.0.1:9/v1", "--policy", "safe-chat"]
    assert cli_main([*argv, "--keys", str(tmp_path / "none.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "p.toml"
    bad.write_text("[budget]\nmax_tokens = 'many'\n")
    assert cli_main(["--upstream", "http://127.0.0.1:9/v1", "--policy", str(bad)]) == 2
    assert "budget.max_tokens" in capsys.readouterr().err


def test_unreachable_redis_fails_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    from redis_server import unused_port

    argv = ["--upstream", "http://127.0.0.1:9/v1", "--policy", "safe-chat"]
    assert cli_main([*argv, "--redis", f"redis://127.0.0.1:{unused_port()}/0"]) == 2
    assert "cannot reach Redis" in capsys.readouterr().err


# --------------------------------------------------------------------------
# gateway processes
# --------------------------------------------------------------------------


READY_SECONDS = 120  # a loaded 2-core CI machine can take long to import and start


def wait_healthy(root: str, proc: subprocess.Popen[str] | None = None) -> None:
    """Poll ``root/healthz`` until 200; fail (not hang) after READY_SECONDS."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with status {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(root + "/healthz", timeout=10).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{root}/healthz did not answer 200 within {READY_SECONDS}s")


@contextlib.contextmanager
def serve_process(
    *args: str, port: int = 0, log: list[str] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """Run `python -m streamops._gateway ARGS --port PORT`; yield its base URL and banner.

    Returns only once ``/healthz`` answers 200 (the lifespan has connected to
    Redis), however slow the machine: readiness is waited for, never assumed.
    After the banner, stderr is drained by a thread (into ``log``), so the
    per-request log lines never fill the pipe and stall the gateway.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamops._gateway", *args, "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        banner: list[str] = []
        url = None
        while url is None:
            line = proc.stderr.readline()  # returns "" (EOF) if the process exits
            if not line:
                proc.wait(timeout=30)
                raise RuntimeError(f"the gateway exited: {''.join(banner)}")
            banner.append(line)
            found = re.search(r"listening on (http://\S+/v1)", line)
            if found:
                url = found.group(1)
        for _ in range(4):
            banner.append(proc.stderr.readline())
        sink = log if log is not None else []
        drain = threading.Thread(target=lambda: sink.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
        drain.start()
        wait_healthy(url.removesuffix("/v1"), proc)
        yield url, banner
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_without_redis_the_banner_says_state_is_per_process() -> None:
    with (
        FakeOpenAIServer("hello") as up,
        serve_process("--upstream", up.base_url, "--policy", "safe-chat") as (url, banner),
    ):
        text = "".join(banner)
        assert "per-process memory" in text
        assert "--redis" in text
        reply = openai.OpenAI(base_url=url, api_key="x", max_retries=0).chat.completions.create(
            model="m", messages=USER
        )
        assert reply.choices[0].message.content == "hello"


ANSWER = " ".join(f"w{i}" for i in range(40))  # 80 tokens: "w", digits


def drain(urls: list[str], api_key: str, *, limit: int) -> tuple[int, int]:
    """Stream requests one at a time, alternating ``urls``, until one is refused with 429.

    Returns the tokens they delivered and the requests made. One at a time, nothing is held in
    another stream's reservation: each request gets what is left (cut
    exactly with a ``length`` finish), and the refusal comes only once the
    whole budget is spent.
    """
    delivered = 0
    for attempt in range(limit + 2):
        client = openai.OpenAI(base_url=urls[attempt % len(urls)], api_key=api_key, max_retries=0)
        try:
            stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        except openai.RateLimitError:
            return delivered, attempt + 1
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        delivered += so.count_tokens(text)
    raise AssertionError("never refused")


def test_two_gateway_processes_on_one_redis_enforce_one_daily_budget(tmp_path: Path) -> None:
    limit = 200
    keys = keys_file(tmp_path, team={"key": "sk-team", "daily_tokens": limit})
    model = so.FakeStreamingModel(ANSWER, format="openai-dict", chunking="word", delay=0.002)
    per_answer = so.count_tokens(ANSWER)
    with running_redis() as redis_url, FakeOpenAIServer(model) as up:
        args = ["--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys]
        # A loaded machine may stall a Redis round trip for seconds: the default
        # 1 s would then fail a request closed (503), which is not what this test is about.
        args += ["--redis", redis_url, "--redis-timeout", "30"]
        with serve_process(*args) as (one, banner), serve_process(*args) as (two, _):
            assert "state: redis at" in "".join(banner)

            async def answer(url: str) -> int:
                async with openai.AsyncOpenAI(base_url=url, api_key="sk-team", max_retries=0) as c:
                    try:
                        stream = await c.chat.completions.create(
                            model="m", messages=USER, stream=True
                        )
                    except openai.RateLimitError:
                        return -1
                    text = "".join(
                        [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
                    )
                    return so.count_tokens(text)

            async def main() -> list[int]:
                return await asyncio.gather(*(answer(u) for u in [one, two] * 4))

            delivered = asyncio.run(main())
            total = sum(n for n in delivered if n > 0)
            # Spend = tokens delivered, shared across both processes: never over the limit.
            assert total <= limit
            assert any(n == -1 or n < per_answer for n in delivered)  # someone was cut or refused
            # Concurrent streams hold reservations they may refund at their end, after
            # another stream was cut; one at a time, what is left is spent to the token
            # and only then refused: the budget is spent whole, not refused early.
            total += drain([one, two], "sk-team", limit=limit)[0]
            assert total == limit

            async def spent() -> int:
                ledger = so.RedisLedger.from_url(
                    redis_url,
                    limit=limit,
                    window="day",
                    prefix="streamops:gateway:{team}:budget:",
                    timeout=30,
                )
                try:
                    return await ledger.spent("team")
                finally:
                    await ledger.client.aclose()

            assert asyncio.run(spent()) == total
            # Once spent, both processes refuse before calling the upstream.
            before = up.requests
            for url in (one, two):
                with pytest.raises(openai.RateLimitError):
                    openai.OpenAI(
                        base_url=url, api_key="sk-team", max_retries=0
                    ).chat.completions.create(model="m", messages=USER)
            assert up.requests == before


# --------------------------------------------------------------------------
# metrics and the log line
# --------------------------------------------------------------------------


def test_metrics_and_one_log_line_per_request_without_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = keys_file(tmp_path, team={"key": "sk-team"})
    prompt = "my password is hunter2, mail me at bob@example.com"
    answer = f"The key is {SECRET}, reach ann@example.com."
    model = so.FakeStreamingModel(answer, format="openai-dict", chunking=4)
    with FakeOpenAIServer(model) as up:
        config = load_config(
            ["--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys, "--port", "0"]
        )
        with GatewayServer(config) as gw, caplog.at_level(logging.INFO, "streamops.gateway"):
            client = openai.OpenAI(base_url=gw.base_url, api_key="sk-team", max_retries=0)
            list(
                client.chat.completions.create(
                    model="m",
                    messages=[{"role": "user", "content": prompt}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(
                    base_url=gw.base_url, api_key="sk-nope", max_retries=0
                ).chat.completions.create(model="m", messages=USER)
            metrics = httpx.get(gw.root_url + "/metrics").text
    assert (
        'streamops_gateway_requests_total{key="team",route="chat.completions",status="200"} 1.0'
        in metrics
    )
    assert (
        'streamops_gateway_requests_total{key="-",route="chat.completions",status="401"} 1.0'
        in metrics
    )
    stops = 'streamops_gateway_stream_stops_total{key="team",reason="complete",'
    assert stops + 'route="chat.completions"} 1.0' in metrics
    assert 'streamops_gateway_redactions_total{direction="output",rule="openai_key"} 1.0' in metrics
    assert "streamops_gateway_ttft_seconds_bucket" in metrics
    assert "streamops_gateway_added_ttft_seconds_count" in metrics
    assert 'streamops_gateway_active_streams{route="chat.completions"} 0.0' in metrics
    assert "streamops_gateway_tokens_out_total" in metrics
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "streamops.gateway"]
    assert len(lines) == 2
    ok, refused = lines
    assert ok["status"] == 200
    assert ok["key"] == "team"
    assert ok["report"]["stop_reason"] == "complete"
    assert ok["report"]["redacted"] == {"openai_key": 1, "email": 1}
    assert ok["report"]["tokens_out"] > 0
    assert refused["status"] == 401
    assert refused["rejected"] == "unauthenticated"
    logged = json.dumps(lines)
    for text in ("hunter2", "bob@example.com", SECRET, "ann@example.com", "sk-team"):
        assert text not in logged


# --------------------------------------------------------------------------
# --workers N: several processes on one port, budgets in Redis, one /metrics
# --------------------------------------------------------------------------


def test_workers_share_the_port_the_budget_and_the_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis_server import unused_port

    limit = 400
    keys = keys_file(tmp_path, team={"key": "sk-team", "daily_tokens": limit})
    model = so.FakeStreamingModel(ANSWER, format="openai-dict", chunking="word", delay=0.005)
    per_answer = so.count_tokens(ANSWER)
    log: list[str] = []
    env_dir = tmp_path / "metrics"
    env_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(env_dir))
    with running_redis() as redis_url, FakeOpenAIServer(model) as up:
        args = ["--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys]
        args += ["--redis", redis_url, "--redis-timeout", "30", "--workers", "2"]
        with serve_process(*args, port=unused_port(), log=log) as (url, banner):
            assert "workers: 2" in "".join(banner)
            # Both workers ready (each logs its start-up once warmed), not only the one
            # /healthz reached: on a loaded machine the other may still be warming up.
            deadline = time.monotonic() + READY_SECONDS
            while sum(line.startswith('{"event":"startup"') for line in log) < 2:
                assert time.monotonic() < deadline, "a worker never finished its start-up"
                time.sleep(0.05)

            async def answer(client: httpx.AsyncClient) -> int:
                body = {"model": "m", "messages": USER, "stream": True}
                # A fresh connection per request, so the kernel may hand it to either worker.
                headers = {"authorization": "Bearer sk-team", "connection": "close"}
                async with client.stream(
                    "POST", url + "/chat/completions", json=body, headers=headers
                ) as r:
                    if r.status_code == 429:
                        return -1
                    assert r.status_code == 200
                    text = ""
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            for choice in json.loads(line[6:])["choices"]:
                                text += choice["delta"].get("content") or ""
                    return so.count_tokens(text)

            async def main() -> list[int]:
                async with httpx.AsyncClient(timeout=120) as client:
                    return await asyncio.gather(*(answer(client) for _ in range(12)))

            delivered = asyncio.run(main())
            total = sum(n for n in delivered if n > 0)
            assert total <= limit, delivered
            assert any(n == -1 or n < per_answer for n in delivered)
            drained, more = drain([url], "sk-team", limit=limit)
            total += drained
            assert total == limit
            requests = 12 + more
            deadline = time.monotonic() + READY_SECONDS
            while sum('"event":"request"' in line for line in log) < requests:
                assert time.monotonic() < deadline, "log lines missing"
                time.sleep(0.05)
            workers = {json.loads(x)["worker"] for x in log if '"event":"request"' in x}
            # Workers accept from one shared socket: the one that wakes first takes
            # every connection queued then (a burst may all go to one). Refused
            # requests one at a time, each a new connection, until the other answers.
            for _ in range(200):
                if len(workers) == 2:
                    break
                refused = httpx.post(
                    url + "/chat/completions",
                    json={"model": "m", "messages": USER, "stream": True},
                    headers={"authorization": "Bearer sk-team", "connection": "close"},
                    timeout=30,
                )
                assert refused.status_code == 429
                requests += 1
                while sum('"event":"request"' in line for line in log) < requests:
                    assert time.monotonic() < deadline + READY_SECONDS, "log lines missing"
                    time.sleep(0.01)
                workers = {json.loads(x)["worker"] for x in log if '"event":"request"' in x}
            assert len(workers) == 2, f"one worker served everything: {workers}"
            # Any worker's /metrics sums every worker's counters.
            for _ in range(6):
                metrics = httpx.get(
                    url.removesuffix("/v1") + "/metrics",
                    headers={"connection": "close"},
                    timeout=30,
                ).text
                served = sum(
                    float(m.group(1))
                    for m in re.finditer(
                        r'^streamops_gateway_requests_total\{key="team",[^}]*\} (\S+)$',
                        metrics,
                        re.M,
                    )
                )
                assert served == requests
                assert "streamops_gateway_active_streams" in metrics
                tokens = re.search(
                    r'^streamops_gateway_tokens_out_total\{key="team"\} (\S+)$', metrics, re.M
                )
                assert tokens is not None
                assert float(tokens.group(1)) == total


def test_workers_listen_on_a_socket_with_tcp_nodelay(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The socket the workers share has TCP_NODELAY (their accepted sockets inherit it).

    Without it a stream's headers and first chunk, written back to back, wait
    for the client's delayed ACK. The supervisor is replaced by one that
    records the sockets it is given and starts no worker.
    """
    import socket

    import uvicorn.supervisors
    from redis_server import unused_port

    given: list[socket.socket] = []

    class Supervisor:
        def __init__(self, config: Any, sockets: list[socket.socket], **_: Any) -> None:
            given.extend(sockets)

        def run(self) -> None:
            (sock,) = given
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert sock.get_inheritable()  # the workers are spawned: they inherit it
            assert sock.getsockname()[1] == port

    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", Supervisor)
    # uvicorn.run's own name for it (the package's ``main`` attribute is its command).
    monkeypatch.setattr(sys.modules["uvicorn.main"], "Multiprocess", Supervisor)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("STREAMOPS_GATEWAY_ARGV", raising=False)  # set for the workers
    port = unused_port()
    argv = ["--upstream", "http://127.0.0.1:9/v1", "--policy", "safe-chat", "--workers", "2"]
    assert cli_main([*argv, "--port", str(port)]) == 0
    assert len(given) == 1
    assert given[0].fileno() == -1  # closed once the workers are gone


def test_workers_remove_the_metrics_directory_they_made_at_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis_server import unused_port

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the gateway's mkdtemp puts it
    with FakeOpenAIServer(so.FakeStreamingModel(ANSWER, format="openai-dict")) as up:
        args = ["--upstream", up.base_url, "--policy", "safe-chat", "--workers", "2"]
        with serve_process(*args, port=unused_port()) as (url, _):
            body = {"model": "m", "messages": USER}
            assert httpx.post(url + "/chat/completions", json=body, timeout=60).status_code == 200
            made = list(tmp_path.glob("streamops-metrics-*"))
            assert len(made) == 1
            assert any(made[0].iterdir())  # the workers' metric files
    assert not made[0].exists()


def test_a_serving_process_warms_its_pipelines_and_freezes_its_start_up_heap(
    tmp_path: Path,
) -> None:
    blocking = tmp_path / "block.toml"
    blocking.write_text('[redact]\npatterns = ["email"]\naction = "block"\n', encoding="utf-8")
    keys = keys_file(
        tmp_path,
        a={"key": "ka", "policy": str(blocking)},
        b={"key": "kb", "daily_tokens": 100},
        c={"key": "kc", "daily_cost": 1.0},  # a pipeline per model: built on first use
    )
    log: list[str] = []
    with (
        FakeOpenAIServer("hello") as up,
        serve_process(
            "--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys, log=log
        ) as (url, _),
    ):
        reply = openai.OpenAI(base_url=url, api_key="ka", max_retries=0).chat.completions.create(
            model="m", messages=USER
        )
        assert reply.choices[0].message.content == "hello"
    startup = [json.loads(line) for line in log if line.startswith('{"event":"startup"')]
    assert len(startup) == 1
    # Two policies (safe-chat and the blocking one), three wires each; the blocking
    # policy's warm-up answer is blocked, which is its decision, not a start-up failure.
    assert startup[0]["warmed"] == 6
    assert startup[0]["frozen"] > 10_000
    assert startup[0]["gc_young"] == 5000  # the youngest generation's threshold, set with it
    # uvicorn's pick of event loop: uvloop wherever the gateway extra installed it.
    assert startup[0]["loop"] == ("uvloop" if importlib.util.find_spec("uvloop") else "asyncio")
