"""The walls between owners: every table has one owning module, and only owners reach the database.

Only a table's owner imports the table definitions (``panopipe.catalog.schema``); nothing outside
``catalog/`` imports ``panopipe.catalog.engine`` or uses an ``.engine`` attribute (the catalog opens
connections: ``Catalog.transaction()`` and ``Catalog.connect()``); and only ``catalog/`` and the job store
import SQLAlchemy (an import under ``if TYPE_CHECKING:``, for typing a connection, is allowed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import panopipe
from panopipe.catalog.schema import metadata

OWNERS = {
    "images": "panopipe.catalog",
    "edits": "panopipe.catalog",
    "image_flags": "panopipe.catalog.flags",
    "file_copies": "panopipe.catalog.file_copies",
    "routes": "panopipe.catalog.routes",
    "artifacts": "panopipe.pipeline.store",
    "jobs": "panopipe.pipeline.store",
    "project_config": "panopipe.catalog.project_config",
}
"""Each table's owning module or package."""

CATALOG = "panopipe.catalog"
SQL_MODULES = (CATALOG, "panopipe.pipeline.store")

SOURCE = Path(panopipe.__file__).parent


def _within(module: str, owner: str) -> bool:
    return module == owner or module.startswith(f"{owner}.")


def _imported(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``tree``, outside ``if TYPE_CHECKING:`` blocks; ``from a import
    b`` counts as importing both ``a`` and ``a.b``."""
    found: list[tuple[int, str]] = []
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join([*package, base] if base else package)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(module: str, source: str) -> list[str]:
    """What ``source``, the code of ``module``, does that its place does not allow."""
    tree = ast.parse(source)
    problems: list[str] = []
    owns_a_table = any(_within(module, owner) for owner in OWNERS.values())
    for line, name in _imported(tree, module):
        if _within(name, "panopipe.catalog.schema") and not owns_a_table:
            problems.append(f"{module}:{line} imports the table definitions; call their owner")
        if _within(name, "panopipe.catalog.engine") and not _within(module, CATALOG):
            problems.append(f"{module}:{line} imports the engine; open connections through the Catalog")
        if _within(name, "sqlalchemy") and not any(_within(module, owner) for owner in SQL_MODULES):
            problems.append(f"{module}:{line} imports SQLAlchemy; SQL belongs to a table's owner")
    if not _within(module, CATALOG):
        problems += [
            f"{module}:{node.lineno} uses .engine; use Catalog.transaction() or Catalog.connect()"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "engine"
        ]
    return list(dict.fromkeys(problems))  # ``from a import b`` imports a and a.b: one problem


def _modules() -> list[tuple[str, Path]]:
    modules = []
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules.append((".".join(parts), path))
    return modules


def test_every_table_has_an_owner():
    assert set(metadata.tables) == set(OWNERS)


def test_only_owners_reach_tables_connections_and_sql():
    problems = [
        p for module, path in _modules() for p in violations(module, path.read_text(encoding="utf-8"))
    ]
    assert problems == []


@pytest.mark.parametrize(
    "module, source, problem",
    [
        ("panopipe.sync", "from panopipe.catalog.schema import images", "imports the table definitions"),
        ("panopipe.pipeline.status", "from panopipe.catalog import schema", "imports the table definitions"),
        ("panopipe.ingest", "import panopipe.catalog.engine", "open connections through the Catalog"),
        ("panopipe.ingest", "def f(catalog):\n    return catalog.engine.url", "uses .engine"),
        ("panopipe.events.handler", "import sqlalchemy as sa", "SQL belongs to a table's owner"),
        ("panopipe.pipeline.planner", "from sqlalchemy import select", "SQL belongs to a table's owner"),
    ],
)
def test_a_module_outside_its_place_is_reported(module: str, source: str, problem: str):
    (found,) = violations(module, source)
    assert problem in found


@pytest.mark.parametrize(
    "module, source",
    [
        ("panopipe.pipeline.store", "import sqlalchemy as sa\nfrom panopipe.catalog.schema import jobs"),
        ("panopipe.catalog.shots", "from panopipe.catalog.schema import images\nx = conn.engine"),
        (
            "panopipe.pipeline.planner",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sqlalchemy",
        ),
    ],
)
def test_owners_and_typing_only_imports_are_allowed(module: str, source: str):
    assert violations(module, source) == []
