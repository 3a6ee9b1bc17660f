"""`--redis` URLs: standalone, Sentinel and Cluster, validated at start and really served.

The Sentinel and Cluster tests run real `redis-server` processes (a Sentinel
watching a primary; a one-node Cluster owning every slot), so the URL
handling, the hash-tagged keys and the ledger's multi-key scripts are proved
against the servers, not only parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import close_sdk_clients  # noqa: F401 - the fixture, used by pytestmark
from redis_server import running_redis, unused_port

from streamops._gateway import GatewayKey, load_config
from streamops._gateway._config import GatewayConfigError, RedisTarget
from streamops._gateway._state import State, close_client, redis_client

pytestmark = pytest.mark.usefixtures("close_sdk_clients")

BASE = ["--upstream", "http://127.0.0.1:9/v1", "--policy", "safe-chat"]


@pytest.mark.parametrize(
    ("url", "kind", "hosts", "service", "db"),
    [
        ("redis://localhost:6379/0", "standalone", (), None, 0),
        ("rediss://:pw@cache.internal:6380/2", "standalone", (), None, 0),
        ("unix:///run/redis.sock?db=1", "standalone", (), None, 0),
        ("redis+sentinel://s1", "sentinel", None, None, 0),
        ("redis+sentinel://s1/main", "sentinel", (("s1", 26379),), "main", 0),
        ("redis+sentinel://s1:1,s2:2/main/3", "sentinel", (("s1", 1), ("s2", 2)), "main", 3),
        ("rediss+sentinel://[::1]:26380/m", "sentinel", (("::1", 26380),), "m", 0),
        ("redis+cluster://n1:7000,n2", "cluster", (("n1", 7000), ("n2", 6379)), None, 0),
        ("redis+cluster://n1:7000/0", "cluster", (("n1", 7000),), None, 0),
    ],
)
def test_redis_urls_parse(
    url: str, kind: str, hosts: tuple[tuple[str, int], ...] | None, service: str | None, db: int
) -> None:
    if hosts is None:  # a Sentinel URL must name its master
        with pytest.raises(GatewayConfigError, match="name the master"):
            RedisTarget.parse(url)
        return
    target = RedisTarget.parse(url)
    assert (target.kind, target.hosts, target.service, target.db) == (kind, hosts, service, db)


def test_redis_url_credentials_and_tls() -> None:
    target = RedisTarget.parse("rediss+cluster://ops:s%40cret@n1:7000")
    assert (target.username, target.password, target.tls) == ("ops", "s@cret", True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost", "expected a URL with scheme"),
        ("redis+sentinel://s1:99999/m", "not in 1..65535"),
        ("redis+sentinel://s1:x/m", "not in 1..65535"),
        ("redis+sentinel://s1,,s2/m", "an empty host"),
        ("redis+sentinel://s1/m/x", "/MASTER or /MASTER/DB"),
        ("redis+sentinel://s1/m/1/2", "/MASTER or /MASTER/DB"),
        ("redis+cluster://n1:7000/3", "only database 0"),
        ("redis+cluster://n1:7000?x=1", "no ?query"),
        ("redis://", "no host"),
        ("redis://h:99999/0", "out of range"),
    ],
)
def test_bad_redis_urls_fail_at_start_with_one_line(url: str, message: str) -> None:
    with pytest.raises(GatewayConfigError, match=message.replace("?", r"\?")):
        load_config(
            ["--upstream", "http://127.0.0.1:9/v1", "--policy", "safe-chat", "--redis", url]
        )


def test_the_password_is_never_echoed() -> None:
    with pytest.raises(GatewayConfigError) as caught:
        RedisTarget.parse("redis+sentinel://:hunter2@s1:99999/m")
    assert "hunter2" not in str(caught.value)
    config = load_config([*BASE, "--redis", "redis://:hunter2@h:6379/0"])
    assert "hunter2" not in config.describe_state()


async def test_clients_are_built_for_each_kind_without_connecting() -> None:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    sentinel = redis_client("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/main/4", timeout=0.5)
    cluster = redis_client("redis+cluster://127.0.0.1:1,127.0.0.1:2", timeout=0.5)
    plain = redis_client("redis://127.0.0.1:1/0", timeout=0.5)
    try:
        assert isinstance(sentinel, Redis)
        pool: Any = sentinel.connection_pool
        assert (pool.service_name, pool.connection_kwargs["db"]) == ("main", 4)
        assert pool.connection_kwargs["password"] == "pw"
        assert pool.connection_kwargs["socket_timeout"] == 0.5
        assert [
            s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels
        ] == [1, 2]
        assert isinstance(cluster, RedisCluster)
        assert sorted(n.port for n in cluster.nodes_manager.startup_nodes.values()) == [1, 2]
        assert isinstance(plain, Redis)
    finally:
        for client in (sentinel, cluster, plain):
            await close_client(client)


def test_one_keys_budget_and_reservations_share_a_cluster_slot() -> None:
    from redis.crc import key_slot

    prefix = "streamops:gateway:{team-a}:budget:"
    names = [f"{prefix}team-a:2026-01-01", f"{prefix}rid:abc", "streamops:gateway:{team-a}:rpm:1"]
    assert len({key_slot(n.encode()) for n in names}) == 1


# --------------------------------------------------------------------------
# real Sentinel and Cluster
# --------------------------------------------------------------------------


def _redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    return binary


def _wait(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server on {port} did not answer within {timeout}s")


@contextlib.contextmanager
def _server(args: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(port, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_sentinel(primary_port: int) -> Iterator[int]:
    binary = _redis_server()
    port = unused_port()
    with tempfile.TemporaryDirectory() as workdir:
        conf = Path(workdir) / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor main 127.0.0.1 {primary_port} 1\n"
        )
        with _server([binary, str(conf), "--sentinel"], port):
            yield port


@contextlib.contextmanager
def running_cluster() -> Iterator[int]:
    """A one-node Redis Cluster owning all 16384 slots (CROSSSLOT checks still apply)."""
    import redis

    binary = _redis_server()
    port = unused_port()
    while port > 55000:  # the cluster bus listens on port + 10000
        port = unused_port()
    with tempfile.TemporaryDirectory() as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir]
        args += ["--cluster-enabled", "yes", "--save", "", "--appendonly", "no"]
        with _server(args, port):
            client = redis.Redis(port=port)
            command: Any = client.execute_command
            try:
                command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
                deadline = time.monotonic() + 60
                while b"cluster_state:ok" not in command("CLUSTER", "INFO"):
                    assert time.monotonic() < deadline, "the cluster did not become ok"
                    time.sleep(0.05)
            finally:
                client.close()
            yield port


async def _exercise(url: str) -> tuple[int, bool]:
    """Spend from a key's daily budget and count a request, through the gateway's State."""
    config = load_config([*BASE, "--redis", url, "--redis-timeout", "30"])
    key = GatewayKey("team-a", b"\0" * 32, daily_tokens=100, requests_per_minute=5)
    state = State(config)
    await state.start()
    try:
        ledger = state.ledger(key)
        assert ledger is not None
        grant = await ledger.reserve("team-a", 30, extra=10, rid="r1")  # a multi-key script
        await ledger.refund(grant, grant.tokens - 30)
        allowed, _ = await state.allow_request(key)
        return await state.spent_today(key), allowed
    finally:
        await state.close()


def test_sentinel_url_finds_the_primary_and_serves_budgets() -> None:
    with running_redis() as primary:
        port = int(primary.rsplit(":", 1)[1].split("/")[0])
        with running_sentinel(port) as sentinel:
            spent, allowed = asyncio.run(_exercise(f"redis+sentinel://127.0.0.1:{sentinel}/main"))
    assert (spent, allowed) == (30, True)


def test_cluster_url_serves_budgets_with_hash_tagged_keys() -> None:
    with running_cluster() as port:
        spent, allowed = asyncio.run(_exercise(f"redis+cluster://127.0.0.1:{port}"))
    assert (spent, allowed) == (30, True)


def test_two_gateways_on_one_redis_spend_one_daily_cost_budget(tmp_path: Path) -> None:
    import openai
    from helpers import keys_file

    import streamops as so
    from streamops._gateway._thread import GatewayServer
    from streamops.testing import FakeOpenAIServer

    price = so.DEFAULT_PRICES.price("gpt-4o-mini")
    out_units, in_units = (
        round(price.output_per_million * 1e6),
        round(price.input_per_million * 1e6),
    )
    limit_tokens = 100  # the budget pays for 100 output tokens, prompts included
    keys = keys_file(
        tmp_path,
        team={"key": "sk-team", "daily_cost": limit_tokens * price.output_per_million / 1e6},
    )
    answer = " ".join(f"w{i}" for i in range(16))  # 32 tokens
    model = so.FakeStreamingModel(answer, format="openai-dict", chunking="word")
    with running_redis() as redis_url, FakeOpenAIServer(model) as up:
        args = ["--upstream", up.base_url, "--policy", "safe-chat", "--keys", keys]
        args += ["--redis", redis_url, "--redis-timeout", "30", "--port", "0"]
        with GatewayServer(load_config(args)) as one, GatewayServer(load_config(args)) as two:
            delivered, prompts, refused = 0, 0, []
            for attempt in range(20):
                gw = (one, two)[attempt % 2]
                with openai.OpenAI(base_url=gw.base_url, api_key="sk-team", max_retries=0) as c:
                    try:
                        chunks = list(
                            c.chat.completions.create(
                                model="gpt-4o-mini",
                                messages=[{"role": "user", "content": "hi"}],
                                stream=True,
                                stream_options={"include_usage": True},
                            )
                        )
                    except openai.RateLimitError as exc:
                        refused.append(exc.code)
                        break
                text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
                delivered += so.count_tokens(text, "o200k_base")
                usage = chunks[-1].usage
                assert usage is not None
                prompts += usage.prompt_tokens
            assert refused == ["daily_budget_exhausted"]
            requests = up.requests

            async def spent() -> int:
                ledger = so.RedisLedger.from_url(
                    redis_url,
                    limit=limit,
                    window="day",
                    prefix="streamops:gateway:{team}:cost:",
                    timeout=30,
                )
                try:
                    return await ledger.spent("team")
                finally:
                    await ledger.client.aclose()

            limit = limit_tokens * out_units
            total = asyncio.run(spent())
    # One budget for both processes, in picodollars: what was delivered at the output
    # price plus the prompts at the input price, never over the limit, and refused only
    # once less than one output token's price is left.
    assert total <= limit
    assert limit - total < out_units
    assert total == delivered * out_units + prompts * in_units or (
        # the last prompt is charged only as far as the budget goes
        delivered * out_units + (prompts - 1) * in_units
        < total
        < delivered * out_units + prompts * in_units
    )
    assert requests >= 3  # both gateways served before the refusal
