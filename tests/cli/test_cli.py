"""The command line, run in-process through its entry point, on the embedded default and on PostgreSQL."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import shlex
from pathlib import Path

import pytest

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.engine import mask_url
from panopipe.cli import main
from panopipe.cli.app import app
from panopipe.demo import GNSS_ALTITUDE_BIAS_M, RTK_ALTITUDE_M, generate_survey


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered rig survey of 2 shots (12 frames), left unedited."""
    folder = tmp_path_factory.mktemp("survey")
    generate_survey(folder, shots=2, camera_size=(160, 120))
    return folder / "R001"


def ingest_survey(capsys: pytest.CaptureFixture[str], catalog: str, survey: Path) -> None:
    assert run(capsys, "ingest", str(survey), "--catalog", catalog)[0] == 0


def test_demo_then_ls_json(capsys, tmp_path: Path, catalog_url: str):
    code, out, _ = run(
        capsys, "demo", "--folder", str(tmp_path / "d"), "--shots", "2", "--catalog", catalog_url, "--json"
    )
    assert code == 0
    summary = json.loads(out)
    assert (summary["ingest"]["added"], summary["ingest"]["failed"], len(summary["shots"])) == (12, [], 2)
    assert summary["first_run"]["failures"] == [] and summary["jobs_left"] == 0
    after_edit = {(item["step"], item["subject"]) for item in summary["plan_after_edit"]["items"]}
    shots = ("shot:R001-000001", "shot:R001-000002")
    assert after_edit == {(step, s) for step in ("apply-metadata", "derive", "publish") for s in shots}
    code, out, _ = run(capsys, "ls", "--catalog", catalog_url, "--json", "--reel", "R001")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 12
    required = {
        "id",
        "uri",
        "captured_at",
        "lat",
        "lon",
        "alt",
        "heading",
        "make",
        "model",
        "width",
        "height",
    }
    assert required | {"reel", "frame", "shot"} <= set(rows[0])
    assert rows[0]["captured_at"].endswith("Z") and rows[0]["make"] == "panopipe"
    code, out, _ = run(
        capsys,
        "ls",
        "--catalog",
        catalog_url,
        "--json",
        "--near",
        f"{rows[0]['lat']},{rows[0]['lon']}",
        "--radius",
        "1",
    )
    assert {r["frame"] for r in json.loads(out)} == {1}


def test_the_demos_next_commands_use_its_catalog_when_the_environment_names_another(
    capsys, tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
):
    """With a team's $PANOPIPE_CATALOG and $PANOPIPE_CONFIG exported, which override the demo folder's
    panopipe.toml, the printed `cd FOLDER && panopipe ls && panopipe status` had shown the team's catalog."""
    Catalog.open(catalog_url).close()
    team_config = tmp_path / "team" / "panopipe.toml"
    team_config.parent.mkdir()
    team_config.write_text(f'[panopipe]\ncatalog = "{catalog_url}"\n', encoding="utf-8")
    monkeypatch.setenv("PANOPIPE_CATALOG", catalog_url)
    monkeypatch.setenv("PANOPIPE_CONFIG", str(team_config))
    folder = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "--folder", str(folder), "--shots", "1")
    assert code == 0
    config = folder / "panopipe.toml"
    given = f"--catalog {folder / 'panopipe.db'} --config {config}"
    assert (
        f"warning: $PANOPIPE_CATALOG and $PANOPIPE_CONFIG set in this shell override {config}: commands run in "
        f"{folder} would use yours, not the demo's, unless given {given}"
    ) in " ".join(err.split())
    (hint,) = [line.removeprefix("next: ") for line in out.splitlines() if line.startswith("next: ")]
    cd, ls, status = (shlex.split(command) for command in hint.split(" && "))
    assert cd == ["cd", str(folder)] and ls[:2] == ["panopipe", "ls"] and status[:2] == ["panopipe", "status"]
    monkeypatch.chdir(folder)
    code, out, _ = run(capsys, *ls[1:], "--json")
    assert code == 0 and len(json.loads(out)) == 6
    assert run(capsys, *status[1:])[0] == 0
    with Catalog.open(catalog_url) as team:
        assert team.count(Selection(include_deleted=True)) == 0


