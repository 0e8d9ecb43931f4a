"""Bulk inserts through the database driver.

For tens of thousands of rows SQLAlchemy's per-value bind processing costs more than the insert itself, so
from :data:`FEW_ROWS` rows on, new rows go straight to the driver: ``executemany`` on SQLite, ``COPY`` on
PostgreSQL. Values are converted here exactly as the column types would store them (see
:mod:`panopipe.catalog.types`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.types import UTCDateTime, naive_utc

Converter = Callable[[Any], Any]
FEW_ROWS = 100
"""Fewer rows go through SQLAlchemy: one multi-row ``INSERT``, errors raised as SQLAlchemy's."""


def _sqlite_converter(column: sa.Column[Any]) -> Converter | None:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return lambda v: naive_utc(v).isoformat(" ", "microseconds")
    if isinstance(kind, sa.Uuid):
        return lambda v: v.replace("-", "")
    if isinstance(kind, sa.JSON):
        return json.dumps
    if isinstance(kind, sa.Boolean):
        return int
    return None


def _postgres_converter(column: sa.Column[Any]) -> Converter | None:
    from psycopg.types.json import Jsonb  # psycopg is loaded with the PostgreSQL dialect, not at import

    kind = column.type
    if isinstance(kind, UTCDateTime):
        return naive_utc
    if isinstance(kind, sa.JSON):
        return Jsonb
    return None


def _converted(values: Sequence[Any], convert: Converter) -> list[Any]:
    # Rows of one batch share values such as their ingest time: convert each distinct object once.
    done: dict[int, Any] = {id(None): None}
    for key, value in zip(map(id, values), values, strict=True):
        if key not in done:
            done[key] = convert(value)
    return list(map(done.__getitem__, map(id, values)))


def insert_columns(conn: sa.Connection, table: sa.Table, columns: Mapping[str, Sequence[Any]]) -> None:
    """Insert rows given by column (name -> the rows' values, all as long) into ``table`` in ``conn``'s
    transaction."""
    count = len(next(iter(columns.values()), ()))
    if not count:
        return
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql") or count < FEW_ROWS:
        rows = zip(*columns.values(), strict=True)
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    make = _sqlite_converter if dialect == "sqlite" else _postgres_converter
    # A column that is NULL in every row and has no server default is left out: it gets NULL all the same,
    # and the driver has fewer values to pass.
    kept = {
        name: values
        for name, values in columns.items()
        if values.count(None) < count or table.c[name].server_default is not None
    }
    names = list(kept)
    converted = [
        values if (convert := make(table.c[name])) is None else _converted(values, convert)
        for name, values in kept.items()
    ]
    values = list(zip(*converted, strict=True))
    driver = conn.connection.driver_connection
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(name) for name in names)
    if dialect == "sqlite":
        placeholders = ", ".join("?" * len(names))
        driver.executemany(f"INSERT INTO {table.name} ({quoted}) VALUES ({placeholders})", values)  # type: ignore[union-attr]
        return
    with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({quoted}) FROM STDIN") as copy:  # type: ignore[union-attr]
        for item in values:
            copy.write_row(item)


__all__ = ["FEW_ROWS", "Converter", "insert_columns"]
