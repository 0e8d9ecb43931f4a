"""Move a catalog (typically SQLite) to PostgreSQL / Amazon RDS, resumably, and prove the copy is exact.

Resume design: every table is copied in primary-key order, one ``COPY`` per batch, each batch committed on its
own. The rows already on the target are therefore always a key-ordered prefix of the source, so the resume
point of a table is simply ``max(key)`` on the target: no bookkeeping table is needed (the target stays exactly
the schema the migrations create) and a batch is either entirely there or not at all. Before resuming, the
prefix is checked (same row count up to that key, same content in the last batch) so that rows of another
catalog are refused instead of being extended.

Checksum design: each side is read in key order and every row written as one compact JSON array of
canonical values (floats as Python's ``repr``, so every bit counts; times as ISO 8601 UTC; JSON documents with
sorted keys and numbers compared as numbers, as jsonb does; UUIDs as 32 lowercase hex digits; booleans as
``true``/``false``; SQL ``NULL`` kept apart from JSON ``null``); the SHA-256 of those lines is compared with
the row counts. It is computed in Python on both sides, so SQLite and PostgreSQL agree by construction.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from psycopg import sql

from panopipe.catalog.engine import (
    catalog_url,
    check_schema,
    connect,
    create_catalog_engine,
    current_revision,
    head_revision,
    mask_url,
    upgrade,
)
from panopipe.catalog.schema import artifacts, edits, images, jobs
from panopipe.catalog.types import UTCDateTime
from panopipe.errors import CatalogError, ConfigError

TABLES: tuple[sa.Table, ...] = (images, jobs, edits, artifacts)
"""The catalog's tables, parents before the tables whose foreign keys point at them."""

SERIAL_TABLES: tuple[sa.Table, ...] = (edits, artifacts)
_OWN_TABLES = frozenset({*(table.name for table in TABLES), "alembic_version"})
DEFAULT_BATCH_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """Where a move stands: ``rows_done`` of ``rows_total`` rows of ``table`` copied or verified."""

    phase: Literal["copy", "verify"]
    table: str
    rows_done: int
    rows_total: int


@dataclass(frozen=True, slots=True)
class TableTransfer:
    """One table of a move: rows in the source, rows the target already held, rows this run copied."""

    table: str
    source_rows: int
    present_rows: int
    copied_rows: int


@dataclass(frozen=True, slots=True)
class TableCheck:
    """Row counts and content checksums of one table on both sides."""

    table: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def ok(self) -> bool:
        """Whether both sides hold the same rows."""
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


@dataclass(frozen=True, slots=True)
class TransferReport:
    """What :func:`migrate_catalog` did (or, on a dry run, would do) and what verification found."""

    source: str
    target: str
    dry_run: bool
    create_schema: bool
    tables: tuple[TableTransfer, ...]
    checks: tuple[TableCheck, ...] = ()
    seconds: float = 0.0
    verified: bool = False

    @property
    def resumed(self) -> bool:
        """Whether the target already held part of the catalog (an interrupted move being continued)."""
        return any(table.present_rows for table in self.tables)

    @property
    def rows_copied(self) -> int:
        """Rows copied by this run, all tables together."""
        return sum(table.copied_rows for table in self.tables)

    @property
    def mismatches(self) -> list[TableCheck]:
        """The tables whose verification failed."""
        return [check for check in self.checks if not check.ok]

    @property
    def ok(self) -> bool:
        """False when verification found a difference."""
        return not self.mismatches

    def raise_for_mismatch(self) -> None:
        """Raise :class:`CatalogError` naming the tables that differ, if any."""
        if self.mismatches:
            names = ", ".join(
                f"{c.table} ({c.source_rows} rows in the source, {c.target_rows} in the target"
                f"{', content differs' if c.source_rows == c.target_rows else ''})"
                for c in self.mismatches
            )
            raise CatalogError(f"{self.target} does not match {self.source}: {names}")

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        return {
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "create_schema": self.create_schema,
            "resumed": self.resumed,
            "rows_copied": self.rows_copied,
            "seconds": round(self.seconds, 3),
            "verified": self.verified,
            "ok": self.ok,
            "tables": [
                {
                    "table": t.table,
                    "source_rows": t.source_rows,
                    "present_rows": t.present_rows,
                    "copied_rows": t.copied_rows,
                }
                for t in self.tables
            ],
            "checks": [
                {
                    "table": c.table,
                    "source_rows": c.source_rows,
                    "target_rows": c.target_rows,
                    "source_sha256": c.source_checksum,
                    "target_sha256": c.target_checksum,
                    "ok": c.ok,
                }
                for c in self.checks
            ],
        }