def test_a_demo_catalog_given_as_a_relative_path_is_the_one_its_folder_uses(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """FOLDER/panopipe.toml had named it as given: relative to FOLDER, another file, not found there."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "demo", "--folder", "d", "--shots", "1", "--catalog", "demo.db")
    assert code == 0 and "warning" not in err and "next: cd d && panopipe ls && panopipe status" in out
    monkeypatch.chdir(tmp_path / "d")
    code, out, _ = run(capsys, "ls", "--json")
    assert code == 0 and len(json.loads(out)) == 6
    assert sorted(path.name for path in tmp_path.iterdir()) == ["d", "demo.db"]


def test_edit_dry_run_history_undo(capsys, tmp_path: Path, survey: Path):
    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)
    code, out, _ = run(
        capsys,
        "edit",
        "--catalog",
        db,
        "--reel",
        "R001",
        "--set",
        "alt=12.5",
        "--reason",
        "RTK",
        "--dry-run",
        "--json",
    )
    dry = json.loads(out)  # the edit's own shape, no batch made
    assert (dry["batch"], dry["dry_run"]) == (None, True)
    planned = dry["changes"]
    assert code == 0 and len(planned) == 12 and {p["new"] for p in planned} == {12.5}
    captured_alts = {p["id"]: p["old"] for p in planned}
    assert set(captured_alts.values()) == {
        round(RTK_ALTITUDE_M + GNSS_ALTITUDE_BIAS_M + 0.2 * math.sin(n), 2) for n in (0, 1)
    }
    _, out, _ = run(capsys, "ls", "--catalog", db, "--json")
    assert {r["id"]: r["alt"] for r in json.loads(out)} == captured_alts, "a dry run must not write"
    code, out, _ = run(
        capsys, "edit", "--catalog", db, "--reel", "R001", "--set", "alt=12.5", "--reason", "RTK", "--json"
    )
    batch = json.loads(out)["batch"]
    _, out, _ = run(capsys, "ls", "--catalog", db, "--json")
    assert {r["alt"] for r in json.loads(out)} == {12.5}
    _, out, _ = run(capsys, "history", "--catalog", db, "--json", "--detail")
    assert {(h["batch"], h["reason"], h["new_value"]) for h in json.loads(out)} == {(batch, "RTK", 12.5)}
    assert run(capsys, "undo", batch, "--catalog", db)[0] == 0
    _, out, _ = run(capsys, "ls", "--catalog", db, "--json")
    assert {r["id"]: r["alt"] for r in json.loads(out)} == captured_alts


def test_edit_positions_from_csv_and_shift_time(capsys, tmp_path: Path, survey: Path):
    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)
    positions = tmp_path / "positions.csv"
    positions.write_text("reel,frame,camera_index,lat,lon\nR001,2,0,48.5,11.25\n")
    code, out, err = run(
        capsys, "edit", "--catalog", db, "--positions", str(positions), "--reason", "GNSS", "--json"
    )
    assert code == 0, err
    assert {(c["field"], c["new"]) for c in json.loads(out)["changes"]} == {("lat", 48.5), ("lon", 11.25)}
    # a PPK correction is centimetres: tables and `show` carry it (48.50000012, not 48.5)
    positions.write_text("reel,frame,camera_index,lat\nR001,2,0,48.50000012\n")
    edit = ["edit", "--catalog", db, "--positions", str(positions), "--reason", "PPK"]
    code, out, _ = run(capsys, *edit, "--dry-run")
    assert code == 0 and "48.50000012" in out
    assert run(capsys, *edit)[0] == 0
    image_id = json.loads(run(capsys, "ls", "--catalog", db, "--json", "--sort", "-lat")[1])[0]["id"]
    assert re.search(r"\nlat +48\.50000012 \*edited\n", run(capsys, "show", image_id, "--catalog", db)[1])
    code, out, _ = run(
        capsys,
        "edit",
        "--catalog",
        db,
        "--shot",
        "R001-000001",
        "--shift-time",
        "+2s",
        "--reason",
        "clock",
        "--json",
    )
    assert code == 0 and len(json.loads(out)["changes"]) == 6


def edit_with_positions(capsys, tmp_path: Path, survey: Path, text: str) -> tuple[Path, tuple[int, str, str]]:
    """``edit --positions`` with a file holding ``text`` on a new catalog of ``survey``: the file, and the
    command's exit code, stdout and stderr; an edit that fails records nothing (checked here)."""
    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)
    positions = tmp_path / "positions.csv"
    positions.write_text(text)
    result = run(capsys, "edit", "--catalog", db, "--positions", str(positions), "--reason", "GNSS")
    if result[0] != 0:
        assert run(capsys, "history", "--catalog", db, "--json")[1] == "[]\n"
    return positions, result


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "",
            "the CSV has no rows: a header line (e.g. reel,frame,lat,lon), then a row per frame or image",
        ),
        (
            "reel;frame;camera_index;lat;lon\nR001;2;0;48.5;11.25\n",  # a spreadsheet's export in some locales
            "CSV line 1: no column names the image (id, uri, or reel and frame); found "
            "'reel;frame;camera_index;lat;lon'; separate the columns with commas",
        ),
        (
            "reel,frame,camera_index,lat\nR001,two,0,48.5\n",
            "CSV line 2: invalid value 'two' for frame: expected a whole number",
        ),
        (
            "reel,frame,camera_index,lat\nR001,2,0,north\n",
            "CSV line 2: invalid value 'north' for lat: expected a number",
        ),
        (
            "reel,frame,camera_index,lat\nR001,2,0,48.5\nR001,1,0,48.4\nR001,2,0,48.6\n",
            "CSV line 4: an image of line 2 again; give each image once",
        ),
        (
            "reel,frame,captured_at\nR001,1,0001-01-01T00:00:00+05:00\n",
            "CSV line 2: invalid time '0001-01-01T00:00:00+05:00': in UTC it falls outside the years 1 to 9999",
        ),
    ],
)
def test_a_bad_positions_csv_is_one_line_naming_where(
    capsys, tmp_path: Path, survey: Path, text: str, message: str
):
    _, result = edit_with_positions(capsys, tmp_path, survey, text)
    assert result == (2, "", f"error: {message}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "reel,frame,camera_index,lat\nR001,2,0,48.5\nR001,1,0,48.4,11.2\n",
            "CSV line 3: 5 field(s), but the header line names 4",
        ),
        (
            "reel,frame,camera_index,lat,lon\nR001,2,0,48.5\n",
            "CSV line 2: 4 field(s), but the header line names 5",
        ),
    ],
)
def test_a_positions_row_with_more_or_fewer_fields_than_the_header_is_an_error(
    capsys, tmp_path: Path, survey: Path, text: str, message: str
):
    positions, (code, out, err) = edit_with_positions(capsys, tmp_path, survey, text)
    assert (
        (code, out) == (2, "")
        and err.startswith(f"error: {positions}: {message}")
        and len(err.splitlines()) == 1
    )


