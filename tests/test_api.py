"""The public surface: every exported name is documented and tested."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import streamops as so

ROOT = Path(__file__).resolve().parent.parent


def _names_used_by_tests() -> set[str]:
    """Names tests import from streamops or reach as ``so.X``/``streamops.X``."""
    used: set[str] = set()
    for folder in ("tests", "property_tests"):
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name == "test_api.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("streamops"):
                    used.update(alias.name for alias in node.names)
                elif (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in {"so", "streamops", "testing"}
                ):
                    used.add(node.attr)
    return used


USED = _names_used_by_tests()


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
    assert name in USED, f"no test uses streamops.{name}"


def test_errors_derive_from_the_base() -> None:
    for name in so.__all__:
        obj = getattr(so, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, so.StreamOpsError), name


def test_package_ships_py_typed() -> None:
    assert (Path(so.__file__).parent / "py.typed").is_file()