Progress = Callable[[TransferProgress], None]


def migrate_catalog(
    source: sa.Engine | str,
    target_url: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    verify: bool = True,
    progress: Progress | None = None,
) -> TransferReport:
    """Copy the catalog at ``source`` into the PostgreSQL database at ``target_url`` and verify the copy.

    The target gets the schema from panopipe's migrations, then every table's rows with their ids; edit and
    artifact id sequences continue after the copied ids. Running it again after an interruption continues
    where it stopped. A target holding other tables, another schema revision or rows the source cannot
    account for is refused. With ``dry_run`` nothing is written: the report says what would move.
    """
    if batch_size < 1:
        raise ConfigError(f"invalid batch size {batch_size}: expected at least 1")
    started = time.monotonic()
    with _engine(source, must_exist=True) as source_engine, _engine(target_url) as target_engine:
        if target_engine.dialect.name != "postgresql":
            raise ConfigError(
                f"cannot migrate to {mask_url(target_engine.url)}: the target must be a postgresql:// URL"
            )
        check_schema(source_engine, create=False)
        create = _check_target(target_engine)
        if create and not dry_run:
            upgrade(target_engine)
        resume = (
            {table.name: (0, None) for table in TABLES}
            if create
            else {t.name: _resume_point(t, source_engine, target_engine, batch_size) for t in TABLES}
        )
        totals = {table.name: _count(source_engine, table) for table in TABLES}
        copied = dict.fromkeys(totals, 0)
        if not dry_run:
            for table in TABLES:
                present, after = resume[table.name]
                copied[table.name] = _copy_table(
                    table,
                    source_engine,
                    target_engine,
                    after,
                    present,
                    totals[table.name],
                    batch_size,
                    progress,
                )
            _reset_sequences(target_engine)
        checks = (
            verify_transfer(source_engine, target_engine, batch_size=batch_size, progress=progress)
            if verify and not dry_run
            else []
        )
        return TransferReport(
            source=mask_url(source_engine.url),
            target=mask_url(target_engine.url),
            dry_run=dry_run,
            create_schema=create,
            tables=tuple(
                TableTransfer(t.name, totals[t.name], resume[t.name][0], copied[t.name]) for t in TABLES
            ),
            checks=tuple(checks),
            seconds=time.monotonic() - started,
            verified=bool(checks),
        )


def verify_transfer(
    source: sa.Engine | str,
    target: sa.Engine | str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> list[TableCheck]:
    """Compare every catalog table of ``source`` and ``target``: row counts and content checksums."""
    checks: list[TableCheck] = []
    with (
        _engine(source, must_exist=True) as source_engine,
        _engine(target) as target_engine,
        ThreadPoolExecutor(max_workers=1) as worker,
    ):
        for table in TABLES:
            # The target is read in a worker thread while this one reads the source: the waits overlap.
            target_side = worker.submit(_digest, target_engine, table, batch_size=batch_size)
            source_rows, source_sum = _digest(source_engine, table, batch_size=batch_size, progress=progress)
            target_rows, target_sum = target_side.result()
            checks.append(TableCheck(table.name, source_rows, target_rows, source_sum, target_sum))
    return checks


class _engine:
    """An engine for ``location``; one this module created is disposed on exit, a given one is left open."""

    def __init__(self, location: sa.Engine | str, *, must_exist: bool = False):
        if isinstance(location, sa.Engine):
            self.engine, self.owned = location, False
            return
        url = catalog_url(location)
        if must_exist and url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            raise CatalogError(f"no catalog at {url.database}")
        self.engine, self.owned = create_catalog_engine(url), True

    def __enter__(self) -> sa.Engine:
        return self.engine

    def __exit__(self, *exc_info: object) -> None:
        if self.owned:
            self.engine.dispose()


def _check_target(engine: sa.Engine) -> bool:
    """Whether the target is empty (and needs the schema); refuses a target that is not a catalog like ours."""
    with connect(engine) as conn:
        names = set(sa.inspect(conn).get_table_names())
    target = mask_url(engine.url)
    foreign = sorted(names - _OWN_TABLES)
    if foreign:
        raise CatalogError(
            f"{target} holds tables that are not panopipe's ({', '.join(foreign)}): "
            "migrate into an empty database or schema"
        )
    if not names:
        return True
    revision = current_revision(engine)
    if revision != head_revision():
        raise CatalogError(
            f"{target} holds a panopipe catalog at schema {revision or 'none'}, not {head_revision()}: "
            "migrate into an empty database, or bring both catalogs to the same version with `panopipe db upgrade`"
        )
    return False


def _key(table: sa.Table) -> sa.Column[Any]:
    (column,) = table.primary_key.columns
    return column


def _count(engine: sa.Engine, table: sa.Table, *conditions: sa.ColumnElement[bool]) -> int:
    with connect(engine) as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*conditions)).scalar_one()


