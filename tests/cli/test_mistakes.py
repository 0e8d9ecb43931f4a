"""Mistakes a user makes on the command line: each gets one line saying what is wrong, never a traceback."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
import typer
from tests.conftest import new_database

import panopipe
from panopipe.catalog import Catalog, ImageRecord, create_catalog_engine, head_revision
from panopipe.cli import main
from panopipe.cli.app import app
from panopipe.config import ENV_CATALOG
from panopipe.errors import CatalogError, ConfigError

EVENT = Path(__file__).parents[1] / "data" / "events" / "powertools-python" / "s3SqsEvent.json"
JPEG = Path(__file__).parents[1] / "data" / "exif" / "pillow" / "hopper.jpg"


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
    code, out, err = run(capsys, "db", "current", "--catalog", str(db), "--json")
    assert (code, out) == (CatalogError.exit_code, "")
    assert err.startswith(f"error: no catalog at {db}: create one with `panopipe db upgrade`")
    assert not db.exists()  # a folder given as the catalog: test_a_file_that_is_no_sqlite_database_...
    db.touch()  # an empty file (`: > survey.db`): no catalog either, and it stays empty
    code, out, err = run(capsys, "ls", "--catalog", str(db))
    assert (code, out) == (CatalogError.exit_code, "") and err.startswith(f"error: no catalog at {db}")
    assert db.stat().st_size == 0 and sorted(tmp_path.glob("missing.db*")) == [db]


def test_reads_never_give_an_empty_postgresql_database_tables(capsys, tmp_path: Path, postgres_url: str):
    for command in read_only_commands(tmp_path):
        code, _, err = run(capsys, *command, "--catalog", postgres_url)
        assert code == CatalogError.exit_code and len(err.splitlines()) == 1, (command, err)
        assert err.startswith("error: no catalog at postgresql://") and "panopipe db upgrade" in err
    engine = create_catalog_engine(postgres_url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == [], "a read created tables (or PostGIS's)"
    engine.dispose()
    assert run(capsys, "db", "upgrade", "--catalog", postgres_url)[0] == 0
    code, _, err = run(capsys, "ls", "--catalog", postgres_url)
    assert (code, err) == (0, "0 image(s)\n")


def test_db_current_of_no_catalog_is_an_error_and_creates_nothing(capsys, catalog_url: str):
    """On PostgreSQL, an empty database answered with an empty current revision and exit 0."""
    code, out, err = run(capsys, "db", "current", "--catalog", catalog_url, "--json")
    assert (code, out, len(err.splitlines())) == (CatalogError.exit_code, "", 1), err
    assert err.startswith("error: no catalog at ") and "`panopipe db upgrade`" in err
    if "://" not in catalog_url:
        assert not Path(catalog_url).exists()
        return
    engine = create_catalog_engine(catalog_url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []
    engine.dispose()


def test_db_upgrade_refuses_a_database_of_another_application(capsys, catalog_url: str):
    """As ls and db migrate refuse it: db upgrade created panopipe's tables beside the application's."""
    engine = create_catalog_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)"))
    code, out, err = run(capsys, "db", "upgrade", "--catalog", catalog_url)
    assert (code, out) == (CatalogError.exit_code, "")
    assert err.endswith(
        " holds tables but no panopipe schema version; point --catalog at an empty database or a panopipe "
        "catalog\n"
    )
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["customers"]
    engine.dispose()
    for command in ("ls", "db current"):
        code, out, err = run(capsys, *command.split(), "--catalog", catalog_url)
        assert (code, out) == (CatalogError.exit_code, ""), command
        assert "holds tables but no panopipe schema version" in err and len(err.splitlines()) == 1, command


def test_db_upgrade_makes_a_catalog_in_an_empty_schema_of_another_applications_database(capsys):
    with new_database() as url:
        engine = create_catalog_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE customers (id INTEGER PRIMARY KEY)"))
            conn.execute(sa.text("CREATE SCHEMA survey"))
        catalog_url = f"{url}?options=-csearch_path%3Dsurvey"
        code, _, err = run(capsys, "db", "upgrade", "--catalog", catalog_url)
        assert code == 0 and err.endswith(f": schema none -> {head_revision()}\n"), err
        assert run(capsys, "ls", "--catalog", catalog_url)[::2] == (0, "0 image(s)\n")
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == ["customers"]
            assert "images" in sa.inspect(conn).get_table_names(schema="survey")
        engine.dispose()


def test_ingest_creates_the_catalog(capsys, tmp_path: Path):
    db = tmp_path / "new.db"
    (tmp_path / "empty").mkdir()
    assert run(capsys, "ingest", str(tmp_path / "empty"), "--catalog", str(db))[0] == 0
    assert db.is_file() and run(capsys, "status", "--catalog", str(db))[0] == 0


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("s3:/bucket/R001", ConfigError.exit_code),
        ("missing-folder", ConfigError.exit_code),
        ("s3://", ConfigError.exit_code),
        ("s3://bucket/R001/../R002", ConfigError.exit_code),
        ("s3://Bad_Bucket!/R001", ConfigError.exit_code),
    ],
)
def test_an_ingest_that_fails_leaves_no_catalog_behind(capsys, tmp_path: Path, source: str, code: int):
    """An empty catalog left by a mistake would make the next `ls` answer "0 image(s)" instead of naming the
    mistake; a malformed S3 URL is a usage error (exit 2), nothing having been accessed."""
    db = tmp_path / "new.db"
    assert run(capsys, "ingest", source, "--catalog", str(db))[:2] == (code, "")
    assert sorted(tmp_path.iterdir()) == []
    assert run(capsys, "ls", "--catalog", str(db))[0] == CatalogError.exit_code


@pytest.mark.parametrize("output", ["survey", "."], ids=["the survey folder", "the folder above it"])
def test_an_output_root_set_over_the_survey_is_refused(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str
):
    """Ingest had read none of the survey's images, taken for panopipe's own outputs: exit 0, an empty
    catalog and 'not read: 1 file(s) under panopipe's own output roots'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "survey/R001").mkdir(parents=True)
    (tmp_path / "survey/R001/a.jpg").write_bytes(JPEG.read_bytes())
    config = tmp_path / "panopipe.toml"
    config.write_text(f'[steps.pipeline]\noutput = "{output}"\n')

    code, out, err = run(capsys, "ingest", "survey", "--catalog", "c.db")

    where = "the output root" if output == "survey" else "inside the output root"
    assert (code, out) == (ConfigError.exit_code, "")
    assert err == (
        f"error: survey is {where} {(tmp_path / output).resolve()} ([steps.pipeline] output): ingest reads no "
        "file there (panopipe's own outputs); if survey images are there, set [steps.pipeline] output to a "
        "folder that holds none, such as a subfolder panopipe-out of the survey\n"
    )
    assert not (tmp_path / "c.db").exists()
    config.write_text('[steps.pipeline]\noutput = "survey/panopipe-out"\n')  # outputs in the survey: usual
    code, out, _ = run(capsys, "ingest", "survey", "--catalog", "c.db")
    assert (code, out.partition(",")[0]) == (0, "added 1")


