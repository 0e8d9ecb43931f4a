"""Engines for the catalog's database: SQLite (a plain path) or PostgreSQL / Amazon RDS (a URL)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from panopipe.catalog.locks import hold_write_lock
from panopipe.catalog.rds import connection_lost, create_postgres_engine
from panopipe.catalog.stack_url import SCHEME as STACK_SCHEME
from panopipe.catalog.stack_url import resolve_stack_url
from panopipe.errors import (
    CatalogError,
    CatalogUnavailableError,
    CatalogUnreachableError,
    ConfigError,
    SchemaOutdatedError,
)
from panopipe.locations import url_scheme

if TYPE_CHECKING:  # Alembic is imported when the schema is checked or migrated, not by the Lambda handler
    from alembic.config import Config

    from panopipe.config import Settings

MIGRATIONS = "panopipe.catalog:migrations"
_SECRET_PARAMETER = re.compile(r"password|token|secret(?!_arn$)", re.IGNORECASE)
"""Query parameters whose values are credentials: libpq's ``password`` and ``sslpassword``, tokens (an AWS
session's, a presigned URL's ``X-Amz-Security-Token``...), secrets (but not a secret's ARN)."""
_MASK = "***"
_BACKENDS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
SUPPORTED_CATALOGS = f"a SQLite file path, a postgresql:// URL or {STACK_SCHEME}://STACK (a deployed stack's)"
_PASSWORD = re.compile(r"(//[^/@:]*:)[^/@]*@")
_QUERY_PARAMETER = re.compile(r"([?&]([^=&#]*)=)([^&#]*)")


def _masked_text(text: str) -> str:
    """``text``, a URL that may not parse, with the password and the credential query parameters masked as
    :func:`mask_url` masks them."""
    text = _PASSWORD.sub(rf"\1{_MASK}@", text)
    return _QUERY_PARAMETER.sub(
        lambda m: m.group(1) + (_MASK if _SECRET_PARAMETER.search(m.group(2)) else m.group(3)), text
    )


def catalog_url(location: str | Path, settings: Settings | None = None) -> URL:
    """The SQLAlchemy URL for a catalog location: a path means SQLite, a ``postgresql://`` URL PostgreSQL, and
    ``cloudformation://STACK`` the RDS Proxy of a deployed stack (:mod:`panopipe.catalog.stack_url`), looked
    up with ``settings``' region and profile.

    Any other scheme, or a URL that does not parse or whose port is out of range, is a
    :class:`~panopipe.errors.ConfigError`.
    """
    text = str(location)
    if url_scheme(text) is None:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    shown = _masked_text(text)
    malformed = ConfigError(
        f"invalid catalog URL {shown}: expected postgresql://USER@HOST[:PORT]/DATABASE "
        "(the port, if given, a number from 1 to 65535)"
    )
    try:
        url = make_url(text)
    except ValueError:  # SQLAlchemy's ArgumentError is a ValueError, like the one of a port that is no number
        raise malformed from None
    backend = url.drivername.partition("+")[0]
    if backend == STACK_SCHEME:
        return resolve_stack_url(url, settings)
    if backend not in _BACKENDS:
        raise ConfigError(
            f"unsupported catalog URL {shown}: a catalog is {SUPPORTED_CATALOGS}, not {backend}://"
        )
    if not url.database:  # libpq would pick a default database (PGDATABASE, or the user's name)
        raise ConfigError(
            f"invalid catalog URL {shown}: it names no database: expected postgresql://USER@HOST[:PORT]/DATABASE"
        )
    # else libpq's "invalid port number" at the connect, of the URL's port or of libpq's ?port= parameter (a
    # list, one port per host of ?host=, an empty one the default)
    given = url.query.get("port", ())
    ports = [
        url.port,
        *(part for value in ([given] if isinstance(given, str) else given) for part in value.split(",")),
    ]
    if not all(_is_port(port) for port in ports if port not in (None, "")):
        raise malformed
    return url if "+" in url.drivername else url.set(drivername=_BACKENDS[backend])


def _is_port(value: object) -> bool:
    """Whether ``value`` (an int, or the text of a query parameter) is a TCP port, 1 to 65535."""
    text = str(value)
    return text.isdigit() and 0 < int(text) < 65536


def catalog_location(url: URL) -> str:
    """Where the catalog at ``url`` is, as a user writes it: a SQLite file's path, else the masked URL."""
    return str(url.database) if url.get_backend_name() == "sqlite" else mask_url(url)


def _missing_file(url: URL) -> bool:
    """Whether ``url`` names a SQLite file that does not exist or is empty (connecting would write it)."""
    database = url.database
    if url.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return False
    path = Path(str(database))
    return not path.is_file() or path.stat().st_size == 0


def _no_catalog(url: URL) -> CatalogError:
    return CatalogError(
        f"no catalog at {catalog_location(url)}: create one with `panopipe db upgrade` or "
        "`panopipe ingest FOLDER` (with the same --catalog)"
    )


def mask_url(url: str | URL) -> str:
    """``url`` as text, without its driver, with its password and the values of query parameters that are
    credentials (``?password=``, ``?sslpassword=``, ``?token=``...) replaced by ``***``."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"
    secrets = {name: _MASK for name in parsed.query if _SECRET_PARAMETER.search(name)}
    # postgresql://, as users write it (and psql takes it), not SQLAlchemy's postgresql+psycopg://
    parsed = parsed.set(drivername=parsed.get_backend_name())
    text = parsed.update_query_dict(secrets).render_as_string(hide_password=True)
    return text.replace(quote(_MASK, safe=""), _MASK) if secrets else text


def mask_location(location: str) -> str:
    """A catalog location as written: a path as it is, a URL as :func:`mask_url` shows it."""
    return location if url_scheme(location) is None else mask_url(location)


_BUSY_TIMEOUT_MS = 30000


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    _set_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _set_wal(cursor) -> None:
    """Put the database in WAL mode. Switching a new file takes an exclusive lock that SQLite does not wait
    for, busy timeout or not, when another connection is switching it too (two commands creating a catalog at
    once): tried again until the busy timeout."""
    import sqlite3

    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def create_catalog_engine(location: str | Path | URL, settings: Settings | None = None) -> sa.Engine:
    """An engine for the catalog at ``location`` (its URL from :func:`catalog_url` with ``settings``), with
    the connection settings that suit each backend."""
    url = location if isinstance(location, URL) else catalog_url(location, settings)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not Path(url.database).parent.is_dir():
            raise CatalogUnreachableError(
                f"cannot open catalog {catalog_location(url)}: folder {Path(url.database).parent} does not exist"
            )
        if url.database and Path(url.database).is_dir():
            raise CatalogError(
                f"{url.database} is a folder, not a catalog: give a SQLite file path "
                f"(e.g. {Path(url.database) / 'panopipe.db'})"
            )
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_postgres_engine(url)
    except (
        sa.exc.ArgumentError
    ) as exc:  # what the dialect reads of the URL: ?host= and ?port= lists that differ
        raise ConfigError(f"invalid catalog URL {catalog_location(url)}: {exc}") from None


_shared: dict[str, sa.Engine] = {}
_shared_lock = threading.Lock()


def shared_engine(location: str, settings: Settings | None = None) -> sa.Engine:
    """The process-wide engine for the catalog at ``location``, created on first use and then reused.

    For Lambda handlers: keep the engine (and its connection) across invocations instead of opening a new
    one per event. Do not dispose it. On first use the catalog's schema is checked, and nothing is created: a
    missing or empty catalog, or one at another schema, raises the error that says what to do.
    """
    with _shared_lock:
        engine = _shared.get(location)
        if engine is None:
            engine = _shared[location] = checked_engine(location, create=False, settings=settings)
        return engine


def checked_engine(
    location: str | Path | URL, *, create: bool, settings: Settings | None = None
) -> sa.Engine:
    """An engine for the catalog at ``location`` (:func:`create_catalog_engine` with ``settings``) whose
    schema :func:`check_schema` found right (an empty database given it when ``create`` is true); disposed
    again if the check raises."""
    engine = create_catalog_engine(location, settings)
    try:
        check_schema(engine, create=create)
    except Exception:
        engine.dispose()
        raise
    return engine


def alembic_config(connection: sa.Connection) -> Config:
    """An Alembic configuration that runs the packaged migrations on ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


_SCHEMA_HEAD = "0012"
"""The schema revision this version of panopipe expects: the head of its migrations (a test checks that they
agree). Written here so that opening a catalog loads no Alembic, which parsing the migrations took 140 ms of
every command's start for."""
_VERSION_TABLE = "alembic_version"


def head_revision() -> str:
    """The schema revision this version of panopipe expects."""
    return _SCHEMA_HEAD


def current_revision(engine: sa.Engine, *, missing_ok: bool = True, migrating_ok: bool = False) -> str | None:
    """The catalog's schema revision, ``None`` for an empty database or a missing SQLite file (not created):
    read from Alembic's version table with one query, without loading Alembic. Without ``missing_ok``, a
    catalog that does not exist (a missing SQLite file, a folder, a database or schema without panopipe's
    schema version) is a :class:`~panopipe.errors.CatalogError` saying how to create one, or, where the
    database holds other tables, a :class:`~panopipe.errors.SchemaOutdatedError` saying so; nothing is
    created. A catalog that ``panopipe db migrate`` has not finished (see :func:`mark_migrating`) is a
    :class:`~panopipe.errors.CatalogError` saying to run it again, unless ``migrating_ok`` (the move's own
    look at its target). A database error (a timeout, a lock) is the one line of :func:`database_error`."""
    if _missing_file(engine.url):
        if not missing_ok:
            raise _no_catalog(engine.url)
        return None
    with database_errors(engine.url), connect(engine) as connection:
        revision = _revision(connection)
        if revision is None and not missing_ok:
            raise _foreign_tables(engine.url) if _foreign(connection) else _no_catalog(engine.url)
        if revision is not None and revision.endswith(_MIGRATING):
            if not migrating_ok:
                raise _being_migrated(connection, engine.url)
            return revision.removesuffix(_MIGRATING)
        return revision


_MIGRATING = " migrating"
"""Written after the schema revision of a PostgreSQL catalog that ``panopipe db migrate`` is filling, until the
copy is whole (and verified): a command that used it would work on part of the catalog, and one write there
would make the move's resume impossible. The version table's comment holds the :class:`Migration`."""


@dataclass(frozen=True, slots=True)
class Migration:
    """A move into a PostgreSQL catalog (see :func:`mark_migrating`): its ``source`` as the user names it, and
    ``state``, what the source held when the move began (a digest), which a resume compares with the source's
    state now."""

    source: str
    state: str

    def to_comment(self) -> str:
        return json.dumps({"source": self.source, "state": self.state}, sort_keys=True)

    @classmethod
    def from_comment(cls, comment: str | None) -> Migration:
        """The migration a version table's comment holds; one written otherwise (by hand) has no state."""
        try:
            found = json.loads(comment or "")
            return cls(str(found["source"]), str(found["state"]))
        except (ValueError, TypeError, KeyError):
            return cls(comment or "another catalog", "")


def mark_migrating(engine: sa.Engine, migration: Migration) -> None:
    """Mark the PostgreSQL catalog at its schema's head as being filled by ``migration``: every command but
    the move refuses it until :func:`finish_migration`. A schema the move creates is marked as it is created
    (:func:`upgrade` with ``migration``)."""
    with connect(engine) as connection, connection.begin():
        _mark(connection, migration)


def _mark(connection: sa.Connection, migration: Migration) -> None:
    connection.execute(
        sa.text(f"UPDATE {_VERSION_TABLE} SET version_num = :marked"),
        {"marked": head_revision() + _MIGRATING},
    )
    connection.execute(sa.schema.SetTableComment(_version_table(comment=migration.to_comment())))


def migration_of(engine: sa.Engine) -> Migration | None:
    """The move under way into the catalog at ``engine`` (see :func:`mark_migrating`), ``None`` if none is."""
    with connect(engine) as connection:
        return _migration(connection)


def _migration(connection: sa.Connection) -> Migration | None:
    revision = _revision(connection)
    if revision is None or not revision.endswith(_MIGRATING):
        return None
    comment = connection.execute(
        sa.text("SELECT obj_description(to_regclass(:table), 'pg_class')"), {"table": _VERSION_TABLE}
    ).scalar()
    return Migration.from_comment(comment)


def finish_migration(engine: sa.Engine) -> None:
    """Make the catalog that a move filled (see :func:`mark_migrating`) a catalog like any other."""
    with connect(engine) as connection, connection.begin():
        connection.execute(
            sa.text(f"UPDATE {_VERSION_TABLE} SET version_num = :head WHERE version_num = :marked"),
            {"head": head_revision(), "marked": head_revision() + _MIGRATING},
        )
        connection.execute(sa.schema.DropTableComment(_version_table()))


def _version_table(comment: str | None = None) -> sa.Table:
    """Alembic's version table, for SQLAlchemy's statements on its comment (which quote any text)."""
    return sa.Table(_VERSION_TABLE, sa.MetaData(), comment=comment)


def _being_migrated(connection: sa.Connection, url: URL) -> CatalogError:
    migration = _migration(connection)
    return CatalogError(
        f"catalog {catalog_location(url)} is being migrated from {migration.source if migration else 'another catalog'}: "
        "run `panopipe db migrate` again to finish"
    )


def _revision(connection: sa.Connection) -> str | None:
    """The schema revision in Alembic's version table, ``None`` without the table (or a row in it)."""
    if not sa.inspect(connection).has_table(_VERSION_TABLE):
        return None
    return connection.execute(sa.text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalar()


def _foreign(connection: sa.Connection) -> bool:
    """Whether the connection's schema, which has no panopipe schema version, holds tables (another
    application's: a catalog's tables come with its version)."""
    return bool(user_tables(connection) - {_VERSION_TABLE})


def _foreign_tables(url: URL) -> SchemaOutdatedError:
    return SchemaOutdatedError(
        f"{catalog_location(url)} holds tables but no panopipe schema version; "
        "point --catalog at an empty database or a panopipe catalog"
    )


def connect(engine: sa.Engine) -> sa.Connection:
    """A connection, or :class:`CatalogUnreachableError` naming the URL (password masked) and the reason; a
    SQLite file that cannot be opened is the :class:`CatalogError` of :func:`database_error` (not a server's
    advice)."""
    try:
        return engine.connect()
    except sa.exc.OperationalError as exc:
        if engine.url.get_backend_name() == "sqlite":
            raise database_error(exc, engine.url) from exc
        raise CatalogUnreachableError(
            f"cannot connect to catalog {catalog_location(engine.url)}: {_reason(exc)}. "
            "Check the URL, that the server is running and that it accepts connections from this machine."
        ) from None
    except sa.exc.DatabaseError as exc:  # SQLite's DatabaseError: the file is no database, or a damaged one
        raise database_error(exc, engine.url) from exc


_SQLITE_PROBLEMS = {
    5: "locked",
    6: "locked",
    8: "read-only",
    10: "disk",
    11: "damaged",
    13: "full",
    14: "cannot open",
    26: "no database",
}
"""What SQLite's primary result codes (the low byte of an extended one) say: SQLITE_BUSY and SQLITE_LOCKED
(another connection held the lock the whole busy timeout), SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT,
SQLITE_FULL, SQLITE_CANTOPEN (the file, or its ``-wal`` or ``-shm`` beside it), SQLITE_NOTADB."""
_POSTGRES_PROBLEMS = {"53100": "full", "25006": "standby"}
"""What PostgreSQL's SQLSTATEs say: disk_full, read_only_sql_transaction (a standby, a read replica)."""
_SAY = {
    "locked": "catalog {where} is locked by another process (waited {waited} s): retry when it ends",
    "read-only": "catalog {where} is read-only: make the file and its folder writable",
    "standby": "catalog {where} is read-only ({reason}): give the URL of the primary, writable server",
    "full": "no space left for the catalog {where}: free some space on its disk and rerun",
    "disk": "cannot read or write catalog {where} ({reason}): check that its disk is writable and not full",
    "damaged": "cannot read catalog {where}: {reason}",
    "cannot open": "cannot open catalog {where} ({reason}): check that the file and its folder are writable",
    "no database": "{where} is not a panopipe catalog (not a SQLite database)",
    "lost": "the connection to the catalog {where} was lost ({reason}): rerun; what was finished is kept",
    "": "catalog {where}: {reason}",
}
"""The line said for each problem (:func:`database_error`)."""


def database_error(exc: sa.exc.SQLAlchemyError, url: URL) -> CatalogError:
    """The one-line :class:`CatalogError` (to raise from ``exc``) for the database error ``exc`` of the catalog at
    ``url``: what to do when it is locked by another process, read-only, out of space, on a failing disk,
    damaged (a :class:`CatalogUnavailableError`: any write would fail alike) or its connection was lost (a
    :class:`CatalogUnreachableError`), else the driver's first line; never SQL text."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlite_errorcode", None)
    if connection_lost(exc):
        problem = "lost"
    elif code is not None:
        problem = _SQLITE_PROBLEMS.get(code & 0xFF, "")
    else:
        problem = _POSTGRES_PROBLEMS.get(getattr(orig, "sqlstate", None) or "", "")
    reason = _reason(exc) if isinstance(exc, sa.exc.DBAPIError) else str(exc).strip().splitlines()[0]
    message = _SAY[problem].format(
        where=catalog_location(url), reason=reason, waited=_BUSY_TIMEOUT_MS // 1000
    )
    if problem == "lost":
        return CatalogUnreachableError(message)
    return CatalogUnavailableError(message) if problem else CatalogError(message)


@contextlib.contextmanager
def database_errors(url: URL) -> Iterator[None]:
    """Database errors of the catalog at ``url`` raised as the one line of :func:`database_error`."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise database_error(exc, url) from exc


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The first line of the driver's message in ``exc``."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]


def user_tables(conn: sa.Connection) -> set[str]:
    """The tables of the connection's schema, less those an extension owns (PostGIS's ``spatial_ref_sys``)."""
    names = set(sa.inspect(conn).get_table_names())
    if conn.dialect.name == "postgresql":
        names -= set(
            conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_depend d JOIN pg_class c ON c.oid = d.objid"
                    " WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'"
                    " AND c.relnamespace = to_regnamespace(current_schema())"
                )
            ).scalars()
        )
    return names


