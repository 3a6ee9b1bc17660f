"""Each example in examples/ runs against the fake server or a fake model (no network)."""

from __future__ import annotations

import ast
import runpy
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SECRET = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"


def run_main(name: str) -> Any:
    namespace = runpy.run_path(str(EXAMPLES / name))
    return namespace["main"]()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_examples_use_only_public_names(path: Path) -> None:
    """Examples are what users copy: they import public modules only, never ``streamops._*``."""
    imported: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)
    ours = [name for name in imported if name.split(".")[0] == "streamops"]
    assert "streamops" in ours
    public = {"streamops", "streamops.testing", "streamops.lowlevel"}
    public |= {"streamops.langchain", "streamops.litellm", "streamops.telemetry"}
    assert set(ours) <= public


def test_openai_wrap(capsys: pytest.CaptureFixture[str]) -> None:
    text, chunks = run_main("openai_wrap.py")
    assert text == "Set OPENAI_API_KEY=[OPENAI_KEY] and retry. Questions? Write to [EMAIL]."
    assert all(type(c).__name__ == "ChatCompletionChunk" for c in chunks)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    assert SECRET not in capsys.readouterr().out


def test_langchain_wrap() -> None:
    full, received = run_main("langchain_wrap.py")
    assert full.content == "Sure. My email is [EMAIL] and my card is [CREDIT_CARD]."
    assert all(type(c).__name__ == "AIMessageChunk" for c in received)
    assert len({c.id for c in received}) == 1


def test_fastapi_sse() -> None:
    events = run_main("fastapi_sse.py")
    text = "".join(e.data for e in events if e.event == "message")
    assert text == "Your account key is [OPENAI_KEY]; keep it safe."
    report = events[-1].json()
    assert events[-1].event == "report"
    assert report["stop_reason"] == "complete"
    assert report["sections"]["redact"]["redacted"] == {"openai_key": 1}
