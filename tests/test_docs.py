"""Every ```python block of README.md and docs/*.md runs as written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((path.relative_to(ROOT).as_posix(), line, match.group(1)))
    return found


BLOCKS = _blocks()


def test_readme_has_examples() -> None:
    assert any(name == "README.md" for name, _, _ in BLOCKS)


@pytest.mark.parametrize(("name", "line", "code"), BLOCKS, ids=[f"{n}:{ln}" for n, ln, _ in BLOCKS])
def test_doc_block_runs(name: str, line: int, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real module in sys.modules, so that pydantic can resolve annotations.
    module = types.ModuleType(f"docs_{Path(name).stem}_{line}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    compiled = compile("\n" * line + code, name, "exec")  # tracebacks show file lines
    exec(compiled, module.__dict__)
