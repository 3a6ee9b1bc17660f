"""Shared token budgets across streams and processes: the ledger interface and two ledgers.

A ledger keeps, per key (a user, a tenant) and per time window, how many
tokens were spent against a limit. Streams *reserve* a block before releasing
tokens and *refund* what they did not use when they end, however they end.
A reservation is granted only up to what is left, so the spent total never
exceeds the limit.

Fairness: a reservation has a *required* part (``tokens``: what the stream's
text needs now) and an optional *extra* part (headroom, so that a stream need
not call the ledger for every chunk). The required part is granted first, up
to what is left; the extra part never takes more than half of what is left
after it. So however many streams draw on a key at once, each one that asks
while budget remains gets some of it, and headroom shrinks as the budget runs
out instead of one stream's block starving the others.

Cancellation: a reservation may be named by a client-made ``rid``. The ledger
remembers, for a minute, what it granted under that name; :meth:`Ledger.cancel`
refunds that grant, and a ``reserve`` with a cancelled ``rid`` that arrives
late grants nothing. A stream cancelled while a reservation is in flight
cancels it, so an unanswered call never charges a block forever.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from .._core._errors import LedgerUnavailableError
from .._core._extras import require
from .._core._validate import check_int, check_number

if TYPE_CHECKING:  # redis is an optional extra
    from redis.asyncio import Redis

__all__ = (
    "Ledger",
    "LedgerUnavailableError",
    "MemoryLedger",
    "RedisLedger",
    "Reservation",
    "Window",
)

Window = Literal["hour", "day"]
_WINDOW_SECONDS = {"hour": 3600, "day": 86400}
# How long a ledger remembers a named reservation (or its cancellation): far
# longer than a reservation call and its cancellation can be apart.
_RID_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens granted by a ledger under one bucket (key and time window).

    Refunds go back to the bucket the tokens came from, even if the window
    has rolled over since.

    >>> Reservation(bucket="user:1", tokens=256)
    Reservation(bucket='user:1', tokens=256)
    """

    bucket: str
    tokens: int


@runtime_checkable
class Ledger(Protocol):
    """The interface a shared budget store implements (see :class:`MemoryLedger`).

    ``reserve`` atomically grants up to ``tokens`` (fewer, possibly zero, when
    the key's limit is nearly spent), then up to ``extra`` more but at most
    half of what is left after that, and counts the grant as spent; with
    ``rid`` it remembers the grant under that name, returns the same grant if
    called again with it, and grants nothing once ``cancel(rid)`` was called.
    ``cancel`` refunds what was granted under ``rid`` (if anything);
    ``refund`` gives back unused tokens of a reservation; ``spent`` reads the
    current total. Every failure to reach or use the store is raised as
    :class:`LedgerUnavailableError`.
    """

    async def reserve(
        self, key: str, tokens: int, *, extra: int = 0, rid: str | None = None
    ) -> Reservation:
        """Grant up to ``tokens`` (then up to ``extra``) for ``key`` in the current window."""
        ...

    async def cancel(self, rid: str) -> None:
        """Void the reservation named ``rid``: refund its grant, refuse it if it comes later."""
        ...

    async def refund(self, reservation: Reservation, tokens: int) -> None:
        """Return ``tokens`` (unused) of ``reservation`` to its bucket."""
        ...

    async def spent(self, key: str) -> int:
        """Return the tokens spent (reserved and not refunded) for ``key`` now."""
        ...


class _Buckets:
    """Limit, window and bucket naming shared by the ledgers."""

    def __init__(
        self,
        limit: int,
        window: Window | None,
        clock: Callable[[], float],
        prefix: str,
    ) -> None:
        check_int("limit", limit)
        if window is not None and window not in _WINDOW_SECONDS:
            raise ValueError(f"window must be 'hour', 'day' or None, got {window!r}")
        self.limit = limit
        self.window = window
        self.clock = clock
        self.prefix = prefix

    def bucket(self, key: object) -> str:
        if not isinstance(key, str) or not key:
            raise ValueError(f"ledger key must be a non-empty str, got {key!r}")
        if self.window is None:
            return f"{self.prefix}{key}"
        fmt = "%Y-%m-%dT%H" if self.window == "hour" else "%Y-%m-%d"
        stamp = datetime.fromtimestamp(self.clock(), UTC).strftime(fmt)
        return f"{self.prefix}{key}:{stamp}"

    @property
    def ttl(self) -> int:
        # Keep a window's bucket a little longer than the window itself, so a
        # late refund still finds it; no window means no expiry.
        return 0 if self.window is None else 2 * _WINDOW_SECONDS[self.window]


