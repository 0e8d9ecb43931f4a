"""Digests of key ranges of the PostgreSQL target of a catalog move, comparable with the source's batches.

The canonical form is what binary ``COPY (SELECT ...) TO STDOUT`` prints, hashed as it streams in. The JSON
documents of both sides are digested by PostgreSQL, as ``jsonb`` values: the target's columns and the source's
texts, sent as one parameter (:mod:`~panopipe.catalog.transfer.copy_format`). Several connections can share
one snapshot, so that ranges digested in parallel see the same table.
"""

from __future__ import annotations

import hashlib
import queue
import select
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import pq, sql

from panopipe.catalog.engine import connect
from panopipe.catalog.transfer.copy_format import TableShape, documents_digest_sql, postgres_row_query, quote


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
    count = _copy_out(
        pg, f"COPY ({postgres_row_query(shape, where)}) TO STDOUT (FORMAT binary)", canonical.update
    )
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


def _copy_out(pg: psycopg.Connection[Any], statement: str, consume: Callable[[memoryview], object]) -> int:
    """Run a ``COPY ... TO STDOUT`` in ``pg``'s open transaction, handing each message of its output to
    ``consume``; returns the rows copied.

    Through libpq (:mod:`psycopg.pq`): psycopg's own COPY iterator costs a few microseconds a row in Python,
    half a second of CPU for every million rows a move verifies."""
    pgconn = pg.pgconn
    pgconn.send_query(statement.encode())
    started = _next_result(pgconn)
    if started is None or started.status != pq.ExecStatus.COPY_OUT:
        _last_result(pgconn, started)  # raises the error
    while True:
        size, data = pgconn.get_copy_data(1)
        if size > 0:
            consume(data)
        elif size == 0:
            _wait(pgconn)
        else:
            break
    if size == -2:
        raise psycopg.OperationalError(pgconn.error_message.decode(errors="replace"))
    return int(_last_result(pgconn, _next_result(pgconn)).command_tuples or 0)


def _wait(pgconn: pq.abc.PGconn) -> None:
    """Wait (without the GIL) until the server has sent more, and take it in."""
    select.select([pgconn.socket], [], [])
    pgconn.consume_input()


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    while pgconn.is_busy():
        _wait(pgconn)
    return pgconn.get_result()


def _last_result(pgconn: pq.abc.PGconn, result: pq.abc.PGresult | None) -> pq.abc.PGresult:
    """``result``, once the rest of the command's results are read; raises the error it reports."""
    while _next_result(pgconn) is not None:
        pass
    if result is None or result.status == pq.ExecStatus.FATAL_ERROR:
        message = (result.error_message if result else pgconn.error_message).decode(errors="replace").strip()
        sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode() if result else ""
        raise (psycopg.errors.lookup(sqlstate) if sqlstate else psycopg.DatabaseError)(message)
    return result


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


__all__ = ["RangeDigests", "TargetDigests", "range_digests", "reading"]
