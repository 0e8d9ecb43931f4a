"""The compiled SQLite reader (``_sqlite_copy.c``) in pure Python: the same bytes, several times slower.

Used when panopipe was installed without a C compiler. :class:`Reader` takes the same arguments and returns
the same values as the compiled one, and raises the same errors; the C file documents the format. One
difference: every time goes through the time hook (:func:`~panopipe.catalog.transfer.copy_format.time_micros`
reads the form the compiled reader parses itself, to the same microseconds).
"""

from __future__ import annotations

import re
import sqlite3
import struct
from collections.abc import Callable, Sequence
from typing import Any

from panopipe.catalog.transfer.copy_format import COPY_HEADER, COPY_TRAILER
from panopipe.sqlite_files import open_existing

_NULL = b"\xff\xff\xff\xff"
_UUID = re.compile(rb"[0-9a-fA-F]{32}")
_LENGTH = struct.Struct(">I")
_INT4 = struct.Struct(">Ii")
_INT8 = struct.Struct(">Iq")
_FLOAT8 = struct.Struct(">Id")


class BadValue(ValueError):
    """A value that does not fit its column: args are (column index, what it should be, the value)."""


class _Text(bytes):
    """A value SQLite stores as text (as opposed to a blob), as its UTF-8 bytes."""


class _Misfit(Exception):
    """The value of the column being written is not ``expected``."""

    def __init__(self, expected: str):
        self.expected = expected


def _as_object(value: Any) -> Any:
    """A value as the compiled reader hands it to Python (hooks, errors): text decoded, numbers as they are."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class Reader:
    """A SQLite connection whose query results come out as PostgreSQL binary ``COPY`` data."""

    def __init__(self, path: str) -> None:
        try:
            self._db: sqlite3.Connection | None = open_existing(path, mode="rw", check_same_thread=False)
        except sqlite3.Error as error:
            raise OSError(f"cannot open {path}: {error}") from None
        self._db.text_factory = _Text

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def batch(
        self,
        sql: str,
        params: Sequence[Any],
        kinds: str,
        time_hook: Callable[[object], int],
        number_hook: Callable[[int | float], str],
    ) -> tuple[int, Any, bytes, bytes | None, bytes]:
        """(rows, last key, COPY data, canonical data or None, key and JSON texts of the rows with any)."""
        if self._db is None:
            raise ValueError("the reader is closed")
        try:
            cursor = self._db.execute(sql, params)
            if len(cursor.description) != len(kinds) or not kinds:
                raise ValueError(f"{len(kinds)} kinds for a query of {len(cursor.description)} columns")
            return self._write(cursor, kinds, time_hook, number_hook)
        except sqlite3.Error as error:
            raise ValueError(str(error)) from None

    def _write(
        self,
        rows: sqlite3.Cursor,
        kinds: str,
        time_hook: Callable[[object], int],
        number_hook: Callable[[int | float], str],
    ) -> tuple[int, Any, bytes, bytes | None, bytes]:
        writers = [self._writer(kind, time_hook, number_hook) for kind in kinds]
        documents = [c for c, kind in enumerate(kinds) if kind == "j"]
        plain = [c for c, kind in enumerate(kinds) if kind != "j"]
        columns, plain_columns = struct.pack(">H", len(kinds)), struct.pack(">H", len(plain))
        out, canonical, docs = [COPY_HEADER], [COPY_HEADER], []
        count, row = 0, None
        for row in rows:
            fields: list[bytes] = []
            append = fields.append
            try:
                for write, value in zip(writers, row, strict=True):
                    append(_NULL if value is None else write(value))
            except _Misfit as misfit:
                column = len(fields)
                raise BadValue(column, misfit.expected, _as_object(row[column])) from None
            out.append(columns)
            out += fields
            if documents:
                canonical.append(plain_columns)
                canonical += [fields[c] for c in plain]
                if any(row[c] is not None for c in documents):
                    texts = [fields[c][5:] if row[c] is not None else b"" for c in documents]
                    docs.append(b"\x1f".join([self._text(row[0]), *texts]))
            count += 1
        last: Any = None
        if row is not None:
            key = self._text(row[0])
            last = key.decode() if kinds[0] in "ut" else int(key)
        data = b"".join([*out, COPY_TRAILER])
        return (
            count,
            last,
            data,
            b"".join([*canonical, COPY_TRAILER]) if documents else None,
            b"\x1e".join(docs),
        )

    def _writer(
        self, kind: str, time_hook: Callable[[object], int], number_hook: Callable[[int | float], str]
    ) -> Callable[[Any], bytes]:
        """A function that writes a non-NULL value of a ``kind`` column as a ``COPY`` field (its length, then
        its bytes), or raises :class:`_Misfit` when the value does not fit the kind."""

        def text(value: Any) -> bytes:
            data = value if isinstance(value, bytes) else self._text(value)
            return _LENGTH.pack(len(data)) + data

        def uuid(value: Any) -> bytes:
            digits = value.replace(b"-", b"") if isinstance(value, _Text) else b""
            if not _UUID.fullmatch(digits):
                raise _Misfit("a UUID")
            return b"\x00\x00\x00\x10" + bytes.fromhex(digits.decode())

        def int4(value: Any) -> bytes:
            if type(value) is not int:
                raise _Misfit("an integer")
            if not -(2**31) <= value < 2**31:
                raise _Misfit("a 32-bit integer")
            return _INT4.pack(4, value)

        def int8(value: Any) -> bytes:
            if type(value) is not int:
                raise _Misfit("an integer")
            return _INT8.pack(8, value)

        def boolean(value: Any) -> bytes:
            if type(value) is not int:
                raise _Misfit("a boolean")
            return b"\x00\x00\x00\x01\x01" if value else b"\x00\x00\x00\x01\x00"

        def float8(value: Any) -> bytes:
            if type(value) is not float and type(value) is not int:
                raise _Misfit("a number")
            return _FLOAT8.pack(8, value)  # an integer is rounded to the nearest double, as SQLite does

        def timestamp(value: Any) -> bytes:
            # Every time, not only those in another form than SQLAlchemy's: the hook reads that form too.
            try:
                return _INT8.pack(8, time_hook(_as_object(value)))
            except ValueError:
                raise _Misfit("a time") from None

        def jsonb(value: Any) -> bytes:
            if isinstance(value, _Text):
                data = bytes(value)
            elif type(value) is int or type(value) is float:
                try:
                    found = number_hook(value)
                    if not isinstance(found, str):
                        raise TypeError(f"the number hook returned a {type(found).__name__}, not text")
                    data = found.encode()
                except ValueError:
                    raise _Misfit("a JSON document") from None
            else:
                raise _Misfit("a JSON document")
            return _LENGTH.pack(len(data) + 1) + b"\x01" + data

        def unknown(value: Any) -> bytes:
            raise _Misfit("a known kind of value")

        writers = {"t": text, "u": uuid, "i": int4, "I": int8, "b": boolean, "d": float8, "T": timestamp}
        return writers.get(kind, jsonb if kind == "j" else unknown)

    def _text(self, value: Any) -> bytes:
        """A value as SQLite turns it into text (a blob's bytes as they are, a double as SQLite prints it)."""
        if isinstance(value, bytes):
            return bytes(value)
        if isinstance(value, float):
            assert self._db is not None
            return bytes(self._db.execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()[0])
        return str(value).encode()


__all__ = ["BadValue", "Reader"]
