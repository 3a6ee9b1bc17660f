"""Daily token budgets and per-key rate limits: in this process, or shared in Redis.

Budgets are :class:`streamops.Ledger` objects (one per key, ``window="day"``,
UTC): each stream of a key reserves blocks of tokens before it releases text
and is charged the tokens its client received, so N workers and N hosts on
one Redis spend one budget and overspend by at most one reservation block per
stream. Redis keys carry the key name as a hash tag
(``streamops:gateway:{team-a}:...``) so a key's bucket and its reservation
names live in one Cluster slot (the ledger's scripts touch both).

Rate limits are a fixed one-minute window per key: one ``INCR`` (with
``EXPIRE``) in one Lua call on Redis, a dict here without it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import streamops as so

from .._budget._ledger import _blocking_client
from ._config import GatewayConfig, GatewayKey, RedisTarget

__all__ = ["State"]

_PREFIX = "streamops:gateway:"
_RATE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def redis_client(url: str, *, timeout: float = 1.0, max_connections: int = 200) -> Any:
    """A ``redis.asyncio`` client for ``url``: standalone, Sentinel or Cluster.

    The URL forms are those of :class:`RedisTarget` (validated there, at start).
    Sentinel: the master named in the URL, found through the Sentinels;
    Cluster: the seed nodes (keys are hash-tagged by gateway key, so one key's
    scripts touch one slot); standalone: redis-py's URL with a blocking
    connection pool (a busy pool waits ``timeout`` instead of failing).
    Every socket times out after ``timeout`` seconds. Nothing connects here.
    """

    target = RedisTarget.parse(url)
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "username": target.username,
        "password": target.password,
    }
    if target.kind == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(
            list(target.hosts),
            sentinel_kwargs=dict(common),
            ssl=target.tls,
            **common,
        )
        assert target.service is not None
        return sentinel.master_for(target.service, db=target.db)
    if target.kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in target.hosts]
        return RedisCluster(
            startup_nodes=nodes, ssl=target.tls, max_connections=max_connections, **common
        )
    return _blocking_client(url, max_connections=max_connections, timeout=timeout)


async def close_client(client: Any) -> None:
    """Close a client of :func:`redis_client`, and for Sentinel the Sentinels' connections too."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


class State:
    """Per-key ledgers and rate-limit counters of one gateway process."""

    def __init__(self, config: GatewayConfig, *, clock: Any = time.time) -> None:
        self.config = config
        self.clock = clock
        self.client: Any = None
        self._ledgers: dict[str, so.Ledger] = {}
        self._minutes: dict[tuple[str, int], int] = {}
        self._rate: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect to Redis (when configured); checks it answers, so a bad URL fails at start."""
        if self.config.redis is None:
            return
        self.client = redis_client(self.config.redis, timeout=self.config.redis_timeout)
        self._rate = self.client.register_script(_RATE)
        try:
            async with asyncio.timeout(max(5.0, self.config.redis_timeout)):
                await self.client.ping()
        except Exception as exc:
            await self.close()
            raise so.LedgerUnavailableError(f"--redis: cannot reach Redis: {exc}") from exc

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await close_client(client)

    def ledger(self, key: GatewayKey) -> so.Ledger | None:
        """The ledger holding ``key``'s daily budget (``None``: the key has none)."""
        if key.daily_tokens is None:
            return None
        ledger = self._ledgers.get(key.name)
        if ledger is None:
            if self.client is not None:
                ledger = so.RedisLedger(
                    self.client,
                    limit=key.daily_tokens,
                    window="day",
                    prefix=f"{_PREFIX}{{{key.name}}}:budget:",
                    clock=self.clock,
                    timeout=self.config.redis_timeout,
                )
            else:
                ledger = so.MemoryLedger(limit=key.daily_tokens, window="day", clock=self.clock)
            self._ledgers[key.name] = ledger
        return ledger

    async def spent_today(self, key: GatewayKey) -> int:
        """Tokens ``key`` spent today (UTC)."""
        ledger = self.ledger(key)
        return 0 if ledger is None else await ledger.spent(key.name)

    async def allow_request(self, key: GatewayKey) -> tuple[bool, int]:
        """Count one request of ``key``; return (allowed, seconds until the window resets)."""
        limit = key.requests_per_minute
        if limit is None:
            return True, 0
        now = self.clock()
        minute = int(now // 60)
        retry_after = max(1, 60 - int(now % 60))
        if self._rate is not None:
            name = f"{_PREFIX}{{{key.name}}}:rpm:{minute}"
            try:
                async with asyncio.timeout(self.config.redis_timeout):
                    count = int(await self._rate(keys=[name], args=[120]))
            except Exception as exc:
                raise so.LedgerUnavailableError(f"redis rate limit failed: {exc}") from exc
        else:
            slot = (key.name, minute)
            count = self._minutes.get(slot, 0) + 1
            self._minutes[slot] = count
            if len(self._minutes) > 4 * max(1, len(self._ledgers) + 1) + 64:
                for old in [s for s in self._minutes if s[1] < minute]:
                    del self._minutes[old]
        return count <= limit, retry_after
