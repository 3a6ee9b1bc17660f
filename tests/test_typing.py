"""mypy strict really bites, and the operator call types come out right."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parent.parent

SNIPPET = """
from collections.abc import Iterator
import streamops as so

class Chunk: ...

def chunks() -> Iterator[Chunk]:
    yield Chunk()

reveal_type(so.parse_json()(["{}"]))
reveal_type(so.redact()(["x"]))
reveal_type(so.redact()(chunks()))

def untyped(x):  # strict mode must reject this
    return x

n: int = "not an int"
"""


def test_mypy_strict_bites_and_types_flow(tmp_path: Path) -> None:
    target = tmp_path / "snippet.py"
    target.write_text(SNIPPET)
    out, err, status = mypy_api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", str(target)]
    )
    assert status == 1, err
    assert 'Revealed type is "streamops._core._driver.SyncStream[Any]"' in out
    assert 'Revealed type is "streamops._core._driver.SyncStream[str]"' in out
    assert 'Revealed type is "streamops._core._driver.SyncStream[snippet.Chunk]"' in out
    assert "Function is missing a type annotation" in out
    assert "Incompatible types in assignment" in out
