"""Move a SQLite catalog to PostgreSQL / Amazon RDS, resumably, and prove the copy is exact.

Copy design: every table of the catalog's metadata is read from SQLite in primary-key order, one batch of
binary ``COPY`` data at a time written by a reader (:mod:`~panopipe.catalog.transfer.copy_source`: compiled
when it was built, else pure Python, same bytes), and written with ``COPY``, one batch per transaction, the
next batch being read while PostgreSQL takes the previous one. The binary format spares both sides writing and
parsing text, and carries doubles and times exactly. A table copied from empty has its secondary indexes,
unique constraints and foreign keys dropped first; after each table's copy, whatever of them the target lacks
is built from the SQLAlchemy metadata (the names the migrations use; unique keys as their indexes, made keys
at the end), so an interrupted run leaves nothing missing once it is resumed. Indexes the metadata does not
describe (PostGIS's ``ix_images_geom``) are dropped too, their definitions kept in the table's comment until
they are rebuilt.

Resume design: the rows already on the target are always a key-ordered prefix of the source, so the resume
point of a table is ``max(key)`` on the target: no bookkeeping table is needed (the target stays exactly the
schema the migrations create). From the schema's creation (in the same transaction) until the copy is whole
and verified, the target's schema version is marked with the source and the source's state when the move
began (its tables' row counts, last keys and latest times: see
:func:`~panopipe.catalog.engine.mark_migrating`): every other command refuses it, so nothing works on part of
the catalog or writes rows that would make the resume impossible. The mark is the rule: only a target marked by
a move from this source, in the state the source still has, is resumed (its prefix checked: same row count up
to that key, same content in its last batch); a target holding rows without the mark is only verified, never
written (a finished copy), and refused unless its row counts are the source's.

Checksum design: both sides are cut into the same key ranges (one per ``batch_size`` source rows) and digested
with SHA-256, range by range: the rows' canonical form (what PostgreSQL's binary ``COPY ... TO`` prints of
every column but the JSON documents, byte for byte what the copy sent of them) and the JSON documents, which
PostgreSQL reads as jsonb on both sides (:mod:`~panopipe.catalog.transfer.copy_format`). The copy digests
each batch it sends and keeps its documents; on the target (:mod:`~panopipe.catalog.transfer.copy_target`)
the same ranges are printed and digested, two at a time in one snapshot. A table's checksum is the SHA-256 of its ranges' row counts and
digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import URL

from panopipe.catalog.engine import (
    Migration,
    catalog_location,
    catalog_url,
    check_schema,
    connect,
    create_catalog_engine,
    current_revision,
    database_error,
    finish_migration,
    head_revision,
    mark_migrating,
    mask_url,
    migration_of,
    upgrade,
    user_tables,
)
from panopipe.catalog.schema import metadata
from panopipe.catalog.transfer.copy_format import EMPTY_COPY, TableShape, quote, record, sha256
from panopipe.catalog.transfer.copy_source import ReaderName, Source, SourceBatch, SourceTable, reader_note
from panopipe.catalog.transfer.copy_target import TargetDigests, range_digests, reading
from panopipe.catalog.transfer.deferred_indexes import build, complete, drop_secondary, missing
from panopipe.config import DEFAULT_BATCH_SIZE, Settings
from panopipe.errors import CatalogError, ConfigError
from panopipe.steps.fingerprint import fingerprint

TABLES: tuple[sa.Table, ...] = tuple(metadata.sorted_tables)
"""The catalog's tables, parents before the tables whose foreign keys point at them."""

