"""Shared token budgets across streams and processes: the ledger interface and two ledgers.

A ledger keeps, per key (a user, a tenant) and per time window, how many
tokens were spent against a limit. Streams *reserve* a block before releasing
tokens and *refund* what they did not use when they end, however they end.
A reservation is granted only up to what is left, so the spent total never
exceeds the limit. A budget stream reserves, in whole blocks, only what the
text it has received may still need (its exact token count, with the last
unfinished word counted by its bytes), so it holds less than one block beyond
that at any time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ._errors import StreamOpsError
from ._validate import check_int, check_number

if TYPE_CHECKING:  # redis is an optional extra
    from redis.asyncio import Redis

__all__ = (
    "Ledger",
    "LedgerUnavailable",
    "MemoryLedger",
    "RedisLedger",
    "Reservation",
    "Window",
)

Window = Literal["hour", "day"]
_WINDOW_SECONDS = {"hour": 3600, "day": 86400}


class LedgerUnavailable(StreamOpsError, ConnectionError):
    """Raised when a ledger cannot be reached (e.g. Redis is down or times out).

    A budget with a ledger fails closed by default: the stream raises this
    error instead of streaming unmetered. With ``fail_open=True`` the stream
    goes on under its own limits and the failure is recorded as an event.
    It is not raised when the budget is merely used up.

    >>> raise LedgerUnavailable("redis at localhost:1 is unreachable")
    Traceback (most recent call last):
    ...
    streamops._ledger.LedgerUnavailable: redis at localhost:1 is unreachable
    """

    # Failing closed is a policy decision: another attempt or a fallback model
    # would stream (and bill) unmetered against the same unreachable ledger.
    retryable = False


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
    the key's limit is nearly spent) and counts them as spent; ``refund``
    gives back unused tokens of a reservation; ``spent`` reads the current
    total. Errors reaching the store are raised as :class:`LedgerUnavailable`.
    """

    async def reserve(self, key: str, tokens: int) -> Reservation:
        """Grant up to ``tokens`` for ``key`` in the current window."""
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
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        """Tokens each key may spend per window."""
        return self._b.limit

    async def reserve(self, key: str, tokens: int) -> Reservation:
        """Grant up to ``tokens`` for ``key`` (fewer when the limit is nearly spent)."""
        _check_tokens(tokens)
        bucket = self._b.bucket(key)
        with self._lock:
            self._purge()
            spent = self._spent.get(bucket, 0)
            grant = max(0, min(tokens, self._b.limit - spent))
            if grant:
                if bucket not in self._spent and self._b.ttl:
                    self._expires[bucket] = self._b.clock() + self._b.ttl
                self._spent[bucket] = spent + grant
        return Reservation(bucket, grant)

    async def refund(self, reservation: Reservation, tokens: int) -> None:
        """Give back ``tokens`` unused tokens of ``reservation``."""
        _check_tokens(tokens)
        bucket = reservation.bucket
        with self._lock:
            if bucket not in self._spent:
                return  # expired (or refunded to zero) already: nothing to give back
            left = self._spent[bucket] - tokens
            if left > 0:
                self._spent[bucket] = left
            else:
                del self._spent[bucket]
                self._expires.pop(bucket, None)

    def _purge(self) -> None:
        expires = self._expires
        now = self._b.clock()
        while expires:
            bucket, when = next(iter(expires.items()))
            if when > now:
                break
            del expires[bucket]
            self._spent.pop(bucket, None)

    def __len__(self) -> int:
        """Return the number of buckets held (for checking that old ones are dropped)."""
        with self._lock:
            return len(self._spent)

    async def spent(self, key: str) -> int:
        """Return the tokens spent for ``key`` in the current window."""
        with self._lock:
            return self._spent.get(self._b.bucket(key), 0)


_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - spent)
if grant <= 0 then return 0 end
redis.call('INCRBY', KEYS[1], grant)
local ttl = tonumber(ARGV[3])
if ttl > 0 and redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ttl) end
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


class RedisLedger:
    """A ledger on a Redis server, shared by every process that uses the same keys.

    Each reservation and refund is one atomic Lua script, so any number of
    workers and machines can share a budget. ``client`` is a
    ``redis.asyncio.Redis`` (install ``streamops[redis]``); keys are
    ``prefix + key`` (plus ``:YYYY-MM-DD`` or ``:YYYY-MM-DDTHH`` with a window)
    and expire two windows after they start. Connection errors become
    :class:`LedgerUnavailable`, and so does a call that takes longer than
    ``timeout`` seconds (``None``: no limit), so a hung server cannot block a
    stream and ``fail_open`` can take over. A reservation that timed out may
    still have been granted on the server; those tokens stay counted (the
    error is on the safe side). :meth:`from_url` builds a client whose socket
    timeouts match.

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
        self.client = client
        self._reserve = client.register_script(_RESERVE)
        self._refund = client.register_script(_REFUND)

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
    ) -> RedisLedger:
        """Create a ledger with its own client for ``url``; socket timeouts are ``timeout``."""
        from redis.asyncio import Redis

        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, limit=limit, window=window, prefix=prefix, clock=clock, timeout=timeout)

    @property
    def limit(self) -> int:
        """Tokens each key may spend per window."""
        return self._b.limit

    async def _run(self, what: str, call: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError as exc:  # asyncio.timeout's expiry, or the socket's
            raise LedgerUnavailable(
                f"redis ledger unreachable during {what}: no answer within {self.timeout}s"
            ) from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise LedgerUnavailable(f"redis ledger unreachable during {what}: {exc}") from exc

    async def reserve(self, key: str, tokens: int) -> Reservation:
        """Grant up to ``tokens`` for ``key`` (fewer when the limit is nearly spent)."""
        _check_tokens(tokens)
        bucket = self._b.bucket(key)
        grant = await self._run(
            "reserve", self._reserve(keys=[bucket], args=[tokens, self._b.limit, self._b.ttl])
        )
        return Reservation(bucket, int(grant))

    async def refund(self, reservation: Reservation, tokens: int) -> None:
        """Give back ``tokens`` unused tokens of ``reservation``."""
        _check_tokens(tokens)
        if tokens:
            await self._run("refund", self._refund(keys=[reservation.bucket], args=[tokens]))

    async def spent(self, key: str) -> int:
        """Return the tokens spent for ``key`` in the current window."""
        value = await self._run("spent", self.client.get(self._b.bucket(key)))
        return int(value or 0)
