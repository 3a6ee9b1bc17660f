"""Policies: loading (JSON/TOML/YAML), precise errors, presets, the built pipeline."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import streamops as so
from streamops import (
    PIPELINE_ORDER,
    BudgetPolicy,
    CollectPolicy,
    CustomPattern,
    EventsPolicy,
    JSONPolicy,
    Policy,
    PolicyError,
    RedactPolicy,
    RetryPolicy,
    TimeoutPolicy,
    load_policy,
    preset_names,
)

ROOT = Path(__file__).resolve().parent.parent
TOML = """\
name = "team"
[redact]
patterns = ["email"]
[[redact.custom]]
name = "ticket"
pattern = "TCK-[0-9]{6}"
[budget]
max_tokens = 50
[collect]
"""
DATA = {
    "name": "team",
    "redact": {"patterns": ["email"], "custom": [{"name": "ticket", "pattern": "TCK-[0-9]{6}"}]},
    "budget": {"max_tokens": 50},
    "collect": {},
}


async def _slow(*chunks: str, pause: float) -> AsyncIterator[str]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(pause)


def test_the_three_formats_read_the_same_policy(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(TOML)
    (tmp_path / "p.json").write_text(json.dumps(DATA))
    (tmp_path / "p.yaml").write_text(
        "name: team\nredact:\n  patterns: [email]\n  custom:\n"
        "    - {name: ticket, pattern: 'TCK-[0-9]{6}'}\nbudget: {max_tokens: 50}\ncollect: {}\n"
    )
    policies = [Policy.from_file(tmp_path / f"p.{ext}") for ext in ("toml", "json", "yaml")]
    assert policies[0] == policies[1] == policies[2] == Policy.from_dict(DATA)
    assert policies[0].to_dict() == DATA


def test_build_follows_the_documented_order() -> None:
    policy = Policy(
        parse_json=JSONPolicy(),
        collect=CollectPolicy(),
        budget=BudgetPolicy(max_tokens=10),
        redact=RedactPolicy(patterns=["email"]),
        timeout=TimeoutPolicy(idle=5),
    )
    assert [s.name for s in policy.build().stages] == list(PIPELINE_ORDER)
    assert repr(Policy().build()) == "identity"


def test_redaction_runs_before_the_budget_counts() -> None:
    # The budget counts the placeholder the user sees, never the secret.
    policy = Policy.from_dict({"redact": {"patterns": ["email"]}, "budget": {"max_tokens": 5}})
    stream = policy.apply(["mail averyveryverylongname@example.com and more words here"])
    assert stream.text() == "mail [EMAIL] and"
    assert stream.report["budget"].completion_tokens == 5 == so.count_tokens("mail [EMAIL] and")
    assert stream.report.stop_reason == "budget"


def test_custom_patterns_replacement_and_action() -> None:
    policy = Policy.from_dict(
        {
            "redact": {
                "patterns": [],
                "custom": [{"name": "ticket", "pattern": "tck-[0-9]{3}", "ignore_case": True}],
                "replacement": "fixed",
                "fixed_text": "***",
            }
        }
    )
    assert "".join(policy.apply(["see TC", "K-123 now"])) == "see *** now"
    blocking = Policy.from_dict(
        {
            "redact": {
                "patterns": [],
                "action": "block",
                "custom": [{"name": "x", "pattern": "boom"}],
            }
        }
    )
    stream = blocking.apply(["all fine, then boom and more"])
    assert stream.text() == "all fine, then "
    assert stream.report.stop_reason == "blocked"


def test_hash_replacement_reads_its_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = Policy.from_dict(
        {"redact": {"patterns": ["email"], "replacement": "hash", "hash_key_env": "SO_KEY"}}
    )
    with pytest.raises(PolicyError, match=r"redact\.hash_key_env: environment variable SO_KEY"):
        policy.build()
    monkeypatch.setenv("SO_KEY", "k")
    text = "".join(policy.apply(["a@example.com a@example.com"]))
    first, second = text.split(" ")
    assert first == second
    assert first.startswith("[EMAIL:")


async def test_timeout_section_bounds_idle_waits() -> None:
    policy = Policy.from_dict({"timeout": {"idle": 0.05, "on_timeout": "end"}})
    stream = policy.apply(_slow("a", "b", pause=1.0))
    assert await stream.text() == "a"
    assert stream.report.stop_reason == "timeout"


async def test_memory_ledger_is_shared_by_every_stream_of_a_policy() -> None:
    policy = Policy.from_dict(
        {"budget": {"ledger": "memory", "key": "team", "ledger_limit": 3, "block": 1}}
    )
    first = policy.apply(_slow("one two", " three four", pause=0))
    assert await first.text() == "one two three"
    second = policy.apply(_slow("five six", pause=0))
    assert await second.text() == ""
    assert second.report.stop_reason == "budget"


async def test_memory_ledger_is_shared_by_concurrent_streams_of_a_policy() -> None:
    # All three pipelines are built before any of them draws on the (still
    # empty) ledger: each must get the policy's one ledger, not a fresh one.
    policy = Policy.from_dict({"budget": {"ledger": "memory", "key": "team", "ledger_limit": 40}})
    words = [f" w{i}" for i in range(25)]
    assert so.count_tokens("".join(words)) >= 25
    streams = [policy.apply(_slow(*words, pause=0)) for _ in range(3)]
    texts = await asyncio.gather(*(s.text() for s in streams))
    received = sum(so.count_tokens(t) for t in texts)
    assert received == 40
    ledger = policy._ledger
    assert isinstance(ledger, so.MemoryLedger)
    assert await ledger.spent("team") == received
    assert all(s.report["budget"].ledger_reserved > 0 for s in streams)


def test_json_section_with_a_model_reference_and_an_inline_schema() -> None:
    ref = Policy.from_dict({"parse_json": {"model": "streamops._budget._processor:ProviderUsage"}})
    values = list(ref.apply(['{"prompt_tokens": 3', ', "completion_tokens": 4}']))
    assert values[-1] == so.ProviderUsage(prompt_tokens=3, completion_tokens=4)
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
        },
        "required": ["name"],
        "additionalProperties": False,
    }
    inline = Policy.from_dict({"parse_json": {"json_schema": schema}})
    assert list(inline.apply(['{"name": "x", "tags": ["a"]}']))[-1].model_dump() == {
        "name": "x",
        "tags": ["a"],
    }
    with pytest.raises(so.JSONValidationError):
        list(inline.apply(['{"name": "x", "tags": ["c"]}']))


def test_json_text_output_checks_and_passes_text_through() -> None:
    policy = Policy.from_dict({"parse_json": {"output": "text"}})
    assert "".join(policy.apply(['{"a": ', "1}"])) == '{"a": 1}'
    with pytest.raises(so.JSONStreamError):
        list(policy.apply(['{"a": ]']))


def test_wrap_retries_the_whole_pipeline() -> None:
    policy = Policy.from_dict(
        {
            "redact": {"patterns": ["email"]},
            "retry": {"attempts": 2, "backoff": {"initial": 0, "jitter": 0}},
        }
    )
    calls: list[int] = []

    def model() -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("dropped")
        return ["write a@exa", "mple.com"]

    stream = policy.wrap(model)
    assert "".join(stream) == "write [EMAIL]"
    assert len(calls) == 2
    assert [a.outcome for a in stream.report["retry"].attempts] == ["failed", "success"]


def test_events_section_logs(caplog: pytest.LogCaptureFixture) -> None:
    policy = Policy(events=EventsPolicy(log=True, logger="so.test"), collect=CollectPolicy())
    with caplog.at_level("INFO", logger="so.test"):
        assert "".join(policy.apply(["hi"])) == "hi"
    assert [r.getMessage().split()[1] for r in caplog.records] == ["stream.start", "stream.end"]
    assert Policy().on_event() is None


@pytest.mark.parametrize("name", ["safe-chat", "strict-json", "cost-capped"])
def test_presets_load_build_and_describe(name: str) -> None:
    policy = Policy.preset(name)
    assert policy.name == name
    assert load_policy(name) == policy
    policy.build()
    assert policy.describe().startswith("1. ")


async def test_presets_are_listed_apply_their_operators_and_an_unknown_one_is_refused() -> None:
    assert preset_names() == ["cost-capped", "safe-chat", "strict-json"]
    strict = Policy.preset("strict-json")
    answer = _slow('Sure:\n```json\n{"key": "sk-', 'abcdefghijklmnopqrstuvwx"}\n```', pause=0)
    values = [v async for v in strict.apply(answer)]
    assert values[-1] == {"key": "<redacted>"}
    with pytest.raises(TypeError, match="async streams only"):
        strict.apply(["a sync stream"])
    assert Policy.preset("cost-capped").build()(["hello"]).text() == "hello"
    with pytest.raises(PolicyError, match="no such preset; presets: cost-capped, safe-chat"):
        Policy.preset("nope")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"budget": {"max_tokens": "many"}}, "budget.max_tokens: Input should be a valid integer"),
        (
            {"budget": {"max_tokns": 5}},
            r"budget.max_tokns: unknown key \(did you mean 'max_tokens'\?\); allowed: max_tokens",
        ),
        ({"colour": 1}, "colour: unknown key; allowed: name, description, redact"),
        (
            {"redact": {"custom": [{"name": "t", "pattern": "a(b"}]}},
            r"redact.custom\[0\].pattern: invalid pattern 't' \('a\(b'\): missing \)",
        ),
        ({"redact": {"custom": [{"name": "t", "pattern": "a*"}]}}, "matches the empty string"),
        ({"redact": {"patterns": ["emails"]}}, r"redact.patterns: unknown built-in .*'emails'"),
        ({"redact": {"patterns": []}}, "redact: no patterns"),
        ({"budget": {}}, "budget: give max_tokens, max_cost or ledger"),
        ({"budget": {"max_cost": 1.0}}, "max_cost needs model"),
        ({"budget": {"max_cost": 1.0, "model": "nope-1"}}, "budget: model: no price"),
        ({"budget": {"max_tokens": 5, "key": "k"}}, "only meaningful with ledger"),
        ({"budget": {"ledger": "mysql://x", "key": "k", "ledger_limit": 5}}, "budget.ledger"),
        ({"budget": {"max_tokens": 5, "encoding": "nope"}}, "budget: encoding: .*'nope'"),
        ({"budget": {"max_tokens": 5, "encoding": "auto"}}, 'encoding="auto" needs model='),
        (
            {"budget": {"max_tokens": 5, "encoding": "auto", "model": "my-model"}},
            "budget: encoding: tiktoken does not know which encoding model 'my-model' uses",
        ),
        (
            {"budget": {"ledger": "redis://x", "key": "k", "ledger_limit": 5, "ledger_timeout": 0}},
            "budget.ledger_timeout: Input should be greater than 0",
        ),
        ({"timeout": {"idle": -1}}, "timeout.idle: Input should be greater than 0"),
        ({"parse_json": {"model": "no.such.module:X"}}, "parse_json.model: cannot import"),
        (
            {"parse_json": {"json_schema": {"type": "object", "oneOf": []}}},
            "unsupported JSON Schema",
        ),
        ({"retry": {"backoff": {"initial": -1}}}, "retry.backoff.initial: Input should be"),
        ([1, 2], "a policy is a mapping, got list"),
    ],
)
def test_invalid_policies_name_the_field(data: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as info:
        Policy.from_dict(data, source="team.toml")
    text = str(info.value)
    assert text.startswith("team.toml: ")
    assert "\n" not in text
    assert isinstance(info.value, ValueError)
    assert issubclass(PolicyError, so.StreamOpsError)


def test_unreadable_or_malformed_policy_files_raise_policy_error_naming_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_toml = tmp_path / "p.toml"
    bad_toml.write_text("[budget\n")
    with pytest.raises(PolicyError, match=r"p.toml: invalid TOML: .*line 1"):
        Policy.from_file(bad_toml)
    bad_json = tmp_path / "p.json"
    bad_json.write_text("{")
    with pytest.raises(PolicyError, match=r"p\.json: invalid JSON"):
        Policy.from_file(bad_json)
    with pytest.raises(PolicyError, match="cannot read the file"):
        Policy.from_file(tmp_path / "missing.toml")
    with pytest.raises(PolicyError, match=r"unknown policy format '\.ini'"):
        Policy.from_file(tmp_path / "p.ini")
    yaml_file = tmp_path / "p.yml"
    yaml_file.write_text("budget: {max_tokens: 5}\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(PolicyError, match=r"needs PyYAML: pip install 'streamops\[yaml\]'"):
        Policy.from_file(yaml_file)


def test_section_models_are_strict() -> None:
    assert CustomPattern(name="t", pattern="x+").placeholder == "[T]"
    assert RetryPolicy().attempts == 3
    with pytest.raises(ValueError, match="Extra inputs"):
        TimeoutPolicy(idle=1, idel=2)  # type: ignore[call-arg]


EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_main_runs(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import runpy

    namespace = runpy.run_path(str(path), run_name=f"example_{path.stem}")
    namespace["main"]()
    assert capsys.readouterr().out


def test_policy_example_output() -> None:
    import runpy

    main = runpy.run_path(str(ROOT / "examples" / "policy_example.py"))["main"]
    assert main() == "Your ticket [TICKET] is open; we will mail [EMAIL] today."


def test_budget_encoding_is_resolved_as_budget_does() -> None:
    """The model picks the encoding, as budget() does: gpt-4o counts with o200k_base (offline)."""
    policy = Policy.from_dict({"budget": {"max_tokens": 5, "model": "gpt-4o"}})
    stream = policy.build()(["Hello, world! How are you?"])
    assert stream.text() == "Hello, world! How"
    usage = stream.report.sections["budget"]
    assert isinstance(usage, so.BudgetUsage)
    assert usage.encoding == "o200k_base"


def test_redis_ledger_gets_socket_timeouts_and_a_blocking_pool() -> None:
    from redis.asyncio import BlockingConnectionPool

    sized = {"ledger_timeout": 0.25, "ledger_max_connections": 7}
    for extra, seconds, size in [({}, 1.0, 100), (sized, 0.25, 7)]:
        section = {"ledger": "redis://127.0.0.1:1/0", "key": "k", "ledger_limit": 5, **extra}
        policy = Policy.from_dict({"budget": section})
        policy.build()  # no connection is made until a stream draws on the ledger
        ledger: Any = policy._ledger
        assert type(ledger).__name__ == "RedisLedger"
        assert ledger.timeout == seconds
        pool = ledger.client.connection_pool
        assert isinstance(pool, BlockingConnectionPool)  # callers wait, not fail
        assert pool.max_connections == size
        assert pool.timeout == seconds
        options = pool.connection_kwargs
        assert (options["socket_timeout"], options["socket_connect_timeout"]) == (seconds, seconds)


# -- one source of defaults: each section says what its operator says ---------------------

# Section fields that are not operator parameters: they build an argument
# (a ledger, a replacement callable, a pydantic type, an output mode).
_BUILDS_AN_ARGUMENT = {
    "BudgetPolicy": {"ledger_limit", "ledger_window", "ledger_timeout", "ledger_max_connections"},
    "RedactPolicy": {"custom", "fixed_text", "hash_key_env"},
    "JSONPolicy": {"json_schema", "output"},
}
# Defaults spelled differently in a file than in Python, with the same meaning.
_SAME_MEANING = {
    ("RedactPolicy", "replacement"): ("label", None),  # None means the pattern's label
    ("RedactPolicy", "patterns"): (None, None),  # a list default: the built-in set
    ("RetryPolicy", "backoff"): (None, None),  # a section default: Backoff()
}


@pytest.mark.parametrize(
    ("section", "operator"),
    [
        (so.TimeoutPolicy, so.timeout),
        (so.BudgetPolicy, so.budget),
        (so.RedactPolicy, so.redact),
        (so.JSONPolicy, so.parse_json),
        (so.RetryPolicy, so.retry),
        (so.CollectPolicy, so.collect),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_policy_section_defaults_match_the_operator_signature(
    section: type[BaseModel], operator: Callable[..., object]
) -> None:
    """A policy section must not restate a default that drifted from its operator's."""
    params = inspect.signature(operator).parameters
    name = section.__name__
    for field, info in section.model_fields.items():
        if field in _BUILDS_AN_ARGUMENT.get(name, set()):
            assert field not in params, f"{name}.{field} is now an operator parameter"
            continue
        assert field in params, f"{name}.{field} is not a parameter of {operator.__name__}()"
        if (name, field) != ("RedactPolicy", "patterns"):  # redact(patterns) is its subject
            assert params[field].kind is inspect.Parameter.KEYWORD_ONLY, f"{field} is positional"
        if (name, field) in _SAME_MEANING:
            continue
        assert info.default == params[field].default, f"{name}.{field} default drifted"


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_a_policy_nested_too_deeply_is_a_policy_error(tmp_path: Path, suffix: str) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(600):
        schema = {"type": "array", "items": schema}
    path = tmp_path / f"deep{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"parse_json": {"json_schema": schema}}))
    else:
        inline = json.dumps(schema).replace('"type":', "type =").replace('"items":', "items =")
        path.write_text("[parse_json]\njson_schema = " + inline)
    with pytest.raises(so.PolicyError, match="deep"):
        so.Policy.from_file(path)
    with pytest.raises(so.PolicyError):
        so.Policy.from_dict({"parse_json": {"json_schema": schema}})
