"""Every module states its public names in a sorted ``__all__``, and packages export what they import.

A module's public names are what it defines at top level (functions, classes, constants and aliases not
starting with ``_``; type variables are typing plumbing, not API). A package ``__init__`` exports exactly those
plus the public names it imports from panopipe's modules (also when imported for type checking only and loaded
on first use). The alembic scripts under ``catalog/migrations`` are run by alembic, not imported, and are left out.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "panopipe"
SKIPPED = PACKAGE / "catalog" / "migrations"
PLUMBING = {"TypeVar", "ParamSpec", "TypeVarTuple", "getLogger"}
LAZY_HELPER = "panopipe.lazy"  # what a package imports to serve its names lazily, not one of them


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = [path for path in PACKAGE.rglob("*.py") if SKIPPED not in path.parents]
MODULES = sorted(module_name(path) for path in FILES)
PACKAGES = sorted(module_name(path) for path in FILES if path.name == "__init__.py")


def isort_style(name: str) -> tuple[int, list[str | int]]:
    """Ruff's order for ``__all__`` (RUF022): CONSTANTS, then Classes, then the rest, each in natural order."""
    casing = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return casing, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _top_level(body: list[ast.stmt], *, type_checking: bool = True) -> list[ast.stmt]:
    """The statements at a module's top level, also in its ``if``/``try`` blocks; those under
    ``if TYPE_CHECKING:`` only with ``type_checking``."""
    statements = []
    for node in body:
        statements.append(node)
        if isinstance(node, ast.If):
            if type_checking or ast.unparse(node.test) != "TYPE_CHECKING":
                statements += _top_level(node.body, type_checking=type_checking)
            statements += _top_level(node.orelse, type_checking=type_checking)
        elif isinstance(node, ast.Try):
            statements += _top_level(node.body + node.orelse + node.finalbody, type_checking=type_checking)
            for handler in node.handlers:
                statements += _top_level(handler.body, type_checking=type_checking)
    return statements


def _is_plumbing(value: ast.expr | None) -> bool:
    """Whether ``value`` makes a type variable or a logger."""
    if not isinstance(value, ast.Call):
        return False
    function = value.func
    name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
    return name in PLUMBING


def defined_names(tree: ast.Module) -> set[str]:
    """The public names a module's top level defines."""
    names: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign) and not _is_plumbing(node.value):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and not _is_plumbing(node.value)
        ):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def imported_names(name: str) -> dict[str, str]:
    """Public names a package imports from panopipe's public modules, each with where it comes from.

    Names imported for type checking count only in a package that serves names on first use (a module
    ``__getattr__``); elsewhere they are there for annotations.
    """
    lazy = "__getattr__" in vars(importlib.import_module(name))
    names = {}
    for node in _top_level(source(name).body, type_checking=lazy):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "panopipe":
            if node.module == LAZY_HELPER or any(part.startswith("_") for part in node.module.split(".")):
                continue
            for alias in node.names:
                name = alias.asname or alias.name
                if not name.startswith("_"):
                    names[name] = f"{node.module}.{alias.name}"
    return names


def source(name: str) -> ast.Module:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    return ast.parse(Path(module.__file__).read_text(encoding="utf-8"))


def test_every_module_is_checked():
    assert {"panopipe", "panopipe.cli.app", "panopipe.catalog", "panopipe.stitching.base"} <= set(MODULES)
    assert {"panopipe", "panopipe.catalog", "panopipe.stitching"} <= set(PACKAGES)
    assert not [name for name in MODULES if name.startswith("panopipe.catalog.migrations")]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_the_public_names(name: str):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__ list"
    assert exported == sorted(set(exported), key=isort_style), (
        f"{name}.__all__ is not sorted or has duplicates"
    )
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names what the module lacks: {missing}"
    tree = source(name)
    unlisted = sorted(defined_names(tree) - set(exported))
    assert not unlisted, f"public names of {name} missing from its __all__: {unlisted}"
    if name in PACKAGES:
        expected = defined_names(tree) | set(imported_names(name))
        assert set(exported) == expected, (
            f"{name}.__all__ differs from what the package defines and imports: "
            f"extra {sorted(set(exported) - expected)}, not exported {sorted(expected - set(exported))}"
        )


@pytest.mark.parametrize("name", PACKAGES)
def test_package_names_are_the_objects_they_import(name: str):
    """A name a package loads lazily is the one it imports for type checking, not another of the same name."""
    package = importlib.import_module(name)
    for exported, origin in imported_names(name).items():
        module, _, attribute = origin.rpartition(".")
        assert getattr(package, exported) is getattr(importlib.import_module(module), attribute), (
            f"{name}.{exported} is not {origin}"
        )
