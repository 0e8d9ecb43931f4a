"""SQLite query results as PostgreSQL binary COPY data (``_sqlite_copy.c``)."""

from collections.abc import Callable, Sequence
from typing import Any

class BadValue(ValueError):
    """A value that does not fit its column: args are (column index, what it should be, the value)."""

def load_sqlite(path: str) -> bool:
    """Take SQLite's functions from the shared object at ``path`` (or its dependencies); False if it has none."""

class Reader:
    """A SQLite connection whose query results come out as PostgreSQL binary COPY data."""

    def __init__(self, path: str) -> None: ...
    def batch(
        self,
        sql: str,
        params: Sequence[Any],
        kinds: str,
        time_hook: Callable[[object], int],
        number_hook: Callable[[int | float], str],
    ) -> tuple[int, Any, bytes, bytes | None, bytes]:
        """(rows, last key, COPY data, canonical data or None, key and JSON texts of the rows with any)."""
    def close(self) -> None: ...
