"""Move a SQLite catalog to PostgreSQL / Amazon RDS, resumably, and prove the copy is exact.

Copy design: every table is read with the raw ``sqlite3`` cursor in primary-key order and written with
``COPY``, one batch per transaction, the next batch being read while PostgreSQL takes the previous one. SQLite
builds each row's COPY text in SQL (escaped, ``\\N`` for NULL, timestamps in SQLAlchemy's form); only the
doubles are written by Python, with ``repr``, which PostgreSQL reads back bit for bit. A table copied from
empty has its secondary indexes, unique constraints and foreign keys dropped first; at the end of every run,
whatever of them the target lacks is built from the SQLAlchemy metadata (the names the migrations use), so an
interrupted run leaves nothing missing once it is resumed. Indexes the metadata does not describe (PostGIS's
``ix_images_geom``) are dropped too, their definitions kept in the table's comment until they are rebuilt.

Resume design: the rows already on the target are always a key-ordered prefix of the source, so the resume
point of a table is ``max(key)`` on the target: no bookkeeping table is needed (the target stays exactly the
schema the migrations create). Before resuming, the prefix is checked (same row count up to that key, same
content in its last batch) so that rows of another catalog are refused instead of being extended.

Checksum design: both sides are cut into the same key ranges (one per ``batch_size`` source rows) and digested
with SHA-256, range by range: the rows' canonical lines (the COPY text of every column but the doubles and the
JSON documents, plus which doubles are NULL), the doubles' 8 bytes, and the JSON documents compared by value
as jsonb does (canonicalised in Python on both sides: sorted keys, numbers as numbers, SQL ``NULL`` apart from
JSON ``null``). On the source the copy computes them from the rows it reads; on the target PostgreSQL builds
the same lines and bytes in SQL, two ranges at a time in one snapshot. A table's checksum is the SHA-256 of
its ranges' row counts and digests.
"""

from __future__ import annotations

import hashlib
import json
import queue
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import psycopg
import sqlalchemy as sa
from psycopg import sql

from panopipe.catalog.deferred_indexes import build_missing, drop_secondary
from panopipe.catalog.engine import (
    catalog_url,
    check_schema,
    connect,
    create_catalog_engine,
    current_revision,
    head_revision,
    mask_url,
    upgrade,
    user_tables,
)
from panopipe.catalog.schema import artifacts, edits, images, jobs
from panopipe.catalog.types import UTCDateTime
from panopipe.errors import CatalogError, ConfigError

TABLES: tuple[sa.Table, ...] = (images, jobs, edits, artifacts)
"""The catalog's tables, parents before the tables whose foreign keys point at them."""

