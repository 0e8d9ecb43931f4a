"""Digests of key ranges of the PostgreSQL target of a catalog move, comparable with the source's batches.

The canonical form is what binary ``COPY (SELECT ...) TO STDOUT`` prints, hashed as it streams in; the JSON
documents are digested by value, as the source digests them (:mod:`panopipe.catalog.copy_format`). Several
connections can share one snapshot, so that ranges digested in parallel see the same table.
"""

from __future__ import annotations

import hashlib
import queue
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql

from panopipe.catalog.copy_format import TableShape, documents_digest, postgres_row_query, quote
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


def target_digest(
    pg: psycopg.Connection[Any], shape: TableShape, lower: Any, upper: Any
) -> tuple[int, bytes]:
    """Row count and digest of the target rows with ``lower < key <= upper`` (``None``: unbounded)."""
    key = quote(shape.key.name)
    cast = "uuid" if shape.key_is_uuid else "bigint"
    conditions = ["true"]
    for operator, bound in ((">", lower), ("<=", upper)):
        if bound is not None:
            conditions.append(f"{key} {operator} CAST({sql.Literal(str(bound)).as_string(pg)} AS {cast})")
    where = " AND ".join(conditions)
    canonical = hashlib.sha256()
    query = f"COPY ({postgres_row_query(shape, where)}) TO STDOUT (FORMAT binary)"
    with pg.cursor() as cursor:
        with cursor.copy(query) as copy:
            for data in copy:
                canonical.update(data)
        count = cursor.rowcount
    found: list[tuple[Any, ...]] = []
    if shape.documents:
        present = " OR ".join(f"{quote(c.name)} IS NOT NULL" for c in shape.documents)
        texts = ", ".join(f"{quote(c.name)}::text" for c in shape.documents)
        # Named key_text so that ORDER BY takes the key itself, not its text (10 would come before 9).
        found = pg.execute(
            f"SELECT {key}::text AS key_text, {texts} FROM {quote(shape.name)} WHERE {where} AND ({present}) ORDER BY {key}"
        ).fetchall()
    return count, canonical.digest() + documents_digest(found, uuid_keys=shape.key_is_uuid)


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

    def submit(self, shape: TableShape, lower: Any, upper: Any) -> Future[tuple[int, bytes]]:
        """Digest ``lower < key <= upper`` of ``shape``'s table on the next free connection."""
        return self.pool.submit(self._digest, shape, lower, upper)

    def _digest(self, shape: TableShape, lower: Any, upper: Any) -> tuple[int, bytes]:
        pg = self.idle.get()
        try:
            return target_digest(pg, shape, lower, upper)
        finally:
            self.idle.put(pg)
