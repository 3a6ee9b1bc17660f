"""The redact section of a policy: what passes validation builds (issue 16)."""

from __future__ import annotations

import pytest

import streamops as so
from streamops._policy._policy import Policy, PolicyError


@pytest.mark.parametrize(
    ("section", "message"),
    [
        # valid alone, refused once ignore_case wraps it under V1 (full case folding)
        (
            {"custom": [{"name": "k", "pattern": r"(?V1)ssh-rsa", "ignore_case": True}]},
            "full case folding",
        ),
        # a window too small for a selected built-in
        ({"patterns": ["secrets"], "max_window": 64}, "max_window=64 cannot hold"),
        # a custom pattern named like a selected built-in
        ({"patterns": ["email"], "custom": [{"name": "email", "pattern": "x@y"}]}, "named 'email'"),
        # V0 and V1 patterns mixed
        (
            {
                "patterns": [],
                "custom": [
                    {"name": "a", "pattern": r"(?V1)a[[b]]"},
                    {"name": "b", "pattern": r"(?V0)b"},
                ],
            },
            "mix regex versions",
        ),
    ],
)
def test_policy_that_validates_also_builds(section: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.from_dict({"redact": section})


@pytest.mark.parametrize(("typo", "meant"), [("emial", "email"), ("secret", "secrets")])
def test_policy_builtin_typo_says_what_was_meant(typo: str, meant: str) -> None:
    with pytest.raises(PolicyError, match=f"did you mean '{meant}'"):
        Policy.from_dict({"redact": {"patterns": [typo]}})


def test_policy_custom_pattern_that_is_a_misspelled_builtin_name_is_an_error() -> None:
    with pytest.raises(PolicyError, match="did you mean 'email'"):
        Policy.from_dict({"redact": {"custom": [{"name": "mail", "pattern": "emial"}]}})
    # a literal on purpose: a regex that is not a bare word
    policy = Policy.from_dict({"redact": {"custom": [{"name": "w", "pattern": "(?:emial)"}]}})
    assert "".join(policy.build()(["an emial"])) == "an [W]"


def test_valid_policy_builds() -> None:
    policy = Policy.from_dict(
        {"redact": {"patterns": ["email"], "custom": [{"name": "t", "pattern": "TCK-[0-9]{6}"}]}}
    )
    out = "".join(policy.build()(["a@example.com TCK-123456"]))
    assert out == "[EMAIL] [T]"
    assert isinstance(so.StopReason.COMPLETE, so.StopReason)