SERIAL_TABLES: tuple[sa.Table, ...] = (edits, artifacts)
_OWN_TABLES = frozenset({*(table.name for table in TABLES), "alembic_version"})
DEFAULT_BATCH_SIZE = 50_000


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
    """Copy the SQLite catalog at ``source`` into the PostgreSQL database at ``target_url`` and verify the copy.

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
        with _sqlite(source_engine) as db:
            check_schema(source_engine, create=False)
            create = _check_target(target_engine)
            if create and not dry_run:
                upgrade(target_engine)
            resume = (
                {table.name: (0, None) for table in TABLES}
                if create
                else {t.name: _resume_point(t, db, target_engine, batch_size) for t in TABLES}
            )
            totals = {table.name: _count(db, table) for table in TABLES}
            copied = dict.fromkeys(totals, 0)
            # The copy digests the rows it reads; a resumed copy reads the rows copied before for that.
            chunks: dict[str, list[Chunk]] | None = {t.name: [] for t in TABLES} if verify else None
            if not dry_run:
                # A table's indexes and constraints are built while the next tables are copied.
                with ThreadPoolExecutor(max_workers=1) as builder:
                    built = []
                    for table in TABLES:
                        present, after = resume[table.name]
                        if not present:
                            drop_secondary(target_engine, table)
                        table_chunks = chunks[table.name] if chunks is not None else None
                        if table_chunks is not None and after is not None:
                            table_chunks += _source_digests(db, table, None, after, batch_size)
                        copied[table.name] = _copy_table(
                            table,
                            db,
                            target_engine,
                            after,
                            present,
                            totals[table.name],
                            batch_size,
                            progress,
                            table_chunks,
                        )
                        built.append(builder.submit(build_missing, target_engine, table))
                    for build in built:
                        build.result()
                _reset_sequences(target_engine)
            checks = (
                _verify(source_engine, target_engine, batch_size, progress, chunks)
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
    """Compare every catalog table of the SQLite ``source`` and the PostgreSQL ``target``: row counts and
    content checksums (computed over ranges of ``batch_size`` source rows)."""
    with _engine(source, must_exist=True) as source_engine, _engine(target) as target_engine:
        return _verify(source_engine, target_engine, batch_size, progress)


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
        names = user_tables(conn)
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


# The source, read with the raw sqlite3 module.

_TIME_LIKE = "____-__-__ __:__:__.______"
"""How SQLAlchemy stores a ``DateTime`` in SQLite; other forms are rewritten that way by :func:`_time_text`."""


def _time_text(value: str) -> str:
    """A timestamp not stored as SQLAlchemy stores one, in that form (as PostgreSQL keeps it: offset ignored)."""
    return datetime.fromisoformat(value).replace(tzinfo=None).isoformat(" ", "microseconds")


@contextmanager
def _sqlite(engine: sa.Engine) -> Iterator[sqlite3.Connection]:
    """A raw connection to the SQLite catalog behind ``engine``, with the functions the SQL below calls."""
    if engine.dialect.name != "sqlite":
        raise ConfigError(f"cannot migrate from {mask_url(engine.url)}: the source must be a SQLite catalog")
    db = sqlite3.connect(engine.url.database or "", check_same_thread=False)
    try:
        db.create_function("panopipe_time_text", 1, _time_text, deterministic=True)
        db.create_function("panopipe_json_number", 1, json.dumps, deterministic=True)
        yield db
    finally:
        db.close()


Kind = Literal["text", "int4", "int8", "bool", "double", "time", "uuid", "json"]


def _kind(column: sa.Column[Any]) -> Kind:
    kind = column.type
    if isinstance(kind, sa.JSON):
        return "json"
    if isinstance(kind, UTCDateTime):
        return "time"
    if isinstance(kind, sa.Uuid):
        return "uuid"
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.Float):
        return "double"
    if isinstance(kind, sa.BigInteger):
        return "int8"
    if isinstance(kind, sa.Integer):
        return "int4"
    return "text"


def _q(name: str) -> str:
    return f'"{name}"'


def _key(table: sa.Table) -> sa.Column[Any]:
    (column,) = table.primary_key.columns
    return column


def _count(db: sqlite3.Connection, table: sa.Table) -> int:
    return db.execute(f"SELECT count(*) FROM {_q(table.name)}").fetchone()[0]


def _resume_point(
    table: sa.Table, db: sqlite3.Connection, target: sa.Engine, batch_size: int
) -> tuple[int, Any]:
    """Rows of ``table`` already on the target and the last key copied; refuses rows not from the source."""
    key = _key(table)
    with connect(target) as conn:
        # ORDER BY ... LIMIT 1 rather than max(): PostgreSQL has no max(uuid), and this reads one index entry.
        last = conn.execute(sa.select(key).order_by(key.desc()).limit(1)).scalar()
        present = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    if last is None:
        return 0, None
    if _kind(key) == "uuid":
        last = last.replace("-", "")  # as SQLite stores it
    name, k = _q(table.name), _q(key.name)
    total, expected = db.execute(
        f"SELECT count(*), coalesce(sum({k} <= ?), 0) FROM {name}", (last,)
    ).fetchone()
    if expected == present == total:
        return present, last  # nothing left to copy: the final verification judges the content
    if expected == present:
        # The last batch on the target must hold the same rows as the source up to that key.
        below = db.execute(
            f"SELECT {k} FROM {name} WHERE {k} <= ? ORDER BY {k} DESC LIMIT 1 OFFSET ?", (last, batch_size)
        ).fetchone()
        lower = below[0] if below else None
        source = [
            (rows, digest) for _, rows, digest in _source_digests(db, table, lower, last, batch_size + 1)
        ]
        with _reading(target) as pg:
            if source == [_target_digest(pg, table, lower, last)]:
                return present, last
    raise CatalogError(
        f"{mask_url(target.url)} already holds {present} {table.name} rows that are not a copy of "
        f"the source: migrate into an empty database or schema"
    )


# One read of the source serves the copy and the verification: per row, SQLite builds the COPY text of all
# columns but the doubles (which Python writes with repr) and the JSON documents; that text, escaped as COPY
# escapes it, is also the row's canonical line. Doubles are digested as their 8 bytes, JSON documents by value.

_ESCAPE = r"replace(replace(replace(replace({c}, '\', '\\'), char(9), '\t'), char(10), '\n'), char(13), '\r')"
_SQLITE_TEXT: dict[Kind, str] = {
    "text": _ESCAPE,
    "uuid": "lower(replace({c}, '-', ''))",
    "time": f"CASE WHEN {{c}} IS NULL OR {{c}} LIKE '{_TIME_LIKE}' THEN {{c}} ELSE panopipe_time_text({{c}}) END",
    # SQLite's NUMERIC affinity may have stored a JSON number as a REAL: its JSON text comes from Python.
    "json": _ESCAPE.format(c="CASE typeof({c}) WHEN 'real' THEN panopipe_json_number({c}) ELSE {c} END"),
}
"""COPY text of a source value (integers and booleans as stored); NULL becomes ``\\N``."""

_PG_TEXT: dict[Kind, str] = {
    "text": _ESCAPE.replace("char(", "chr("),
    "int4": "{c}::text",
    "int8": "{c}::text",
    "bool": "{c}::int::text",
    "uuid": "replace({c}::text, '-', '')",
    "time": "to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')",
}
"""The same text, built by PostgreSQL from the values it stored."""


def _by_kind(table: sa.Table) -> tuple[list[sa.Column[Any]], list[sa.Column[Any]], list[sa.Column[Any]]]:
    """The columns of the canonical line, the doubles and the JSON documents of ``table``."""
    kinds = [(column, _kind(column)) for column in table.columns]
    return (
        [column for column, kind in kinds if kind not in ("double", "json")],
        [column for column, kind in kinds if kind == "double"],
        [column for column, kind in kinds if kind == "json"],
    )


def _texts(columns: Sequence[sa.Column[Any]], expressions: dict[Kind, str]) -> list[str]:
    return [
        "coalesce({}, '\\N')".format(expressions.get(_kind(c), "{c}").format(c=_q(c.name))) for c in columns
    ]


def _printf(separator: str, values: Sequence[str]) -> str:
    """SQLite's printf of ``values`` joined by ``separator`` (one string built at once, unlike ||)."""
    return f"printf('{separator.join(['%s'] * len(values))}', {', '.join(values)})"