def test_a_failed_ingest_leaves_no_catalog_in_the_home_folder_named_with_a_tilde(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The catalog was made at $HOME/new.db, but the literal '~/new.db' was looked for to discard it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_CATALOG, "~/new.db")
    assert run(capsys, "ingest", "missing-folder")[0] == ConfigError.exit_code
    assert sorted(tmp_path.rglob("*")) == [tmp_path / "home"]


def test_an_error_about_a_name_with_a_newline_is_still_one_line(capsys, tmp_path: Path):
    code, _, err = run(capsys, "ingest", str(tmp_path / "day\n2"), "--catalog", str(tmp_path / "c.db"))
    assert code == ConfigError.exit_code
    assert err == f"error: {tmp_path}/day\\n2 does not exist: give a folder, a JPEG file or an s3:// prefix\n"


def test_a_file_that_is_no_sqlite_database_is_not_a_catalog(capsys, tmp_path: Path):
    (tmp_path / "capture").mkdir()
    files = {"notadb.db": JPEG.read_bytes(), "panopipe.toml": b'catalog = "survey.db"\n'}
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        for command in (["ls"], ["db", "current"], ["db", "upgrade"], ["ingest", str(tmp_path / "capture")]):
            assert run(capsys, *command, "--catalog", str(path)) == (
                CatalogError.exit_code,
                "",
                f"error: {path} is not a panopipe catalog (not a SQLite database)\n",
            ), command
        assert path.read_bytes() == content, "a command changed the file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["capture", "notadb.db", "panopipe.toml"]
    folder = tmp_path / "capture"  # a folder given for the catalog file
    for command in (["ls"], ["db", "current"], ["db", "upgrade"]):
        assert run(capsys, *command, "--catalog", str(folder)) == (
            CatalogError.exit_code,
            "",
            f"error: {folder} is a folder, not a catalog: give a SQLite file path (e.g. {folder}/panopipe.db)\n",
        ), command
    assert list(folder.iterdir()) == []


def test_a_damaged_catalog_is_one_line(capsys, tmp_path: Path):
    db = tmp_path / "c.db"
    with Catalog.open(db):  # closing it writes its pages into the file
        pass
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(db.read_bytes()[:4096])  # the header of a SQLite file, its pages cut off
    assert run(capsys, "ls", "--catalog", str(damaged)) == (
        CatalogError.exit_code,
        "",
        f"error: cannot read catalog {damaged}: database disk image is malformed\n",
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://u:hunter2@h:abc/db",
            "error: invalid catalog URL postgresql://u:***@h:abc/db: expected "
            "postgresql://USER@HOST[:PORT]/DATABASE (the port, if given, a number from 1 to 65535)",
        ),
        (
            "postgresql://u@h:abc/db?sslmode=require&password=hunter2",
            "error: invalid catalog URL postgresql://u@h:abc/db?sslmode=require&password=***: expected "
            "postgresql://USER@HOST[:PORT]/DATABASE (the port, if given, a number from 1 to 65535)",
        ),
        (
            "postgresql://u:hunter2@127.0.0.1:99999/db",  # had been a server problem: "check it is running"
            "error: invalid catalog URL postgresql://u:***@127.0.0.1:99999/db: expected "
            "postgresql://USER@HOST[:PORT]/DATABASE (the port, if given, a number from 1 to 65535)",
        ),
        (
            "postgresql://u@127.0.0.1:0/db",
            "error: invalid catalog URL postgresql://u@127.0.0.1:0/db: expected "
            "postgresql://USER@HOST[:PORT]/DATABASE (the port, if given, a number from 1 to 65535)",
        ),
        (
            "postgresql://u@127.0.0.1/db?port=99999",  # libpq's own parameter: had been "check it is running"
            "error: invalid catalog URL postgresql://u@127.0.0.1/db?port=99999: expected "
            "postgresql://USER@HOST[:PORT]/DATABASE (the port, if given, a number from 1 to 65535)",
        ),
        (
            "postgresql://u@127.0.0.1/db?port=5432,5433",  # a port per host: had been SQLAlchemy's traceback
            "error: invalid catalog URL postgresql://u@127.0.0.1/db?port=5432%2C5433: number of hosts and "
            "ports don't match",
        ),
        (
            "postgresql://u:hunter2@h/",  # libpq would have picked a database itself (PGDATABASE, or the user's)
            "error: invalid catalog URL postgresql://u:***@h/: it names no database: expected "
            "postgresql://USER@HOST[:PORT]/DATABASE",
        ),
        (
            "mysql://u:hunter2@h/db",
            "error: unsupported catalog URL mysql://u:***@h/db: a catalog is a SQLite file path, a "
            "postgresql:// URL or cloudformation://STACK (a deployed stack's), not mysql://",
        ),
    ],
)
def test_bad_catalog_urls(capsys, url: str, message: str):
    assert run(capsys, "ls", "--catalog", url) == (ConfigError.exit_code, "", message + "\n")


def test_a_url_without_its_slashes_is_a_mistake_not_a_file(capsys, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "capture").mkdir()
    assert run(capsys, "db", "upgrade", "--catalog", "c.db")[0] == 0
    cases = {
        ("db", "upgrade", "--catalog", "postgresql:u:hunter2@h/survey"): "postgresql:",
        ("ingest", "capture", "--catalog", "postgresql:survey.db"): "postgresql:",
        ("sync", "capture", "s3:/survey-bucket/2024-05-01", "--catalog", "c.db"): "s3:",
    }
    for command, scheme in cases.items():
        assert run(capsys, *command) == (
            ConfigError.exit_code,
            "",
            f"error: {scheme}... is neither a path nor a URL: a URL needs // after {scheme} "
            "(a file or folder whose name has a colon: write ./ before it)\n",
        ), command
    created = {path.name for path in tmp_path.iterdir() if not path.name.startswith("c.db")}  # and -wal, -shm
    assert created == {"capture"}
    # a name with a colon is a path when written as one
    assert run(capsys, "db", "upgrade", "--catalog", "./postgresql:survey.db")[0] == 0
    assert (tmp_path / "postgresql:survey.db").is_file()


