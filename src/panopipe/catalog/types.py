"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored as naive UTC, returned as an aware UTC ``datetime``.

    Naive UTC in a ``TIMESTAMP WITHOUT TIME ZONE`` column is the one representation both backends keep exactly
    (SQLite has no time zones), so the same value goes in and comes out everywhere.
    """

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else naive_utc(value)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def naive_utc(value: datetime) -> datetime:
    """The timezone-aware ``value`` as the naive UTC that :class:`UTCDateTime` stores; a naive one is an error."""
    if value.tzinfo is UTC:
        return value.replace(tzinfo=None)
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: catalog timestamps must be timezone-aware")
    return value.astimezone(UTC).replace(tzinfo=None)


JSONDocument = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
"""JSON on SQLite, JSONB on PostgreSQL; ``None`` is SQL NULL, not the JSON ``null``."""


def ByteOrderedString(length: int | None = None) -> sa.types.TypeEngine[str]:
    """Text (at most ``length`` characters) ordered by its bytes on both backends, as SQLite's BINARY collation orders it: PostgreSQL's
    ``"C"`` collation, which also sorts (and so builds indexes) several times faster than a locale's and lets
    ``LIKE 'prefix%'`` use an index."""
    if length is None:
        return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""An auto-incrementing integer key (SQLite only auto-increments INTEGER PRIMARY KEY)."""


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_ids(count: int) -> list[str]:
    """``count`` new time-ordered UUIDs (version 7 layout), in increasing order (they share their millisecond;
    their random bits are sorted), so that inserts append to the primary-key index."""
    prefix = f"{time.time_ns() // 1_000_000:012x}"
    prefix = f"{prefix[:8]}-{prefix[8:]}-7"
    entropy = os.urandom(10 * count).hex()
    return sorted(
        f"{prefix}{entropy[i : i + 3]}-{_VARIANT[entropy[i + 3]]}{entropy[i + 4 : i + 7]}-{entropy[i + 8 : i + 20]}"
        for i in range(0, 20 * count, 20)
    )


def new_id() -> str:
    """A new time-ordered UUID (version 7 layout)."""
    return new_ids(1)[0]


def dashed(digits: str) -> str:
    """The canonical text of a UUID given as its 32 hex digits."""
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def uuid_hex(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[str]:
    """``column`` (a UUID) as its 32 hex digits, computed by the database ``dialect`` (no per-row conversion)."""
    if dialect == "postgresql":
        return sa.func.replace(sa.cast(column, sa.Text), "-", "")
    return sa.type_coerce(column, sa.Text)  # SQLite stores the 32 hex digits


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def column_kind(column: sa.Column[Any]) -> str:
    """The kind of a column's values, as a catalog move's binary ``COPY`` writes them and bulk updates send
    them to PostgreSQL: u uuid, t text, i int4, I int8, b bool, d float8, T timestamp, j jsonb."""
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


__all__ = [
    "BigIntId",
    "ByteOrderedString",
    "JSONDocument",
    "UTCDateTime",
    "column_kind",
    "dashed",
    "naive_utc",
    "new_id",
    "new_ids",
    "utcnow",
    "uuid_hex",
]
