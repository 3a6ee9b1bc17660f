"""Declarative policies: one reviewed file configures every operator.

A :class:`Policy` is a pydantic model with one optional section per operator
(``redact``, ``budget``, ``timeout``, ``parse_json``, ``retry``, ``collect``,
``events``). Every section forbids unknown keys, so a typo is an error and
never a silently ignored setting. ``Policy.from_file`` reads JSON, TOML or
YAML; :meth:`Policy.build` turns the policy into one operator pipeline, in a
fixed order (see :data:`PIPELINE_ORDER`); :meth:`Policy.wrap` adds the retry
section around a stream factory.

The mapping from policy fields to operator arguments lives in the ``_build_*``
helpers at the end of this module, and nowhere else.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import tomllib
from collections.abc import AsyncIterable, Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .._budget._ledger import Ledger, MemoryLedger
from .._budget._pricing import DEFAULT_PRICES, PricingError
from .._budget._processor import budget
from .._budget._tokens import resolve_encoding
from .._collect import EventLogger, collect
from .._core._driver import Operator, identity
from .._core._errors import PolicyError
from .._core._report import EventCallback
from .._core._stages import ProcessorStage
from .._core._validate import did_you_mean
from .._json._operator import parse_json
from .._json._schema import schema_type
from .._redact._filter import KeyedHash, RedactPatternError, redact
from .._redact._patterns import PatternSpec, builtin_patterns, closest_builtin, is_builtin_selector
from .._retry import Backoff, retry
from .._timeout import timeout

__all__ = [
    "PIPELINE_ORDER",
    "BudgetPolicy",
    "CollectPolicy",
    "CustomPattern",
    "EventsPolicy",
    "JSONPolicy",
    "Policy",
    "PolicyError",
    "RedactPolicy",
    "RetryPolicy",
    "TimeoutPolicy",
    "load_policy",
    "preset_names",
]

PIPELINE_ORDER = ("timeout", "redact", "budget", "collect", "parse_json")
"""The order in which :meth:`Policy.build` chains the sections, first stage first.

- ``timeout`` first, next to the source: it measures the waits on the model
  itself. Placed after ``redact`` it would also count the time redaction holds
  text back (several model chunks per pull) and fire spurious idle timeouts;
  with ``on_timeout = "end"`` the stages after it still flush what they hold.
- ``redact`` before ``budget``: the budget then counts and bills the text the
  user actually sees, and it can never cut a secret in half before the filter
  has seen all of it (a key's first 20 characters may no longer match its
  pattern and would leak).
- ``collect`` after them: it records exactly what the consumer receives, and
  its ``usage`` is the budget's section.
- ``parse_json`` last: it turns the redacted, capped text into values.
- ``retry`` is not a stage: it wraps the whole pipeline around a stream
  factory (:meth:`Policy.wrap`), so text the pipeline still holds back when an
  attempt fails was never released and the attempt can be retried.
"""

_PRESETS = "presets"
_POLICY_FORMATS = (".json", ".toml", ".yaml", ".yml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------


class CustomPattern(_Section):
    """A pattern of your own in the ``redact`` section (``[[redact.custom]]`` in TOML).

    ``pattern`` is ``regex`` module syntax, checked when the policy loads: an
    invalid pattern is an error naming ``redact.custom[i].pattern``.

    >>> CustomPattern(name="ticket", pattern=r"TCK-[0-9]{6}").placeholder
    '[TICKET]'
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Identifier of the pattern: it names matches in the report and the default label."""
    pattern: str
    label: str | None = None
    """Placeholder of the ``label`` replacement (default ``[NAME]``)."""
    action: Literal["redact", "block", "flag"] | None = None
    """Overrides the section's ``action`` for this pattern."""
    ignore_case: bool = False

    @property
    def placeholder(self) -> str:
        """The placeholder text the default replacement uses."""
        return self.spec().placeholder

    def spec(self) -> PatternSpec:
        """Return the :class:`~streamops.PatternSpec` this entry describes."""
        source = f"(?i:{self.pattern})" if self.ignore_case else self.pattern
        return PatternSpec(self.name, source, label=self.label, action=self.action)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str, info: ValidationInfo) -> str:
        name = info.data.get("name", "pattern")
        if (meant := closest_builtin(pattern)) is not None:
            raise ValueError(
                f"{pattern!r} looks like the built-in {meant!r} misspelled; did you mean"
                f" {meant!r}? List built-ins in redact.patterns; to match the text itself,"
                f" write a regex that is not a bare word, such as {f'(?:{pattern})'!r}"
            )
        try:
            # redact() runs every check a pattern needs (syntax, empty match, group refs).
            redact([PatternSpec(name, pattern)], timeout=None)
        except (RedactPatternError, regex.error) as exc:
            raise ValueError(str(exc)) from None
        return pattern


