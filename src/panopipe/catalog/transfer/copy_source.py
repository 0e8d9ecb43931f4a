"""Read a SQLite catalog table in key-ordered batches of PostgreSQL binary ``COPY`` data, with their digests.

A compiled reader (``_sqlite_copy.c``) steps through a batch's rows without the GIL and writes them as binary
``COPY`` data and as their canonical form (:mod:`~panopipe.catalog.transfer.copy_format`): Python never holds
the values one by one, which is what makes the copy fast. The next batch is read on a thread of its own while
the current one is digested and sent. Only the JSON documents come to Python (from the same pass), to be
digested later. When panopipe was installed without a C compiler, the pure-Python reader
(:mod:`~panopipe.catalog.transfer.python_reader`) writes the same bytes, more slowly.
"""

from __future__ import annotations

import _sqlite3
import ctypes.util
import importlib
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any, Literal

import sqlalchemy as sa

from panopipe.catalog.engine import mask_url
from panopipe.catalog.transfer import python_reader
from panopipe.catalog.transfer.copy_format import (
    TableShape,
    json_number_text,
    quote,
    sha256,
    time_micros,
)
from panopipe.catalog.types import column_kind
from panopipe.errors import CatalogError, ConfigError


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """Rows of a table after some key, up to ``last_key`` (as SQLite stores it): their count and, as asked
    for, the digest of their canonical form with the key and JSON texts of those that have documents (whose
    digest PostgreSQL computes, see :mod:`~panopipe.catalog.transfer.copy_target`), and their binary ``COPY``
    data."""

    last_key: Any
    rows: int
    digest: bytes = b""
    documents: bytes = b""
    copy_data: bytes | None = None


ReaderName = Literal["compiled", "python"]
PYTHON_READER_SLOWDOWN = 10
"""How many times the CPU time of the compiled reader the pure-Python one takes to read a catalog (125,000
rows of ``bench/bench_migrate.py``'s catalog: 0.45 s against 4.5 s); a whole move, mostly PostgreSQL's work,
takes about twice as long."""


@cache
def _compiled() -> ModuleType | None:
    """The compiled reader, ``None`` when panopipe was installed without it (no C compiler)."""
    try:
        return importlib.import_module("panopipe.catalog.transfer._sqlite_copy")
    except ImportError:
        return None


def default_reader() -> ReaderName:
    """The reader a move uses: the compiled one when it is installed."""
    return "compiled" if _compiled() is not None else "python"


def reader_note(reader: ReaderName) -> str | None:
    """One line telling that ``reader`` is the slow one, and why; ``None`` for the compiled reader."""
    if reader == "compiled":
        return None
    slower = f"about {PYTHON_READER_SLOWDOWN}x slower to read the catalog"
    if default_reader() == "compiled":
        return f"using the pure-Python SQLite reader ({slower} than the compiled one)"
    return (
        "the compiled SQLite reader is not installed (panopipe was built without a C compiler); "
        f"using the pure-Python reader ({slower})"
    )


@cache
def _reader_module(reader: ReaderName) -> ModuleType:
    """The module of ``reader``, SQLite's functions given to the compiled one (from the library Python's
    sqlite3 module uses if it can)."""
    if reader == "python":
        return python_reader
    compiled = _compiled()
    if compiled is None:
        raise ConfigError("the compiled SQLite reader is not installed: reinstall panopipe with a C compiler")
    if not any(
        path and compiled.load_sqlite(path)
        for path in (_sqlite3.__file__, ctypes.util.find_library("sqlite3"))
    ):
        raise CatalogError("cannot find the SQLite library to read the catalog with: install libsqlite3")
    return compiled


class Source:
    """The SQLite catalog being moved: a connection for queries, and two readers (``reader``: the compiled
    one by default), one of them with a thread of its own that reads the next batch ahead. Leaving the
    ``with`` block waits for that thread and closes all three."""

    def __init__(self, engine: sa.Engine, reader: ReaderName | None = None):
        if engine.dialect.name != "sqlite":
            raise ConfigError(
                f"cannot migrate from {mask_url(engine.url)}: the source must be a SQLite catalog"
            )
        self.path = engine.url.database or ""
        self.reader_name: ReaderName = reader or default_reader()

    def __enter__(self) -> Source:
        module = self.module = _reader_module(self.reader_name)
        with ExitStack() as stack:
            self.db = stack.enter_context(closing(sqlite3.connect(self.path, check_same_thread=False)))
            self.reader = stack.enter_context(closing(module.Reader(self.path)))
            self.ahead_reader = stack.enter_context(closing(module.Reader(self.path)))
            self.ahead = stack.enter_context(ThreadPoolExecutor(max_workers=1))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def table(self, table: sa.Table) -> SourceTable:
        """Batches of ``table``."""
        return SourceTable(self, table)


