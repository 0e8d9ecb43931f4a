"""Fixtures shared by the whole suite: catalogs on SQLite and PostgreSQL, required external tools, and the
``panopipe`` logger given back after each test.

Under ``CI=true`` a test whose service or tool is missing fails; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from panopipe.catalog import Catalog

DATA = Path(__file__).parent / "data"
POSTGRES_ADMIN_URL = os.environ.get("PANOPIPE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, what: str) -> None:
    """Fail (in CI) or skip (elsewhere) the current test when ``what`` is not available."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available")


def _postgres_reachable() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("exiftool"):
        require(shutil.which("exiftool") is not None, "exiftool (apt-get install libimage-exiftool-perl)")


@pytest.fixture(autouse=True)
def restore_panopipe_logger() -> Iterator[None]:
    """The Lambda entry points configure the ``panopipe`` logger for the whole process (JSON lines to standard
    output, not propagated), as they should in Lambda; the tests that call them, in tests/aws and end to end,
    would otherwise leave it so for every later test (whose ``caplog`` then sees nothing)."""
    logger = logging.getLogger("panopipe")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@contextlib.contextmanager
def new_database(prefix: str = "panopipe_test") -> Iterator[str]:
    """A fresh PostgreSQL database (a URL), dropped afterwards, connections and all."""
    require(_postgres_reachable(), f"PostgreSQL at {POSTGRES_ADMIN_URL}")
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_connections(url: str) -> None:
    """End the connections of others to the database of ``url``, as a failover or a restart does."""
    name = make_url(url).database
    admin = url.split("?")[0].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


@contextlib.contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another process's write lock on the SQLite file ``db``, as a long ``ingest`` holds it."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (a URL), dropped afterwards."""
    with new_database() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """A URL to an empty schema of its own in the session's PostgreSQL database."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{postgres_database}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The location of a new, empty catalog on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "catalog.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    """A new, empty catalog on each backend."""
    with Catalog.open(catalog_url) as opened:
        yield opened


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process's umask set to the parameter while the test runs; yields the mode a new file gets."""
    previous = os.umask(request.param)
    yield 0o666 & ~request.param
    os.umask(previous)