_SCHEMA_LOCK = 0x70616E6F_73636D61
"""The PostgreSQL advisory lock (a constant of panopipe's: 'panoscma') that an upgrade holds until it commits.
One for the whole database, whatever the schema: PostGIS, which an upgrade may install, is one per database."""
_upgrading = threading.Lock()
"""Held while Alembic runs: its context (the ``alembic.context`` the migrations read) is global to the
process, so two threads upgrading at once would run each other's migrations on each other's connections."""


def upgrade(engine: sa.Engine, revision: str = "head", *, migration: Migration | None = None) -> None:
    """Bring the catalog's schema to ``revision`` (the newest by default), in one transaction.

    A database (or schema) holding tables but no panopipe schema version, another application's, is refused
    with a :class:`~panopipe.errors.SchemaOutdatedError`, and nothing is created. Upgrades of one database are
    serialized (:func:`~panopipe.catalog.locks.hold_write_lock`; begun there, a SQLite upgrade is one transaction
    too: pysqlite begins none before DDL), and the revision is read once the lock is held: of two
    commands creating a catalog at once, the second waits and finds the schema the first made. With
    ``migration``, the schema is created marked (:func:`mark_migrating`) in the same transaction, so that no
    interruption leaves the move's target an empty catalog like any other; a database that got a schema
    meanwhile is refused.
    """
    from alembic import command

    with _upgrading, database_errors(engine.url), connect(engine) as connection, connection.begin():
        hold_write_lock(connection, _SCHEMA_LOCK)
        current = _revision(connection)
        if current is None and _foreign(connection):
            raise _foreign_tables(engine.url)
        if current is not None and current not in _known_revisions():
            raise _unknown_schema(engine.url, current)
        if migration and current is not None:
            raise CatalogError(
                f"{catalog_location(engine.url)} got a catalog's schema from another command meanwhile: "
                "migrate into an empty database or schema"
            )
        command.upgrade(alembic_config(connection), revision)
        if migration:
            _mark(connection, migration)