def _check_tokens(tokens: object) -> None:
    check_int("tokens", tokens)


def _grant(tokens: int, extra: int, left: int) -> int:
    """What to grant for ``tokens`` required and ``extra`` wanted with ``left`` left.

    The required part first; headroom takes at most half of the rest, so a
    stream that asks next still finds budget (the Lua scripts do the same).

    >>> _grant(8, 248, 40), _grant(8, 248, 5), _grant(0, 4, 1)
    (24, 5, 0)
    """
    need = max(0, min(tokens, left))
    return need + max(0, min(extra, (left - need) // 2))


class MemoryLedger:
    """A ledger in this process's memory: safe under asyncio concurrency and threads.

    Every operation completes without awaiting anything in between, so no
    other task can interleave; a lock covers threads. ``window`` ("hour" or
    "day", UTC) starts a fresh budget per period; ``clock`` returns epoch
    seconds (``time.time``). As with Redis keys, a window's bucket is dropped
    two windows after it was created, and a bucket refunded down to zero is
    dropped at once, so memory does not grow with time.

    >>> import asyncio
    >>> ledger = MemoryLedger(limit=1000)
    >>> async def main():
    ...     r = await ledger.reserve("user:1", 600)
    ...     r2 = await ledger.reserve("user:1", 600)  # only 400 left
    ...     await ledger.refund(r, 100)
    ...     return r.tokens, r2.tokens, await ledger.spent("user:1")
    >>> asyncio.run(main())
    (600, 400, 900)
    """

    # Named reservations remembered at most (the oldest are forgotten first).
    _MAX_RIDS = 1 << 16

    def __init__(
        self,
        *,
        limit: int,
        window: Window | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._b = _Buckets(limit, window, clock, "")
        self._spent: dict[str, int] = {}
        # Windowed buckets and when they expire, in creation order (so the
        # expired ones are at the front and purging costs O(1) amortised).
        self._expires: dict[str, float] = {}
        # rid -> (bucket, tokens granted) or None once cancelled, and when it
        # is forgotten (monotonic time: the window clock may be a fake).
        self._rids: OrderedDict[str, tuple[tuple[str, int] | None, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        """Tokens each key may spend per window."""
        return self._b.limit

    async def reserve(
        self, key: str, tokens: int, *, extra: int = 0, rid: str | None = None
    ) -> Reservation:
        """Grant up to ``tokens`` for ``key``, then up to ``extra`` (see :class:`Ledger`)."""
        _check_tokens(tokens)
        check_int("extra", extra)
        bucket = self._b.bucket(key)
        with self._lock:
            self._purge()
            if rid is not None:
                known = self._rids.get(rid)
                if known is not None:  # asked again, or cancelled before it came
                    record = known[0]
                    return Reservation(bucket, 0) if record is None else Reservation(*record)
            spent = self._spent.get(bucket, 0)
            grant = _grant(tokens, extra, self._b.limit - spent)
            if grant:
                if bucket not in self._spent and self._b.ttl:
                    self._expires[bucket] = self._b.clock() + self._b.ttl
                self._spent[bucket] = spent + grant
            if rid is not None:
                self._remember(rid, (bucket, grant))
        return Reservation(bucket, grant)

    async def cancel(self, rid: str) -> None:
        """Refund what was granted under ``rid``; a later ``reserve`` with it grants nothing."""
        with self._lock:
            self._purge()
            known = self._rids.get(rid)
            self._remember(rid, None)
            if known is not None and known[0] is not None:
                self._take_back(*known[0])

    async def refund(self, reservation: Reservation, tokens: int) -> None:
        """Give back ``tokens`` unused tokens of ``reservation``."""
        _check_tokens(tokens)
        with self._lock:
            self._take_back(reservation.bucket, tokens)

    def _take_back(self, bucket: str, tokens: int) -> None:
        if bucket not in self._spent:
            return  # expired (or refunded to zero) already: nothing to give back
        left = self._spent[bucket] - tokens
        if left > 0:
            self._spent[bucket] = left
        else:
            del self._spent[bucket]
            self._expires.pop(bucket, None)

    def _remember(self, rid: str, record: tuple[str, int] | None) -> None:
        rids = self._rids
        rids.pop(rid, None)
        rids[rid] = (record, time.monotonic() + _RID_SECONDS)
        if len(rids) > self._MAX_RIDS:
            rids.popitem(last=False)

    def _purge(self) -> None:
        expires = self._expires
        now = self._b.clock()
        while expires:
            bucket, when = next(iter(expires.items()))
            if when > now:
                break
            del expires[bucket]
            self._spent.pop(bucket, None)
        rids = self._rids
        mono = time.monotonic()
        while rids:
            rid, (_, until) = next(iter(rids.items()))
            if until > mono:
                break
            del rids[rid]

    def __len__(self) -> int:
        """Return the number of buckets held (for checking that old ones are dropped)."""
        with self._lock:
            return len(self._spent)

    async def spent(self, key: str) -> int:
        """Return the tokens spent for ``key`` in the current window."""
        with self._lock:
            return self._spent.get(self._b.bucket(key), 0)


# KEYS[1]: the bucket; KEYS[2] (optional): the reservation's name.
# ARGV: tokens, extra, limit, bucket ttl, name ttl. See _grant() and Ledger.
_RESERVE = """
if KEYS[2] then
  local known = redis.call('GET', KEYS[2])
  if known then
    if known == 'void' then return 0 end
    return tonumber(string.match(known, '^(%d+) '))
  end
end
local left = tonumber(ARGV[3]) - tonumber(redis.call('GET', KEYS[1]) or '0')
local need = math.max(0, math.min(tonumber(ARGV[1]), left))
local grant = need + math.max(0, math.min(tonumber(ARGV[2]), math.floor((left - need) / 2)))
if grant > 0 then
  redis.call('INCRBY', KEYS[1], grant)
  local ttl = tonumber(ARGV[4])
  if ttl > 0 and redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ttl) end
end
if KEYS[2] then redis.call('SET', KEYS[2], grant .. ' ' .. KEYS[1], 'EX', ARGV[5]) end
return grant
"""

# A refund never creates a key (that key would have no TTL) and deletes one
# that drops to zero or below.
_REFUND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local left = redis.call('DECRBY', KEYS[1], tonumber(ARGV[1]))
if left <= 0 then redis.call('DEL', KEYS[1]) end
return left
"""

# KEYS[1]: the reservation's name; ARGV[1]: name ttl. The bucket a grant came
# from is read from the name's record (it is not known to the canceller).
_CANCEL = """
local known = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], 'void', 'EX', ARGV[1])
if not known or known == 'void' then return 0 end
local grant, bucket = string.match(known, '^(%d+) (.+)$')
grant = tonumber(grant)
if grant > 0 and redis.call('EXISTS', bucket) == 1 then
  local left = redis.call('DECRBY', bucket, grant)
  if left <= 0 then redis.call('DEL', bucket) end
end
return grant
"""


def _blocking_client(url: str, *, max_connections: int, timeout: float | None) -> Redis:
    """Return an async Redis client for ``url`` on a *blocking* pool of ``max_connections``.

    When every connection is busy a call waits for one (up to ``timeout``)
    instead of failing at once; socket timeouts are ``timeout`` too. The
    client owns the pool and closes it.
    """
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return Redis.from_pool(pool)


class RedisLedger:
    """A ledger on a Redis server, shared by every process that uses the same keys.

    Each reservation, cancellation and refund is one atomic Lua script, so
    any number of workers and machines can share a budget. ``client`` is a
    ``redis.asyncio.Redis`` (install ``streamops[redis]``); keys are
    ``prefix + key`` (plus ``:YYYY-MM-DD`` or ``:YYYY-MM-DDTHH`` with a window)
    and expire two windows after they start; a named reservation is kept for
    a minute under ``prefix + "rid:" + rid``. Every Redis error (connection
    refused or lost, a read-only replica, out of memory, a wrong database
    index, something that is not Redis on the port) becomes
    :class:`LedgerUnavailableError` chained to it, and so does a call that takes
    longer than ``timeout`` seconds (``None``: no limit), so a failing server
    cannot break or block a stream and ``fail_open`` can take over. A named
    reservation that timed out may still be granted on the server; the budget
    cancels it when the stream ends. :meth:`from_url` builds a client with a
    blocking connection pool and socket timeouts that match.

    >>> ledger = RedisLedger.from_url("redis://localhost:1", limit=10_000, window="day")
    >>> ledger.limit, ledger.timeout
    (10000, 1.0)
    """

    def __init__(
        self,
        client: Redis,
        *,
        limit: int,
        window: Window | None = None,
        prefix: str = "streamops:budget:",
        clock: Callable[[], float] = time.time,
        timeout: float | None = 1.0,
    ) -> None:
        self._b = _Buckets(limit, window, clock, prefix)
        if timeout is not None:
            check_number("timeout", timeout)
            if not timeout > 0:
                raise ValueError(f"timeout must be positive or None, got {timeout!r}")
        self.timeout = timeout
        if not callable(getattr(client, "register_script", None)):
            raise TypeError(
                "RedisLedger takes a redis.asyncio.Redis client, got"
                f" {type(client).__name__}; for a URL use RedisLedger.from_url(url, limit=...)"
            )
        self.client = client
        self._reserve = client.register_script(_RESERVE)
        self._refund = client.register_script(_REFUND)
        self._cancel = client.register_script(_CANCEL)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        limit: int,
        window: Window | None = None,
        prefix: str = "streamops:budget:",
        clock: Callable[[], float] = time.time,
        timeout: float | None = 1.0,
        max_connections: int = 100,
    ) -> RedisLedger:
        """Create a ledger with its own client for ``url``.

        Socket timeouts are ``timeout``. The client's pool holds at most
        ``max_connections`` connections and *blocks*: when all are busy a call
        waits for one (within ``timeout``) instead of failing at once, so any
        number of concurrent streams can share a small pool (each call holds a
        connection for one round trip only).
        """
        require("redis", extra="redis", feature="RedisLedger")
        check_int("max_connections", max_connections, least=1)
        client = _blocking_client(url, max_connections=max_connections, timeout=timeout)
        return cls(client, limit=limit, window=window, prefix=prefix, clock=clock, timeout=timeout)

    @property
    def limit(self) -> int:
        """Tokens each key may spend per window."""
        return self._b.limit

    async def _run(self, what: str, call: Awaitable[Any]) -> int:
        """Await one Redis call and read its integer answer (LedgerUnavailableError on failure)."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            async with asyncio.timeout(self.timeout):
                return int(await call or 0)
        except TimeoutError as exc:  # asyncio.timeout's expiry, or the socket's
            raise LedgerUnavailableError(
                f"redis ledger unreachable during {what}: no answer within {self.timeout}s"
            ) from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise LedgerUnavailableError(f"redis ledger unreachable during {what}: {exc}") from exc
        except (RedisError, ValueError, TypeError) as exc:
            # The server answered, but not as a working Redis primary does: a
            # read-only replica, out of memory, a wrong database, not Redis at all.
            raise LedgerUnavailableError(
                f"redis ledger failed during {what}: {type(exc).__name__}: {exc}"
            ) from exc

    async def reserve(
        self, key: str, tokens: int, *, extra: int = 0, rid: str | None = None
    ) -> Reservation:
        """Grant up to ``tokens`` for ``key``, then up to ``extra`` (see :class:`Ledger`)."""
        _check_tokens(tokens)
        check_int("extra", extra)
        bucket = self._b.bucket(key)
        keys = [bucket] if rid is None else [bucket, self._rid_key(rid)]
        args = [tokens, extra, self._b.limit, self._b.ttl, _RID_SECONDS]
        grant = await self._run("reserve", self._reserve(keys=keys, args=args))
        return Reservation(bucket, grant)

    async def cancel(self, rid: str) -> None:
        """Refund what was granted under ``rid``; a later ``reserve`` with it grants nothing."""
        await self._run("cancel", self._cancel(keys=[self._rid_key(rid)], args=[_RID_SECONDS]))

    async def refund(self, reservation: Reservation, tokens: int) -> None:
        """Give back ``tokens`` unused tokens of ``reservation``."""
        _check_tokens(tokens)
        if tokens:
            await self._run("refund", self._refund(keys=[reservation.bucket], args=[tokens]))

    async def spent(self, key: str) -> int:
        """Return the tokens spent for ``key`` in the current window."""
        return await self._run("spent", self.client.get(self._b.bucket(key)))

    def _rid_key(self, rid: object) -> str:
        if not isinstance(rid, str) or not rid:
            raise ValueError(f"a reservation name must be a non-empty str, got {rid!r}")
        return f"{self._b.prefix}rid:{rid}"
