"""The form both sides of a catalog move agree on: PostgreSQL's binary ``COPY`` format.

The source writes each row as a binary ``COPY`` tuple (the compiled reader, ``_sqlite_copy.c``, one letter of
:func:`~panopipe.catalog.types.column_kind` a column). A row's canonical form is that tuple without its JSON
documents: exactly what PostgreSQL's ``COPY (SELECT <those columns>) TO STDOUT (FORMAT binary)`` prints back, so both sides digest the
same bytes (every bit of a double, NULL apart from NaN, times to the microsecond). JSON documents are compared
as ``jsonb`` values: PostgreSQL reads both sides' (:func:`documents_digest_sql`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.types import column_kind


def quote(name: str) -> str:
    """``name`` as an SQL identifier (the catalog's names need no escaping)."""
    return f'"{name}"'


class TableShape:
    """A catalog table as it is copied: its key (first), the columns of the canonical form, then the JSON
    documents; ``COPY`` takes the columns in that order."""

    def __init__(self, table: sa.Table):
        (self.key,) = table.primary_key.columns
        if next(iter(table.columns)) is not self.key:
            raise ValueError(
                f"{table.name}: the key must be the first column (the reader returns its last value)"
            )
        self.table = table
        self.plain = tuple(c for c in table.columns if column_kind(c) != "j")
        self.documents = tuple(c for c in table.columns if column_kind(c) == "j")

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def copy_columns(self) -> tuple[sa.Column[Any], ...]:
        return self.plain + self.documents

    @property
    def kinds(self) -> str:
        """The reader's letters for :attr:`copy_columns`."""
        return "".join(map(column_kind, self.copy_columns))

    @property
    def key_is_uuid(self) -> bool:
        return column_kind(self.key) == "u"


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
"""Binary ``COPY``'s signature, flags and header extension length."""
COPY_TRAILER = b"\xff\xff"
EMPTY_COPY = COPY_HEADER + COPY_TRAILER
"""Binary ``COPY`` data of no rows."""


# Values the reader hands to Python: the rare ones not in the form SQLAlchemy writes.

_TIME_ORIGIN = datetime(2000, 1, 1)


def time_micros(value: object) -> int:
    """A stored timestamp in another form than SQLAlchemy's (ISO 8601 with a ``T``, an offset...) as
    PostgreSQL's binary ``timestamp``: microseconds since 2000. An offset is dropped, as SQLAlchemy reads it."""
    if not isinstance(value, str):
        raise ValueError(value)
    return (datetime.fromisoformat(value).replace(tzinfo=None) - _TIME_ORIGIN) // timedelta(microseconds=1)


def json_number_text(value: int | float) -> str:
    """A JSON document that SQLite's NUMERIC affinity stored as a number, as JSON text."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(value)  # JSON has no infinity
    return json.dumps(value)


# Digests.


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def record(count: int, digest: bytes) -> bytes:
    """A range's row count and digest, as the table's checksum takes them."""
    return count.to_bytes(8, "big") + digest


def documents_digest_sql(
    shape: TableShape, key: str, documents: Sequence[str], source: str, order: str
) -> str:
    """PostgreSQL SQL: SHA-256 of the lines (key text, then each document as ``jsonb`` prints it, or None)
    of the rows ``source`` (a FROM clause and its conditions) yields, in ``order``. Both sides' documents go
    through it, the target's columns and the source's texts (sent as one parameter), so that both are
    compared as ``jsonb`` values (keys sorted, numbers as ``numeric``)."""
    key_text = f"lower(replace({key}::text, '-', ''))" if shape.key_is_uuid else f"{key}::text"
    texts = ", ".join(f"coalesce({document}::jsonb::text, 'None')" for document in documents)
    lines = f"string_agg(concat_ws(chr(31), {key_text}, {texts}), chr(10) ORDER BY {order})"
    return f"(SELECT sha256(convert_to(coalesce({lines}, ''), 'UTF8')) FROM {source})"


# The target (PostgreSQL).


def postgres_row_query(shape: TableShape, where: str) -> str:
    """The SELECT whose binary ``COPY ... TO`` output is the canonical form of the rows matching ``where``."""
    columns = ", ".join(quote(c.name) for c in shape.plain)
    return f"SELECT {columns} FROM {quote(shape.name)} WHERE {where} ORDER BY {quote(shape.key.name)}"


__all__ = [
    "COPY_HEADER",
    "COPY_TRAILER",
    "EMPTY_COPY",
    "TableShape",
    "documents_digest_sql",
    "json_number_text",
    "postgres_row_query",
    "quote",
    "record",
    "sha256",
    "time_micros",
]
