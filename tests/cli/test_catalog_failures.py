"""The catalog failing under a command (locked by another process, read-only, out of space, its connection
lost): one line saying what to do, exit 3, never a traceback, SQL text or SQLAlchemy's link."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from tests.conftest import drop_connections, locked, new_database

from panopipe.catalog import Catalog, ImageRecord, create_catalog_engine
from panopipe.catalog.rds import retry_read
from panopipe.cli import main
from panopipe.errors import CatalogError, CatalogUnreachableError

JPEG = Path(__file__).parents[1] / "data" / "exif" / "pillow" / "hopper.jpg"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The exit code and the last line on standard error (``config push`` shows its changes there first)."""
    code = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "[SQL" not in err and "sqlalche.me" not in err, err
    return code, err.splitlines()[-1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A project folder (the working directory) with a SQLite catalog of two images, an edit of them, a config
    file and a folder of one JPEG to ingest; the catalog's path and the edit's batch (for undo)."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "panopipe.db"
    (tmp_path / "panopipe.toml").write_text(f'[panopipe]\ncatalog = "{db}"\n')
    (tmp_path / "capture").mkdir()
    shutil.copy(JPEG, tmp_path / "capture" / "R1_cam0_000001.jpg")
    taken = datetime(2024, 5, 1, 10, tzinfo=UTC)
    with Catalog.open(db) as catalog:
        catalog.upsert_images(
            [
                ImageRecord(uri=f"/x/{n}.jpg", reel="R1", frame=n, lat=48.1, lon=11.5, captured_at=taken)
                for n in (1, 2)
            ]
        )
        changes = catalog.plan_edit(assign={"alt": 1.0})
        return db, catalog.apply_edit(changes, reason="survey height", author="me")


def writes(batch: str) -> list[list[str]]:
    """Commands that write to the catalog."""
    return [
        ["edit", "--reel", "R1", "--set", "alt=2", "--reason", "r"],
        ["undo", batch],
        ["config", "push", "--yes", "--reason", "r"],
        ["ingest", "capture"],
        ["run", "--force"],
    ]


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """``paths`` made read-only: immutable (``chattr +i``) for root, whom file modes do not stop."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", *paths], capture_output=True).returncode:
            pytest.skip("chattr +i does not work here (as root, nothing else makes a file read-only)")
        undo = lambda: subprocess.run(["chattr", "-i", *paths], check=True)  # noqa: E731
    else:
        modes = {path: path.stat().st_mode for path in paths}
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        undo = lambda: [path.chmod(mode) for path, mode in modes.items()]  # noqa: E731
    try:
        yield
    finally:
        undo()


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        (locked, "is locked by another process (waited 1 s): retry when it ends"),
        (read_only, "is read-only: make the file and its folder writable"),
    ],
    ids=["locked", "read-only"],
)
def test_a_catalog_that_cannot_be_written_is_one_line(
    capsys, project: tuple[Path, str], monkeypatch, condition, problem: str
):
    """Every command that writes says so in one line; reads still work (WAL: a writer blocks no reader)."""
    db, batch = project
    monkeypatch.setattr("panopipe.catalog.engine._BUSY_TIMEOUT_MS", 1000)  # 30 s: what SQLite waits first
    with condition(db):
        for command in writes(batch):
            assert run(capsys, *command) == (CatalogError.exit_code, f"error: catalog {db} {problem}"), (
                command
            )
        assert main(["ls"]) == 0


def test_a_sqlite_catalog_that_cannot_be_opened_gets_no_advice_about_servers(
    capsys, project: tuple[Path, str]
):
    """A WAL catalog whose folder cannot take its ``-shm`` file, which a read needs."""
    db, _ = project
    with read_only(db, db.parent):
        code, err = run(capsys, "ls")
    assert (code, err) == (
        CatalogError.exit_code,
        f"error: cannot open catalog {db} (unable to open database file): check that the file and its "
        "folder are writable",
    )


def test_a_full_catalog_says_so(tmp_path: Path):
    """SQLite's ``max_page_count`` makes the file full as a full disk does (SQLITE_FULL)."""
    db = tmp_path / "c.db"
    Catalog.open(db).close()
    engine = create_catalog_engine(db)
    sa.event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA max_page_count=40"))
    records = [ImageRecord(uri=f"/x/{n}.jpg", reel="R1", frame=n) for n in range(2000)]
    with Catalog(engine) as catalog, pytest.raises(CatalogError) as raised:
        catalog.upsert_images(records)
    assert str(raised.value) == f"no space left for the catalog {db}: free some space on its disk and rerun"


def test_a_lost_connection_is_one_line_and_a_retry_reconnects():
    with new_database() as url, Catalog.open(url) as catalog:
        assert catalog.project_config() is None  # a pooled connection, which the server ends
        drop_connections(url)
        with pytest.raises(CatalogUnreachableError) as raised:
            catalog.push_project_config({"project": "a"}, author="me", reason="r")
        assert str(raised.value) == (
            f"the connection to the catalog {catalog.location} was lost (terminating connection due to "
            "administrator command): rerun; what was finished is kept"
        )
        catalog.project_config()
        drop_connections(url)
        pushed = retry_read(lambda: catalog.push_project_config({"project": "b"}, author="me", reason="r"))
        assert [v.version for v in catalog.project_config_history()] == [pushed.version]


def test_a_database_error_while_the_schema_version_is_read_is_one_line(capsys, postgres_url: str):
    """A statement timeout while another session locks the version table (a colleague's `db upgrade`): the
    schema check's queries gave a traceback and exit 1."""
    Catalog.open(postgres_url).close()
    url = f"{postgres_url}&statement_timeout=200ms"
    with psycopg.connect(postgres_url) as holder:
        holder.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
        for command in (["ls"], ["db", "current"], ["db", "upgrade"]):
            code, err = run(capsys, *command, "--catalog", url)
            assert code == CatalogError.exit_code and err.startswith("error: catalog postgresql"), command
            assert err.endswith(": canceling statement due to statement timeout"), command
