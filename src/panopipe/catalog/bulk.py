"""Bulk inserts and reads through the database driver.

For tens of thousands of rows SQLAlchemy's per-value bind processing costs more than the insert itself, so
from :data:`FEW_ROWS` rows on, new rows go straight to the driver: ``executemany`` on SQLite, ``COPY`` on
PostgreSQL. Values are converted here exactly as the column types would store them (see
:mod:`panopipe.catalog.types`). Reads of many rows (:func:`read_columns`) likewise take the driver's values
and convert them column by column, each distinct value once, as the column types would return them.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.types import UTCDateTime, naive_utc

Converter = Callable[[Any], Any]
FEW_ROWS = 100
"""Fewer rows go through SQLAlchemy: one multi-row ``INSERT``. Either way, errors are raised as SQLAlchemy's."""


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


def _sqlite_reader(column: sa.ColumnElement[Any]) -> tuple[Converter | None, bool]:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return lambda v: datetime.fromisoformat(v).replace(tzinfo=UTC), True
    if isinstance(kind, sa.Uuid):
        return _dashed_uuid, False
    if isinstance(kind, sa.JSON):
        return json.loads, False  # a new object per row: rows must not share a mutable value
    if isinstance(kind, sa.Boolean):
        return bool, True
    return None, False


def _postgres_reader(column: sa.ColumnElement[Any]) -> tuple[Converter | None, bool]:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return lambda v: v.replace(tzinfo=UTC), True
    if isinstance(kind, sa.Uuid):
        return str, False
    return None, False  # psycopg returns JSON decoded and booleans as bool


def _dashed_uuid(value: str) -> str:
    """The 32 hex digits SQLite stores for a UUID, with the dashes the column type returns it with."""
    if len(value) != 32:
        return str(uuid.UUID(value))
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}".lower()


def _read(values: Sequence[Any], convert: Converter, shared: bool) -> list[Any]:
    if not shared:
        return [None if v is None else convert(v) for v in values]
    done: dict[Any, Any] = {None: None}
    for value in values:
        if value not in done:
            done[value] = convert(value)
    return list(map(done.__getitem__, values))


def read_columns(
    conn: sa.Connection, query: sa.Select[Any], params: Mapping[str, Any] | None = None
) -> list[list[Any]]:
    """The rows ``query`` selects (executed with ``params``), as one list per selected column, converted as
    the columns' types return them (UTC datetimes, dashed UUID text, decoded JSON, booleans): on SQLite and
    PostgreSQL the driver's values converted here column by column, without SQLAlchemy's per-row processing.
    A query kept and run again (with other ``params``) has its driver-level statement built once."""
    columns = list(query.selected_columns)
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        rows = conn.execute(query, params).all()
        return [list(values) for values in zip(*rows, strict=True)] if rows else [[] for _ in columns]
    rows = conn.execute(_raw(query), params).all()
    if not rows:
        return [[] for _ in columns]
    reader = _sqlite_reader if dialect == "sqlite" else _postgres_reader
    result: list[list[Any]] = []
    for column, values in zip(columns, zip(*rows, strict=True), strict=True):
        convert, shared = reader(column)
        result.append(list(values) if convert is None else _read(values, convert, shared))
    return result


@functools.lru_cache(maxsize=64)
def _raw(query: sa.Select[Any]) -> sa.Executable:
    """``query`` selecting its columns without their types' result processing (kept: statements are
    immutable, and a kept one is not compiled again)."""
    return query.with_only_columns(
        *(
            sa.type_coerce(column, sa.types.NullType()).label(f"c{i}")
            for i, column in enumerate(query.selected_columns)
        )
    )


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
    base = conn.dialect.loaded_dbapi.Error
    try:
        if dialect == "sqlite":
            placeholders = ", ".join("?" * len(names))
            statement = f"INSERT INTO {table.name} ({quoted}) VALUES ({placeholders})"
            driver.executemany(statement, values)  # type: ignore[union-attr]
            return
        statement = f"COPY {table.name} ({quoted}) FROM STDIN"
        with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for item in values:
                copy.write_row(item)
    except base as exc:  # raised as SQLAlchemy's, as for fewer rows (e.g. IntegrityError for a taken URI)
        raise sa.exc.DBAPIError.instance(statement, None, exc, base, dialect=conn.dialect) from exc


__all__ = ["FEW_ROWS", "Converter", "insert_columns", "read_columns"]