def _source_rows(db: sqlite3.Connection, table: sa.Table, lower: Any, upper: Any) -> sqlite3.Cursor:
    """The source rows with ``lower < key <= upper`` (``None``: unbounded) in key order, each: the values of
    its COPY line (:func:`_copy_width` of them), the NULL flags of the doubles, the doubles (0.0 for NULL), the
    key as text, the raw JSON documents and the key."""
    key = _key(table)
    plain, doubles, documents = _by_kind(table)
    columns = [_printf("\t", _texts(plain, _SQLITE_TEXT))]
    columns += [f"coalesce({_q(c.name)}, '\\N')" for c in doubles]
    if documents:
        columns.append(_printf("\t", _texts(documents, _SQLITE_TEXT)))
    columns.append(_printf("", [f"{_q(c.name)} IS NULL" for c in doubles]) if doubles else "''")
    columns += [f"coalesce({_q(c.name)}, 0.0)" for c in doubles]
    columns.append(_SQLITE_TEXT.get(_kind(key), "{c}").format(c=_q(key.name)))
    columns += [_q(c.name) for c in documents]
    columns.append(_q(key.name))
    conditions, bounds = [], []
    for operator, bound in ((">", lower), ("<=", upper)):
        if bound is not None:
            conditions.append(f"{_q(key.name)} {operator} ?")
            bounds.append(bound)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return db.execute(
        f"SELECT {', '.join(columns)} FROM {_q(table.name)} {where} ORDER BY {_q(key.name)}", bounds
    )


def _copy_width(table: sa.Table) -> int:
    """How many leading values of a source row make its COPY line."""
    _, doubles, documents = _by_kind(table)
    return 1 + len(doubles) + bool(documents)


def _chunk_digest(table: sa.Table, chunk: Sequence[tuple[Any, ...]]) -> bytes:
    """The digest of source rows: their canonical lines, doubles and JSON documents."""
    _, doubles, documents = _by_kind(table)
    flags = _copy_width(table)
    lines = "\n".join([f"{row[0]}\t{row[flags]}" for row in chunk])
    values = list(chain.from_iterable(row[flags + 1 : flags + 1 + len(doubles)] for row in chunk))
    first = flags + 2 + len(doubles)
    empty = (None,) * len(documents)
    docs = "\n".join(
        [_document_line(row[first - 1], row[first:-1]) for row in chunk if row[first:-1] != empty]
    )
    # Doubles as their 8 bytes, big-endian like PostgreSQL's float8send: every bit counts.
    return _digest(lines.encode(), struct.pack(f">{len(values)}d", *values), docs.encode())