def _resume_point(table: sa.Table, source: sa.Engine, target: sa.Engine, batch_size: int) -> tuple[int, Any]:
    """Rows of ``table`` already on the target and the last key copied; refuses rows not from ``source``."""
    key = _key(table)
    with connect(target) as conn:
        # ORDER BY ... LIMIT 1 rather than max(): PostgreSQL has no max(uuid), and this reads one index entry.
        last = conn.execute(sa.select(key).order_by(key.desc()).limit(1)).scalar()
    if last is None:
        return 0, None
    present = _count(target, table)
    expected = _count(source, table, key <= last)
    if expected == present == _count(source, table):
        return present, last  # nothing left to copy: the final verification judges the content
    boundary = {
        engine: _digest(engine, table, batch_size=batch_size, upto=last, limit=batch_size)
        for engine in (source, target)
    }
    if expected != present or boundary[source] != boundary[target]:
        raise CatalogError(
            f"{mask_url(target.url)} already holds {present} {table.name} rows that are not a copy of "
            f"{mask_url(source.url)}: migrate into an empty database or schema"
        )
    return present, last


def _copy_columns(table: sa.Table, dialect: sa.Dialect) -> list[sa.ColumnElement[Any]]:
    """The columns as stored: JSON undecoded (so SQL NULL and JSON null stay apart), times as naive UTC,
    UUIDs undecoded.

    SQLite gives its JSON columns NUMERIC affinity: a JSON number is stored as a REAL and ``CAST(... AS TEXT)``
    would round it to 15 digits, so there the raw value is read and turned into JSON text by :func:`_json_text`.
    """
    columns: list[sa.ColumnElement[Any]] = []
    for column in table.columns:
        if isinstance(column.type, sa.JSON):
            raw = sa.type_coerce(column, sa.Text) if dialect.name == "sqlite" else sa.cast(column, sa.Text)
            columns.append(raw.label(column.name))
        elif isinstance(column.type, UTCDateTime):
            columns.append(sa.type_coerce(column, sa.DateTime()).label(column.name))
        elif isinstance(column.type, sa.Uuid):
            # 32 hex digits on SQLite, a UUID on PostgreSQL: both are valid uuid input for COPY.
            columns.append(sa.type_coerce(column, sa.String()).label(column.name))
        else:
            columns.append(column)
    return columns


def _copy_table(
    table: sa.Table,
    source: sa.Engine,
    target: sa.Engine,
    after: Any,
    present: int,
    total: int,
    batch_size: int,
    progress: Progress | None,
) -> int:
    key = _key(table)
    query = sa.select(*_copy_columns(table, source.dialect)).order_by(key)
    if after is not None:
        query = query.where(key > after)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
    )
    json_columns = [i for i, column in enumerate(table.columns) if isinstance(column.type, sa.JSON)]
    copied = 0
    with connect(source) as src:
        result = src.execution_options(yield_per=batch_size).execute(query)
        for batch in result.partitions(batch_size):
            with target.begin() as conn:
                _copy_batch(conn, statement, batch, json_columns)
            copied += len(batch)
            if progress:
                progress(TransferProgress("copy", table.name, present + copied, total))
    return copied


