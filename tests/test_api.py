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


@pytest.mark.parametrize("public", ["__init__.py", "lowlevel.py", "testing/__init__.py"])
def test_public_names_are_imported_from_the_module_that_defines_them(public: str) -> None:
    """A reader following an import lands on the definition, not on another re-export."""
    package = Path(so.__file__).parent  # the installed package under .ci/run's wheel check
    path = package / public
    here = path.parent
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.ImportFrom) or not node.level or node.module is None:
            continue
        base = here
        for _ in range(node.level - 1):
            base = base.parent
        source = base.joinpath(*node.module.split("."))
        source = source / "__init__.py" if source.is_dir() else source.with_suffix(".py")
        tree = ast.parse(source.read_text(encoding="utf-8"))
        defined: set[str] = set()
        for top in tree.body:
            if isinstance(top, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                defined.add(top.name)
            elif isinstance(top, ast.Assign):
                defined.update(t.id for t in top.targets if isinstance(t, ast.Name))
            elif isinstance(top, ast.AnnAssign) and isinstance(top.target, ast.Name):
                defined.add(top.target.id)
        for alias in node.names:
            if alias.name.startswith("_"):  # private modules (registering imports)
                continue
            assert alias.name in defined, f"{public}: {alias.name} is not defined in {source}"