def _source_digests(
    db: sqlite3.Connection, table: sa.Table, lower: Any, upper: Any, chunk_rows: int
) -> Iterator[Chunk]:
    """The chunks of ``chunk_rows`` source rows with ``lower < key <= upper``, in key order."""
    rows = _source_rows(db, table, lower, upper)
    while chunk := rows.fetchmany(chunk_rows):
        yield chunk[-1][-1], len(chunk), _chunk_digest(table, chunk)


def _copy_table(
    table: sa.Table,
    db: sqlite3.Connection,
    target: sa.Engine,
    after: Any,
    present: int,
    total: int,
    batch_size: int,
    progress: Progress | None,
    chunks: list[Chunk] | None,
) -> int:
    """Copy the rows after key ``after``; with ``chunks``, append the digests of the rows read to it."""
    plain, doubles, documents = _by_kind(table)
    width = _copy_width(table)
    line = "\t".join(["%s"] * width) + "\n"  # a double comes as a float: %s writes its repr, which is exact
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name),
        sql.SQL(", ").join(sql.Identifier(c.name) for c in plain + doubles + documents),
    )
    rows = _source_rows(db, table, after, None)
    copied = 0
    with connect(target) as conn, ThreadPoolExecutor(max_workers=1) as writer:
        # The next batch is read and formatted while PostgreSQL takes the previous one.
        sending: Future[int] | None = None
        while True:
            batch = rows.fetchmany(batch_size)
            data = "".join([line % row[:width] for row in batch])
            if batch and chunks is not None:
                chunks.append((batch[-1][-1], len(batch), _chunk_digest(table, batch)))
            if sending:
                copied += sending.result()
                if progress:
                    progress(TransferProgress("copy", table.name, present + copied, total))
            if not batch:
                return copied
            sending = writer.submit(_send, conn, statement, data, len(batch))


def _send(conn: sa.Connection, statement: sql.Composed, data: str, rows: int) -> int:
    """COPY one batch in a transaction of its own; returns its row count."""
    with conn.begin():
        # A lost commit after a crash only shortens the copied prefix: the next run copies it again.
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy(statement) as copy:
            copy.write(data)
    return rows


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


# Verification: the source's chunk digests compared with the same key ranges digested by PostgreSQL.

Chunk = tuple[Any, int, bytes]
"""A chunk of source rows: its last key, its row count and its digest."""

_SEPARATOR = "\x1f"


def _digest(*parts: bytes) -> bytes:
    return b"".join(hashlib.sha256(part).digest() for part in parts)


_EMPTY = _digest(b"", b"", b"")


def _document_line(key: Any, values: Sequence[Any]) -> str:
    return _SEPARATOR.join([str(key), *("None" if v is None else _canonical_json(v) for v in values)])


