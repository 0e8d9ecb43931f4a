"""Migrations, schema versions and connection errors."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from panopipe.catalog import Catalog, create_catalog_engine, mask_url
from panopipe.catalog.engine import alembic_config, current_revision, head_revision, upgrade
from panopipe.catalog.schema import metadata
from panopipe.catalog.spatial import include_object
from panopipe.errors import CatalogUnreachableError, SchemaOutdatedError


@pytest.mark.filterwarnings("ignore:Did not recognize type '.*geometry':sqlalchemy.exc.SAWarning")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migrations_create_exactly_the_models(catalog_url: str):
    with Catalog.open(catalog_url) as catalog, catalog.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "compare_server_default": True, "include_object": include_object},
        )
        assert compare_metadata(context, metadata) == []
        assert current_revision(catalog.engine) == head_revision()


def test_the_schema_head_panopipe_expects_is_the_head_of_its_migrations(catalog_url: str):
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(None)).get_current_head()  # type: ignore[arg-type]
    assert head_revision() == head, (
        f"a migration was added: set _SCHEMA_HEAD in catalog/engine.py to {head!r}"
    )
    with Catalog.open(catalog_url) as catalog, catalog.engine.connect() as conn:
        assert current_revision(catalog.engine) == MigrationContext.configure(conn).get_current_revision()


def test_an_older_schema_says_to_run_db_upgrade(catalog_url: str):
    with Catalog.open(catalog_url) as catalog, catalog.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'base0'"))
    with pytest.raises(SchemaOutdatedError, match="does not know"):
        Catalog.open(catalog_url)


def test_db_upgrade_of_a_schema_a_newer_panopipe_made_says_to_upgrade_panopipe(capsys, catalog_url: str):
    """``db upgrade`` had printed alembic's traceback ("Can't locate revision identified by '0099'"), exit 1,
    where every other command says to upgrade panopipe; the schema is left as it was."""
    from panopipe.cli import main

    with Catalog.open(catalog_url) as catalog, catalog.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    code = main(["db", "upgrade", "--catalog", catalog_url])
    _, err = capsys.readouterr()
    assert code == SchemaOutdatedError.exit_code and err.count("\n") == 1, err
    assert "is at schema 0099, which this panopipe does not know" in err and err.endswith(
        "upgrade panopipe\n"
    )
    engine = create_catalog_engine(catalog_url)
    try:
        assert current_revision(engine) == "0099"
    finally:
        engine.dispose()


def test_a_database_with_foreign_tables_is_refused(catalog_url: str):
    engine = create_catalog_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE other (x INTEGER)"))
    with pytest.raises(SchemaOutdatedError, match="no panopipe schema"):
        Catalog.open(catalog_url)


def test_unreachable_catalog_names_the_url_without_its_password():
    url = "postgresql://surveyor:s3cret-pw@127.0.0.1:1/catalog"
    with pytest.raises(CatalogUnreachableError) as caught:
        Catalog.open(url)
    assert "s3cret-pw" not in str(caught.value)
    assert "surveyor:***@127.0.0.1:1/catalog" in str(caught.value)
    assert mask_url(url) == "postgresql://surveyor:***@127.0.0.1:1/catalog"


def test_missing_folder_for_sqlite(tmp_path):
    with pytest.raises(CatalogUnreachableError, match="does not exist"):
        Catalog.open(tmp_path / "nope" / "catalog.db")


def test_a_catalog_at_an_earlier_revision_says_to_run_db_upgrade(catalog_url: str):
    engine = create_catalog_engine(catalog_url)
    upgrade(engine, "0001")
    with pytest.raises(SchemaOutdatedError, match="run `panopipe db upgrade"):
        Catalog.open(catalog_url)
    upgrade(engine)
    with Catalog.open(catalog_url) as catalog:
        assert current_revision(catalog.engine) == head_revision()


_OPEN_WHEN_TOLD = """
import sys
import alembic.command  # loaded before the start, as everything else the opening needs
from panopipe.catalog import Catalog
print("ready", flush=True)
sys.stdin.readline()
Catalog.open(sys.argv[1]).close()
"""


def test_two_processes_creating_a_catalog_at_once_both_open_it(catalog_url: str):
    """Two first ingests of one new catalog: the second waits for the first's schema and finds it made (on
    PostgreSQL, Alembic's second CREATE TABLE alembic_version was a UniqueViolation; on SQLite, the second
    saw the version table before its row and called the database foreign, or found the file locked while the
    first switched it to WAL)."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_WHEN_TOLD, catalog_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in processes:  # released together
        assert process.stdin is not None
        process.stdin.write("\n")
        process.stdin.flush()
    ended = [(process.communicate(timeout=120)[1], process.returncode) for process in processes]
    assert ended == [("", 0), ("", 0)]
    engine = create_catalog_engine(catalog_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_two_threads_creating_two_catalogs_at_once_both_open_them(catalog_url: str, tmp_path: Path):
    """Alembic's context is global to the process: two threads creating catalogs at once (this backend's and
    a SQLite file) ran each other's migrations on each other's connections."""
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def open_it(location: str) -> None:
        barrier.wait()
        try:
            Catalog.open(location).close()
        except Exception as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    locations = [catalog_url, str(tmp_path / "other.db")]
    threads = [threading.Thread(target=open_it, args=(location,), daemon=True) for location in locations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [thread.is_alive() for thread in threads] == [False, False], "the threads wait for each other"
    assert errors == []
    for location in locations:
        engine = create_catalog_engine(location)
        assert current_revision(engine) == head_revision()
        engine.dispose()


def test_upgrade_refuses_a_database_of_another_application(catalog_url: str):
    engine = create_catalog_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)"))
    with pytest.raises(SchemaOutdatedError, match="holds tables but no panopipe schema version"):
        upgrade(engine)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["customers"]
    engine.dispose()