def test_a_blank_positions_cell_leaves_the_field_as_it_is_and_names_are_read_as_a_tracks(
    capsys, tmp_path: Path, survey: Path
):
    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)
    positions = tmp_path / "positions.csv"
    positions.write_text(
        "Reel, Frame ,camera_index,LAT,Lon,alt\nR001,2,0,,11.25, \n"
    )  # a header as tracks take
    code, out, err = run(
        capsys, "edit", "--catalog", db, "--positions", str(positions), "--reason", "GNSS", "--json"
    )
    assert code == 0, err
    assert [(c["field"], c["new"]) for c in json.loads(out)["changes"]] == [("lon", 11.25)]


def test_a_positions_file_that_is_missing_or_not_utf8_is_a_usage_error(capsys, tmp_path: Path, survey: Path):
    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)
    spreadsheet = tmp_path / "unicode.csv"  # a spreadsheet's "Unicode text": UTF-16
    spreadsheet.write_bytes("reel,frame,lat\nR001,2,48.5\n".encode("utf-16"))
    edit = ["edit", "--catalog", db, "--reason", "GNSS", "--positions"]
    code, out, err = run(capsys, *edit, str(spreadsheet))
    assert (code, out) == (2, "") and err == (
        f"error: {spreadsheet}: cannot read it as UTF-8 CSV (invalid start byte): save it as 'CSV UTF-8' "
        "(comma delimited)\n"
    )
    for path, problem in ((tmp_path / "missing.csv", "does not exist"), (tmp_path, "is a directory")):
        code, _, err = run(capsys, *edit, str(path))
        assert code == 2 and problem in err and "Traceback" not in err


