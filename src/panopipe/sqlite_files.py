"""Opening SQLite files that already exist, by path (a route's GeoPackage, a catalog being moved), and naming
their tables and columns in SQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Literal


def open_existing(
    path: str | Path, *, mode: Literal["ro", "rw"] = "ro", **options: Any
) -> sqlite3.Connection:
    """A connection to the SQLite file at ``path``, read-only (``ro``) or read and write (``rw``), with
    :func:`sqlite3.connect`'s ``options``. A missing file is an :class:`sqlite3.OperationalError`; nothing is
    created. The path is percent-encoded into a ``file:`` URI, so that a name with ``#``, ``?``, ``%`` or a
    space opens that file, not the shorter or decoded name SQLite reads in a raw URI."""
    return sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode={mode}", uri=True, **options)


def quote_name(name: str) -> str:
    """``name`` (a table's or a column's) as an SQL identifier: in double quotes, a double quote in it doubled."""
    return '"' + name.replace('"', '""') + '"'


__all__ = ["open_existing", "quote_name"]