SERIAL_TABLES = tuple(table for table in TABLES if table.autoincrement_column is not None)
"""The tables whose integer ids come from a sequence, which must continue after the copied ids."""
_OWN_TABLES = frozenset({*(table.name for table in TABLES), "alembic_version"})


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
    reader: ReaderName = "compiled"
    already_complete: bool = False
    """The target held as many rows as the source in every table, no move under way into it (a finished
    move): nothing to copy; verified, except on a dry run."""

    @property
    def note(self) -> str | None:
        """A line to show the user about how the move ran (the slow SQLite reader), if any."""
        return reader_note(self.reader)

    @property
    def resumed(self) -> bool:
        """Whether the target already held part of the catalog (an interrupted move being continued)."""
        return not self.already_complete and any(table.present_rows for table in self.tables)

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
            raise CatalogError(
                f"{self.target} does not match {self.source}: {names}. A move continues after the rows "
                "already copied and copies none of them again: if the source was written to since the move "
                "began, migrate again into an empty database"
            )

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        return {
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "create_schema": self.create_schema,
            "resumed": self.resumed,
            "already_complete": self.already_complete,
            "rows_copied": self.rows_copied,
            "seconds": round(self.seconds, 3),
            "verified": self.verified,
            "reader": self.reader,
            "note": self.note,
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
    reader: ReaderName | None = None,
    settings: Settings | None = None,
) -> TransferReport:
    """Copy the SQLite catalog at ``source`` into the PostgreSQL database at ``target_url`` and verify the copy.

    The target gets the schema from panopipe's migrations, then every table's rows with their ids; edit and
    artifact id sequences continue after the copied ids. Running it again after an interruption continues
    where it stopped, unless the source was written to since the move began (then it is refused: its rows
    already copied may differ). Running it again after a complete move verifies the copy and writes nothing
    (without ``verify``, that is refused). A target holding other tables, another schema revision, rows no
    move from this source is copying or one another source's move is filling is refused, before anything is
    written. With ``dry_run`` nothing is written: the report says what would move. ``reader`` chooses how
    SQLite is read (the compiled reader by default, when it is installed); the report says which one ran.
    Until every row is copied and verified (copied, without ``verify``), other commands refuse the target,
    saying to run the move again. A database error of either side is a one-line :class:`CatalogError`. A
    ``cloudformation://`` location is looked up with ``settings``' region and profile.
    """
    if batch_size < 1:
        raise ConfigError(f"invalid batch size {batch_size}: expected at least 1")
    started = time.monotonic()
    with (
        _engine(source, settings, must_exist=True) as source_engine,
        _engine(target_url, settings) as target_engine,
        _one_line(source_engine.url, target_engine.url),
    ):
        if target_engine.dialect.name != "postgresql":
            raise ConfigError(
                f"cannot migrate to {catalog_location(target_engine.url)}: the target must be a postgresql:// URL"
            )
        with _only_move(target_engine, dry_run), Source(source_engine, reader) as reading_source:
            check_schema(source_engine, create=False)
            sources = {table.name: reading_source.table(table) for table in TABLES}
            states = {name: table_source.state() for name, table_source in sources.items()}
            totals = {name: state[0] for name, state in states.items()}
            migration = Migration(catalog_location(source_engine.url), fingerprint(states))
            plan = _plan(target_engine, migration, totals, verify)
            create = plan == "create"
            copied, checks = dict.fromkeys(totals, 0), list[TableCheck]()
            if plan == "check":  # a finished copy: verified, nothing written
                resume = {name: (total, None) for name, total in totals.items()}
                if not dry_run:
                    checks = _verify(sources.values(), target_engine, batch_size, progress)
            else:
                resume = {
                    name: (0, None) if create else _resume_point(table_source, target_engine, batch_size)
                    for name, table_source in sources.items()
                }
            if plan != "check" and not dry_run:
                if create:
                    upgrade(target_engine, migration=migration)
                elif plan == "fill":
                    mark_migrating(target_engine, migration)
                copied, checks = _move(sources, target_engine, resume, totals, batch_size, verify, progress)
                if all(check.ok for check in checks):
                    finish_migration(target_engine)
        return TransferReport(
            source=catalog_location(source_engine.url),
            target=catalog_location(target_engine.url),
            dry_run=dry_run,
            create_schema=create,
            tables=tuple(
                TableTransfer(t.name, totals[t.name], resume[t.name][0], copied[t.name]) for t in TABLES
            ),
            checks=tuple(checks),
            seconds=time.monotonic() - started,
            verified=bool(checks),
            reader=reading_source.reader_name,
            already_complete=plan == "check",
        )