class RedactPolicy(_Section):
    """The ``redact`` section: what to redact and how (:func:`streamops.redact`).

    ``patterns`` are built-in names or categories (``"secrets"``, ``"pii"``,
    ``"financial"``, ``"network"``, ``"email"``...); ``custom`` adds your own.
    ``replacement``: ``"label"`` (``[EMAIL]``), ``"fixed"`` (``fixed_text``) or
    ``"hash"`` (label and keyed hash; the key is read from the environment
    variable ``hash_key_env`` when given, else random per stream).

    >>> RedactPolicy(patterns=["email"]).patterns
    ['email']
    """

    patterns: list[str] = Field(default_factory=lambda: ["secrets", "pii", "financial"])
    custom: list[CustomPattern] = Field(default_factory=list)
    replacement: Literal["label", "fixed", "hash"] = "label"
    fixed_text: str = "[REDACTED]"
    hash_key_env: str | None = None
    action: Literal["redact", "block", "flag"] = "redact"
    max_window: int = Field(default=8192, ge=16)
    on_overflow: Literal["redact", "release"] = "redact"
    timeout: float | None = Field(default=1.0, gt=0)
    """Seconds per search of a custom pattern (a ReDoS guard)."""

    @field_validator("patterns")
    @classmethod
    def _known(cls, patterns: list[str]) -> list[str]:
        unknown = [p for p in patterns if not is_builtin_selector(p)]
        if unknown:
            hints = [f"did you mean {m!r}?" for p in unknown if (m := closest_builtin(p))]
            raise ValueError(f"unknown built-in pattern or category {unknown} {' '.join(hints)}")
        return patterns

    @model_validator(mode="after")
    def _some(self) -> RedactPolicy:
        if not self.patterns and not self.custom:
            raise ValueError("no patterns: list built-ins in patterns or add custom ones")
        names = [c.name for c in self.custom]
        if len(set(names)) != len(names):
            raise ValueError(f"custom pattern names must be unique, got {names}")
        # What build() will run, checked now: a policy that loads also builds.
        try:
            redact(
                [*self.patterns, *(c.spec() for c in self.custom)],
                action=self.action,
                max_window=self.max_window,
                on_overflow=self.on_overflow,
                timeout=self.timeout,
            )
        except (RedactPatternError, ValueError, TypeError) as exc:
            raise ValueError(str(exc)) from None
        return self