def test_empty_answers_say_what_makes_them_full(capsys, tmp_path: Path):
    db = str(tmp_path / "c.db")
    assert run(capsys, "db", "upgrade", "--catalog", db)[0] == 0
    # no table of headers alone: one line says what the empty answer means
    assert run(capsys, "status", "--catalog", db) == (
        0,
        "",
        "no jobs yet: `panopipe plan` shows what `panopipe run` would do\n",
    )
    assert run(capsys, "history", "--catalog", db) == (0, "", "no edits: `panopipe edit` makes one\n")
    assert run(capsys, "history", "--catalog", db, "--json") == (0, "[]\n", "")
    assert run(capsys, "verify", "--catalog", db) == (0, "", "0 drifted output(s)\n")
    assert run(capsys, "dispatch", "--dry-run", "--catalog", db) == (
        0,
        "",
        "dry run: 0 job(s) due; nothing submitted\n",
    )


def test_export_csv_and_geojson(capsys, tmp_path: Path, survey: Path):
    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)
    code, out, _ = run(capsys, "export", "--catalog", db, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 12 and float(rows[0]["lat"]) == pytest.approx(48.137154)
    with contextlib.chdir(tmp_path):  # "-" is stdout, as in most tools, not a file named "-"
        assert run(capsys, "export", "--catalog", db, "--format", "csv", "-o", "-") == (
            0,
            out,
            "exported 12 image(s)\n",
        )
        assert not Path("-").exists()
    target = tmp_path / "out.geojson"
    assert run(capsys, "export", "--catalog", db, "--format", "geojson", "-o", str(target))[0] == 0
    collection = json.loads(target.read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 12
    assert collection["features"][0]["geometry"]["coordinates"][:2] == pytest.approx([11.576124, 48.137154])


def test_exit_codes_and_error_lines(capsys, tmp_path: Path):
    db = str(tmp_path / "c.db")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg at all")
    code, out, err = run(capsys, "ingest", str(bad), "--catalog", db, "--json")
    assert code == 1 and json.loads(out)["failed"][0]["reason"].startswith("not a JPEG")
    code, _, err = run(capsys, "show", "00000000", "--catalog", db)
    assert code == 3 and err.startswith("error: no image") and "Traceback" not in err
    code, _, err = run(capsys, "ls", "--catalog", db, "--bbox", "1,2,3")
    assert code == 2 and "MINLON,MINLAT,MAXLON,MAXLAT" in err
    code, _, err = run(capsys, "ls", "--catalog", "postgresql://u:hunter2@127.0.0.1:1/x")
    assert code == 3 and "hunter2" not in err and "u:***@" in err
    assert run(capsys, "ls", "--no-such-option")[0] == 2


def test_db_current_and_upgrade(capsys, tmp_path: Path):
    db = str(tmp_path / "c.db")
    assert run(capsys, "db", "upgrade", "--catalog", db)[0] == 0
    code, out, _ = run(capsys, "db", "current", "--catalog", db, "--json")
    assert code == 0 and json.loads(out)["up_to_date"] is True


def test_every_command_has_an_example():
    from typer.core import TyperGroup
    from typer.main import get_group

    for name, command in get_group(app).commands.items():
        subcommands = command.commands if isinstance(command, TyperGroup) else {name: command}
        for sub_name, sub in subcommands.items():
            assert "Example" in (sub.help or ""), f"`panopipe {name} {sub_name}` has no example in its help"


@pytest.mark.parametrize(
    "environment",
    [{"COLUMNS": "40"}, {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}, {"FORCE_COLOR": "1"}],
)
def test_reference_docs_match_the_help(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]):
    from panopipe.cli.reference import reference

    for name in ("COLUMNS", "NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    documented = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert reference() == documented, (
        "docs/cli.md is stale: run `python -m panopipe.cli.reference > docs/cli.md`"
    )


def test_db_migrate_to_postgresql_then_every_command_works(
    capsys, tmp_path: Path, survey: Path, postgres_url: str
):
    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)
    run(capsys, "edit", "--catalog", db, "--reel", "R001", "--set", "alt=12.5", "--reason", "RTK")
    code, out, _ = run(capsys, "db", "migrate", "--catalog", db, "--to", postgres_url, "--dry-run", "--json")
    assert code == 0 and json.loads(out)["dry_run"] and json.loads(out)["rows_copied"] == 0
    code, out, err = run(capsys, "db", "migrate", "--catalog", db, "--to", postgres_url, "--json")
    assert code == 0, err
    _, source, _ = run(capsys, "ls", "--catalog", db, "--json")
    _, target, _ = run(capsys, "ls", "--catalog", postgres_url, "--json")
    assert json.loads(target) == json.loads(source) and {r["alt"] for r in json.loads(target)} == {12.5}
    # Once finished, the move has nothing to copy: a dry run says so (it had said 'would copy 0 rows
    # (resuming)'), and a run verifies the copy again.
    shown = mask_url(postgres_url)
    code, _, err = run(capsys, "db", "migrate", "--catalog", db, "--to", postgres_url, "--dry-run")
    assert (code, err.splitlines()[-1]) == (
        0,
        f"nothing to copy: {shown} holds as many rows as {db} in every table, a finished move; run without "
        "--dry-run to verify the copy",
    )
    code, out, err = run(capsys, "db", "migrate", "--catalog", db, "--to", postgres_url)
    assert (code, err.splitlines()[-1]) == (
        0,
        f"nothing to copy: {shown} is a complete copy of {db}, verified",
    )
    _, history, _ = run(capsys, "history", "--catalog", postgres_url, "--json", "--detail")
    assert len(json.loads(history)) == 12