@contextlib.contextmanager
def _one_line(source: URL, target: URL) -> Iterator[None]:
    """A database error of the move, of either side, as the one line of
    :func:`~panopipe.catalog.engine.database_error` naming that side: never a traceback."""
    try:
        yield
    except (sa.exc.SQLAlchemyError, sqlite3.Error, psycopg.Error) as exc:
        # The SQLite reader and the COPY use the drivers' own connections, whose errors SQLAlchemy never saw.
        error = exc if isinstance(exc, sa.exc.SQLAlchemyError) else sa.exc.DBAPIError(None, None, exc)
        side = source if isinstance(getattr(error, "orig", None), sqlite3.Error) else target
        raise database_error(error, side) from exc


_MOVE_LOCK = 0x70616E6F
"""The PostgreSQL advisory lock (a constant of panopipe's: 'pano', with the target schema's hash) that a move
holds on its target."""
_TRY_LOCK = "SELECT pg_try_advisory_lock(:key, hashtext(current_schema()))"
_UNLOCK = "SELECT pg_advisory_unlock(:key, hashtext(current_schema()))"


@contextlib.contextmanager
def _only_move(target: sa.Engine, dry_run: bool) -> Iterator[None]:
    """Hold the target's move lock while a move writes it: a second move into the same database at once is
    refused in one line (two copies into one database dropped each other's constraints and indexes)."""
    if dry_run:
        yield
        return
    with connect(target).execution_options(isolation_level="AUTOCOMMIT") as conn:
        if not conn.execute(sa.text(_TRY_LOCK), {"key": _MOVE_LOCK}).scalar():
            raise CatalogError(
                f"another panopipe db migrate into {mask_url(target.url)} is running: wait for it to end, then "
                "run this again (it verifies the copy, or resumes it)"
            )
        try:
            yield
        finally:
            conn.execute(sa.text(_UNLOCK), {"key": _MOVE_LOCK})


def verify_transfer(
    source: sa.Engine | str,
    target: sa.Engine | str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    reader: ReaderName | None = None,
    settings: Settings | None = None,
) -> list[TableCheck]:
    """Compare every catalog table of the SQLite ``source`` and the PostgreSQL ``target``: row counts and
    content checksums (computed over ranges of ``batch_size`` source rows)."""
    with (
        _engine(source, settings, must_exist=True) as source_engine,
        _engine(target, settings) as target_engine,
        _one_line(source_engine.url, target_engine.url),
        Source(source_engine, reader) as reading_source,
    ):
        return _verify((reading_source.table(t) for t in TABLES), target_engine, batch_size, progress)


class _engine:
    """An engine for ``location``; one this module created is disposed on exit, a given one is left open."""

    def __init__(self, location: sa.Engine | str, settings: Settings | None, *, must_exist: bool = False):
        if isinstance(location, sa.Engine):
            self.engine, self.owned = location, False
            return
        url = catalog_url(location, settings)
        if must_exist and url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            raise CatalogError(f"no catalog at {url.database}")
        self.engine, self.owned = create_catalog_engine(url), True

    def __enter__(self) -> sa.Engine:
        return self.engine

    def __exit__(self, *exc_info: object) -> None:
        if self.owned:
            self.engine.dispose()


_Plan = Literal["create", "fill", "resume", "check"]


def _plan(target: sa.Engine, migration: Migration, totals: dict[str, int], verify: bool) -> _Plan:
    """What the move does with its target: create the schema (an empty database), fill an empty catalog,
    resume the move ``migration`` (from this source, in this state) began, or check a finished copy (verify
    it, writing nothing). Refused: a target that is not a catalog like ours, one a move from another source
    is filling or whose move began before the source was written to, and one holding rows without the mark
    of a move (unless they may be a finished copy: as many rows in each table as the source, and ``verify``).
    """
    with connect(target) as conn:
        names = user_tables(conn)
    shown = mask_url(target.url)
    foreign = sorted(names - _OWN_TABLES)
    if foreign:
        raise CatalogError(
            f"{shown} holds tables that are not panopipe's ({', '.join(foreign)}): "
            "migrate into an empty database or schema"
        )
    if not names:
        return "create"
    revision = current_revision(target, migrating_ok=True)
    if revision != head_revision():
        raise CatalogError(
            f"{shown} holds a panopipe catalog at schema {revision or 'none'}, not {head_revision()}: "
            "migrate into an empty database, or bring both catalogs to the same version with `panopipe db upgrade`"
        )
    under_way = migration_of(target)
    if under_way is not None:
        if under_way.source != migration.source:
            raise CatalogError(
                f"{shown} is being migrated from {under_way.source}, not {migration.source}: finish that move "
                "(run its `panopipe db migrate` again), or migrate into an empty database or schema"
            )
        if under_way.state != migration.state:
            raise CatalogError(
                f"{migration.source} was written to since its move into {shown} began, so the rows already "
                "copied may differ from it: migrate again into an empty database or schema"
            )
        return "resume"
    with connect(target) as conn:
        counts = [sa.select(sa.func.count()).select_from(t).scalar_subquery() for t in TABLES]
        present = dict(zip(totals, conn.execute(sa.select(*counts)).one(), strict=True))
    if not any(present.values()):
        return "fill"
    if present == totals and verify:
        return "check"
    raise CatalogError(
        f"{shown} already holds {sum(present.values()):,} rows and no move from {migration.source} is under "
        "way into it: "
        + (
            "run without --no-verify to check that they are a finished copy of it, or "
            if present == totals
            else ""
        )
        + "migrate into an empty database or schema"
    )