class BudgetPolicy(_Section):
    """The ``budget`` section: token and cost caps (:func:`streamops.budget`).

    ``max_cost`` (USD) needs a ``model`` in the price table. ``ledger`` shares
    the budget between streams: ``"memory"`` (this process) or a Redis URL
    (``redis://host:6379/0``, needs ``streamops[redis]``); it needs ``key`` and
    ``ledger_limit`` (tokens per ``ledger_window``) and makes the pipeline
    async-only; ``ledger_timeout`` (seconds, default 1) bounds each call to
    Redis, connecting and waiting for a pooled connection included;
    ``ledger_max_connections`` (default 100) sizes the blocking pool shared by
    every stream of the policy. ``encoding`` is resolved as
    :func:`streamops.budget` does (default ``"cl100k_base"``; ``"auto"``
    takes the encoding of ``model``), so an unavailable one fails at load.

    >>> BudgetPolicy(max_tokens=500).max_tokens
    500
    """

    max_tokens: int | None = Field(default=None, ge=0)
    max_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    model: str | None = None
    encoding: str | None = None
    prompt_tokens: int | None = Field(default=None, ge=0)
    on_exhausted: Literal["truncate", "raise"] = "truncate"
    warn_at: float | None = Field(default=0.8, gt=0, le=1)
    ledger: str | None = Field(default=None, pattern=r"^(memory|(redis|rediss|unix)://.+)$")
    ledger_limit: int | None = Field(default=None, ge=1)
    ledger_window: Literal["hour", "day"] | None = None
    ledger_timeout: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    ledger_max_connections: int = Field(default=100, ge=1)
    key: str | None = Field(default=None, min_length=1)
    block: int = Field(default=256, ge=1)
    fail_open: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> BudgetPolicy:
        if self.max_tokens is None and self.max_cost is None and self.ledger is None:
            raise ValueError("give max_tokens, max_cost or ledger")
        if self.max_cost is not None:
            if self.model is None:
                raise ValueError("max_cost needs model (to look up its price)")
            try:
                DEFAULT_PRICES.price(self.model)
            except PricingError as exc:
                raise ValueError(f"model: {exc}") from None
        try:  # the resolver budget() uses: a policy that loads builds
            resolve_encoding(self.encoding, model=self.model)
        except ValueError as exc:
            raise ValueError(f"encoding: {exc}") from None
        if self.ledger is not None and (self.key is None or self.ledger_limit is None):
            raise ValueError("a ledger needs key and ledger_limit")
        if self.ledger is None and (self.key is not None or self.ledger_limit is not None):
            raise ValueError("key and ledger_limit are only meaningful with ledger")
        return self


class TimeoutPolicy(_Section):
    """The ``timeout`` section: seconds allowed (:func:`streamops.timeout`; async only).

    >>> TimeoutPolicy(idle=30).idle
    30.0
    """

    first_chunk: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    idle: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    total: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    on_timeout: Literal["raise", "end"] = "raise"


