"""The text both sides of a catalog move agree on: how each column of a SQLite catalog is written as PostgreSQL
``COPY`` text, and the canonical form of a row that both sides digest to prove the copy exact.

A row's *canonical line* is exactly what PostgreSQL's ``COPY ... TO`` prints for its columns that are neither
doubles nor JSON (``t``/``f``, dashed UUIDs, ISO timestamps without trailing zeros, COPY's escapes). The source
writes those columns in that very form, so the line it sends is the line PostgreSQL prints back. Doubles are
compared as their 8 bytes (every bit counts; NaN for NULL, as SQLite stores no NaN), and JSON documents by value,
as ``jsonb`` keeps them (sorted keys, numbers as numbers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import sqlalchemy as sa

from panopipe.catalog.types import UTCDateTime

Kind = Literal["text", "integer", "bool", "double", "time", "uuid", "json"]


def column_kind(column: sa.Column[Any]) -> Kind:
    """How a column is written and compared."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return "json"
    if isinstance(kind, UTCDateTime):
        return "time"
    if isinstance(kind, sa.Uuid):
        return "uuid"
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.Float):
        return "double"
    if isinstance(kind, sa.Integer):
        return "integer"
    return "text"


def quote(name: str) -> str:
    """``name`` as an SQL identifier (the catalog's names need no escaping)."""
    return f'"{name}"'


class TableShape:
    """A catalog table split the way it is copied: its key, the columns of the canonical line, the doubles
    and the JSON documents. ``COPY`` takes the columns in that order: plain, doubles, documents."""

    def __init__(self, table: sa.Table):
        (self.key,) = table.primary_key.columns
        if next(iter(table.columns)) is not self.key:
            raise ValueError(f"{table.name}: the key must be the first column (it begins the canonical line)")
        kinds = [(column, column_kind(column)) for column in table.columns]
        self.table = table
        self.plain = tuple(c for c, k in kinds if k not in ("double", "json"))
        self.doubles = tuple(c for c, k in kinds if k == "double")
        self.documents = tuple(c for c, k in kinds if k == "json")

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def copy_columns(self) -> tuple[sa.Column[Any], ...]:
        return self.plain + self.doubles + self.documents

    @property
    def key_is_uuid(self) -> bool:
        return column_kind(self.key) == "uuid"


# The source (SQLite), written as PostgreSQL prints the same values.

_TIME_LIKE = "____-__-__ __:__:__.______"
"""How SQLAlchemy stores a ``DateTime`` in SQLite; other forms go through :func:`time_text`."""


def time_text(value: str) -> str:
    """A stored timestamp as PostgreSQL prints a ``timestamp`` (offset dropped, as SQLAlchemy reads it)."""
    text = datetime.fromisoformat(value).replace(tzinfo=None).isoformat(" ", "microseconds")
    return text[:19] if text.endswith(".000000") else text.rstrip("0")


SQLITE_FUNCTIONS = {"panopipe_time_text": time_text}
"""The Python functions the source SQL below calls (rarely: only for values SQL cannot write exactly)."""

_COPY_ESCAPES = (("\\", "\\\\"), ("\b", "\\b"), ("\t", "\\t"), ("\n", "\\n"), ("\v", "\\v"))
_COPY_ESCAPES += (("\f", "\\f"), ("\r", "\\r"))
_COPY_TRANSLATION = str.maketrans(dict(_COPY_ESCAPES))
UNESCAPED = frozenset(char for char, _ in _COPY_ESCAPES if char not in "\\\t\n")
"""Characters that must not appear in a canonical line written without escapes (tabs, newlines and
backslashes are counted instead: they may only be separators and NULL markers)."""


def _escaped(expression: str) -> str:
    """SQLite SQL escaping a text value as ``COPY`` does (backslash first)."""
    for char, escape in _COPY_ESCAPES:
        expression = f"replace({expression}, char({ord(char)}), '{escape}')"
    return expression


def _dashed(expression: str) -> str:
    e = expression
    dashed = f"printf('%.8s-%.4s-%.4s-%.4s-%s', {e}, substr({e}, 9), substr({e}, 13), substr({e}, 17), substr({e}, 21))"
    return f"lower(CASE WHEN length({e}) = 32 THEN {dashed} ELSE {e} END)"


