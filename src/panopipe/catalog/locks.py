"""The lock a transaction takes before its first read, so that one writer at a time does what it decides from
what it read: the schema upgrade, an edit, the claims of a submission."""

from __future__ import annotations

import sqlalchemy as sa


def hold_write_lock(conn: sa.Connection, key: int | None = None) -> None:
    """Take, for ``conn``'s transaction and before its first read, SQLite's write lock (``BEGIN IMMEDIATE``,
    which waits the busy timeout for another writer: pysqlite begins a transaction only at the first write, so
    what was read before it may be stale by then), or on PostgreSQL the advisory lock ``key`` (none: the
    caller locks the rows it reads ``FOR UPDATE`` instead). Whoever waited reads what the holder committed."""
    if conn.dialect.name == "postgresql":
        if key is not None:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif conn.dialect.name == "sqlite" and not getattr(
        conn.connection.driver_connection, "in_transaction", True
    ):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


__all__ = ["hold_write_lock"]