def _resume_point(source: SourceTable, target: sa.Engine, batch_size: int) -> tuple[int, Any]:
    """Rows of a table already on the target and the last key copied; refuses rows not from the source."""
    shape = source.shape
    with connect(target) as conn:
        # ORDER BY ... LIMIT 1 rather than max(): PostgreSQL has no max(uuid), and this reads one index entry.
        last = conn.execute(sa.select(shape.key).order_by(shape.key.desc()).limit(1)).scalar()
        present = conn.execute(sa.select(sa.func.count()).select_from(shape.table)).scalar_one()
    if last is None:
        return 0, None
    if shape.key_is_uuid:
        last = last.replace("-", "")  # as SQLite stores it
    name, k = quote(shape.name), quote(shape.key.name)
    total, expected = source.db.execute(
        f"SELECT count(*), coalesce(sum({k} <= ?), 0) FROM {name}", (last,)
    ).fetchone()
    if expected == present == total:
        return present, last  # nothing left to copy: the source's state (_plan) and verification judge it
    if expected == present:
        # The last batch on the target must hold the same rows as the source up to that key.
        below = source.db.execute(
            f"SELECT {k} FROM {name} WHERE {k} <= ? ORDER BY {k} DESC LIMIT 1 OFFSET ?", (last, batch_size)
        ).fetchone()
        lower = below[0] if below else None
        batch = source.batch(lower, last, batch_size + 1)
        if batch:
            with reading(target) as pg:
                found = range_digests(pg, shape, lower, last, batch.documents)
            if (batch.rows, batch.digest + found.source_documents) == (found.target_rows, found.target):
                return present, last
    raise CatalogError(
        f"{mask_url(target.url)} already holds {present} {shape.name} rows that are not a copy of "
        f"the source: migrate into an empty database or schema"
    )


def _move(
    sources: dict[str, SourceTable],
    target: sa.Engine,
    resume: dict[str, tuple[int, Any]],
    totals: dict[str, int],
    batch_size: int,
    verify: bool,
    progress: Progress | None,
) -> tuple[dict[str, int], list[TableCheck]]:
    """Copy every table after its resume point, build its indexes and, with ``verify``, check it: a table's
    indexes are built and its copy verified while the next tables are copied. Returns the rows copied per
    table and the checks."""
    for table in TABLES:  # all before any copy: dropping a foreign key locks the table it refers to
        if not resume[table.name][0]:
            drop_secondary(target, table)
    copied: dict[str, int] = {}
    builds: list[Future[None]] = []
    verified: list[Future[TableCheck]] = []
    # Two builders: indexes build two at a time, a small table's beside a big one's.
    with ThreadPoolExecutor(max_workers=2) as builder, ThreadPoolExecutor(max_workers=1) as checker:
        for table in TABLES:
            source, (present, after) = sources[table.name], resume[table.name]
            # The copy digests the batches it sends; a resumed copy reads the rows copied before for that.
            chunks = (
                None if not verify else [] if after is None else list(source.batches(None, after, batch_size))
            )
            copied[table.name] = _copy_table(
                source, target, after, present, totals[table.name], batch_size, progress, chunks
            )
            builds += [builder.submit(build, target, statement) for statement in missing(target, table)]
            if chunks is not None:
                verified.append(checker.submit(_verify_table, source.shape, chunks, target, progress))
        _reset_sequences(target)
        checks = [check.result() for check in verified]
        for done in builds:
            done.result()
    for table in TABLES:  # now that verification no longer reads them
        complete(target, table)
    return copied, checks


