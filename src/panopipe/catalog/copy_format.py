"""The form both sides of a catalog move agree on: PostgreSQL's binary ``COPY`` format.

The source writes each row as a binary ``COPY`` tuple (the compiled reader, ``_sqlite_copy.c``, one letter of
:func:`column_kind` a column). A row's canonical form is that tuple without its JSON documents: exactly what
PostgreSQL's ``COPY (SELECT <those columns>) TO STDOUT (FORMAT binary)`` prints back, so both sides digest the
same bytes (every bit of a double, NULL apart from NaN, times to the microsecond). JSON documents are compared
by value, as ``jsonb`` keeps them (sorted keys, numbers as numbers).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from panopipe.catalog.types import UTCDateTime


def column_kind(column: sa.Column[Any]) -> str:
    """How a column is written: u uuid, t text, i int4, I int8, b bool, d float8, T timestamp, j jsonb."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return "j"
    if isinstance(kind, UTCDateTime):
        return "T"
    if isinstance(kind, sa.Uuid):
        return "u"
    if isinstance(kind, sa.Boolean):
        return "b"
    if isinstance(kind, sa.Float):
        return "d"
    if isinstance(kind, sa.BigInteger):
        return "I"
    if isinstance(kind, sa.Integer):
        return "i"
    return "t"


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


EMPTY_COPY = b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\xff\xff"
"""Binary ``COPY`` data of no rows: the signature, flags and header extension length, then the trailer."""


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

_SEPARATOR = "\x1f"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def documents_digest(rows: Sequence[Sequence[Any]], *, uuid_keys: bool) -> bytes:
    """Digest of (key text, JSON text or ``None``...) rows, in key order: each key as 32 hex digits (a UUID)
    or digits, each document by value."""
    lines = (
        _SEPARATOR.join(
            [
                row[0].replace("-", "").lower() if uuid_keys else row[0],
                *("None" if text is None else canonical_json(text) for text in row[1:]),
            ]
        )
        for row in rows
    )
    return sha256("\n".join(lines).encode())


def record(count: int, digest: bytes) -> bytes:
    """A range's row count and digest, as the table's checksum takes them."""
    return count.to_bytes(8, "big") + digest


def canonical_json(text: str) -> str:
    """A JSON document in a form equal for equal values, as ``jsonb`` compares them: keys sorted, numbers by
    value (``1E2``, ``100`` and ``100.0`` alike, as ``jsonb`` keeps numbers as ``numeric``)."""
    try:
        return _CANONICAL_ENCODER.encode(_DOUBLES_DECODER.decode(text))
    except _Inexact:
        return _exact_json(json.loads(text, parse_float=Decimal, parse_int=Decimal))


class _Inexact(Exception):
    """A JSON number that two different documents could share as a double."""


def _double(digits: str) -> float:
    """A JSON number as a double, if that is exact: at most 15 significant digits, in a double's normal range."""
    value = float(digits) + 0.0  # numeric has no -0
    significant = digits.lower().partition("e")[0].lstrip("-").replace(".", "").strip("0")
    if len(significant) > 15 or math.isinf(value) or (significant and abs(value) < sys.float_info.min):
        raise _Inexact(digits)
    return value


_DOUBLES_DECODER = json.JSONDecoder(parse_float=_double, parse_int=_double)
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _exact_json(value: Any) -> str:
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=False)}:{_exact_json(value[k])}" for k in sorted(value))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(_exact_json, value)) + "]"
    if isinstance(value, Decimal):
        return "0" if value == 0 else str(value.normalize())
    return json.dumps(value, ensure_ascii=False)


# The target (PostgreSQL).


def postgres_row_query(shape: TableShape, where: str) -> str:
    """The SELECT whose binary ``COPY ... TO`` output is the canonical form of the rows matching ``where``."""
    columns = ", ".join(quote(c.name) for c in shape.plain)
    return f"SELECT {columns} FROM {quote(shape.name)} WHERE {where} ORDER BY {quote(shape.key.name)}"