def sqlite_text(column: sa.Column[Any], *, escape: bool) -> str:
    """SQLite SQL for a plain column's text in the canonical line (``\\N`` for NULL); without ``escape``
    text is written as stored, which is right only for text free of COPY's special characters."""
    c = quote(column.name)
    kind = column_kind(column)
    if kind == "text":
        text = _escaped(c) if escape else c
    elif kind == "uuid":
        text = _dashed(c)
    elif kind == "bool":
        text = f"CASE WHEN {c} THEN 't' ELSE 'f' END"
    elif kind == "time":
        text = f"CASE WHEN {c} LIKE '{_TIME_LIKE}' THEN rtrim(rtrim({c}, '0'), '.') ELSE panopipe_time_text({c}) END"
    else:
        text = c
    return f"CASE WHEN {c} IS NULL THEN '\\N' ELSE {text} END"


def copy_document_text(value: str | float | None) -> str:
    """A JSON document's ``COPY`` text (SQLite's NUMERIC affinity may have stored a number as a number)."""
    if value is None:
        return "\\N"
    return (value if isinstance(value, str) else json.dumps(value)).translate(_COPY_TRANSLATION)


def printf(separator: str, values: Sequence[str]) -> str:
    """SQLite SQL joining ``values`` with ``separator`` (one string built at once, unlike ``||``)."""
    return f"printf('{separator.join(['%s'] * len(values))}', {', '.join(values)})"


# The target (PostgreSQL).


def postgres_line_query(shape: TableShape, where: str) -> str:
    """The SELECT whose ``COPY ... TO`` output is the canonical lines of the rows matching ``where``."""
    columns = ", ".join(quote(c.name) for c in shape.plain)
    return f"SELECT {columns} FROM {quote(shape.name)} WHERE {where} ORDER BY {quote(shape.key.name)}"


def postgres_doubles_digest(shape: TableShape) -> str:
    """SQL aggregate: SHA-256 of the doubles' 8 bytes (big-endian, NaN for NULL), row after row in key order.
    A NaN stored on the target (the source cannot hold one) counts as a single byte, so it never passes for NULL."""
    if not shape.doubles:
        return "sha256(''::bytea)"
    values = " || ".join(
        f"CASE WHEN {c} = 'NaN' THEN '\\x00'::bytea ELSE float8send(coalesce({c}, 'NaN')) END"
        for c in map(quote, (column.name for column in shape.doubles))
    )
    order = f"ORDER BY {quote(shape.key.name)}"
    return f"sha256(coalesce(string_agg({values}, ''::bytea {order}), ''::bytea))"


POSTGRES_SESSION = ("SET LOCAL DateStyle = 'ISO, MDY'", "SET LOCAL TimeZone = 'UTC'")
"""Settings under which PostgreSQL prints values in the canonical form."""


# Digests.

_SEPARATOR = "\x1f"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def document_line(key: object, values: Sequence[Any]) -> str:
    """A row's JSON documents, compared by value, with the row's key text."""
    return _SEPARATOR.join([str(key), *("None" if v is None else _canonical_json(v) for v in values)])


def documents_digest(rows: Sequence[Sequence[Any]]) -> bytes:
    """Digest of (key text, documents...) rows, in key order."""
    return sha256("\n".join([document_line(row[0], row[1:]) for row in rows]).encode())


def record(count: int, digest: bytes) -> bytes:
    """A range's row count and digest, as the table's checksum takes them."""
    return count.to_bytes(8, "big") + digest


def _json_number(value: Decimal) -> str:
    return "0" if value == 0 else str(value.normalize())


def _canonical_json_value(value: Any) -> str:
    if isinstance(value, dict):
        items = (f"{json.dumps(k)}:{_canonical_json_value(value[k])}" for k in sorted(value))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(_canonical_json_value, value)) + "]"
    if isinstance(value, Decimal):
        return _json_number(value)
    return json.dumps(value, ensure_ascii=False)


def _canonical_json(value: Any) -> str:
    # jsonb keeps numbers as numeric (1e-05 comes back as 0.00001): compare JSON numbers by value.
    if isinstance(value, int | float):  # a number SQLite's NUMERIC affinity stored as INTEGER or REAL
        return _json_number(Decimal(repr(value)))
    if value[:1] in _NUMBER_START:  # a document that is a number alone, as jsonb prints it
        try:
            return _json_number(Decimal(value))
        except InvalidOperation:
            pass
    return _canonical_json_value(json.loads(value, parse_float=Decimal, parse_int=Decimal))


_NUMBER_START = frozenset("-0123456789")
