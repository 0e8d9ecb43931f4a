"""Digests of key ranges of the PostgreSQL target of a catalog move, comparable with the source's batches.

The canonical form is what binary ``COPY (SELECT ...) TO STDOUT`` prints, hashed as it streams in. The JSON
documents of both sides are digested by PostgreSQL, as ``jsonb`` values: the target's columns and the source's
texts, sent as one parameter (:mod:`panopipe.catalog.copy_format`). Several connections can share one snapshot,
so that ranges digested in parallel see the same table.
"""

from __future__ import annotations

import hashlib
import queue
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql

from panopipe.catalog.copy_format import TableShape, documents_digest_sql, postgres_row_query, quote
from panopipe.catalog.engine import connect


@contextmanager
def reading(engine: sa.Engine, snapshot: str | None = None) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection to the target in a read-only snapshot (``snapshot``: one exported by another)."""
    with connect(engine) as conn, conn.begin():
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if snapshot:
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")  # a range PostgreSQL sorts is sorted in memory
        yield conn.connection.driver_connection  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class RangeDigests:
    """A key range digested by PostgreSQL: the target's row count and digest, and the digest of the source's
    JSON documents of that range (read as ``jsonb``, like the target's)."""

    target_rows: int
    target: bytes
    source_documents: bytes


def range_digests(
    pg: psycopg.Connection[Any],
    shape: TableShape,
    lower: Any,
    upper: Any,
    source_documents: bytes,
) -> RangeDigests:
    """Digests of the rows with ``lower < key <= upper`` (``None``: unbounded) and of the source's documents
    of those rows (as the reader hands them over)."""
    key = quote(shape.key.name)
    cast = "uuid" if shape.key_is_uuid else "bigint"
    conditions = ["true"]
    for operator, bound in ((">", lower), ("<=", upper)):
        if bound is not None:
            conditions.append(f"{key} {operator} CAST({sql.Literal(str(bound)).as_string(pg)} AS {cast})")
    where = " AND ".join(conditions)
    canonical = hashlib.sha256()
    with pg.cursor() as cursor:
        with cursor.copy(f"COPY ({postgres_row_query(shape, where)}) TO STDOUT (FORMAT binary)") as copy:
            for data in copy:
                canonical.update(data)
        count = cursor.rowcount
    if not shape.documents:
        return RangeDigests(count, canonical.digest(), b"")
    documents = [quote(c.name) for c in shape.documents]
    present = " OR ".join(f"{document} IS NOT NULL" for document in documents)
    target = documents_digest_sql(
        shape, key, documents, f"{quote(shape.name)} WHERE {where} AND ({present})", key
    )
    # The reader's rows of key and documents (an empty field for NULL), split apart.
    rows = "unnest(string_to_array(convert_from(%s, 'UTF8'), chr(30))) WITH ORDINALITY AS s(line, o)"
    sent = [f"nullif(f[{n + 2}], '')" for n in range(len(documents))]
    source = documents_digest_sql(shape, "f[1]", sent, f"{rows}, string_to_array(s.line, chr(31)) AS f", "o")
    target_documents, source_digest = pg.execute(
        f"SELECT {target}, {source}", [source_documents], binary=True
    ).fetchone()  # type: ignore[misc]
    return RangeDigests(count, canonical.digest() + target_documents, source_digest)


class TargetDigests:
    """Digests of target key ranges, computed by ``workers`` connections (and threads) sharing one snapshot."""

    def __init__(self, engine: sa.Engine, workers: int = 2):
        self.engine, self.workers = engine, workers
        self.stack = ExitStack()
        self.idle: queue.SimpleQueue[psycopg.Connection[Any]] = queue.SimpleQueue()

    def __enter__(self) -> TargetDigests:
        first = self.stack.enter_context(reading(self.engine))
        snapshot = first.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        self.idle.put(first)
        for _ in range(self.workers - 1):
            self.idle.put(self.stack.enter_context(reading(self.engine, snapshot)))
        self.pool = self.stack.enter_context(ThreadPoolExecutor(max_workers=self.workers))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stack.close()

    def submit(
        self, shape: TableShape, lower: Any, upper: Any, source_documents: bytes
    ) -> Future[RangeDigests]:
        """:func:`range_digests` of ``lower < key <= upper`` of ``shape``'s table on the next free connection."""
        return self.pool.submit(self._digest, shape, lower, upper, source_documents)

    def _digest(self, shape: TableShape, lower: Any, upper: Any, source_documents: bytes) -> RangeDigests:
        pg = self.idle.get()
        try:
            return range_digests(pg, shape, lower, upper, source_documents)
        finally:
            self.idle.put(pg)
