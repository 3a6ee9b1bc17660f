"""The gateway's configuration: command line, keys file, upstream URLs, checked at start.

Everything a request needs is validated here, before a socket is opened: the
policy (and every key's policy) loads, the keys file is TOML of the shape
docs/gateway.md documents, every upstream is an ``http(s)`` URL, the Redis URL has a
scheme redis-py knows. A problem is one :class:`GatewayConfigError` line that
names the file or option, and ``streamops serve`` exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import hmac
import os
import re
import tomllib
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamops as so

__all__ = [
    "GatewayConfig",
    "GatewayConfigError",
    "GatewayKey",
    "KeyStore",
    "RedisTarget",
    "build_parser",
    "config_from_args",
]

UPSTREAM_KEY_ENV = "STREAMOPS_UPSTREAM_API_KEY"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_KEY_FIELDS = frozenset({"sha256", "policy", "daily_tokens", "daily_cost", "requests_per_minute"})
_REDIS_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)


class GatewayConfigError(so.StreamOpsError, ValueError):
    """Raised at start-up for a configuration the gateway cannot serve with, on one line.

    The message names the option or file and what is wrong with it. It is
    never raised while serving: a request's problems are HTTP errors.
    """


@dataclass(frozen=True)
class GatewayKey:
    """One client key of the keys file: its name, digest and limits (never the key itself)."""

    name: str
    digest: bytes
    policy: str | None = None
    daily_tokens: int | None = None
    requests_per_minute: int | None = None
    daily_cost: float | None = None
    """USD per UTC day: the answers' output tokens and the prompts' input tokens at the
    request's model's price (``streamops.DEFAULT_PRICES``)."""


class KeyStore:
    """The client keys, looked up by SHA-256 and compared in constant time.

    Every stored digest is compared (no early exit), so the time taken does
    not tell how close a guess was, nor which entry matched.

    >>> import hashlib
    >>> digest = hashlib.sha256(b"sk-team-a").hexdigest()
    >>> store = KeyStore.from_dict({"keys": {"team-a": {"sha256": digest}}}, source="k.toml")
    >>> store.lookup("sk-team-a").name, store.lookup("wrong")
    ('team-a', None)
    """

    def __init__(self, keys: Sequence[GatewayKey]) -> None:
        self.keys = tuple(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, presented: str) -> GatewayKey | None:
        """Return the key whose digest matches ``presented`` (``None``: unknown)."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeyStore:
        """Read a keys file (TOML); raise :class:`GatewayConfigError` naming the problem."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise GatewayConfigError(
                f"--keys {source}: cannot read: {exc.strerror or exc}"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise GatewayConfigError(f"--keys {source}: invalid TOML: {exc}") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "keys") -> KeyStore:
        """Validate keys-file data (``{"keys": {name: {...}}}``)."""
        where = f"--keys {source}"
        unknown = sorted(set(data) - {"keys"})
        if unknown:
            raise GatewayConfigError(
                f"{where}: unknown top-level key(s) {unknown}; expected [keys.NAME]"
            )
        table = data.get("keys")
        if not isinstance(table, dict) or not table:
            raise GatewayConfigError(f"{where}: no keys: add [keys.NAME] tables with sha256 = ...")
        keys: list[GatewayKey] = []
        seen: dict[bytes, str] = {}
        for name, entry in table.items():
            at = f"{where}: keys.{name}"
            if not _KEY_NAME.match(name):
                raise GatewayConfigError(f"{at}: a key name is 1-64 of A-Z a-z 0-9 _ . -")
            if not isinstance(entry, dict):
                raise GatewayConfigError(f"{at}: must be a table")
            extra = sorted(set(entry) - _KEY_FIELDS)
            if extra:
                raise GatewayConfigError(
                    f"{at}: unknown field(s) {extra}; allowed: {', '.join(sorted(_KEY_FIELDS))}"
                )
            digest = entry.get("sha256")
            if not isinstance(digest, str) or not _HEX64.match(digest.lower()):
                raise GatewayConfigError(
                    f"{at}.sha256: expected 64 hex digits (sha256 of the key), got {digest!r}"
                )
            raw = bytes.fromhex(digest)
            if raw in seen:
                raise GatewayConfigError(f"{at}.sha256: the same digest as keys.{seen[raw]}")
            seen[raw] = name
            policy = entry.get("policy")
            if policy is not None and (not isinstance(policy, str) or not policy):
                raise GatewayConfigError(f"{at}.policy: expected a preset name or a policy file")
            limits: dict[str, int | None] = {}
            for field_name in ("daily_tokens", "requests_per_minute"):
                value = entry.get(field_name)
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 1
                ):
                    raise GatewayConfigError(
                        f"{at}.{field_name}: expected an integer >= 1, got {value!r}"
                    )
                limits[field_name] = value
            cost = entry.get("daily_cost")
            if cost is not None and (
                isinstance(cost, bool)
                or not isinstance(cost, int | float)
                or not 0 < cost < 1e6
                or cost != cost
            ):
                raise GatewayConfigError(
                    f"{at}.daily_cost: expected a positive number of USD below 1e6, got {cost!r}"
                )
            if cost is not None and limits["daily_tokens"] is not None:
                raise GatewayConfigError(
                    f"{at}: daily_tokens and daily_cost cannot combine (one budget per key):"
                    " keep one of them"
                )
            keys.append(
                GatewayKey(
                    name,
                    raw,
                    policy,
                    limits["daily_tokens"],
                    limits["requests_per_minute"],
                    None if cost is None else float(cost),
                )
            )
        return cls(keys)


@dataclass
class GatewayConfig:
    """Everything ``streamops serve`` was told, validated (see :func:`config_from_args`)."""

    upstreams: list[str]
    policy: str
    host: str = "127.0.0.1"
    port: int = 8080
    keys: KeyStore | None = None
    keys_file: str | None = None
    redis: str | None = None
    workers: int = 1
    anthropic_upstream: str | None = None
    playground: bool = False
    log_prompts: bool = False
    slow_client_timeout: float = 30.0
    upstream_timeout: float = 600.0
    redis_timeout: float = 1.0
    argv: list[str] = field(default_factory=list)
    policies: dict[str, so.Policy] = field(default_factory=dict, repr=False)

    def policy_for(self, spec: str | None) -> so.Policy:
        """The loaded policy of ``spec`` (``None``: the default ``--policy``)."""
        return self.policies[spec or self.policy]

    @property
    def upstream_key(self) -> str | None:
        """The upstream credential used with ``--keys`` (never a client's key)."""
        return os.environ.get(UPSTREAM_KEY_ENV) or None

    def anthropic_urls(self) -> list[str]:
        """Where ``/v1/messages`` goes: ``--anthropic-upstream``, else every ``--upstream``."""
        if self.anthropic_upstream is not None:
            return [self.anthropic_upstream + "/messages"]
        return [u + "/messages" for u in self.upstreams]

    def describe_state(self) -> str:
        """One line saying where budgets and rate limits live."""
        if self.redis is None:
            return (
                "state: per-process memory (budgets and rate limits are NOT shared between"
                " workers or hosts; pass --redis URL to share them)"
            )
        return f"state: redis at {_redact_url(self.redis)} (budgets and rate limits shared)"


def _redact_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def _check_upstream(url: str, option: str, *, need_v1: bool) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GatewayConfigError(
            f"{option} {url!r}: expected an http:// or https:// URL with a host"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise GatewayConfigError(f"{option} {url!r}: {exc}") from None
    if "@" in parts.netloc:
        # A URL is logged and labels metrics: a credential in it would be in every line.
        raise GatewayConfigError(
            f"{option} {_redact_url(url)!r}: a base URL carries no credentials (user:password@);"
            f" give the upstream's key in ${UPSTREAM_KEY_ENV}"
        )
    if parts.query or parts.fragment:
        raise GatewayConfigError(f"{option} {url!r}: a base URL has no query or fragment")
    base = url.rstrip("/")
    if need_v1 and not base.endswith("/v1"):
        raise GatewayConfigError(
            f"{option} {url!r}: an OpenAI-compatible base URL ends in /v1 (e.g. {base}/v1)"
        )
    if not need_v1 and not base.endswith("/v1"):
        base += "/v1"  # the Anthropic SDK's base_url is the root
    return base


@dataclass(frozen=True)
class RedisTarget:
    """Where ``--redis`` points: a standalone server, Sentinels, or a Cluster's seed nodes.

    - ``redis://``, ``rediss://``, ``unix://``: one server (redis-py's own URL);
    - ``redis+sentinel://[user:pass@]host[:port][,host[:port]...]/MASTER[/DB]``
      (``rediss+sentinel`` for TLS): ask the Sentinels (port 26379 by default)
      for MASTER; the password is the master's (and the Sentinels');
    - ``redis+cluster://[user:pass@]host[:port][,host[:port]...]`` (``rediss+cluster``):
      a Cluster from its seed nodes (port 6379 by default); a Cluster has only
      database 0.

    >>> t = RedisTarget.parse("redis+sentinel://:pw@s1,s2:26380/mymaster/2")
    >>> t.kind, t.hosts, t.service, t.db, t.password
    ('sentinel', (('s1', 26379), ('s2', 26380)), 'mymaster', 2, 'pw')
    >>> RedisTarget.parse("redis+cluster://n1:7000,n2:7001").hosts
    (('n1', 7000), ('n2', 7001))
    """

    kind: str
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> RedisTarget:
        """Validate ``url``; raise :class:`GatewayConfigError` saying what is wrong."""
        where = f"--redis {_redact_url(url)!r}"
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme
        if scheme not in _REDIS_SCHEMES:
            raise GatewayConfigError(
                f"{where}: expected a URL with scheme"
                f" {', '.join(s + '://' for s in _REDIS_SCHEMES)}"
            )
        if scheme in ("redis", "rediss", "unix"):
            if scheme != "unix" and not parts.hostname:
                raise GatewayConfigError(f"{where}: no host (e.g. redis://localhost:6379/0)")
            try:
                parts.port  # noqa: B018 - raises ValueError for a bad port
            except ValueError as exc:
                raise GatewayConfigError(f"{where}: {exc}") from None
            return cls("standalone", url)
        kind = scheme.partition("+")[2]
        default_port = 26379 if kind == "sentinel" else 6379
        userinfo, _, hostlist = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        hosts: list[tuple[str, int]] = []
        for item in hostlist.split(","):
            host, port = _host_port(item, default_port, where)
            hosts.append((host, port))
        segments = [urllib.parse.unquote(p) for p in parts.path.split("/") if p]
        service = None
        db = 0
        if kind == "sentinel":
            if not segments:
                raise GatewayConfigError(
                    f"{where}: name the master: redis+sentinel://host:26379/MASTER[/DB]"
                )
            service, *rest = segments
            if len(rest) > 1 or (rest and not rest[0].isdigit()):
                raise GatewayConfigError(
                    f"{where}: expected /MASTER or /MASTER/DB after the Sentinels"
                )
            db = int(rest[0]) if rest else 0
        elif segments and segments != ["0"]:
            raise GatewayConfigError(f"{where}: a Redis Cluster has only database 0")
        if parts.query or parts.fragment:
            raise GatewayConfigError(f"{where}: no ?query or #fragment here")
        return cls(
            kind,
            url,
            tuple(hosts),
            service,
            db,
            urllib.parse.unquote(username) or None,
            urllib.parse.unquote(password) or None,
            scheme.startswith("rediss"),
        )


def _host_port(item: str, default: int, where: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [ipv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise GatewayConfigError(f"{where}: an empty host in the host list")
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise GatewayConfigError(f"{where}: port {port_text!r} of {host} is not in 1..65535")
    return host, int(port_text)


def _check_redis(url: str) -> str:
    RedisTarget.parse(url)
    try:
        import redis  # noqa: F401
    except ImportError:
        raise GatewayConfigError(
            "--redis needs the redis package: pip install 'streamops[gateway]'"
        ) from None
    return url


def _load(spec: str, where: str) -> so.Policy:
    try:
        policy = so.load_policy(spec)
    except so.PolicyError as exc:
        raise GatewayConfigError(f"{where}: {exc}") from None
    except OSError as exc:
        raise GatewayConfigError(f"{where} {spec!r}: cannot read: {exc.strerror or exc}") from None
    if policy.parse_json is not None and policy.parse_json.output == "values":
        # A gateway forwards the provider's chunks: parse_json can only check the text.
        section = policy.parse_json.model_copy(update={"output": "text"})
        policy = policy.model_copy(update={"parse_json": section})
    try:
        policy.build()
    except (so.StreamOpsError, ValueError) as exc:
        raise GatewayConfigError(f"{where} {spec!r}: {exc}") from None
    return policy


def build_parser() -> argparse.ArgumentParser:
    """The ``streamops serve`` argument parser (the fixed contract, plus a few options)."""
    parser = argparse.ArgumentParser(
        prog="streamops serve",
        description=(
            "Run an OpenAI- and Anthropic-compatible gateway that applies a streamops policy"
            " to every stream: point any SDK's base URL at it."
        ),
        epilog=(
            "Routes: POST /v1/chat/completions, /v1/responses, /v1/messages; GET /v1/models,"
            " /healthz, /metrics, /playground (with --playground). With --keys, the upstream"
            f" credential comes from ${UPSTREAM_KEY_ENV}. See docs/gateway.md."
        ),
    )
    parser.add_argument(
        "--upstream",
        action="append",
        required=True,
        metavar="URL",
        help="OpenAI-compatible base URL ending in /v1; repeat for fallbacks (tried in order"
        " before the first text)",
    )
    parser.add_argument(
        "--policy",
        required=True,
        metavar="PRESET_OR_FILE",
        help=f"default policy: a preset ({', '.join(so.preset_names())}) or a policy file",
    )
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--keys",
        metavar="FILE",
        help="TOML keys file ([keys.NAME] sha256, policy, daily_tokens or daily_cost,"
        " requests_per_minute);"
        " without it every request is accepted and its Authorization forwarded",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share daily budgets and rate limits in Redis (redis://, rediss://, unix://,"
        " redis+sentinel://host:port[,host:port]/MASTER[/DB],"
        " redis+cluster://host:port[,host:port])",
    )
    parser.add_argument(
        "--redis-timeout",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long one Redis call may take before the request fails closed (default 1)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--anthropic-upstream",
        metavar="URL",
        help="where /v1/messages goes (e.g. https://api.anthropic.com); default: each --upstream",
    )
    parser.add_argument("--playground", action="store_true", help="serve the /playground page")
    parser.add_argument(
        "--log-prompts",
        action="store_true",
        help="include prompt and answer text in the per-request log line (off: never logged)",
    )
    parser.add_argument(
        "--slow-client-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="cut a stream whose client has not read for this long (default 30)",
    )
    return parser


def config_from_args(args: argparse.Namespace, argv: Sequence[str] = ()) -> GatewayConfig:
    """Validate parsed arguments into a :class:`GatewayConfig` (or raise GatewayConfigError)."""
    upstreams = [_check_upstream(u, "--upstream", need_v1=True) for u in args.upstream]
    anthropic = None
    if args.anthropic_upstream is not None:
        anthropic = _check_upstream(args.anthropic_upstream, "--anthropic-upstream", need_v1=False)
    if not 0 <= args.port <= 65535:
        raise GatewayConfigError(f"--port {args.port}: expected 0..65535")
    if args.workers < 1:
        raise GatewayConfigError(f"--workers {args.workers}: expected at least 1")
    if args.workers > 1 and args.port == 0:
        raise GatewayConfigError("--workers > 1 needs a fixed --port (workers share it)")
    if not args.redis_timeout > 0:
        raise GatewayConfigError("--redis-timeout: expected a positive number of seconds")
    if not args.slow_client_timeout > 0:
        raise GatewayConfigError("--slow-client-timeout: expected a positive number of seconds")
    redis_url = None if args.redis is None else _check_redis(args.redis)
    keys = None if args.keys is None else KeyStore.from_file(args.keys)
    policies = {args.policy: _load(args.policy, "--policy")}
    for key in keys.keys if keys is not None else ():
        if key.policy is not None and key.policy not in policies:
            policies[key.policy] = _load(key.policy, f"--keys {args.keys}: keys.{key.name}.policy")
    for key in keys.keys if keys is not None else ():
        budget = policies[key.policy or args.policy].budget
        daily = "daily_tokens" if key.daily_cost is None else "daily_cost"
        if (
            (key.daily_tokens is not None or key.daily_cost is not None)
            and budget is not None
            and budget.ledger is not None
        ):
            raise GatewayConfigError(
                f"--keys {args.keys}: keys.{key.name}: {daily} cannot combine with a policy"
                " whose budget has its own ledger (drop one of them)"
            )
    return GatewayConfig(
        upstreams=upstreams,
        policy=args.policy,
        host=args.host,
        port=args.port,
        keys=keys,
        keys_file=args.keys,
        redis=redis_url,
        workers=args.workers,
        anthropic_upstream=anthropic,
        playground=args.playground,
        log_prompts=args.log_prompts,
        slow_client_timeout=args.slow_client_timeout,
        redis_timeout=args.redis_timeout,
        argv=list(argv),
        policies=policies,
    )


def with_policies(config: GatewayConfig, names: Sequence[str]) -> GatewayConfig:
    """Return ``config`` with the presets ``names`` loaded too (the playground's picker)."""
    policies = dict(config.policies)
    for name in names:
        if name not in policies:
            policies[name] = _load(name, "preset")
    return dataclasses.replace(config, policies=policies)
