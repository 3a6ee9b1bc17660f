"""Policies round-trip through their file formats unchanged."""

from __future__ import annotations

import json
import tomllib

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from streamops import Policy

_seconds = st.none() | st.floats(min_value=0.01, max_value=1e4, allow_nan=False)
_sections = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=20),
        "redact": st.fixed_dictionaries(
            {
                "patterns": st.lists(
                    st.sampled_from(["secrets", "pii", "email", "ipv4"]), min_size=1
                )
            },
            optional={
                "action": st.sampled_from(["redact", "block", "flag"]),
                # at least the widest built-in: a smaller window fails at load (issue 16)
                "max_window": st.integers(6200, 100_000),
                "custom": st.lists(
                    st.fixed_dictionaries(
                        {
                            # "c_": never a built-in's name; "-": never a misspelled one
                            "name": st.from_regex(r"\Ac_[a-z0-9_]{0,8}\Z"),
                            "pattern": st.from_regex(r"\A[a-z]{1,5}-[0-9]{1,3}\Z"),
                        }
                    ),
                    max_size=2,
                    unique_by=lambda c: c["name"],
                ),
            },
        ),
        "budget": st.fixed_dictionaries(
            {"max_tokens": st.integers(0, 10**6)},
            optional={"warn_at": st.none() | st.floats(0.01, 1.0)},
        ),
        "timeout": st.fixed_dictionaries(
            {"idle": st.floats(0.01, 1e4)}, optional={"total": _seconds}
        ),
        "retry": st.fixed_dictionaries({"attempts": st.integers(1, 10)}),
        "collect": st.just({}),
    },
)


@given(_sections)
def test_policy_round_trips_through_json_yaml_and_dicts(data: dict[str, object]) -> None:
    policy = Policy.from_dict(data)
    dumped = policy.to_dict()
    assert Policy.from_dict(json.loads(json.dumps(dumped))) == policy
    assert Policy.from_dict(yaml.safe_load(yaml.safe_dump(dumped))) == policy


@given(_sections)
@example({"name": "\x7f\U0001f600"})  # DEL and an astral character: escaped differently
def test_toml_and_json_files_agree(data: dict[str, object]) -> None:
    # TOML has no null: drop the None values, as a TOML author would leave the key out.
    clean = json.loads(json.dumps(Policy.from_dict(data).to_dict()))
    lines = []
    for key, value in clean.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml(value)}")
    for key, value in clean.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            for k, v in value.items():
                if v is not None:
                    lines.append(f"{k} = {_toml(v)}")
    parsed = tomllib.loads("\n".join(lines))
    assert Policy.from_dict(parsed) == Policy.from_dict(_drop_none(clean))


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    # A JSON string is a TOML basic string, except that TOML also refuses a raw DEL
    # (JSON escapes only U+0000-U+001F); ensure_ascii would break astral characters
    # into surrogate escapes, which TOML refuses too.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _drop_none(value: object) -> object:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value
