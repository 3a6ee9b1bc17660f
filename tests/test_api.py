"""The public surface: every exported name is documented and tested."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import streamops as so

ROOT = Path(__file__).resolve().parent.parent
TEST_TEXT = "\n".join(
    p.read_text(encoding="utf-8")
    for folder in ("tests", "property_tests")
    for p in sorted((ROOT / folder).glob("*.py"))
    if p.name != "test_api.py"
)


def test_all_is_unique_and_resolvable() -> None:
    assert len(set(so.__all__)) == len(so.__all__)
    for name in so.__all__:
        assert hasattr(so, name), name


@pytest.mark.parametrize("name", so.__all__)
def test_public_name_has_docstring(name: str) -> None:
    obj = getattr(so, name)
    doc = inspect.getdoc(obj)
    assert doc, f"streamops.{name} has no docstring"


@pytest.mark.parametrize("name", so.__all__)
def test_public_name_is_used_by_a_test(name: str) -> None:
    pattern = re.compile(rf"\b(so|streamops|testing)\.{re.escape(name)}\b|\bimport[^\n]*\b{name}\b")
    assert pattern.search(TEST_TEXT), f"no test mentions streamops.{name}"


def test_errors_derive_from_the_base() -> None:
    for name in so.__all__:
        obj = getattr(so, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, so.StreamOpsError), name


def test_package_ships_py_typed() -> None:
    assert (Path(so.__file__).parent / "py.typed").is_file()
