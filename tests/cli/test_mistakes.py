"""Mistakes a user makes on the command line: each gets one line saying what is wrong, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from panopipe.catalog import create_catalog_engine
from panopipe.cli import main
from panopipe.errors import CatalogError, ConfigError

EVENT = Path(__file__).parents[1] / "data" / "events" / "powertools-python" / "s3SqsEvent.json"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def read_only_commands(tmp_path: Path) -> list[list[str]]:
    """Commands that need an existing catalog, with the arguments they require."""
    (tmp_path / "empty").mkdir(exist_ok=True)
    return [
        ["ls"],
        ["show", "0190f3a2"],
        ["status"],
        ["plan"],
        ["export"],
        ["history"],
        ["report", "--html", str(tmp_path / "report.html")],
        ["verify"],
        ["verify", "--repair"],
        ["run"],
        ["edit", "--reel", "R001", "--set", "alt=1", "--reason", "r"],
        ["undo", "0190f3a2"],
        ["sync", str(tmp_path / "empty"), str(tmp_path / "out")],
        ["events", "handle", str(EVENT)],
    ]


def test_reads_never_create_a_sqlite_catalog(capsys, tmp_path: Path):
    db = tmp_path / "missing.db"
    for command in read_only_commands(tmp_path):
        code, out, err = run(capsys, *command, "--catalog", str(db))
        assert (code, out) == (CatalogError.exit_code, ""), (command, err)
        assert err.splitlines() == [
            f"error: no catalog at {db}: create one with `panopipe db upgrade` or `panopipe ingest FOLDER` "
            "(with the same --catalog)"
        ], command
        assert not db.exists(), command
    code, out, _ = run(capsys, "db", "current", "--catalog", str(db), "--json")
    assert code == 0 and '"current": null' in out and not db.exists()


def test_reads_never_give_an_empty_postgresql_database_tables(capsys, tmp_path: Path, postgres_url: str):
    for command in read_only_commands(tmp_path):
        code, _, err = run(capsys, *command, "--catalog", postgres_url)
        assert code == CatalogError.exit_code and len(err.splitlines()) == 1, (command, err)
        assert err.startswith("error: no catalog at postgresql+psycopg://") and "panopipe db upgrade" in err
    engine = create_catalog_engine(postgres_url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == [], "a read created tables (or PostGIS's)"
    engine.dispose()
    assert run(capsys, "db", "upgrade", "--catalog", postgres_url)[0] == 0
    code, _, err = run(capsys, "ls", "--catalog", postgres_url)
    assert (code, err) == (0, "0 image(s)\n")


def test_ingest_creates_the_catalog(capsys, tmp_path: Path):
    db = tmp_path / "new.db"
    (tmp_path / "empty").mkdir()
    assert run(capsys, "ingest", str(tmp_path / "empty"), "--catalog", str(db))[0] == 0
    assert db.is_file() and run(capsys, "status", "--catalog", str(db))[0] == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://u:hunter2@h:abc/db",
            "error: invalid catalog URL postgresql://u:***@h:abc/db: expected "
            "postgresql://USER@HOST[:PORT]/DATABASE (the port, if given, a number)",
        ),
        (
            "mysql://u:hunter2@h/db",
            "error: unsupported catalog URL mysql://u:***@h/db: a catalog is a SQLite file path or a "
            "postgresql:// URL, not mysql://",
        ),
    ],
)
def test_bad_catalog_urls(capsys, url: str, message: str):
    assert run(capsys, "ls", "--catalog", url) == (ConfigError.exit_code, "", message + "\n")