@contextmanager
def _reading(engine: sa.Engine, snapshot: str | None = None) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection to the target in a read-only snapshot (``snapshot``: one exported by another)."""
    with connect(engine) as conn, conn.begin():
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if snapshot:
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")  # each range's lines are sorted in memory
        yield conn.connection.driver_connection  # type: ignore[misc]


class _TargetDigests:
    """Digests of target key ranges, computed by ``workers`` connections (and threads) sharing one snapshot."""

    def __init__(self, engine: sa.Engine, workers: int = 2):
        self.engine, self.workers = engine, workers
        self.stack = ExitStack()
        self.idle: queue.SimpleQueue[psycopg.Connection[Any]] = queue.SimpleQueue()

    def __enter__(self) -> _TargetDigests:
        first = self.stack.enter_context(_reading(self.engine))
        snapshot = first.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        self.idle.put(first)
        for _ in range(self.workers - 1):
            self.idle.put(self.stack.enter_context(_reading(self.engine, snapshot)))
        self.pool = self.stack.enter_context(ThreadPoolExecutor(max_workers=self.workers))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stack.close()

    def submit(self, table: sa.Table, lower: Any, upper: Any) -> Future[tuple[int, bytes]]:
        return self.pool.submit(self._digest, table, lower, upper)

    def _digest(self, table: sa.Table, lower: Any, upper: Any) -> tuple[int, bytes]:
        pg = self.idle.get()
        try:
            return _target_digest(pg, table, lower, upper)
        finally:
            self.idle.put(pg)


def _target_digest(pg: psycopg.Connection[Any], table: sa.Table, lower: Any, upper: Any) -> tuple[int, bytes]:
    """Row count and digest of the target rows with ``lower < key <= upper``, lines built by PostgreSQL."""
    key = _key(table)
    k = _q(key.name)
    cast = "uuid" if _kind(key) == "uuid" else "bigint"
    conditions = ["true"]
    bounds: list[Any] = []
    for operator, bound in ((">", lower), ("<=", upper)):
        if bound is not None:
            conditions.append(f"{k} {operator} CAST(%s AS {cast})")
            bounds.append(bound)
    where = " AND ".join(conditions)
    plain, doubles, documents = _by_kind(table)
    flags = " || ".join(f"({_q(c.name)} IS NULL)::int::text" for c in doubles) or "''"
    line = " || chr(9) || ".join([*_texts(plain, _PG_TEXT), flags])
    values = " || ".join(f"float8send(coalesce({_q(c.name)}, 0))" for c in doubles) or "''::bytea"
    count, lines, doubles_digest = pg.execute(
        "SELECT count(*),"
        " sha256(convert_to(coalesce(string_agg(line, chr(10) ORDER BY k), ''), 'UTF8')),"
        " sha256(coalesce(string_agg(doubles, ''::bytea ORDER BY k), ''::bytea))"
        f" FROM (SELECT {k} AS k, {line} AS line, {values} AS doubles FROM {_q(table.name)} WHERE {where}) AS r",
        bounds,
    ).fetchone()  # type: ignore[misc]
    docs = ""
    if documents:
        texts = ", ".join(f"{_q(c.name)}::text" for c in documents)
        present = " OR ".join(f"{_q(c.name)} IS NOT NULL" for c in documents)
        found = pg.execute(
            f"SELECT {_PG_TEXT.get(_kind(key), '{c}').format(c=k)} AS key_text, {texts} FROM {_q(table.name)}"
            f" WHERE {where} AND ({present}) ORDER BY {k}",
            bounds,
        )
        docs = "\n".join([_document_line(row[0], row[1:]) for row in found])
    return count, bytes(lines) + bytes(doubles_digest) + hashlib.sha256(docs.encode()).digest()


def _verify(
    source: sa.Engine,
    target: sa.Engine,
    batch_size: int,
    progress: Progress | None,
    chunks: dict[str, list[Chunk]] | None = None,
) -> list[TableCheck]:
    """Compare each table's source chunks (``chunks``, or read now) with the same key ranges on the target,
    digested by PostgreSQL (while the source is read)."""
    pending: list[tuple[sa.Table, list[int], hashlib._Hash, list[Future[tuple[int, bytes]]]]] = []
    with _sqlite(source) as db, _TargetDigests(target) as digests:
        for table in TABLES:
            counts, digest, ranges = [], hashlib.sha256(), []
            lower: Any = None
            previous: Any = None
            read = chunks[table.name] if chunks else _source_digests(db, table, None, None, batch_size)
            for last, count, chunk_digest in read:
                if counts:  # the range of the chunk before ends at its last key
                    ranges.append(digests.submit(table, lower, previous))
                    lower = previous
                previous = last
                counts.append(count)
                digest.update(_record(count, chunk_digest))
            if not counts:  # an empty table is one empty range
                counts.append(0)
                digest.update(_record(0, _EMPTY))
            ranges.append(digests.submit(table, lower, None))
            pending.append((table, counts, digest, ranges))
        checks = []
        for table, counts, digest, ranges in pending:
            target_digest, target_rows, done = hashlib.sha256(), 0, 0
            for count, future in zip(counts, ranges, strict=True):
                rows, range_digest = future.result()
                target_digest.update(_record(rows, range_digest))
                target_rows += rows
                done += count
                if progress:
                    progress(TransferProgress("verify", table.name, done, sum(counts)))
            checks.append(
                TableCheck(
                    table.name, sum(counts), target_rows, digest.hexdigest(), target_digest.hexdigest()
                )
            )
    return checks


def _record(count: int, digest: bytes) -> bytes:
    return count.to_bytes(8, "big") + digest


# Canonical text of JSON documents, identical whichever backend they were read from.


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


def _json_text(value: Any) -> str:
    """The JSON text of a raw JSON column value (a number when SQLite stored it as REAL or INTEGER)."""
    return value if isinstance(value, str) else json.dumps(value)


def _canonical_json(value: Any) -> str:
    # jsonb keeps numbers as numeric (1e-05 comes back as 0.00001): compare JSON numbers by value.
    return _canonical_json_value(json.loads(_json_text(value), parse_float=Decimal, parse_int=Decimal))


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
