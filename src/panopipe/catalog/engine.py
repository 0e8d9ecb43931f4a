"""Engines for the catalog's database: SQLite (a plain path) or PostgreSQL / Amazon RDS (a URL)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from panopipe.catalog.rds import create_postgres_engine
from panopipe.errors import CatalogUnreachableError, ConfigError, SchemaOutdatedError

if TYPE_CHECKING:  # Alembic is imported when the schema is checked or migrated, not by the Lambda handler
    from alembic.config import Config

MIGRATIONS = "panopipe.catalog:migrations"


def catalog_url(location: str | Path) -> URL:
    """The SQLAlchemy URL for a catalog location: a path means SQLite, a ``postgresql://`` URL PostgreSQL."""
    text = str(location)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    try:
        url = make_url(text)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"invalid catalog URL {mask_url(text)}: {exc}") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    elif url.drivername in ("mysql", "mariadb"):
        url = url.set(drivername="mysql+pymysql")
    return url


def mask_url(url: str | URL) -> str:
    """``url`` as text with any password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_catalog_engine(location: str | Path | URL) -> sa.Engine:
    """An engine for the catalog at ``location``, with the connection settings that suit each backend."""
    url = location if isinstance(location, URL) else catalog_url(location)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not Path(url.database).parent.is_dir():
            raise CatalogUnreachableError(
                f"cannot open catalog {mask_url(url)}: folder {Path(url.database).parent} does not exist"
            )
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.get_backend_name() == "postgresql":
        return create_postgres_engine(url)
    return sa.create_engine(url, pool_pre_ping=True)


def alembic_config(connection: sa.Connection) -> Config:
    """An Alembic configuration that runs the packaged migrations on ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The schema revision this version of panopipe expects."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The catalog's schema revision, ``None`` for an empty database."""
    from alembic.migration import MigrationContext

    with connect(engine) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def connect(engine: sa.Engine) -> sa.Connection:
    """A connection, or :class:`CatalogUnreachableError` naming the URL (password masked) and the reason."""
    try:
        return engine.connect()
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise CatalogUnreachableError(
            f"cannot connect to catalog {mask_url(engine.url)}: {reason}. "
            "Check the URL, that the server is running and that it accepts connections from this machine."
        ) from None


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


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the catalog's schema to ``revision`` (the newest by default)."""
    from alembic import command

    with connect(engine) as connection, connection.begin():
        command.upgrade(alembic_config(connection), revision)


def check_schema(engine: sa.Engine, *, create: bool = True) -> None:
    """Make sure the catalog is at the schema this panopipe expects.

    An empty database gets the schema when ``create`` is true; an older (or newer) schema is an error that
    says what to do.
    """
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None and create:
        with connect(engine) as connection:
            has_tables = bool(user_tables(connection))
        if has_tables:
            raise SchemaOutdatedError(
                f"{mask_url(engine.url)} holds tables but no panopipe schema version; "
                "point --catalog at an empty database or a panopipe catalog"
            )
        upgrade(engine)
        return
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(None))  # type: ignore[arg-type]
    known = {rev.revision for rev in script.walk_revisions()}
    if current in known:
        raise SchemaOutdatedError(
            f"catalog {mask_url(engine.url)} is at schema {current}, this panopipe needs {head}: "
            f"run `panopipe db upgrade --catalog {mask_url(engine.url)}`"
        )
    raise SchemaOutdatedError(
        f"catalog {mask_url(engine.url)} is at schema {current or 'none'}, which this panopipe does not know "
        f"(it needs {head}); upgrade panopipe"
    )


__all__ = [
    "MIGRATIONS",
    "alembic_config",
    "catalog_url",
    "check_schema",
    "connect",
    "create_catalog_engine",
    "current_revision",
    "head_revision",
    "mask_url",
    "upgrade",
    "user_tables",
]
