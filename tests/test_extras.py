"""A missing optional dependency names the extra that installs it, at the point of use."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import streamops as so
from streamops._core._extras import require
from streamops.testing import FakeOpenAIServer, run


def _without(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make ``import module`` fail as if it were not installed."""
    monkeypatch.setitem(sys.modules, module, None)


def test_virtual_time_without_looptime_names_the_testing_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without(monkeypatch, "looptime")

    async def main() -> None:
        await asyncio.sleep(0)

    coro = main()
    with pytest.raises(so.MissingExtraError, match=r"pip install 'streamops\[testing\]'") as info:
        run(coro)
    coro.close()
    assert isinstance(info.value, ModuleNotFoundError)
    assert info.value.extra == "testing"


def test_fake_server_without_starlette_names_the_server_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without(monkeypatch, "starlette")
    with pytest.raises(so.MissingExtraError, match=r"fake OpenAI server needs starlette"):
        FakeOpenAIServer("hi")


def test_sse_response_without_starlette_names_the_server_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without(monkeypatch, "starlette")

    async def chunks() -> AsyncIterator[str]:
        yield "a"

    with pytest.raises(so.MissingExtraError, match=r"streamops\[server\]"):
        so.sse_response(so.identity()(chunks()))


def test_redis_ledger_without_redis_names_the_redis_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without(monkeypatch, "redis")
    with pytest.raises(so.MissingExtraError, match=r"RedisLedger needs redis"):
        so.RedisLedger.from_url("redis://127.0.0.1:1/0", limit=10)


def test_a_broken_installed_module_is_not_reported_as_a_missing_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The module is there but *its* import fails: that error passes through unchanged."""
    (tmp_path / "streamops_probe_mod.py").write_text("import streamops_probe_missing_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("streamops_probe_mod", extra="x", feature="probe")
    assert not isinstance(info.value, so.MissingExtraError)
    assert info.value.name == "streamops_probe_missing_dep"
    with pytest.raises(so.MissingExtraError, match="probe needs streamops_probe_absent"):
        require("streamops_probe_absent", extra="x", feature="probe")


def _reimport(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.delitem(sys.modules, name, raising=False)
    __import__(name)


@pytest.mark.parametrize(
    ("missing", "extra", "use"),
    [
        ("litellm", "litellm", lambda mp: _reimport(mp, "streamops.litellm")),
        ("langchain_core", "langchain", lambda mp: _reimport(mp, "streamops.langchain")),
        (
            "opentelemetry",
            "otel",
            lambda mp: __import__("streamops.telemetry").telemetry.instrument(
                so.redact()(["a"]).report
            ),
        ),
        (
            "starlette",
            "websocket",
            lambda mp: asyncio.run(so.to_websocket(object(), so.identity()(_one()))),
        ),
        ("openai", "openai", lambda mp: so.FakeStreamingModel("hi", format="openai")),
        ("anthropic", "anthropic", lambda mp: so.FakeStreamingModel("hi", format="anthropic")),
        ("google", "gemini", lambda mp: so.FakeStreamingModel("hi", format="gemini")),
    ],
)
def test_every_integration_without_its_extra_raises_missing_extra_error(
    monkeypatch: pytest.MonkeyPatch, missing: str, extra: str, use: Any
) -> None:
    _without(monkeypatch, missing)
    for name in [m for m in sys.modules if m.startswith(f"{missing}.")]:  # imported before
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(so.MissingExtraError, match=rf"pip install 'streamops\[{extra}\]'") as info:
        use(monkeypatch)
    assert info.value.extra == extra


async def _one() -> AsyncIterator[str]:
    yield "a"
