"""Daily token and cost budgets and per-key rate limits: in this process, or shared in Redis.

Budgets are :class:`streamops.Ledger` objects (one per key, ``window="day"``,
UTC): each stream of a key reserves blocks of tokens before it releases text
and is charged the tokens its client received, so N workers and N hosts on
one Redis spend one budget and overspend by at most one reservation block per
stream. Redis keys carry the key name as a hash tag
(``streamops:gateway:{team-a}:...``) so a key's bucket and its reservation
names live in one Cluster slot (the ledger's scripts touch both).

A daily cost budget is a ledger counted in picodollars (1e-12 USD, integers
as ledgers count): each stream of the key sees it, through :class:`CostLedger`,
as a budget of its model's output tokens (a token costs the model's output
price), and the prompt's input tokens are charged when the answer ends.

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

__all__ = ["COST_UNITS", "CostLedger", "State"]

COST_UNITS = 10**12
"""Ledger units per USD in a cost budget (picodollars: a token of any listed model is whole)."""

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

    @staticmethod
    def limit(key: GatewayKey) -> int | None:
        """``key``'s daily budget in its ledger's units: tokens, or picodollars (``None``: none)."""
        if key.daily_cost is not None:
            return round(key.daily_cost * COST_UNITS)
        return key.daily_tokens

    def ledger(self, key: GatewayKey) -> so.Ledger | None:
        """The ledger holding ``key``'s daily budget (``None``: the key has none)."""
        limit = self.limit(key)
        if limit is None:
            return None
        ledger = self._ledgers.get(key.name)
        if ledger is None:
            # A cost budget's bucket is not a token budget's: a key whose kind of budget
            # changes never reads the other's count in other units.
            kind = "budget" if key.daily_cost is None else "cost"
            if self.client is not None:
                ledger = so.RedisLedger(
                    self.client,
                    limit=limit,
                    window="day",
                    prefix=f"{_PREFIX}{{{key.name}}}:{kind}:",
                    clock=self.clock,
                    timeout=self.config.redis_timeout,
                )
            else:
                ledger = so.MemoryLedger(limit=limit, window="day", clock=self.clock)
            self._ledgers[key.name] = ledger
        return ledger

    async def spent_today(self, key: GatewayKey) -> int:
        """What ``key`` spent today (UTC), in its ledger's units (tokens or picodollars)."""
        ledger = self.ledger(key)
        return 0 if ledger is None else await ledger.spent(key.name)

    async def left_today(self, key: GatewayKey) -> int | None:
        """What ``key`` has left today, in its ledger's units (``None``: no daily budget)."""
        limit = self.limit(key)
        return None if limit is None else limit - await self.spent_today(key)

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


class CostLedger:
    """A cost ledger (picodollars) seen as a ledger of one model's output tokens.

    A stream's budget stage reserves, refunds and cancels tokens; each token
    is ``per_token`` units of the key's cost ledger (the model's output price
    in picodollars, rounded up). A grant that is not a whole number of tokens
    (the budget's last few units) gives its remainder back at once, so the
    key is charged for whole tokens delivered and nothing else.

    >>> import asyncio, streamops as so
    >>> money = so.MemoryLedger(limit=1_000)  # picodollars
    >>> tokens = CostLedger(money, per_token=300)
    >>> r = asyncio.run(tokens.reserve("k", 5))
    >>> r.tokens, asyncio.run(money.spent("k"))
    (3, 900)
    """

    def __init__(self, ledger: so.Ledger, *, per_token: int) -> None:
        if per_token < 1:
            raise ValueError(f"per_token must be at least 1, got {per_token!r}")
        self.ledger = ledger
        self.per_token = per_token

    async def reserve(
        self, key: str, tokens: int, *, extra: int = 0, rid: str | None = None
    ) -> so.Reservation:
        """Grant up to ``tokens`` (then ``extra``) tokens' worth of the key's money."""
        unit = self.per_token
        got = await self.ledger.reserve(key, tokens * unit, extra=extra * unit, rid=rid)
        whole, rest = divmod(got.tokens, unit)
        if rest:
            await self.ledger.refund(got, rest)
        return so.Reservation(got.bucket, whole)

    async def cancel(self, rid: str) -> None:
        """Void the reservation named ``rid`` (the money ledger refunds its grant)."""
        await self.ledger.cancel(rid)

    async def refund(self, reservation: so.Reservation, tokens: int) -> None:
        """Give back the price of ``tokens`` unused tokens of ``reservation``."""
        unit = self.per_token
        await self.ledger.refund(
            so.Reservation(reservation.bucket, reservation.tokens * unit), tokens * unit
        )

    async def spent(self, key: str) -> int:
        """The key's spend today in whole tokens of this model (rounded down)."""
        return await self.ledger.spent(key) // self.per_token
