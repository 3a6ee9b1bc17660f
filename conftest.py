"""Shared pytest configuration: Hypothesis profiles."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_configure() -> None:
    # looptime's pytest hook asks the policy for "the" event loop in every test,
    # sync ones included; on Python 3.11 that silently creates a loop nobody
    # closes (a ResourceWarning, an error under -W error). Marking the loop as
    # explicitly unset makes that call raise instead, which looptime handles.
    # This is our suite's choice, not something the shipped plugin imposes.
    import asyncio

    asyncio.set_event_loop(None)
