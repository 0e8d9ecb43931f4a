"""Read a SQLite catalog table in key-ordered batches of PostgreSQL ``COPY`` text, with each batch's digest.

SQLite writes a whole batch's canonical lines (:mod:`panopipe.catalog.copy_format`) as one string, so that
Python never holds those values one by one: that is what makes the copy fast. Only the doubles come to Python
as floats (written as hexadecimal floats, digested as bytes), and the few JSON documents as text. For speed,
text goes unescaped; the lines are then checked: their tabs, newlines and backslashes must be exactly as many
as the batch's shape implies (so no value holds one), and a batch that fails the check (text with a tab, say)
is read again with escapes written by SQLite.
"""

from __future__ import annotations

import math
import sqlite3
import sys
from array import array
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from itertools import chain
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.copy_format import (
    SQLITE_FUNCTIONS,
    UNESCAPED,
    TableShape,
    copy_document_text,
    documents_digest,
    printf,
    quote,
    sha256,
    sqlite_text,
)
from panopipe.catalog.engine import mask_url
from panopipe.errors import CatalogError, ConfigError


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """Rows of a table after some key, up to ``last_key`` (as SQLite stores it): their count and, each when
    asked for, their digest and their ``COPY`` text."""

    last_key: Any
    rows: int
    digest: bytes | None
    copy_text: str | None = None


class Source:
    """The SQLite catalog being moved: a connection for reading, and one more with a thread of its own on
    which SQLite builds the next batch's lines (it runs without the GIL) while Python finishes the current one.
    Leaving the ``with`` block waits for that thread and closes both."""

    def __init__(self, engine: sa.Engine):
        if engine.dialect.name != "sqlite":
            raise ConfigError(
                f"cannot migrate from {mask_url(engine.url)}: the source must be a SQLite catalog"
            )
        self.path = engine.url.database or ""

    def __enter__(self) -> Source:
        with ExitStack() as stack:
            self.db = stack.enter_context(closing(_connect(self.path)))
            self.ahead_db = stack.enter_context(closing(_connect(self.path)))
            self.ahead = stack.enter_context(ThreadPoolExecutor(max_workers=1))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def table(self, table: sa.Table) -> SourceTable:
        """Batches of ``table``."""
        return SourceTable(self, table)


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    for name, function in SQLITE_FUNCTIONS.items():
        db.create_function(name, 1, function, deterministic=True)
    return db


def _range(shape: TableShape, lower: Any, upper: Any) -> tuple[str, list[Any]]:
    """WHERE clause and parameters for ``lower < key <= upper`` (``None``: unbounded)."""
    conditions, bounds = ["1"], []
    for operator, bound in ((">", lower), ("<=", upper)):
        if bound is not None:
            conditions.append(f"{quote(shape.key.name)} {operator} ?")
            bounds.append(bound)
    return " AND ".join(conditions), bounds


