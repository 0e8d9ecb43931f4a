"""The ``project_config`` table: the project's pipeline configuration, versioned with who, when and why.

Each ``panopipe config push`` adds a version (1, 2, ...): the project-wide part of the configuration as
canonical JSON (sorted keys, compact separators) with its SHA-256, the author and the reason. The newest version
is the one every planner uses (see :func:`panopipe.config.apply_project_config`). Versions are never changed or
removed, so the history tells which configuration made which outputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.schema import project_config
from panopipe.catalog.types import utcnow
from panopipe.errors import CatalogError, ConfigError, NotFoundError


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One stored version of the project configuration."""

    version: int
    content: dict[str, Any]
    content_hash: str
    author: str
    reason: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "content_hash": self.content_hash,
            "author": self.author,
            "reason": self.reason,
            "created_at": self.created_at,
            "content": self.content,
        }


def _version(row: Any) -> ConfigVersion:
    return ConfigVersion(
        row.version, json.loads(row.content), row.content_hash, row.author, row.reason, row.created_at
    )


def current(conn: sa.Connection, version: int | None = None) -> ConfigVersion | None:
    """The newest version (or ``version``), ``None`` when none was pushed; an unknown ``version`` is a
    :class:`~panopipe.errors.NotFoundError`."""
    query = sa.select(project_config).order_by(project_config.c.version.desc()).limit(1)
    if version is not None:
        query = sa.select(project_config).where(project_config.c.version == version)
    row = conn.execute(query).first()
    if row is None and version is not None:
        newest = conn.execute(sa.select(sa.func.max(project_config.c.version))).scalar()
        known = f"versions are 1 to {newest}" if newest else "no version was pushed yet"
        raise NotFoundError(f"no project configuration version {version}: {known}")
    return None if row is None else _version(row)


def history(conn: sa.Connection) -> list[ConfigVersion]:
    """Every version, oldest first."""
    return [
        _version(row) for row in conn.execute(sa.select(project_config).order_by(project_config.c.version))
    ]


def push(conn: sa.Connection, content: Mapping[str, Any], *, author: str, reason: str) -> ConfigVersion:
    """Store ``content`` as the next version. Of two pushes at once, the second to commit fails (the version is the
    key) with a :class:`~panopipe.errors.CatalogError` that says so."""
    from panopipe.steps.fingerprint import canonical_json, fingerprint

    if not reason.strip():
        raise ConfigError("a configuration push needs a reason (--reason)")
    newest = conn.execute(sa.select(sa.func.max(project_config.c.version))).scalar() or 0
    text = canonical_json(content)
    stored = ConfigVersion(newest + 1, json.loads(text), fingerprint(content), author, reason, utcnow())
    row = {"content": text, "content_hash": stored.content_hash, "author": author, "reason": reason}
    try:
        conn.execute(
            project_config.insert().values(version=stored.version, created_at=stored.created_at, **row)
        )
    except sa.exc.IntegrityError:
        raise CatalogError(
            f"another push stored version {stored.version} at the same time: look at `panopipe config history`, "
            "then push again"
        ) from None
    return stored


__all__ = ["ConfigVersion", "current", "history", "push"]