class JSONPolicy(_Section):
    """The ``parse_json`` section: parse (and validate) the text as JSON.

    Validate against ``model`` (``"package.module:Name"``, any type pydantic
    validates) or ``json_schema`` (an inline JSON Schema subset: ``type``
    object/array/string/integer/number/boolean/null or a list of them,
    ``properties``, ``required``, ``additionalProperties: false``, ``items``,
    ``enum``; ``title``, ``description`` and ``$schema`` are ignored).
    ``output = "values"`` yields parsed values; ``"text"`` passes the text
    through unchanged and only checks it (invalid JSON still fails the stream).

    >>> schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    >>> JSONPolicy(json_schema=schema).target()
    <class '...Schema'>
    """

    model: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$")
    json_schema: dict[str, Any] | None = None
    skip_prefix: bool = False
    trailing: Literal["error", "stop"] = "error"
    multiple: bool = False
    recover: bool = False
    partial_strings: bool = True
    output: Literal["values", "text"] = "values"

    @field_validator("model")
    @classmethod
    def _importable(cls, ref: str | None) -> str | None:
        if ref is not None:
            _import_ref(ref)
        return ref

    @field_validator("json_schema")
    @classmethod
    def _supported(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            schema_type(schema, "json_schema")
        return schema

    @model_validator(mode="after")
    def _one(self) -> JSONPolicy:
        if self.model is not None and self.json_schema is not None:
            raise ValueError("give model or json_schema, not both")
        return self

    def target(self) -> Any:
        """Return the type values are validated against (``None``: no validation)."""
        if self.model is not None:
            return _import_ref(self.model)
        if self.json_schema is not None:
            return schema_type(self.json_schema, "json_schema")
        return None


class RetryPolicy(_Section):
    """The ``retry`` section: :func:`streamops.retry` options used by :meth:`Policy.wrap`.

    >>> RetryPolicy(attempts=2, backoff={"initial": 0.1}).backoff.initial
    0.1
    """

    attempts: int = Field(default=3, ge=1)
    mode: Literal["before_first_chunk", "buffered"] = "before_first_chunk"
    backoff: Backoff = Field(default_factory=Backoff)


class CollectPolicy(_Section):
    """The ``collect`` section: record text and metrics (:func:`streamops.collect`).

    >>> CollectPolicy().name
    'collect'
    """

    name: str = Field(default="collect", min_length=1)
    encoding: str | None = None
    """A tiktoken encoding name: exact token counts in the metrics."""


class EventsPolicy(_Section):
    """The ``events`` section: log every event (:class:`streamops.EventLogger`).

    >>> EventsPolicy(log=True).logger
    'streamops.events'
    """

    log: bool = False
    logger: str = "streamops.events"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


# --------------------------------------------------------------------------
# the policy
# --------------------------------------------------------------------------


class Policy(_Section):
    """A safety and cost policy: one optional section per operator, unknown keys refused.

    Load one with :meth:`from_file`, :meth:`preset` or :meth:`from_dict`; turn
    it into an operator with :meth:`build` (stages in :data:`PIPELINE_ORDER`),
    or apply it with :meth:`apply`, or with retries around a stream factory
    with :meth:`wrap`. A policy with a ``timeout`` section or a budget
    ``ledger`` works on async streams only.

    >>> policy = Policy.from_dict({"redact": {"patterns": ["email"]}, "budget": {"max_tokens": 5}})
    >>> policy.build()
    redact | budget
    >>> "".join(policy.apply(["Mail bob@example.com now, please, or else"]))
    'Mail [EMAIL] now'
    """

    name: str | None = None
    description: str = ""
    redact: RedactPolicy | None = None
    budget: BudgetPolicy | None = None
    timeout: TimeoutPolicy | None = None
    parse_json: JSONPolicy | None = None
    retry: RetryPolicy | None = None
    collect: CollectPolicy | None = None
    events: EventsPolicy | None = None
    input: RedactPolicy | None = None
    """Rules for the *request's* texts (``[input]``, the ``redact`` keys): a gateway
    (``streamops serve``) redacts them, or refuses the request on ``action = "block"``,
    before it reaches the provider. Not part of :meth:`build`; see :meth:`build_input`."""

    # One in-memory ledger per policy object, shared by every pipeline it builds.
    _ledger: Ledger | None = PrivateAttr(default=None)

    # -- loading -----------------------------------------------------------
    @classmethod
    def from_dict(cls, data: object, *, source: str = "<policy>") -> Policy:
        """Validate ``data``; errors raise :class:`PolicyError` naming ``source``.

        >>> Policy.from_dict({"budget": {"max_tokens": 10}}).budget.max_tokens
        10
        """
        if not isinstance(data, dict):
            raise PolicyError(source, [("", f"a policy is a mapping, got {type(data).__name__}")])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PolicyError(source, _describe(exc)) from None
        except RecursionError:
            raise PolicyError(source, [("", "nested too deeply")]) from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy from a ``.json``, ``.toml``, ``.yaml`` or ``.yml`` file.

        YAML needs PyYAML (``pip install 'streamops[yaml]'``). Every problem,
        from a missing file to a wrong type, raises :class:`PolicyError`.

        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.toml"
        >>> _ = path.write_text("[budget]\\nmax_tokens = 100\\n")
        >>> Policy.from_file(path).budget.max_tokens
        100
        """
        path = Path(path)
        source = str(path)
        suffix = path.suffix.lower()
        if suffix not in _POLICY_FORMATS:
            raise PolicyError(
                source, [("", f"unknown policy format {suffix!r}; use one of {_POLICY_FORMATS}")]
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(source, [("", f"cannot read the file: {exc}")]) from None
        return cls.from_dict(_parse(text, suffix, source), source=source)

    @classmethod
    def preset(cls, name: str) -> Policy:
        """Return the named preset shipped with streamops (see :func:`preset_names`).

        >>> Policy.preset("cost-capped").budget.max_cost
        0.05
        """
        names = preset_names()
        if name not in names:
            raise PolicyError(
                f"preset {name!r}",
                [("", f"no such preset{did_you_mean(name, names)}; presets: {', '.join(names)}")],
            )
        text = (
            resources.files("streamops._policy")
            .joinpath(_PRESETS, f"{name}.toml")
            .read_text("utf-8")
        )
        return cls.from_dict(_parse(text, ".toml", f"preset {name!r}"), source=f"preset {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the policy as plain data (what ``from_dict`` reads), sections left out when unset.

        >>> Policy(budget=BudgetPolicy(max_tokens=3)).to_dict()
        {'budget': {'max_tokens': 3}}
        """
        return self.model_dump(mode="json", exclude_defaults=True)

    # -- building ----------------------------------------------------------
    def build(self) -> Operator[Any, Any]:
        """Return the operator pipeline of this policy, in :data:`PIPELINE_ORDER`.

        An empty policy gives :func:`streamops.identity`. Raises
        :class:`PolicyError` if something only checkable now fails (a missing
        hash-key environment variable, the redis package not installed).
        """
        builders: dict[str, Callable[[], Operator[Any, Any] | None]] = {
            "timeout": self._build_timeout,
            "redact": self._build_redact,
            "budget": self._build_budget,
            "collect": self._build_collect,
            "parse_json": self._build_parse_json,
        }
        ops = [op for name in PIPELINE_ORDER if (op := builders[name]()) is not None]
        if not ops:
            return identity()
        pipeline = ops[0]
        for op in ops[1:]:
            pipeline = pipeline | op
        return pipeline

    def build_input(self) -> Operator[Any, Any] | None:
        """Return the operator of the ``input`` section (``None`` without one).

        Run each text of a request through it before the request is sent: its
        report's stop reason is ``blocked`` when ``action = "block"`` matched.

        >>> p = Policy.from_dict({"input": {"patterns": ["email"]}})
        >>> "".join(p.build_input()(["mail ann@example.com"]))
        'mail [EMAIL]'
        """
        if self.input is None:
            return None
        return self.model_copy(update={"redact": self.input})._build_redact()

    def on_event(self) -> EventCallback | None:
        """Return the event callback of the ``events`` section (``None`` when not logging)."""
        if self.events is None or not self.events.log:
            return None
        return EventLogger(self.events.logger, level=getattr(logging, self.events.level))

    def apply(self, source: Iterable[Any] | AsyncIterable[Any], /) -> Any:
        """Build the pipeline and run ``source`` through it (with the event logger).

        The result is the :class:`~streamops.SyncStream` or
        :class:`~streamops.AsyncStream` the operator returns. The ``retry``
        section is not used here: a retry needs a factory (:meth:`wrap`).
        """
        return self.build()(source, on_event=self.on_event())

    def wrap(
        self,
        factory: Callable[[], Iterable[Any] | AsyncIterable[Any]],
        /,
        *,
        pipeline: Operator[Any, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Stream ``factory()`` through the pipeline, retried per the ``retry`` section.

        Retry wraps the whole pipeline (each attempt gets a fresh upstream and
        fresh operator state), so an attempt that fails while text is still
        held back is retried without the consumer seeing anything twice.
        ``options`` go to :func:`streamops.retry` (``fallbacks``,
        ``on_success``, ``retry_on``, ``sleep``...). Without a ``retry``
        section the stream is made once. ``pipeline`` is the operator of
        :meth:`build` when you already built it (so it is not built twice).

        >>> policy = Policy.from_dict({"retry": {"attempts": 2, "backoff": {"initial": 0}}})
        >>> calls = []
        >>> def model():
        ...     calls.append(1)
        ...     if len(calls) == 1:
        ...         raise ConnectionResetError("dropped")
        ...     return iter(["ok"])
        >>> list(policy.wrap(model)), len(calls)
        (['ok'], 2)
        """
        op = self.build() if pipeline is None else pipeline
        settings = self.retry or RetryPolicy(attempts=1)
        options.setdefault("on_event", self.on_event())

        def attempt() -> Any:  # typed loosely: retry's overloads want one stream kind
            return op(factory())

        return retry(
            attempt,
            attempts=settings.attempts,
            mode=settings.mode,
            backoff=settings.backoff,
            **options,
        )

    def describe(self) -> str:
        """Return the resolved pipeline, one stage per line, with its settings.

        >>> print(Policy.from_dict({"budget": {"max_tokens": 5}}).describe())
        1. budget      max_tokens=5
        """
        lines = []

        def settings(section: BaseModel) -> str:
            data = section.model_dump(mode="json", exclude_unset=True)
            return " ".join(f"{k}={json.dumps(v)}" for k, v in data.items()) or "(defaults)"

        stages = [s for s in PIPELINE_ORDER if getattr(self, s) is not None]
        for i, name in enumerate(stages, 1):
            lines.append(f"{i}. {name:<11} {settings(getattr(self, name))}")
            if name == "redact" and self.redact is not None:
                found = [p.name for p in builtin_patterns(*self.redact.patterns)]
                found += [c.name for c in self.redact.custom]
                lines.append(f"   {'':<11} matches: {', '.join(found)}")
        if self.retry is not None:
            lines.append(f"around it: retry {settings(self.retry)}")
        if self.events is not None and self.events.log:
            lines.append(f"events: logged to {self.events.logger!r} at {self.events.level}")
        return "\n".join(lines) or "(empty policy: identity)"

    # -- the mapping from sections to operator arguments --------------------
    def _build_timeout(self) -> Operator[Any, Any] | None:
        t = self.timeout
        if t is None:
            return None
        return timeout(
            first_chunk=t.first_chunk, idle=t.idle, total=t.total, on_timeout=t.on_timeout
        )

    def _build_redact(self) -> Operator[Any, Any] | None:
        r = self.redact
        if r is None:
            return None
        replacement: str | KeyedHash | None = None
        if r.replacement == "fixed":
            replacement = r.fixed_text
        elif r.replacement == "hash":
            key = None
            if r.hash_key_env is not None:
                value = os.environ.get(r.hash_key_env)
                if not value:
                    raise PolicyError(
                        "policy",
                        [
                            (
                                "redact.hash_key_env",
                                f"environment variable {r.hash_key_env} is unset",
                            )
                        ],
                    )
                key = value.encode()
            replacement = KeyedHash(key=key)
        patterns: list[str | PatternSpec] = [*r.patterns, *(c.spec() for c in r.custom)]
        return redact(
            patterns,
            replacement=replacement,
            action=r.action,
            max_window=r.max_window,
            on_overflow=r.on_overflow,
            timeout=r.timeout,
        )

    def _build_budget(self) -> Operator[Any, Any] | None:
        b = self.budget
        if b is None:
            return None
        ledger = None
        if b.ledger is not None:
            # `is None`, not `or`: an empty MemoryLedger is falsy (it has __len__).
            if self._ledger is None:
                self._ledger = _make_ledger(b)
            ledger = self._ledger
        return budget(
            max_tokens=b.max_tokens,
            max_cost=b.max_cost,
            model=b.model,
            encoding=resolve_encoding(b.encoding, model=b.model),  # as validated at load
            prompt_tokens=b.prompt_tokens,
            on_exhausted=b.on_exhausted,
            warn_at=b.warn_at,
            ledger=ledger,
            key=b.key,
            block=b.block,
            fail_open=b.fail_open,
        )

    def _build_collect(self) -> Operator[Any, Any] | None:
        c = self.collect
        return None if c is None else collect(name=c.name, encoding=c.encoding)

    def _build_parse_json(self) -> Operator[Any, Any] | None:
        j = self.parse_json
        if j is None:
            return None
        op = parse_json(
            model=j.target(),
            partial_strings=j.partial_strings,
            skip_prefix=j.skip_prefix,
            trailing=j.trailing,
            multiple=j.multiple,
            recover=j.recover,
        )
        return op if j.output == "values" else _text_through(op)


def preset_names() -> list[str]:
    """Return the names of the presets shipped with streamops.

    >>> preset_names()
    ['cost-capped', 'safe-chat', 'strict-json']
    """
    folder = resources.files("streamops._policy").joinpath(_PRESETS)
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_policy(spec: str | os.PathLike[str]) -> Policy:
    """Return the policy in file ``spec``, or the preset of that name when no such file exists.

    >>> load_policy("safe-chat").name
    'safe-chat'
    """
    path = Path(spec)
    if isinstance(spec, str) and not path.exists() and path.suffix.lower() not in _POLICY_FORMATS:
        return Policy.preset(spec)
    return Policy.from_file(path)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _parse(text: str, suffix: str, source: str) -> object:
    """Decode a policy file's text; syntax errors become a one-line PolicyError."""
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix == ".toml":
            return tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if suffix == ".json" else "TOML"
        raise PolicyError(source, [("", f"invalid {kind}: {exc}")]) from None
    except RecursionError:
        raise PolicyError(source, [("", "nested too deeply")]) from None
    try:
        import yaml
    except ImportError:
        raise PolicyError(
            source, [("", "reading YAML policies needs PyYAML: pip install 'streamops[yaml]'")]
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(source, [("", "invalid YAML: " + " ".join(str(exc).split()))]) from None
    except RecursionError:
        raise PolicyError(source, [("", "nested too deeply")]) from None


def _describe(exc: ValidationError) -> list[tuple[str, str]]:
    """Turn pydantic's errors into (field path, message) pairs, in file terms."""
    found = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = ""
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        msg = " ".join(err["msg"].removeprefix("Value error, ").split())
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(loc[:-1])
            msg = "unknown key" + did_you_mean(str(loc[-1]), allowed)
            msg += f"; allowed: {', '.join(allowed)}" if allowed else ""
        elif err["type"] not in ("missing", "value_error") and not isinstance(
            err["input"], (dict, list)
        ):
            msg += f" (got {err['input']!r})"
        found.append((path, msg))
    return found


def _fields_at(loc: list[int | str]) -> list[str]:
    """The keys a section accepts, found by walking the model along ``loc``."""
    model: Any = Policy
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _import_ref(ref: str) -> Any:
    """Import ``"package.module:Name"`` (``Name`` may be dotted)."""
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {ref!r}: {exc}") from None
    try:
        TypeAdapter(obj)
    except Exception as exc:  # pydantic raises several types for "not a type"
        raise ValueError(f"{ref!r} is not a type pydantic can validate: {exc}") from None
    return obj


def _make_ledger(b: BudgetPolicy) -> Ledger:
    assert b.ledger is not None
    assert b.ledger_limit is not None
    if b.ledger == "memory":
        return MemoryLedger(limit=b.ledger_limit, window=b.ledger_window)
    if importlib.util.find_spec("redis") is None:
        raise PolicyError(
            "policy", [("budget.ledger", "a redis ledger needs: pip install 'streamops[redis]'")]
        )
    from .._budget._ledger import RedisLedger

    # A hung Redis must not hang every stream: socket and call timeouts (fail_open decides).
    return RedisLedger.from_url(
        b.ledger,
        limit=b.ledger_limit,
        window=b.ledger_window,
        timeout=b.ledger_timeout,
        max_connections=b.ledger_max_connections,
    )


class _TextThrough:
    """Feed each chunk to a JSON parser for checking, and release the text unchanged."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def done(self) -> bool:
        return bool(self._inner.done)

    def feed(self, chunk: str, /) -> list[str]:
        self._inner.feed(chunk)
        return [chunk]

    def close(self) -> list[str]:
        self._inner.close()
        return []


def _text_through(op: Operator[Any, Any]) -> Operator[Any, Any]:
    (stage,) = op.stages
    assert isinstance(stage, ProcessorStage)
    inner = stage.factory
    return Operator(ProcessorStage("parse_json(text)", lambda report: _TextThrough(inner(report))))