class SourceTable:
    """Batches of one table of the SQLite source."""

    def __init__(self, source: Source, table: sa.Table):
        self.source, self.db, self.shape = source, source.db, TableShape(table)

    def count(self) -> int:
        return self.db.execute(f"SELECT count(*) FROM {quote(self.shape.name)}").fetchone()[0]

    def batches(
        self, lower: Any, upper: Any, size: int, *, copy_text: bool = False, digest: bool = True
    ) -> Iterator[SourceBatch]:
        """The batches of ``size`` rows with ``lower < key <= upper``, in key order (the next one's lines
        are read ahead while one is finished); an unverified copy asks for no ``digest``."""
        ahead, ahead_db = self.source.ahead, self.source.ahead_db
        found = ahead.submit(self._lines, ahead_db, lower, upper, size, escape=False)
        while (batch := found.result()) is not None:
            found = ahead.submit(self._lines, ahead_db, batch[1], upper, size, escape=False)
            yield self._finish(lower, upper, size, batch, copy_text, digest)
            lower = batch[1]

    def batch(self, lower: Any, upper: Any, size: int, *, copy_text: bool = False) -> SourceBatch | None:
        """The first ``size`` rows with ``lower < key <= upper``; ``None`` when there are none."""
        found = self._lines(self.db, lower, upper, size, escape=False)
        return None if found is None else self._finish(lower, upper, size, found, copy_text, True)

    def _finish(
        self,
        lower: Any,
        upper: Any,
        size: int,
        found: tuple[int, Any, str, int],
        copy_text: bool,
        digest: bool,
    ) -> SourceBatch:
        """The batch whose lines were ``found``: read again with escapes if they need some and, as asked,
        digested and written as ``COPY`` text."""
        rows, last, lines, nulls = found
        if not self._unescaped_is_right(rows, lines, nulls):
            rows, last, lines, _ = self._lines(self.db, lower, upper, size, escape=True)  # type: ignore[misc]
        doubles, documents = self._doubles(lower, last), self._documents(lower, last)
        digested = self._digest(lines, doubles) + documents_digest(documents) if digest else None
        text = self._copy_text(lines, doubles, documents) if copy_text else None
        return SourceBatch(last, rows, digested, text)

    def _lines(
        self, db: sqlite3.Connection, lower: Any, upper: Any, size: int, *, escape: bool
    ) -> tuple[int, Any, str, int] | None:
        """Row count, last key, canonical lines and NULL count of a batch."""
        shape = self.shape
        where, bounds = _range(shape, lower, upper)
        key = quote(shape.key.name)
        plain = printf("\t", [sqlite_text(c, escape=escape) for c in shape.plain])
        nulls = " + ".join(f"({quote(c.name)} IS NULL)" for c in shape.plain if c.nullable) or "0"
        found = db.execute(
            f"SELECT count(*), max(k), group_concat(p, char(10)), sum(n) FROM (SELECT {key} AS k, {plain} AS p,"
            f" {nulls} AS n FROM {quote(shape.name)} WHERE {where} ORDER BY {key} LIMIT ?)",
            [*bounds, size],
        ).fetchone()
        return found if found[0] else None

    def _unescaped_is_right(self, rows: int, lines: str, nulls: int) -> bool:
        """Whether lines written without escapes are right: they hold exactly the tabs, newlines and
        backslashes (of NULL markers) their shape implies, and no other character COPY escapes."""
        return (
            lines.count("\t") == rows * (len(self.shape.plain) - 1)
            and lines.count("\n") == rows - 1
            and lines.count("\\") == nulls
            and not any(char in lines for char in UNESCAPED)
        )

    def _doubles(self, lower: Any, last: Any) -> array[float]:
        """The doubles of the rows with ``lower < key <= last``, row after row, as stored; NaN for NULL."""
        shape = self.shape
        if not shape.doubles:
            return array("d")
        where, bounds = _range(shape, lower, last)
        rows = self.db.execute(
            f"SELECT {', '.join(quote(c.name) for c in shape.doubles)} FROM {quote(shape.name)}"
            f" WHERE {where} ORDER BY {quote(shape.key.name)}",
            bounds,
        ).fetchall()
        try:
            return array("d", [math.nan if value is None else value for value in chain.from_iterable(rows)])
        except TypeError:
            raise CatalogError(
                f"{shape.name} holds a value that is not a number in one of its columns of numbers"
                f" ({', '.join(c.name for c in shape.doubles)}): correct it in the SQLite catalog, then migrate again"
            ) from None

    @staticmethod
    def _digest(lines: str, doubles: array[float]) -> bytes:
        """Digest of the canonical lines and of the doubles' 8 bytes (NaN for NULL: SQLite stores no NaN)."""
        values = array("d", doubles)
        if sys.byteorder == "little":
            values.byteswap()  # big-endian, like PostgreSQL's float8send
        return sha256(lines.encode() + b"\n") + sha256(values.tobytes())

    def _copy_text(self, lines: str, doubles: array[float], documents: list[tuple[Any, ...]]) -> str:
        """The batch's ``COPY`` text: each canonical line, then its doubles and its JSON documents. Doubles are
        written as hexadecimal floats (C's strtod, which PostgreSQL reads them with, takes them): exact, and
        quicker to write and to read than decimals."""
        plain = lines.split("\n")
        columns = [plain]
        if doubles:
            texts = map(float.hex, doubles)
            per_row = zip(*[texts] * len(self.shape.doubles), strict=True)
            columns.append("\n".join(map("\t".join, per_row)).replace("nan", "\\N").split("\n"))
        if self.shape.documents:
            absent = "\t".join(["\\N"] * len(self.shape.documents))
            if documents:  # found by the key text that begins their row's canonical line
                texts_by_key = {str(row[0]): "\t".join(map(copy_document_text, row[1:])) for row in documents}
                columns.append([texts_by_key.get(line.split("\t", 1)[0], absent) for line in plain])
            else:
                columns.append([absent] * len(plain))
        return "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"

    def _documents(self, lower: Any, last: Any) -> list[tuple[Any, ...]]:
        """The key text and JSON documents of the rows with ``lower < key <= last`` that have any."""
        shape = self.shape
        if not shape.documents:
            return []
        where, bounds = _range(shape, lower, last)
        key_text = sqlite_text(shape.key, escape=True)
        present = " OR ".join(f"{quote(c.name)} IS NOT NULL" for c in shape.documents)
        return self.db.execute(
            f"SELECT {key_text}, {', '.join(quote(c.name) for c in shape.documents)} FROM {quote(shape.name)}"
            f" WHERE {where} AND ({present}) ORDER BY {quote(shape.key.name)}",
            bounds,
        ).fetchall()