def check_schema(engine: sa.Engine, *, create: bool = True) -> None:
    """Make sure the catalog is at the schema this panopipe expects.

    An empty database gets the schema when ``create`` is true; without ``create``, a missing SQLite file or an
    empty database is a :class:`~panopipe.errors.CatalogError` saying how to create a catalog (and nothing is
    created). An older (or newer) schema is an error that says what to do.
    """
    if not create and _missing_file(engine.url):
        raise _no_catalog(engine.url)
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        with database_errors(engine.url), connect(engine) as connection:
            foreign = _foreign(connection)
        if foreign:
            raise _foreign_tables(engine.url)
        if not create:
            raise _no_catalog(engine.url)
        upgrade(engine)
        return
    if current not in _known_revisions():
        raise _unknown_schema(engine.url, current)
    raise SchemaOutdatedError(
        f"catalog {catalog_location(engine.url)} is at schema {current}, this panopipe needs {head}: "
        f"run `panopipe db upgrade --catalog {catalog_location(engine.url)}`"
    )


def _known_revisions() -> set[str]:
    """Every schema revision this panopipe's migrations know."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(None))  # type: ignore[arg-type]
    return {rev.revision for rev in script.walk_revisions()}


def _unknown_schema(url: sa.URL, current: str) -> SchemaOutdatedError:
    """The error of a catalog whose schema revision ``current`` a newer panopipe made."""
    return SchemaOutdatedError(
        f"catalog {catalog_location(url)} is at schema {current}, which this panopipe does not know "
        f"(it needs {head_revision()}); upgrade panopipe"
    )


__all__ = [
    "MIGRATIONS",
    "SUPPORTED_CATALOGS",
    "Migration",
    "alembic_config",
    "catalog_location",
    "catalog_url",
    "check_schema",
    "checked_engine",
    "connect",
    "create_catalog_engine",
    "current_revision",
    "database_error",
    "database_errors",
    "finish_migration",
    "head_revision",
    "mark_migrating",
    "mask_location",
    "mask_url",
    "migration_of",
    "shared_engine",
    "upgrade",
    "user_tables",
]