def test_a_url_without_its_bucket_says_so(capsys, tmp_path: Path):
    """A manifest's URL ending in slashes had them all stripped: ``s3://`` was "a URL needs // after s3:"."""
    db = str(tmp_path / "c.db")
    for command in (["ingest", "s3://", "--catalog", db], ["worker", "run", "--manifest", "s3://"]):
        assert run(capsys, *command) == (
            ConfigError.exit_code,
            "",
            "error: invalid S3 URL s3://: invalid S3 bucket name '': a bucket name is letters, digits, '.', '-' "
            "and '_'\n",
        ), command


def test_unsupported_storage_urls(capsys, tmp_path: Path):
    (tmp_path / "capture").mkdir()
    db = str(tmp_path / "c.db")
    assert run(capsys, "db", "upgrade", "--catalog", db)[0] == 0
    assert run(capsys, "sync", str(tmp_path / "capture"), "gs://survey-bucket/x", "--catalog", db) == (
        ConfigError.exit_code,
        "",
        "error: unsupported storage URL gs://survey-bucket/x: storage is a folder (a path or "
        "file:///PATH) or s3://BUCKET/PREFIX\n",
    )


ENDPOINT_MISTAKES = {
    "PANOPIPE_S3_ENDPOINT_URL": [
        ["ingest", "s3://b/x/", "--catalog", "{db}"],
        ["sync", "{folder}", "s3://b/x/", "--catalog", "{db}"],
        ["worker", "run", "--manifest", "s3://b/x/manifest.json"],
    ],
    "AWS_ENDPOINT_URL": [["cloud", "status", "--stack", "x"]],
    "AWS_ENDPOINT_URL_SQS": [
        ["worker", "events", "--queue-url", "http://127.0.0.1:1/123456789012/q", "--catalog", "{db}"]
    ],
    "AWS_ENDPOINT_URL_SECRETS_MANAGER": [
        [
            "ls",
            "--catalog",
            "postgresql://u@127.0.0.1:1/x?secret_arn=arn:aws:secretsmanager:eu-west-1:1:secret:s",
        ]
    ],
}
"""Commands that build an AWS client, under each variable that sets the endpoint of that client."""


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("localhost:5000", "give http://HOST:PORT or https://HOST, e.g. http://localhost:5000"),
        # the bucket pasted into it: botocore put the path before each key's, and every object read as missing
        (
            "http://localhost:5000/survey1",
            "a path is not allowed; give SCHEME://HOST:PORT, e.g. http://localhost:5000",
        ),
        # botocore tried to connect, and said the endpoint could not be reached (exit 4)
        (
            "http://localhost:99999",
            "its port is not a number from 1 to 65535; give SCHEME://HOST:PORT, e.g. http://localhost:9000",
        ),
    ],
    ids=["no-scheme", "a-path", "no-port"],
)
@pytest.mark.parametrize("variable", ENDPOINT_MISTAKES)
def test_an_endpoint_url_that_is_no_url_is_one_line(
    capsys, tmp_path: Path, monkeypatch, variable: str, value: str, problem: str
):
    for name in [name for name in os.environ if name.startswith(("AWS_ENDPOINT_URL", "PANOPIPE_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv(variable, value)
    (tmp_path / "capture").mkdir()
    db = tmp_path / "c.db"
    assert run(capsys, "db", "upgrade", "--catalog", str(db))[0] == 0
    for command in ENDPOINT_MISTAKES[variable]:
        args = [arg.format(db=db, folder=tmp_path / "capture") for arg in command]
        assert run(capsys, *args) == (
            ConfigError.exit_code,
            "",
            f"error: {variable} is {value!r}, not an endpoint URL: {problem}\n",
        ), command


def test_an_endpoint_url_in_the_config_file_is_named_there(capsys, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("PANOPIPE_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    config = tmp_path / "panopipe.toml"
    config.write_text('[panopipe]\ncatalog = "c.db"\ns3_endpoint_url = "https://"\n')
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "ingest", "s3://b/x/") == (
        ConfigError.exit_code,
        "",
        "error: [panopipe] s3_endpoint_url in panopipe.toml is 'https://', not an endpoint URL: "
        "give http://HOST:PORT or https://HOST, e.g. http://localhost:9000\n",
    )


def test_output_paths_that_cannot_be_written(capsys, tmp_path: Path):
    """Refused before the command works (package-lambda's pip run takes minutes), and no folder is made."""
    db = str(tmp_path / "c.db")
    assert run(capsys, "db", "upgrade", "--catalog", db)[0] == 0
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    cases = {
        str(tmp_path): "it is a folder; give a file name",
        str(tmp_path / "nowhere" / "x.csv"): f"folder {tmp_path / 'nowhere'} does not exist",
        str(a_file / "x.csv"): f"{a_file} is a file, not a folder",
        "/proc/panopipe-report.html": "No such file or directory",
    }
    for path, reason in cases.items():
        for command in (
            ["export", "-o", path, "--catalog", db],
            ["report", "--html", path, "--catalog", db],
            ["cloud", "package-lambda", "--output", path],
        ):
            code, out, err = run(capsys, *command)
            assert (code, out, err) == (ConfigError.exit_code, "", f"error: cannot write {path}: {reason}\n")
    assert not (tmp_path / "nowhere").exists()


def test_an_output_file_by_default_is_checked_as_one_given(capsys, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "cloud", "package-lambda", "--python", "2.7") == (
        ConfigError.exit_code,
        "",
        "error: unknown Lambda Python '2.7': choose one of 3.12, 3.13, 3.14\n",
    )
    (tmp_path / "panopipe-lambda.zip").mkdir()
    assert run(capsys, "cloud", "package-lambda") == (
        ConfigError.exit_code,
        "",
        "error: cannot write panopipe-lambda.zip: it is a folder; give a file name\n",
    )


def test_an_output_url_is_refused_as_given(
    capsys, tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
):
    """``-o s3://b/x.csv`` had been read as a path, ``s3:/b/x.csv``: "folder s3:/b does not exist"."""
    assert run(capsys, "db", "upgrade", "--catalog", catalog_url)[0] == 0
    monkeypatch.chdir(tmp_path)
    copy = "write a local file and copy it there"
    cases = {
        "s3://survey-bucket/day 1/x.csv": f"{copy} (aws s3 cp FILE 's3://survey-bucket/day 1/x.csv')",
        "https://example.com/x.csv": copy,
    }
    for url, what in cases.items():
        for command in (["export", "-o", url], ["report", "--html", url]):
            code, out, err = run(capsys, *command, "--catalog", catalog_url)

            message = f"error: cannot write {url}: output files are written locally, not to a URL; {what}\n"
            assert (code, out, err) == (ConfigError.exit_code, "", message)
    assert not list(tmp_path.glob("*:*"))
    local = tmp_path / "local survey.geojson"  # a file:// URL names a local file, percent-encoded
    assert run(capsys, "export", "-o", local.as_uri(), "--catalog", catalog_url)[0] == 0
    assert json.loads(local.read_text())["type"] == "FeatureCollection"
    on_this_machine = f"file://localhost{local.with_name('again.geojson')}"  # RFC 8089's other form
    assert run(capsys, "export", "-o", on_this_machine, "--catalog", catalog_url)[0] == 0
    assert (tmp_path / "again.geojson").is_file()
    elsewhere = "file://fileserver/survey/x.geojson"  # had been the relative path fileserver/survey/x.geojson
    assert run(capsys, "export", "-o", elsewhere, "--catalog", catalog_url) == (
        ConfigError.exit_code,
        "",
        f"error: {elsewhere} names a file on another machine (fileserver): give a local path\n",
    )


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


OUTPUTS = {"export": "--output", "report": "--html", "cloud package-lambda": "--output"}
"""The commands that write a file the user names, and the option that names it."""
CREATES = {"ingest", "demo", "db upgrade"}
"""Commands that succeed where no catalog exists: they create it."""


def test_no_command_shows_a_traceback(capsys, tmp_path: Path):
    """Each command that takes a catalog, a config file or an output path, given a bad one of each."""
    folder = tmp_path / "empty"
    folder.mkdir()
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[step.derive]\nthumbnail = 256\n")
    not_toml = tmp_path / "not.toml"
    not_toml.write_text("[panopipe\n")
    not_a_database = tmp_path / "notadb.db"
    not_a_database.write_bytes(JPEG.read_bytes())
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
        "worker run": ["--manifest", str(tmp_path / "manifest.json"), "--index", "0"],
        "demo": ["--folder", str(tmp_path / "demo"), "--shots", "1"],
        "route add": ["R-1", str(tmp_path / "route.geojson"), "--start-measure", "0"],
    }
    mistakes = {
        "unsupported URL": (["--catalog", "mysql://u@h/db"], ConfigError.exit_code),
        "port": (["--catalog", "postgresql://u@h:abc/db"], ConfigError.exit_code),
        "missing catalog": (["--catalog", str(tmp_path / "missing.db")], CatalogError.exit_code),
        "not a database": (["--catalog", str(not_a_database)], CatalogError.exit_code),
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


@pytest.fixture
def two_images(catalog_url: str) -> tuple[str, list[str]]:
    """A catalog of two images whose uri and reel hold brackets, on each backend; its location and the ids."""
    location = catalog_url
    taken = datetime(2024, 5, 1, 10, tzinfo=UTC)
    with Catalog.open(location) as catalog:
        catalog.upsert_images(
            [
                ImageRecord(
                    uri=f"s3://b/[a]/{n}.jpg", reel="[R1]", frame=n, lat=48.1, lon=11.5, captured_at=taken
                )
                for n in (1, 2)
            ]
        )
        return location, [image.id for image in catalog.images()]


def test_text_is_shown_as_written(capsys, tmp_path: Path, two_images: tuple[str, list[str]]):
    location, ids = two_images
    code, out, _ = run(capsys, "show", ids[0], "--catalog", location)
    assert code == 0 and "s3://b/[a]/1.jpg" in out and "[R1]" in out
    code, out, _ = run(capsys, "ls", "--catalog", location)
    assert code == 0 and out.count("[R1]") == 2
    config = tmp_path / "panopipe.toml"
    config.write_text("[steps.derve]\nthumbnail = 256\n")
    code, _, err = run(capsys, "plan", "--catalog", location, "--config", str(config))
    assert (code, err) == (
        2,
        f"error: {config}: unknown section: [steps.derve]; did you mean [steps.derive]?\n",
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[step.derive]\nthumbnail = 256\n", "unknown section: [step]; did you mean [steps]?"),
        ("[panopipe]\ncatalgo = 'x.db'\n", "unknown key in [panopipe]: 'catalgo'; did you mean 'catalog'?"),
        (
            "[ingest]\npath_patern = '.*'\n",
            "unknown key in [ingest]: 'path_patern'; did you mean 'path_pattern'?",
        ),
        (
            "panopipe = 'x.db'\n",
            "panopipe must be a table: write [panopipe] on a line of its own, then its keys",
        ),
        (
            "output = '/tmp/x'\n[steps.derive]\nthumbnail = 256\n",
            "key 'output' outside any section (a key of [steps.pipeline]); "
            "expected the sections [ingest], [panopipe], [qc], [steps]",
        ),
        (
            "catalgo = 'x.db'\n",
            "key 'catalgo' outside any section; expected the sections [ingest], [panopipe], [qc], [steps]",
        ),
        (
            "[ingest]\nshot_tolerance_s = '50ms'\n",
            "[ingest]: shot_tolerance_s must be a number, 0 or more, got '50ms'",
        ),
        (
            "[ingest]\nshot_tolerance_s = -0.05\n",
            "[ingest]: shot_tolerance_s must be a number, 0 or more, got -0.05",
        ),
        ("[ingest]\npath_pattern = 5\n", "[ingest]: path_pattern must be text, not empty, got 5"),
        ("[panopipe]\nproject = 2024\n", "[panopipe]: project must be text, not empty, got 2024"),
    ],
)
def test_config_mistakes_are_named(capsys, tmp_path: Path, toml: str, message: str):
    config = tmp_path / "panopipe.toml"
    config.write_text(toml)
    code, _, err = run(capsys, "ls", "--config", str(config), "--catalog", str(tmp_path / "c.db"))
    assert (code, err) == (ConfigError.exit_code, f"error: {config}: {message}\n")


def test_a_config_file_saved_as_utf16_is_one_line(capsys, tmp_path: Path):
    config = tmp_path / "panopipe.toml"
    config.write_bytes("[panopipe]\nproject = 'x'\n".encode("utf-16"))  # an editor's "Unicode"
    code, out, err = run(capsys, "ls", "--config", str(config), "--catalog", str(tmp_path / "c.db"))
    assert (code, out) == (ConfigError.exit_code, "")
    assert err == f"error: config file {config} is not UTF-8 text (invalid start byte): save it as UTF-8\n"


def test_unknown_step_keys_suggest_the_closest(capsys, tmp_path: Path, two_images: tuple[str, list[str]]):
    config = tmp_path / "panopipe.toml"
    config.write_text("[steps.derive]\nthumbnial = 256\n[steps.pipeline]\noutput = 'out'\n")
    code, _, err = run(capsys, "plan", "--catalog", two_images[0], "--config", str(config))
    assert (code, err) == (
        2,
        f"error: {config}: unknown key in [steps.derive]: 'thumbnial'; did you mean 'thumbnail'?\n",
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--max-vcpus", "64"], "--max-vcpus goes with --estimate"),
        (["--wait"], "--wait follows AWS Batch jobs: the local executor runs its jobs to the end anyway"),
        (["--wait", "--executor", "inline"], "--wait follows AWS Batch jobs: the inline executor"),
        (["--estimate", "--wait", "--executor", "batch"], "--estimate runs no job: drop --wait"),
        (["--estimate", "--workers", "2"], "--estimate runs no job: drop --workers"),
        (
            ["--executor", "inline", "--workers", "4"],
            "workers size the local executor's process pool; the inline",
        ),
        (
            ["--executor", "batch", "--workers", "4"],
            "workers size the local executor's process pool; the batch",
        ),
    ],
)
def test_run_refuses_options_it_would_ignore(
    capsys, tmp_path: Path, two_images: tuple[str, list[str]], options: list[str], message: str
):
    config = tmp_path / "panopipe.toml"
    config.write_text(f"[steps.pipeline]\noutput = '{tmp_path / 'out'}'\n")
    code, out, err = run(capsys, "run", "--catalog", two_images[0], "--config", str(config), *options)

    assert (code, out) == (ConfigError.exit_code, "") and err.startswith(f"error: {message}"), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_unknown_step_names_suggest_the_closest(capsys, two_images: tuple[str, list[str]]):
    code, _, err = run(capsys, "plan", "--catalog", two_images[0], "--steps", "stich")
    assert (code, err) == (2, "error: unknown step 'stich'; did you mean 'stitch'?\n")


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (
            ["--near", "-122.4,37.7", "--radius", "10"],
            "invalid --near -122.4,37.7: expected LAT,LON with -90 <= LAT <= 90, -180 <= LON <= 180 "
            "(it looks like LON,LAT: swap the values)",
        ),
        (
            ["--near", "95,200", "--radius", "10"],
            "invalid --near 95.0,200.0: expected LAT,LON with -90 <= LAT <= 90, -180 <= LON <= 180",
        ),
        (
            ["--bbox", "37.7,-122.5,37.8,-122.4"],
            "invalid --bbox 37.7,-122.5,37.8,-122.4: expected MINLON,MINLAT,MAXLON,MAXLAT; it looks like "
            "latitude first: put longitudes first (-180 <= LON <= 180, -90 <= LAT <= 90)",
        ),
        (
            ["--bbox", "11.5,48.2,11.6,48.0"],
            "invalid --bbox 11.5,48.2,11.6,48.0: expected MINLON,MINLAT,MAXLON,MAXLAT; MINLAT is above MAXLAT: "
            "are two values swapped?",
        ),
        *(
            (
                ["--bbox", box],
                f"invalid --bbox {box}: expected MINLON,MINLAT,MAXLON,MAXLAT, each a finite number",
            )
            for box in ("nan,nan,nan,nan", "11.5,48.0,inf,48.2")
        ),
        *(
            (
                ["--near", "48.1,11.5", "--radius", r],
                f"invalid --radius {r}: expected metres > 0, a finite number",
            )
            for r in ("nan", "inf")
        ),
        (["--status", "broken"], "invalid status 'broken': expected ok or failed"),
        (
            ["--since", "2024-05-01T00:00:00Z", "--until", "2024-04-01T00:00:00Z"],
            "--since 2024-05-01T00:00:00+00:00 is not before --until 2024-04-01T00:00:00+00:00: nothing is "
            "captured in between; are the two swapped?",
        ),
        (
            ["--since", "2024-05-01"],
            "time '2024-05-01' has no zone: write 2024-05-01T00:00:00Z for UTC, or an offset: "
            "2024-05-01T00:00:00+02:00",
        ),
        *(  # in UTC, the year 10000 and the year 0: a traceback
            ([option, time], f"invalid time '{time}': in UTC it falls outside the years 1 to 9999")
            for option, time in (
                ("--since", "9999-12-31T23:00:00-05:00"),
                ("--until", "0001-01-01T00:00:00+05:00"),
            )
        ),
    ],
)
def test_filter_mistakes(capsys, two_images: tuple[str, list[str]], filters: list[str], message: str):
    code, out, err = run(capsys, "ls", "--catalog", two_images[0], *filters)
    assert (code, out, err) == (ConfigError.exit_code, "", f"error: {message}\n")