def _range(shape: TableShape, lower: Any, upper: Any) -> tuple[str, list[Any]]:
    """WHERE clause and parameters for ``lower < key <= upper`` (``None``: unbounded)."""
    conditions, bounds = ["1"], []
    for operator, bound in ((">", lower), ("<=", upper)):
        if bound is not None:
            conditions.append(f"{quote(shape.key.name)} {operator} ?")
            bounds.append(bound)
    return " AND ".join(conditions), bounds


_Read = tuple[int, Any, bytes, bytes | None, bytes]
"""What the reader returns: row count, last key, COPY data, canonical data (``None``: the COPY data), and the
key and JSON texts of the rows with documents."""


class SourceTable:
    """Batches of one table of the SQLite source."""

    def __init__(self, source: Source, table: sa.Table):
        self.source, self.db, self.shape = source, source.db, TableShape(table)
        self._kinds = self.shape.kinds

    def state(self) -> tuple[Any, ...]:
        """The table's row count, last key and latest value of each time column, read in one query: what a
        write changes, short of digesting every row (rows added or removed, and the writes that stamp a time:
        an edit sets its images' ``updated_at``, an undo its edits' ``undone_at``, a run its jobs' times)."""
        times = (f"max({quote(c.name)})" for c in self.shape.copy_columns if column_kind(c) == "T")
        columns = ", ".join(["count(*)", f"max({quote(self.shape.key.name)})", *times])
        return tuple(self.db.execute(f"SELECT {columns} FROM {quote(self.shape.name)}").fetchone())

    def check_lengths(self) -> None:
        """A :class:`CatalogError` naming a row with a text longer than its column holds on PostgreSQL
        (SQLite's texts have no limit): asked once PostgreSQL refused a batch, to say which and where."""
        table, key = quote(self.shape.name), quote(self.shape.key.name)
        for column in self.shape.copy_columns:
            limit = getattr(column.type, "length", None)
            if not limit:
                continue
            query = f"SELECT {key} FROM {table} WHERE length({quote(column.name)}) > ? LIMIT 1"
            found = self.db.execute(query, [limit]).fetchone()
            if found is not None:
                raise CatalogError(
                    f"{self.shape.name} holds a text longer than {limit} characters, the most its column "
                    f"{column.name} holds on PostgreSQL (the row of key {found[0]!r}): correct it in the SQLite "
                    "catalog, then migrate again"
                )

    def batches(
        self, lower: Any, upper: Any, size: int, *, copy_data: bool = False, digest: bool = True
    ) -> Iterator[SourceBatch]:
        """The batches of ``size`` rows with ``lower < key <= upper``, in key order (the next one is read
        ahead while one is finished); an unverified copy asks for no ``digest``."""
        ahead, reader = self.source.ahead, self.source.ahead_reader
        found = ahead.submit(self._read, reader, lower, upper, size)
        while (batch := found.result())[0]:
            found = ahead.submit(self._read, reader, batch[1], upper, size)
            yield self._finish(batch, copy_data, digest)
            lower = batch[1]

    def batch(self, lower: Any, upper: Any, size: int) -> SourceBatch | None:
        """The first ``size`` rows with ``lower < key <= upper``; ``None`` when there are none."""
        found = self._read(self.source.reader, lower, upper, size)
        return self._finish(found, False, True) if found[0] else None

    def _read(self, reader: Any, lower: Any, upper: Any, size: int) -> _Read:
        shape = self.shape
        where, bounds = _range(shape, lower, upper)
        columns = ", ".join(quote(c.name) for c in shape.copy_columns)
        query = f"SELECT {columns} FROM {quote(shape.name)} WHERE {where} ORDER BY {quote(shape.key.name)} LIMIT ?"
        try:
            return reader.batch(query, [*bounds, size], self._kinds, time_micros, json_number_text)
        except self.source.module.BadValue as error:
            index, expected, value = error.args
            raise CatalogError(
                f"{shape.name} holds a value that is not {expected} in its column "
                f"{shape.copy_columns[index].name}: {value!r} (a row after key {lower}): correct it in "
                "the SQLite catalog, then migrate again"
            ) from None
        except ValueError as error:  # SQLite's own: a locked or damaged file, say
            raise CatalogError(f"cannot read {shape.name} from {self.source.path}: {error}") from None

    def _finish(self, found: _Read, copy_data: bool, digest: bool) -> SourceBatch:
        """The batch ``found``, with its digest and documents if asked."""
        rows, last, data, canonical, documents = found
        copied = data if copy_data else None
        if not digest:
            return SourceBatch(last, rows, copy_data=copied)
        return SourceBatch(last, rows, sha256(canonical or data), documents, copied)


__all__ = [
    "PYTHON_READER_SLOWDOWN",
    "ReaderName",
    "Source",
    "SourceBatch",
    "SourceTable",
    "default_reader",
    "reader_note",
]