def test_a_target_whose_migration_is_unfinished_is_refused_until_db_migrate_finishes_it(
    capsys, tmp_path: Path, survey: Path, postgres_url: str
):
    """A move stopped halfway: its target had been usable by every command (work on part of the catalog), and
    one edit there made the resume impossible ('already holds rows that are not a copy of the source')."""
    from panopipe.catalog.transfer import migrate_catalog

    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)

    def stop(update: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate_catalog(db, postgres_url, batch_size=4, progress=stop)
    for command in (
        ["ls"],
        ["edit", "--reel", "R001", "--set", "alt=1", "--reason", "x"],
        ["db", "current"],
        ["db", "upgrade"],
    ):
        code, _, err = run(capsys, *command, "--catalog", postgres_url)
        assert (code, err.count("\n")) == (3, 1), command
        assert f"is being migrated from {db}: run `panopipe db migrate` again to finish" in err

    code, out, err = run(capsys, "db", "migrate", "--catalog", db, "--to", postgres_url, "--json")
    assert code == 0 and json.loads(out)["resumed"] and json.loads(out)["verified"], err
    _, source, _ = run(capsys, "ls", "--catalog", db, "--json")
    code, target, _ = run(capsys, "ls", "--catalog", postgres_url, "--json")
    assert code == 0 and json.loads(target) == json.loads(source)


def test_db_migrate_into_a_catalog_no_move_is_filling_writes_nothing_and_says_so_in_one_line(
    capsys, tmp_path: Path, survey: Path, postgres_url: str
):
    """A working PostgreSQL catalog of the same survey (other ids): taken for a finished copy by its row counts,
    it had been marked 'being migrated' for good after a traceback, or, with --no-verify, reported copied."""
    plain, edited = str(tmp_path / "plain.db"), str(tmp_path / "edited.db")
    ingest_survey(capsys, plain, survey)
    ingest_survey(capsys, edited, survey)
    run(capsys, "edit", "--catalog", edited, "--reel", "R001", "--set", "alt=12.5", "--reason", "RTK")
    ingest_survey(capsys, postgres_url, survey)
    for db, extra, says in (
        (edited, [], "already holds"),  # its edits: other row counts
        (plain, ["--no-verify"], "run without --no-verify to check that they are a finished copy"),
        (plain, [], "does not match"),  # the same row counts: verified
    ):
        code, _, err = run(capsys, "db", "migrate", "--catalog", db, "--to", postgres_url, *extra)
        assert (code, err.count("\n")) == (3, 1) and says in err, err
    code, out, _ = run(capsys, "ls", "--catalog", postgres_url, "--json")
    assert code == 0 and len(json.loads(out)) == 12
    code, out, _ = run(capsys, "history", "--catalog", postgres_url, "--json")
    assert code == 0 and json.loads(out) == []


def test_show_a_shot_gives_its_panorama_and_frames(capsys, tmp_path: Path, survey: Path):
    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)
    code, out, _ = run(capsys, "show", "R001-000002", "--catalog", db, "--json")
    shown = json.loads(out)
    assert code == 0 and (shown["id"], shown["kind"], shown["frame"], shown["status"]) == (
        "R001-000002",
        "shot",
        2,
        "pending",
    )
    _, out, _ = run(capsys, "ls", "--shot", "R001-000002", "--catalog", db, "--json")
    frames = json.loads(out)
    assert sorted((f["camera_index"], f["id"]) for f in shown["frames"]) == sorted(
        (f["camera_index"], f["id"]) for f in frames
    )
    assert shown["lat"] == pytest.approx(sum(f["lat"] for f in frames) / len(frames))
    code, out, err = run(capsys, "show", "R001-000002", "--catalog", db)
    assert code == 0 and out.startswith("id ") and "frames" in out and err == ""
    # an edit that excludes the shot's frames leaves it nothing to make: said, with its frames still listed
    assert (
        run(
            capsys,
            "edit",
            "--shot",
            "R001-000002",
            "--set",
            "excluded=true",
            "--reason",
            "r",
            "--catalog",
            db,
        )[0]
        == 0
    )
    code, out, err = run(capsys, "show", "R001-000002", "--catalog", db)
    assert code == 0 and out.count("/R001_cam") == 6 and "no panorama is made of this shot" in err