def _copy_batch(
    conn: sa.Connection, statement: sql.Composed, batch: Sequence[Any], json_columns: Sequence[int]
) -> None:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(statement) as copy:
        for row in batch:
            if json_columns:
                row = list(row)
                for i in json_columns:
                    row[i] = _json_text(row[i])
            copy.write_row(row)


def _reset_sequences(engine: sa.Engine) -> None:
    """Make new edit and artifact ids continue after the copied ones."""
    with engine.begin() as conn:
        for table in SERIAL_TABLES:
            conn.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence(:table, 'id'), COALESCE(MAX(id), 0) + 1, false) "
                    f"FROM {conn.dialect.identifier_preparer.quote(table.name)}"
                ),
                {"table": table.name},
            )


# Canonical text of values, identical whichever backend they were read from.


def _json_number(value: Decimal) -> str:
    return "0" if value == 0 else str(value.normalize())


def _canonical_json_value(value: Any) -> str:
    if isinstance(value, dict):
        items = (f"{json.dumps(k)}:{_canonical_json_value(value[k])}" for k in sorted(value))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(_canonical_json_value, value)) + "]"
    if isinstance(value, Decimal):
        return _json_number(value)
    return json.dumps(value, ensure_ascii=False)


def _json_text(value: Any) -> str | None:
    """The JSON text of a raw JSON column value (a number when SQLite stored it as REAL or INTEGER)."""
    return value if value is None or isinstance(value, str) else json.dumps(value)


def _canonical_json(value: Any) -> str:
    # jsonb keeps numbers as numeric (1e-05 comes back as 0.00001): compare JSON numbers by value.
    return _canonical_json_value(json.loads(_json_text(value), parse_float=Decimal, parse_int=Decimal))


def _canonical_time(value: Any) -> str:
    return value.isoformat() + "Z"


def _canonical_uuid(value: Any) -> str:
    return value.hex if isinstance(value, uuid.UUID) else value.replace("-", "").lower()


def _canonicalisers(table: sa.Table) -> list[tuple[int, Callable[[Any], str]]]:
    """The columns whose values differ by backend, with their canonical form.

    The others (text, integers, booleans, floats) are written as JSON as they are: the encoder writes floats
    with ``repr``, which round-trips every double exactly.
    """
    found: list[tuple[int, Callable[[Any], str]]] = []
    for i, column in enumerate(table.columns):
        if isinstance(column.type, sa.JSON):
            found.append((i, _canonical_json))
        elif isinstance(column.type, UTCDateTime):
            found.append((i, _canonical_time))
        elif isinstance(column.type, sa.Uuid):
            found.append((i, _canonical_uuid))
    return found


def _digest(
    engine: sa.Engine,
    table: sa.Table,
    *,
    batch_size: int,
    upto: Any = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> tuple[int, str]:
    """Row count and SHA-256 of the canonical rows of ``table`` in key order (the last ``limit`` up to ``upto``)."""
    key = _key(table)
    query = sa.select(*_copy_columns(table, engine.dialect))
    if upto is not None:
        query = query.where(key <= upto).order_by(key.desc()).limit(limit)
    else:
        query = query.order_by(key)
    canonical = _canonicalisers(table)
    digest = hashlib.sha256()
    rows = 0
    total = _count(engine, table) if progress else 0
    with connect(engine) as conn:
        result = conn.execution_options(yield_per=batch_size).execute(query)
        for batch in result.partitions(batch_size):
            digest.update("".join(_canonical_rows(batch, canonical)).encode())
            rows += len(batch)
            if progress:
                progress(TransferProgress("verify", table.name, rows, total))
    return rows, digest.hexdigest()


_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True)


def _canonical_rows(
    batch: Sequence[Any], canonical: Sequence[tuple[int, Callable[[Any], str]]]
) -> Iterator[str]:
    for row in batch:
        values = list(row)
        for i, canonicalise in canonical:
            if values[i] is not None:
                values[i] = canonicalise(values[i])
        yield _ROW_ENCODER.encode(values) + "\n"


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "TABLES",
    "TableCheck",
    "TableTransfer",
    "TransferProgress",
    "TransferReport",
    "migrate_catalog",
    "verify_transfer",
]