def _copy_table(
    source: SourceTable,
    target: sa.Engine,
    after: Any,
    present: int,
    total: int,
    batch_size: int,
    progress: Progress | None,
    chunks: list[SourceBatch] | None,
) -> int:
    """Copy the rows after key ``after``; with ``chunks``, append the batches read (with their digests)."""
    shape = source.shape
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(shape.name), sql.SQL(", ").join(sql.Identifier(c.name) for c in shape.copy_columns)
    )
    copied = 0
    with connect(target) as conn, ThreadPoolExecutor(max_workers=1) as writer:
        # The next batch is read while PostgreSQL takes the previous one.
        sending: Future[int] | None = None
        read = source.batches(after, None, batch_size, copy_data=True, digest=chunks is not None)
        for batch in chain(read, [None]):
            if batch is not None and chunks is not None:
                chunks.append(replace(batch, copy_data=None))
            if sending:
                try:
                    copied += sending.result()
                except psycopg.errors.StringDataRightTruncation:
                    source.check_lengths()  # names the row and column
                    raise
                if progress:
                    progress(TransferProgress("copy", shape.name, present + copied, total))
            if batch is None:
                return copied
            sending = writer.submit(_send, conn, statement, batch)
    return copied


def _send(conn: sa.Connection, statement: sql.Composed, batch: SourceBatch) -> int:
    """COPY one batch in a transaction of its own; returns its row count."""
    with conn.begin():
        # A lost commit after a crash only shortens the copied prefix: the next run copies it again.
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy(statement) as copy:
            copy.write(batch.copy_data or EMPTY_COPY)
    return batch.rows


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


# Verification: the source's batch digests compared with the same key ranges digested by PostgreSQL.


def _verify(
    sources: Iterable[SourceTable], target: sa.Engine, batch_size: int, progress: Progress | None
) -> list[TableCheck]:
    """Compare each table's source batches with the same key ranges on the target."""
    return [
        _verify_table(table.shape, table.batches(None, None, batch_size), target, progress)
        for table in sources
    ]


def _verify_table(
    shape: TableShape, batches: Iterable[SourceBatch], target: sa.Engine, progress: Progress | None
) -> TableCheck:
    """Compare a table's source ``batches`` with the same key ranges on the target, digested by PostgreSQL
    (two at a time, while the source is read).

    Indexes may be built meanwhile: nothing built then takes a lock that waits for readers (unique keys are
    attached afterwards), so the digesting connections never wait for the builders, nor they for them.
    """
    counts, digests, ranges = [], [], []
    with TargetDigests(target) as digesting:
        lower: Any = None
        for batch in batches:
            ranges.append(digesting.submit(shape, lower, batch.last_key, batch.documents))
            counts.append(batch.rows)
            digests.append(batch.digest)
            lower = batch.last_key
        # The range after the last batch (the whole table if it is empty) must be empty on the target too.
        ranges.append(digesting.submit(shape, lower, None, b""))
        counts.append(0)
        digests.append(sha256(EMPTY_COPY))
        source_checksum, target_checksum, target_rows, done = hashlib.sha256(), hashlib.sha256(), 0, 0
        for count, digest, future in zip(counts, digests, ranges, strict=True):
            found = future.result()
            source_checksum.update(record(count, digest + found.source_documents))
            target_checksum.update(record(found.target_rows, found.target))
            target_rows += found.target_rows
            done += count
            if progress:
                progress(TransferProgress("verify", shape.name, done, sum(counts)))
    return TableCheck(
        shape.name, sum(counts), target_rows, source_checksum.hexdigest(), target_checksum.hexdigest()
    )


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "SERIAL_TABLES",
    "TABLES",
    "Progress",
    "TableCheck",
    "TableTransfer",
    "TransferProgress",
    "TransferReport",
    "migrate_catalog",
    "verify_transfer",
]