def test_show_a_shot_that_is_not_in_the_catalog_says_so(capsys, tmp_path: Path, survey: Path):
    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)
    assert run(capsys, "show", "R001-000099", "--catalog", db) == (
        3,
        "",
        "error: no shot 'R001-000099' in the catalog: `panopipe ls --reel R001` lists its shots\n",
    )
    assert run(capsys, "show", "R01-000002.2", "--catalog", db) == (
        3,
        "",
        "error: no shot 'R01-000002.2' in the catalog; no reel 'R01' in the catalog (did you mean 'R001'?)\n",
    )
    code, _, err = run(capsys, "show", "R001", "--catalog", db)  # not written as a shot: an image id is asked
    assert code == 3 and err.startswith("error: 'R001' is not an image id: give the full id")
    assert err.endswith(
        "; nor is it a rig shot's id, such as R001-000042 (`panopipe ls --fields id,shot` lists both)\n"
    )


def test_verify_of_a_shot_whose_frames_were_removed_selects_it(capsys, tmp_path: Path, survey: Path):
    """Its outputs are verify's to list (`deleted`): it had warned that no image matched the shot, then listed
    them."""
    db = str(tmp_path / "c.db")
    ingest_survey(capsys, db, survey)
    with Catalog.open(db) as catalog:
        frames = list(catalog.images(Selection(shots=("R001-000001",))))
        catalog.mark_deleted([frame.uri for frame in frames])
    assert run(capsys, "verify", "--catalog", db, "--shot", "R001-000001") == (0, "", "0 drifted output(s)\n")
    code, _, err = run(capsys, "verify", "--catalog", db, "--shot", "R001-000009")
    assert code == 0 and "warning: no image matches the filters: no shot 'R001-000009'" in err
