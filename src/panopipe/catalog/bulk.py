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

from panopipe.catalog.types import UTCDateTime, column_kind, naive_utc

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


def insert_columns(
    conn: sa.Connection,
    table: sa.Table,
    columns: Mapping[str, Sequence[Any]],
    *,
    skip_conflicts: Sequence[str] | None = None,
) -> int:
    """Insert rows given by column (name -> the rows' values, all as long) into ``table`` in ``conn``'s
    transaction; the number of rows inserted. With ``skip_conflicts`` (the columns of a unique constraint),
    a row whose values there are taken (by a row already there, or one another transaction inserts meanwhile)
    is skipped (``ON CONFLICT DO NOTHING``), not an error."""
    count = len(next(iter(columns.values()), ()))
    if not count:
        return 0
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql") or count < FEW_ROWS:
        rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        if skip_conflicts is None:
            conn.execute(table.insert(), rows)
            return count
        insert = _conflict_insert(dialect)(table).on_conflict_do_nothing(index_elements=list(skip_conflicts))
        return len(conn.execute(insert.returning(*table.primary_key.columns), rows).all())
    # A column that is NULL in every row and has no server default is left out: it gets NULL all the same,
    # and the driver has fewer values to pass.
    kept = {
        name: values
        for name, values in columns.items()
        if values.count(None) < count or table.c[name].server_default is not None
    }
    names = list(kept)
    converted = [_driver_values(dialect, table.c[name], values) for name, values in kept.items()]
    values = list(zip(*converted, strict=True))
    driver = conn.connection.driver_connection
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(name) for name in names)
    conflict = ""
    if skip_conflicts is not None:
        target = ", ".join(conn.dialect.identifier_preparer.quote(name) for name in skip_conflicts)
        conflict = f" ON CONFLICT ({target}) DO NOTHING"
    base = conn.dialect.loaded_dbapi.Error
    statement = ""
    try:
        if dialect == "sqlite":
            placeholders = ", ".join("?" * len(names))
            statement = f"INSERT INTO {table.name} ({quoted}) VALUES ({placeholders}){conflict}"
            cursor = driver.cursor()  # type: ignore[union-attr]
            try:
                cursor.executemany(statement, values)
                return int(cursor.rowcount) if conflict else count
            finally:
                cursor.close()
        with driver.cursor() as cursor:  # type: ignore[union-attr]
            target_table = table.name
            if conflict:  # COPY knows no ON CONFLICT: the rows go through a temporary table
                target_table = f"pg_temp.panopipe_bulk_{table.name}"
                # Gone with the transaction, or dropped below; one left by a failed autocommit call is replaced.
                statement = f"DROP TABLE IF EXISTS {target_table}"
                cursor.execute(statement)
                statement = f"CREATE TEMPORARY TABLE {target_table} (LIKE {table.name} INCLUDING DEFAULTS)"
                cursor.execute(statement)
            statement = f"COPY {target_table} ({quoted}) FROM STDIN"
            with cursor.copy(statement) as copy:
                for item in values:
                    copy.write_row(item)
            if not conflict:
                return count
            statement = f"INSERT INTO {table.name} ({quoted}) SELECT {quoted} FROM {target_table}{conflict}"
            cursor.execute(statement)
            inserted = int(cursor.rowcount)
            statement = f"DROP TABLE {target_table}"
            cursor.execute(statement)
            return inserted
    except base as exc:  # raised as SQLAlchemy's, as for fewer rows (e.g. IntegrityError for a taken URI)
        raise sa.exc.DBAPIError.instance(statement, None, exc, base, dialect=conn.dialect) from exc


def update_by_key(
    conn: sa.Connection, table: sa.Table, key: str, keys: Sequence[Any], columns: Mapping[str, Sequence[Any]]
) -> None:
    """Set, in the row of ``table`` whose ``key`` column is each of ``keys``, the values ``columns`` give
    (name -> one value per key), in ``conn``'s transaction: one statement executed for every row by the driver
    on SQLite (``executemany``), one ``UPDATE ... FROM`` over the rows sent as arrays on PostgreSQL."""
    if not keys:
        return
    dialect = conn.dialect.name
    names = list(columns)
    if dialect not in ("sqlite", "postgresql") or len(keys) < FEW_ROWS:
        update = (
            table.update()
            .where(table.c[key] == sa.bindparam("_key"))
            .values({name: sa.bindparam(f"_{name}") for name in names})
        )
        rows = [
            {"_key": k, **{f"_{name}": v for name, v in zip(names, values, strict=True)}}
            for k, *values in zip(keys, *columns.values(), strict=True)
        ]
        conn.execute(update, rows)
        return
    preparer = conn.dialect.identifier_preparer
    driver = conn.connection.driver_connection
    base = conn.dialect.loaded_dbapi.Error
    converted = [
        _driver_values(dialect, table.c[name], values) for name, values in [(key, keys), *columns.items()]
    ]
    statement = ""
    try:
        cursor = driver.cursor()  # type: ignore[union-attr]
        try:
            if dialect == "sqlite":
                assignments = ", ".join(f"{preparer.quote(name)} = ?" for name in names)
                statement = f"UPDATE {table.name} SET {assignments} WHERE {preparer.quote(key)} = ?"
                cursor.executemany(statement, list(zip(*converted[1:], converted[0], strict=True)))
                return
            arrays = ", ".join(f"%s::{_postgres_array_type(table.c[name])}[]" for name in (key, *names))
            quoted = [preparer.quote(name) for name in (key, *names)]
            assignments = ", ".join(f"{name} = v.{name}" for name in quoted[1:])
            statement = (
                f"UPDATE {table.name} SET {assignments} FROM unnest({arrays}) AS v({', '.join(quoted)}) "
                f"WHERE {table.name}.{quoted[0]} = v.{quoted[0]}"
            )
            cursor.execute(statement, converted)
        finally:
            cursor.close()
    except base as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, base, dialect=conn.dialect) from exc


_POSTGRES_ARRAY_TYPES = {
    "u": "uuid",
    "t": "text",
    "i": "bigint",
    "I": "bigint",
    "b": "boolean",
    "d": "double precision",
    "T": "timestamp",
    "j": "jsonb",
}
"""The PostgreSQL array element type of each kind of column (:func:`column_kind`); a value converts to the
column's type when set."""


def _postgres_array_type(column: sa.Column[Any]) -> str:
    return _POSTGRES_ARRAY_TYPES[column_kind(column)]


def _driver_values(dialect: str, column: sa.Column[Any], values: Sequence[Any]) -> Sequence[Any]:
    """``values`` of ``column`` as the driver of ``dialect`` (SQLite or PostgreSQL) takes them."""
    convert = _sqlite_converter(column) if dialect == "sqlite" else _postgres_converter(column)
    return values if convert is None else _converted(values, convert)


def _conflict_insert(dialect: str) -> Any:
    """The INSERT construct of ``dialect`` (with ``on_conflict_do_nothing``)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


__all__ = ["FEW_ROWS", "Converter", "insert_columns", "read_columns", "update_by_key"]
