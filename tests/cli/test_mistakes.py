"""Mistakes a user makes on the command line: each gets one line saying what is wrong, never a traceback."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import sqlalchemy as sa
import typer

from panopipe.catalog import create_catalog_engine
from panopipe.cli import main
from panopipe.cli.app import app
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


def test_output_paths_that_cannot_be_written(capsys, tmp_path: Path):
    db = str(tmp_path / "c.db")
    assert run(capsys, "db", "upgrade", "--catalog", db)[0] == 0
    cases = {
        str(tmp_path): "it is a folder; give a file name",
        str(tmp_path / "nowhere" / "x.csv"): f"folder {tmp_path / 'nowhere'} does not exist",
        "/proc/panopipe-report.html": "No such file or directory",
    }
    for path, reason in cases.items():
        for command in (["export", "-o", path], ["report", "--html", path]):
            code, out, err = run(capsys, *command, "--catalog", db)
            assert (code, out, err) == (ConfigError.exit_code, "", f"error: cannot write {path}: {reason}\n")
    assert not (tmp_path / "nowhere").exists()


def _commands() -> dict[str, click.Command]:
    """Every command of the app by its words (``db upgrade``)."""
    found: dict[str, click.Command] = {}

    def walk(command: click.Command, words: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*words, name))
        if not hasattr(command, "commands"):
            found[" ".join(words)] = command

    walk(typer.main.get_command(app), ())
    return found


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in param.opts}


OUTPUTS = {"export": "--output", "report": "--html"}
"""The commands that write a file the user names, and the option that names it."""
CREATES = {"ingest", "demo", "db upgrade", "db current"}
"""Commands that succeed where no catalog exists (they create it, or report it has no schema)."""


def test_no_command_shows_a_traceback(capsys, tmp_path: Path):
    """Each command that takes a catalog, a config file or an output path, given a bad one of each."""
    folder = tmp_path / "empty"
    folder.mkdir()
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[step.derive]\nthumbnail = 256\n")
    not_toml = tmp_path / "not.toml"
    not_toml.write_text("[panopipe\n")
    required = {
        "sync": [str(folder), str(tmp_path / "out")],
        "ingest": [str(folder)],
        "show": ["0190f3a2"],
        "edit": ["--reel", "R001", "--set", "alt=1", "--reason", "r"],
        "undo": ["0190f3a2"],
        "report": ["--html", str(tmp_path / "r.html")],
        "db migrate": ["--to", "postgresql://u@127.0.0.1:1/x"],
        "events handle": [str(EVENT)],
        "worker events": ["--queue-url", "http://127.0.0.1:1/q", "--max-polls", "1"],
        "demo": ["--folder", str(tmp_path / "demo"), "--shots", "1"],
    }
    mistakes = {
        "unsupported URL": (["--catalog", "mysql://u@h/db"], ConfigError.exit_code),
        "port": (["--catalog", "postgresql://u@h:abc/db"], ConfigError.exit_code),
        "missing catalog": (["--catalog", str(tmp_path / "missing.db")], CatalogError.exit_code),
        "unknown section": (["--config", str(bad_config)], ConfigError.exit_code),
        "not TOML": (["--config", str(not_toml)], ConfigError.exit_code),
        "config is a folder": (["--config", str(tmp_path)], ConfigError.exit_code),
    }
    tried = 0
    for words, command in _commands().items():
        options = _options(command)
        for mistake, (args, expected) in mistakes.items():
            if args[0] not in options or (mistake == "missing catalog" and words in CREATES):
                continue
            tried += 1
            code, out, err = run(capsys, *words.split(), *required.get(words, []), *args)
            assert (code, len(err.splitlines())) == (expected, 1), (words, mistake, out, err)
            assert err.startswith("error: ") and "Traceback" not in out + err, (words, mistake)
        if words in OUTPUTS:
            tried += 1
            code, _, err = run(
                capsys, *words.split(), *required.get(words, []), OUTPUTS[words], str(tmp_path)
            )
            assert (code, err) == (
                ConfigError.exit_code,
                f"error: cannot write {tmp_path}: it is a folder; give a file name\n",
            )
    assert tried > 60 and not (tmp_path / "missing.db").exists()
