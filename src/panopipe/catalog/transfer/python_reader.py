"""The compiled SQLite reader (``_sqlite_copy.c``) in pure Python: the same bytes, several times slower.

Used when panopipe was installed without a C compiler. :class:`Reader` takes the same arguments and returns
the same values as the compiled one, and raises the same errors; the C file documents the format.
"""

from __future__ import annotations

import re
import sqlite3
import struct
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
"""Binary ``COPY``'s signature, flags and header extension length."""
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"
_UUID = re.compile(rb"[0-9a-fA-F]{32}")
_TIME = re.compile(rb"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{6}))?")
_DAY_2000 = date(2000, 1, 1).toordinal()
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


def _time_micros(text: bytes) -> int | None:
    """``YYYY-MM-DD HH:MM:SS[.ffffff]`` as microseconds since 2000-01-01; ``None`` for any other form."""
    match = _TIME.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second = map(int, match.groups()[:6])
    if hour > 23 or minute > 59 or second > 59:
        return None
    try:
        days = date(year, month, day).toordinal() - _DAY_2000
    except ValueError:
        return None
    return ((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + int(match[7] or 0)


def _as_object(value: Any) -> Any:
    """A value as the compiled reader hands it to Python (hooks, errors): text decoded, numbers as they are."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class Reader:
    """A SQLite connection whose query results come out as PostgreSQL binary ``COPY`` data."""

    def __init__(self, path: str) -> None:
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                f"{Path(path).absolute().as_uri()}?mode=rw", uri=True, check_same_thread=False
            )
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
        documents = [c for c, kind in enumerate(kinds) if kind == "j"]
        plain = [c for c, kind in enumerate(kinds) if kind != "j"]
        out, canonical, docs = bytearray(SIGNATURE), bytearray(SIGNATURE), []
        count, row = 0, None
        for row in rows:
            fields = []
            for column, (kind, value) in enumerate(zip(kinds, row, strict=True)):
                try:
                    fields.append(NULL if value is None else self._field(kind, value, time_hook, number_hook))
                except _Misfit as misfit:
                    raise BadValue(column, misfit.expected, _as_object(value)) from None
            out += struct.pack(">H", len(kinds))
            out += b"".join(fields)
            if documents:
                canonical += struct.pack(">H", len(plain))
                canonical += b"".join(fields[c] for c in plain)
                if any(row[c] is not None for c in documents):
                    texts = (fields[c][5:] if row[c] is not None else b"" for c in documents)
                    docs.append(b"\x1f".join((self._text(row[0]), *texts)))
            count += 1
        out += TRAILER
        canonical += TRAILER
        last: Any = None
        if row is not None:
            key = self._text(row[0])
            last = key.decode() if kinds[0] in "ut" else int(key)
        return count, last, bytes(out), bytes(canonical) if documents else None, b"\x1e".join(docs)

    def _field(
        self,
        kind: str,
        value: Any,
        time_hook: Callable[[object], int],
        number_hook: Callable[[int | float], str],
    ) -> bytes:
        """One non-NULL value as a ``COPY`` field (its length, then its bytes); :class:`_Misfit` when it does
        not fit ``kind``."""
        if kind == "t":
            text = self._text(value)
            return struct.pack(">I", len(text)) + text
        if kind == "u":
            digits = value.replace(b"-", b"") if isinstance(value, _Text) else b""
            if not _UUID.fullmatch(digits):
                raise _Misfit("a UUID")
            return b"\x00\x00\x00\x10" + bytes.fromhex(digits.decode())
        if kind in "iIb":
            if not isinstance(value, int):
                raise _Misfit("a boolean" if kind == "b" else "an integer")
            if kind == "I":
                return _INT8.pack(8, value)
            if kind == "b":
                return b"\x00\x00\x00\x01" + (b"\x01" if value else b"\x00")
            if not -(2**31) <= value < 2**31:
                raise _Misfit("a 32-bit integer")
            return _INT4.pack(4, value)
        if kind == "d":
            if not isinstance(value, int | float):
                raise _Misfit("a number")
            return _FLOAT8.pack(8, float(value))
        if kind == "T":
            micros = _time_micros(value) if isinstance(value, _Text) else None
            if micros is None:
                try:
                    micros = time_hook(_as_object(value))
                except ValueError:
                    raise _Misfit("a time") from None
            return _INT8.pack(8, micros)
        if kind == "j":
            if isinstance(value, _Text):
                text = bytes(value)
            elif isinstance(value, int | float):
                try:
                    found = number_hook(value)
                    if not isinstance(found, str):
                        raise TypeError(f"the number hook returned a {type(found).__name__}, not text")
                    text = found.encode()
                except ValueError:
                    raise _Misfit("a JSON document") from None
            else:
                raise _Misfit("a JSON document")
            return struct.pack(">I", len(text) + 1) + b"\x01" + text
        raise _Misfit("a known kind of value")

    def _text(self, value: Any) -> bytes:
        """A value as SQLite turns it into text (a blob's bytes as they are, a double as SQLite prints it)."""
        if isinstance(value, bytes):
            return bytes(value)
        if isinstance(value, float):
            assert self._db is not None
            return bytes(self._db.execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()[0])
        return str(value).encode()


def load_sqlite(path: str) -> bool:
    """Nothing to load: Python's sqlite3 module reads the catalog."""
    return True


__all__ = ["BadValue", "Reader", "load_sqlite"]
