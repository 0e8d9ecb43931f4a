"""SQLite query results as PostgreSQL binary COPY data (``_sqlite_copy.c``): the interface of its pure-Python
twin, :mod:`panopipe.catalog.transfer.python_reader`, and the SQLite library to load first."""

from panopipe.catalog.transfer.python_reader import BadValue as BadValue
from panopipe.catalog.transfer.python_reader import Reader as Reader

def load_sqlite(path: str) -> bool:
    """Take SQLite's functions from the shared object at ``path`` (or its dependencies); False if it has none."""