def test_a_user_without_a_name_edits_undoes_and_checks_as_their_uid(
    capsys, two_images: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
):
    """A container run with --user 4242 has no login variable and no passwd entry: getpass.getuser's KeyError
    had been a traceback."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)

    def no_entry(uid: int) -> None:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    location, author = two_images[0], f"uid:{os.getuid()}"
    edit = ["edit", "--reel", "[R1]", "--set", "alt=12.5", "--reason", "RTK", "--json"]
    code, out, err = run(capsys, *edit, "--catalog", location)
    assert (code, err) == (0, "")
    assert run(capsys, "undo", json.loads(out)["batch"], "--catalog", location)[0] == 0
    assert run(capsys, "qc", "--catalog", location)[0] == 0
    with Catalog.open(location, create=False) as catalog:
        assert {(e.author, e.undone_by) for e in catalog.history()} == {(author, author)}


def test_filters_that_select_no_image_say_so_and_name_the_reel_that_does_not_exist(
    capsys, two_images: tuple[str, list[str]], tmp_path: Path
):
    location = two_images[0]
    unknown = "no reel 'R1' in the catalog (did you mean '[R1]'?)"
    hint = "`panopipe ls` with the same filters shows what they select"
    for dry_run in ([], ["--dry-run"]):
        edit = ["edit", "--reel", "R1", "--set", "alt=12.5", "--reason", "RTK", *dry_run]
        assert run(capsys, *edit, "--catalog", location) == (
            CatalogError.exit_code,
            "",
            f"error: no image matches the selection: {unknown}: {hint}\n",
        )
    assert run(capsys, "history", "--catalog", location, "--json")[1] == "[]\n"
    # a command that finds nothing to do warns (a scheduled `run --since` with nothing new is not an error)
    warning = f"warning: no image matches the filters: {unknown}: {hint}"
    for command in (["plan"], ["run"], ["verify"], ["qc"]):
        code, _, err = run(capsys, *command, "--reel", "R1", "--catalog", location)
        assert code == 0 and err.splitlines()[0] == warning, command
    # an export's empty answer would replace the file it writes: a named typo is an error, nothing written
    earlier = tmp_path / "earlier.csv"
    assert run(capsys, "export", "-o", str(earlier), "--catalog", location)[0] == 0
    written = earlier.read_bytes()
    export = ["export", "-o", str(earlier), "--reel", "R1", "--catalog", location]
    assert run(capsys, *export) == (CatalogError.exit_code, "", f"error: nothing exported: {unknown}\n")
    assert earlier.read_bytes() == written
    for command in ("plan", "run"):  # no empty table on stdout
        assert run(capsys, command, "--reel", "R1", "--catalog", location) == (
            0,
            "",
            f"{warning}\nnothing to do\n",
        )
    assert run(capsys, "ls", "--reel", "R1", "--catalog", location) == (
        0,
        "",
        f"0 image(s)\nwarning: {unknown}\n",
    )
    assert run(capsys, "ls", "--reel", "R1", "--json", "--catalog", location) == (
        0,
        "[]\n",
        f"warning: {unknown}\n",
    )
    shot = ["ls", "--shot", "R1-000009", "--json", "--catalog", location]
    assert run(capsys, *shot) == (0, "[]\n", "warning: no shot 'R1-000009' in the catalog\n")
    # filters that name what exists and select nothing together: no name is blamed
    since = ["--since", "2031-01-01T00:00:00Z", "--catalog", location]
    assert run(capsys, "ls", "--reel", "[R1]", *since) == (0, "", "0 image(s)\n")
    code, _, err = run(capsys, "plan", "--reel", "[R1]", *since)
    assert code == 0 and err.splitlines()[0] == f"warning: no image matches the filters: {hint}"
    code, _, err = run(capsys, "plan", "--reel", "[R1]", "--catalog", location)
    assert code == 0 and "warning" not in err


def test_a_reel_that_does_not_exist_among_others_that_do_is_named(
    capsys, two_images: tuple[str, list[str]], tmp_path: Path
):
    """``--reel '[R1]' --reel R1``: the typo had been named only when it left nothing selected, so an export had
    quietly lacked a reel and an edit changed one of the two."""
    location = two_images[0]
    unknown = "no reel 'R1' in the catalog (did you mean '[R1]'?)"
    reels = ["--reel", "[R1]", "--reel", "R1", "--catalog", location]
    # what writes stops: an export would replace its file without the reel, an edit would change half the survey
    earlier = tmp_path / "earlier.csv"
    assert run(capsys, "export", "-o", str(earlier), "--catalog", location)[0] == 0
    written = earlier.read_bytes()
    assert run(capsys, "export", "-o", str(earlier), *reels) == (
        CatalogError.exit_code,
        "",
        f"error: nothing exported: {unknown}\n",
    )
    assert earlier.read_bytes() == written
    for dry_run in ([], ["--dry-run"]):
        edit = ["edit", *reels, "--set", "alt=12.5", "--reason", "RTK", *dry_run]
        assert run(capsys, *edit) == (CatalogError.exit_code, "", f"error: nothing changed: {unknown}\n")
    assert run(capsys, "history", "--catalog", location, "--json")[1] == "[]\n"
    # what reads or runs goes on with the reel that exists, and warns of the other
    for command in (["plan"], ["run"], ["verify"], ["qc"]):
        code, _, err = run(capsys, *command, *reels)
        assert code == 0 and err.splitlines()[0] == f"warning: {unknown}", (command, err)
    code, out, err = run(capsys, "ls", "--json", *reels)
    assert code == 0 and len(json.loads(out)) == 2 and err == f"warning: {unknown}\n"


def test_coordinates_the_other_way_round_that_select_nothing_say_so(
    capsys, two_images: tuple[str, list[str]]
):
    # In Europe every latitude is a valid longitude: a box or point given latitude first is valid, and empty.
    location = two_images[0]
    hint = (
        "with longitude and latitude the other way round it selects 2 image(s): --bbox takes "
        "MINLON,MINLAT,MAXLON,MAXLAT and --near LAT,LON"
    )
    for where in (["--bbox", "48.0,11.4,48.2,11.6"], ["--near", "11.5,48.1", "--radius", "50"]):
        assert run(capsys, "ls", *where, "--catalog", location) == (0, "", f"0 image(s)\nwarning: {hint}\n")
        code, _, err = run(capsys, "plan", *where, "--catalog", location)
        assert code == 0 and err.splitlines()[0] == (
            f"warning: no image matches the filters: `panopipe ls` with the same filters shows what they "
            f"select; {hint}"
        )
        export = ["export", "-o", "-", *where, "--catalog", location]
        assert run(capsys, *export) == (CatalogError.exit_code, "", f"error: nothing exported: {hint}\n")
    # the right way round: found; a box that selects nothing either way: no hint
    assert run(capsys, "ls", "--bbox", "11.4,48.0,11.6,48.2", "--json", "--catalog", location)[2] == ""
    assert run(capsys, "ls", "--bbox", "2.0,40.0,2.1,40.1", "--catalog", location)[2] == "0 image(s)\n"


def test_an_edit_needs_a_reason(capsys, two_images: tuple[str, list[str]]):
    edit = ["edit", "--reel", "[R1]", "--set", "alt=12.5", "--catalog", two_images[0]]
    assert run(capsys, *edit, "--reason", " ") == (
        ConfigError.exit_code,
        "",
        "error: an edit needs a reason (--reason)\n",
    )
    assert run(capsys, "history", "--catalog", two_images[0], "--json")[1] == "[]\n"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("alt=inf", "invalid alt inf: expected a finite number"),  # it broke every later plan and run
        ("alt=nan", "invalid alt nan: expected a finite number"),
        ("alt=120000", "invalid alt 120000.0: expected -12000.0 to 100000.0"),
        ("roll=1000", "invalid roll 1000.0: expected -180.0 to 180.0"),
        (
            "utc_offset_minutes=2000",
            "invalid utc_offset_minutes 2000: no time zone is 2000 minutes from UTC (e.g. 120 for +02:00, -300 "
            "for -05:00, 345 for +05:45)",
        ),
        ("utc_offset_minutes=15", "invalid utc_offset_minutes 15: no time zone is 15 minutes from UTC"),
        ("camera_index=3000000000", "invalid camera_index 3000000000: expected 0 to 2147483647"),
        ("make=" + "x" * 129, "invalid make: 129 characters, the catalog holds at most 128"),
        (
            "captured_at=9999-12-31T23:00:00-05:00",
            "invalid time '9999-12-31T23:00:00-05:00': in UTC it falls outside the years 1 to 9999",
        ),
    ],
)
def test_an_edit_value_the_catalog_cannot_hold_is_one_line(
    capsys, two_images: tuple[str, list[str]], assignment: str, message: str
):
    """The same answer on SQLite and PostgreSQL (whose columns refused some of them with a traceback), before
    anything is recorded."""
    location = two_images[0]
    edit = ["edit", "--catalog", location, "--reel", "[R1]", "--set", assignment, "--reason", "typo"]
    code, out, err = run(capsys, *edit)
    assert (code, out) == (ConfigError.exit_code, "") and err.startswith(f"error: {message}"), err
    assert len(err.splitlines()) == 1
    assert run(capsys, "history", "--catalog", location, "--json")[1] == "[]\n"


def test_a_field_set_twice_with_two_values_is_refused(capsys, two_images: tuple[str, list[str]]):
    """``--set alt=1 --set alt=2`` had applied the last value without a word; the same value twice is one."""
    location = two_images[0]
    edit = ["edit", "--catalog", location, "--reel", "[R1]", "--reason", "RTK", "--set", "alt=1"]
    assert run(capsys, *edit, "--set", "alt=2.0") == (
        ConfigError.exit_code,
        "",
        "error: --set gives alt two values: give one\n",
    )
    assert run(capsys, "history", "--catalog", location, "--json")[1] == "[]\n"
    assert run(capsys, *edit, "--set", "alt=1.0")[0] == 0


def test_a_heading_west_of_north_is_its_compass_heading(capsys, two_images: tuple[str, list[str]]):
    """-90, as tracks and many INS solutions write it, is 270 (tracks took it, --set and --positions refused it);
    below -180 it is still a mistake."""
    location, ids = two_images
    edit = ["edit", "--catalog", location, "--id", ids[0], "--reason", "INS", "--set"]
    assert run(capsys, *edit, "heading=-90")[0] == 0
    assert json.loads(run(capsys, "show", ids[0], "--json", "--catalog", location)[1])["heading"] == 270.0
    code, _, err = run(capsys, *edit, "heading=-181")
    assert (code, err) == (ConfigError.exit_code, "error: invalid heading -181.0: expected 0.0 to 360.0\n")


def test_edit_of_every_image_needs_all(capsys, two_images: tuple[str, list[str]]):
    location = two_images[0]
    edit = ["edit", "--catalog", location, "--set", "alt=12.5", "--reason", "RTK", "--json"]
    code, out, err = run(capsys, *edit)
    assert (code, out) == (ConfigError.exit_code, "")
    assert err == (
        "error: no filter selects images (--id, --reel, --shot, --since, --bbox...): pass --all to edit every "
        "image, or --dry-run to see what would change\n"
    )
    _, out, _ = run(capsys, "ls", "--catalog", location, "--json")
    assert {row["alt"] for row in json.loads(out)} == {None}
    code, out, _ = run(capsys, *edit, "--dry-run")
    assert code == 0 and len(json.loads(out)["changes"]) == 2
    code, out, _ = run(capsys, *edit, "--all")
    assert code == 0 and len(json.loads(out)["changes"]) == 2


def test_undo_dry_run_shows_what_it_would_revert(capsys, two_images: tuple[str, list[str]]):
    location, ids = two_images
    code, out, _ = run(
        capsys,
        "edit",
        "--catalog",
        location,
        "--id",
        ids[0],
        "--set",
        "alt=12.5",
        "--reason",
        "RTK",
        "--json",
    )
    batch = json.loads(out)["batch"]
    code, out, _ = run(capsys, "undo", batch, "--dry-run", "--json", "--catalog", location)
    restored = [{"id": ids[0], "field": "alt", "old": 12.5, "new": None}]
    assert code == 0 and json.loads(out) == {"batch": batch, "dry_run": True, "changes": restored}
    _, out, _ = run(capsys, "show", ids[0], "--json", "--catalog", location)
    assert json.loads(out)["alt"] == 12.5, "a dry run must not revert"
    code, out, err = run(capsys, "undo", batch, "--dry-run", "--catalog", location)
    assert code == 0 and "would restore (dry run)" in out and "12.5" in out
    assert err == "dry run: would restore 1 value(s); nothing stored\n"
    # an edit that would change nothing says so in its dry run, as the edit itself does, with no empty table
    again = ("edit", "--catalog", location, "--id", ids[0], "--set", "alt=12.5", "--reason", "RTK")
    assert run(capsys, *again, "--dry-run") == (
        0,
        "",
        "dry run: would make 0 change(s) on 0 image(s); nothing stored\n",
    )
    shifted = ("edit", "--catalog", location, "--id", ids[0], "--shift-time", "infs", "--reason", "clock")
    assert run(capsys, *shifted) == (
        2,
        "",
        "error: invalid --shift-time 'infs': expected e.g. +2s, -1.5s, 250ms, +1h, 3d\n",
    )
    # run again, it is no error for a script: exit 0, a warning, and the JSON of an edit that stored nothing
    code, out, err = run(capsys, *again, "--json")
    assert (code, json.loads(out)) == (0, {"batch": None, "dry_run": False, "changes": []})
    assert err.startswith("warning: the edit changes nothing")
    code, out, _ = run(capsys, "undo", batch, "--json", "--catalog", location)  # the dry run's shape
    assert code == 0 and json.loads(out) == {"batch": batch, "dry_run": False, "changes": restored}
    _, out, _ = run(capsys, "show", ids[0], "--json", "--catalog", location)
    assert json.loads(out)["alt"] is None


def test_version(capsys):
    assert run(capsys, "--version") == (0, f"panopipe {panopipe.__version__}\n", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ls", "--reell"], "No such option: --reell (Possible options: --help, --reel); see panopipe ls -h"),
        (["lss"], "No such command 'lss'. Did you mean 'ls'?; see panopipe -h"),
        (["db", "curent"], "No such command 'curent'. Did you mean 'current'?; see panopipe db -h"),
        (
            ["ls", "--limit", "x"],
            "Invalid value for '--limit': Input should be a valid integer, unable to parse string as an "
            "integer; see panopipe ls -h",
        ),
        (
            ["events", "parse", "/nonexistent.json"],
            "Invalid value for 'event_file': file '/nonexistent.json' does not exist; see panopipe events parse -h",
        ),
        (["show"], "Missing argument 'image_id'; see panopipe show -h"),
        *(  # a folder given as the event: exit 4 (storage) and a bare "Is a directory"
            (
                ["events", command, "/"],
                f"Invalid value for 'event_file': file '/' is a directory; see panopipe events {command} -h",
            )
            for command in ("parse", "handle")
        ),
        (["ls", "--reel"], "Option '--reel' requires an argument."),  # click gives no command to name
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_usage_errors_are_one_line(capsys, args: list[str], message: str):
    assert run(capsys, *args) == (2, "", f"error: {message}\n")


def test_every_command_says_a_usage_error_in_one_line_and_keeps_its_help(capsys):
    for words in _commands():
        code, out, err = run(capsys, *words.split(), "--no-such-option")
        assert (code, out) == (2, ""), words
        assert err.startswith("error: No such option: --no-such-option") and err.endswith(
            f"; see panopipe {words} -h\n"
        ), (words, err)
        assert len(err.splitlines()) == 1, (words, err)
        code, out, err = run(capsys, *words.split(), "-h")
        assert (code, err) == (0, "") and out.startswith(f"Usage: panopipe {words} [OPTIONS]"), words
    code, _, err = run(capsys, "db")  # a group without its command shows its help, as click does
    assert code == 2 and err.startswith("Usage: panopipe db [OPTIONS] COMMAND [ARGS]...")


def test_ls_pages_sorts_and_picks_fields(capsys, two_images: tuple[str, list[str]]):
    location = two_images[0]
    ls = ["ls", "--catalog", location, "--json", "--fields", "frame,uri"]
    code, out, _ = run(capsys, *ls, "--sort=-frame")
    assert code == 0 and json.loads(out) == [
        {"frame": 2, "uri": "s3://b/[a]/2.jpg"},
        {"frame": 1, "uri": "s3://b/[a]/1.jpg"},
    ]
    code, out, _ = run(capsys, *ls, "--sort", "frame", "--offset", "1", "--limit", "1")
    assert code == 0 and json.loads(out) == [{"frame": 2, "uri": "s3://b/[a]/2.jpg"}]
    code, out, _ = run(capsys, *ls, "--offset", "1", "--near", "48.1,11.5", "--radius", "5")
    assert code == 0 and json.loads(out) == [{"frame": 2, "uri": "s3://b/[a]/2.jpg"}]
    code, _, err = run(capsys, "ls", "--catalog", location, "--fields", "id,fram")
    assert (code, err) == (2, "error: unknown field 'fram' in --fields; did you mean 'frame'?\n")
    code, _, err = run(capsys, "ls", "--catalog", location, "--sort", "-captured")
    assert (code, err) == (2, "error: cannot sort by 'captured'; did you mean 'captured_at'?\n")


@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "folder", "--workers", "0"],
        ["ingest", "folder", "--workers", "-1"],
        ["sync", "folder", "s3://b/p", "--workers", "0"],
        ["run", "--workers", "0"],
        ["worker", "events", "--queue-url", "http://127.0.0.1:1/q", "--max-polls", "0"],
        ["worker", "events", "--queue-url", "http://127.0.0.1:1/q", "--wait", "21"],
        ["dev", "up", "--port", "70000"],
        ["dev", "up", "--max-receive-count", "0"],
        *(  # more than SQLite holds: a traceback
            [*command, "99999999999999999999"]
            for command in (
                ["ls", "--limit"],
                ["ls", "--offset"],
                ["status", "--limit"],
                ["config", "show", "--version"],
            )
        ),
        *(  # an OverflowError, or a pool forking for minutes
            [*command, "--workers", count]
            for command in (["ingest", "folder"], ["sync", "folder", "s3://b/p"], ["run"])
            for count in ("100000", "99999999999999999999")
        ),
        ["run", "--estimate", "--max-vcpus", "99999999999999999999"],
        *(  # infinity had been taken at its word
            [*command, "inf"]
            for command in (
                ["export", "--format", "oid", "--camera-height"],
                ["edit", "--all", "--track", "t.gpx", "--reason", "r", "--max-gap"],
                ["route", "locate", "--max-offset"],
                ["worker", "run", "--manifest", "m.json", "--grace"],
            )
        ),
        ["worker", "run", "--manifest", "m.json", "--grace", "-1"],
    ],
    ids=" ".join,
)
def test_counts_out_of_range_are_refused_before_anything_starts(capsys, tmp_path: Path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    Catalog.open(tmp_path / "c.db").close()
    commands = ("ingest", "sync", "run", "ls", "status", "config", "export", "edit", "route")
    catalog = ["--catalog", "c.db"] if args[0] in commands else []
    code, out, err = run(capsys, *args, *catalog)
    assert code == ConfigError.exit_code and "Traceback" not in out + err, err
    option = next(arg for arg in reversed(args) if arg.startswith("--"))
    assert f"Invalid value for '{option}'" in err or "error: max vCPUs must be 1 to 4096" in err, err


def test_ctrl_c_and_a_closed_pipe_end_a_command_with_their_own_exit_codes(tmp_path: Path):
    """Ctrl-C: one line and 130 (Typer had turned it into 130 without a word). A reader that closes the output
    (`| head`): 141, as for SIGPIPE (Typer's 1 means failed files here)."""
    folder = tmp_path / "capture" / "R001" / "cam0"
    folder.mkdir(parents=True)
    blocked = folder / "R001_cam0_000001.jpg"
    os.mkfifo(blocked)  # ingest blocks reading it until it has a writer
    command = [sys.executable, "-c", "from panopipe.cli import run; run()"]
    process = subprocess.Popen(
        [*command, "ingest", str(tmp_path / "capture"), "--catalog", str(tmp_path / "c.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:  # a writer can open the FIFO once ingest opened it to read
        try:
            writer = os.open(blocked, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    os.close(writer)  # the read ends: the interrupted command can finish
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err.splitlines()[-1]) == (130, "error: interrupted")

    db = tmp_path / "demo.db"
    assert main(["db", "upgrade", "--catalog", str(db)]) == 0
    with Catalog.open(db) as catalog:
        catalog.upsert_images(
            [ImageRecord(uri=f"/data/{n}.jpg", reel="R001", frame=n) for n in range(20_000)]
        )
    shell = f"{shlex.join(command)} export --catalog {db} --format csv -o - | head -c 10 > /dev/null"
    piped = subprocess.run(
        ["bash", "-c", f"{shell}; echo ${{PIPESTATUS[0]}}"], capture_output=True, text=True
    )
    assert piped.stdout.strip() == "141" and piped.stderr == ""
    # a reader gone before a few lines of fields were written: rich's own exit had been 1, without a word
    shell = f"{shlex.join(command)} db current --catalog {db} | (exec 0<&-; sleep 0.5)"
    piped = subprocess.run(
        ["bash", "-c", f"{shell}; echo ${{PIPESTATUS[0]}}"], capture_output=True, text=True
    )
    assert piped.stdout.strip() == "141" and piped.stderr == ""
