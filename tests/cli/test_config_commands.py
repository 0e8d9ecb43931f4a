"""The project configuration in the catalog, through the command line, on SQLite and PostgreSQL: push, show
and history; a plan from another folder; a local file that differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.pipeline.captures import add_panoramas

from panopipe.catalog import Catalog
from panopipe.cli import main
from panopipe.errors import ConfigError, NotFoundError
from panopipe.metadata.writer import MetadataUpdate, apply_metadata_file


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write_config(folder: Path, out: Path, thumbnail: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "panopipe.toml"
    path.write_text(
        f'[panopipe]\nproject = "survey"\n\n[steps.pipeline]\noutput = "{out}"\n\n'
        f"[steps.derive]\nthumbnail = {thumbnail}\npreview = 0\n\n[qc]\nduplicate_m = 0.8\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def project(catalog_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A catalog of 3 single 360° images; the current folder holds its config file (thumbnail 64)."""
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path / "captures", 3)
    write_config(tmp_path / "project", tmp_path / "out", 64)
    monkeypatch.chdir(tmp_path / "project")
    return catalog_url, tmp_path


def test_push_show_history(capsys, project):
    url, _ = project
    code, out, err = run(capsys, "config", "history", "-c", url)
    assert code == 0 and "no version pushed" in err
    code, _, err = run(capsys, "config", "show", "-c", url)
    assert code == 0 and "no version in the catalog" in err
    shown = {
        row["key"]: (row["value"], row["origin"])
        for row in json.loads(run(capsys, "config", "show", "-c", url, "--json")[1])
    }
    assert shown["steps.derive.thumbnail"] == (64, "file") and shown["steps.derive.quality"] == (
        85,
        "default",
    )
    assert shown["qc.duplicate_m"] == (0.8, "file") and shown["qc.max_speed_mps"] == (70.0, "default")
    assert json.loads(run(capsys, "config", "history", "-c", url, "--json")[1]) == []

    code, out, err = run(capsys, "config", "push", "-c", url)  # no terminal, no --yes: nothing stored
    assert code == ConfigError.exit_code and "pass --yes" in err and "+ steps.derive.thumbnail = 64" in out
    code, out, _ = run(capsys, "config", "push", "-c", url, "--dry-run")
    assert code == 0 and '+ panopipe.project = "survey"' in out.splitlines()
    assert json.loads(run(capsys, "config", "history", "-c", url, "--json")[1]) == []

    assert run(capsys, "config", "push", "-c", url, "--yes", "--reason", "first calibration")[0] == 0
    code, out, err = run(capsys, "config", "push", "-c", url, "--yes")
    assert code == 0 and "nothing to push" in err and out == ""
    (first,) = json.loads(run(capsys, "config", "history", "-c", url, "--json")[1])
    assert (first["version"], first["reason"]) == (1, "first calibration")
    assert first["content"]["steps"]["derive"] == {"thumbnail": 64, "preview": 0} and first["author"]

    write_config(Path.cwd(), Path(first["content"]["steps"]["pipeline"]["output"]), 128)
    code, out, _ = run(capsys, "config", "push", "-c", url, "--dry-run")
    assert out.splitlines() == ["~ steps.derive.thumbnail: 64 -> 128"]

    code, out, err = run(capsys, "config", "show", "-c", url, "--json")
    shown = {row["key"]: (row["value"], row["origin"]) for row in json.loads(out)}
    assert shown["steps.derive.thumbnail"] == (64, "catalog version 1")  # the catalog's, not the file's 128
    assert shown["steps.derive.quality"] == (85, "default")
    assert shown["panopipe.project"] == ("survey", "catalog version 1")
    assert shown["qc.duplicate_m"] == (0.8, "catalog version 1") and shown["qc.stationary_min_frames"] == (
        5,
        "default",
    )
    assert shown["panopipe.catalog"] == (url, "option")
    (warning,) = [line for line in err.splitlines() if line.startswith("warning:")]
    assert "`panopipe config push`" in warning and "`panopipe config show`" in warning

    assert run(capsys, "config", "push", "-c", url, "--yes", "--reason", "bigger thumbnails")[0] == 0
    code, out, err = run(capsys, "config", "show", "-c", url, "--json", "--version", "1")
    shown = {row["key"]: (row["value"], row["origin"]) for row in json.loads(out)}
    assert shown["steps.derive.thumbnail"] == (64, "catalog version 1") and "warning" not in err
    code, out, _ = run(capsys, "config", "history", "-c", url)
    assert code == 0 and "first calibration" in out and "bigger thumbnails" in out
    code, out, err = run(capsys, "config", "show", "-c", url)
    assert code == 0 and "steps.derive.thumbnail" in out and "catalog version 2, pushed by" in err
    assert "qc.outlier_deviation_m" in out
    code, _, err = run(capsys, "config", "show", "-c", url, "--version", "9")
    assert code == NotFoundError.exit_code and "versions are 1 to 2" in err


def test_a_plan_from_another_folder_uses_the_catalogs_version(capsys, project, monkeypatch):
    url, tmp_path = project
    assert run(capsys, "run", "-c", url, "--executor", "inline")[0] == 0
    assert json.loads(run(capsys, "plan", "-c", url, "--json")[1]) == []
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, _ = run(capsys, "plan", "-c", url, "--json")  # before a push: this folder's (default) config
    assert code == 0 and "parameters changed" in {row["reason"] for row in json.loads(out)}

    monkeypatch.chdir(tmp_path / "project")
    assert run(capsys, "config", "push", "-c", url, "--yes")[0] == 0
    monkeypatch.chdir(elsewhere)
    code, out, err = run(capsys, "plan", "-c", url, "--json")
    assert code == 0 and json.loads(out) == [] and "warning" not in err

    write_config(elsewhere, tmp_path / "out", 256)  # a different local file: reported, never used
    code, out, err = run(capsys, "plan", "-c", url, "--json")
    assert code == 0 and json.loads(out) == []
    (warning,) = [line for line in err.splitlines() if "warning" in line]
    assert "panopipe.toml differs" in warning and "config push" in warning and "config show" in warning


def test_a_push_says_how_many_jobs_are_due_with_it_and_how_to_run_them(capsys, project):
    url, tmp_path = project
    assert run(capsys, "run", "-c", url, "--executor", "inline")[0] == 0
    code, _, err = run(capsys, "config", "push", "-c", url, "--yes")
    assert code == 0 and "no job is due" in err

    write_config(Path.cwd(), tmp_path / "out", 128)
    code, _, err = run(capsys, "config", "push", "-c", url, "--yes")

    assert code == 0 and "6 jobs are due with this version (derive 3, publish 3)" in err
    assert "the dispatcher does not start them" in err and "`panopipe run --executor batch`" in err


def test_push_refuses_a_file_that_does_not_configure_a_pipeline(capsys, project):
    url, _ = project
    (Path.cwd() / "panopipe.toml").write_text("[steps.derive]\nthumbnial = 64\n", encoding="utf-8")
    code, _, err = run(capsys, "config", "push", "-c", url, "--yes")
    assert code == ConfigError.exit_code and "'thumbnial'" in err and "'thumbnail'" in err
    # qc's thresholds too: once pushed, a bad one would stop `qc`, `config show` and exports for everyone
    for table, message in (
        ("bogus = 1", "unknown key in [qc]: 'bogus'"),
        ("max_speed_mps = 0", "expected a number > 0"),
    ):
        (Path.cwd() / "panopipe.toml").write_text(f"[qc]\n{table}\n", encoding="utf-8")
        code, _, err = run(capsys, "config", "push", "-c", url, "--yes")
        assert code == ConfigError.exit_code and message in err, err
    (Path.cwd() / "panopipe.toml").unlink()
    assert json.loads(run(capsys, "config", "history", "-c", url, "--json")[1]) == []
    code, _, err = run(capsys, "config", "push", "-c", url, "--yes")
    assert code == ConfigError.exit_code and "no project config file" in err


def test_quiet_keeps_data_and_errors_and_verbose_adds_debug_lines(capsys, project):
    url, _ = project
    code, out, err = run(capsys, "--quiet", "config", "push", "-c", url, "--yes")
    assert code == 0 and "steps.derive.thumbnail" in out and err == ""
    code, out, err = run(capsys, "-q", "config", "show", "-c", url, "--version", "5")
    assert code == NotFoundError.exit_code and err.startswith("error:")
    code, out, err = run(capsys, "-v", "plan", "-c", url, "--json")
    assert code == 0 and "panopipe.config: project configuration from catalog version 1" in err
    code, out, err = run(capsys, "plan", "-c", url, "--json")
    assert code == 0 and "panopipe.config" not in err


def test_ingest_uses_the_catalogs_ingest_rules(capsys, project, monkeypatch):
    url, tmp_path = project
    with (Path.cwd() / "panopipe.toml").open("a", encoding="utf-8") as config:
        config.write("\n[ingest]\npath_pattern = '(?P<reel>survey)/.*?(?P<frame>\\d+)\\.jpe?g$'\n")
    assert run(capsys, "config", "push", "-c", url, "--yes")[0] == 0
    frame = tmp_path / "survey" / "X1" / "img_000007.jpg"
    frame.parent.mkdir(parents=True)
    # Another frame than the catalog holds: a copy of one would be a duplicate, not added.
    apply_metadata_file(
        tmp_path / "captures" / "P001" / "pano_000000.jpg", frame, update=MetadataUpdate(gps_altitude=7.5)
    )
    monkeypatch.chdir(tmp_path)  # no config file here: the default rules would make the reel X1
    assert run(capsys, "ingest", str(tmp_path / "survey"), "-c", url)[0] == 0
    rows = json.loads(run(capsys, "ls", "-c", url, "--json", "--reel", "survey")[1])
    assert [(row["reel"], row["frame"]) for row in rows] == [("survey", 7)]


def test_show_gives_the_output_that_applies_and_its_origin(capsys, project, monkeypatch):
    url, tmp_path = project
    monkeypatch.chdir(tmp_path / "captures")  # no config file here

    def output() -> tuple[str, str]:
        rows = json.loads(run(capsys, "config", "show", "-c", url, "--json")[1])
        return next((row["value"], row["origin"]) for row in rows if row["key"] == "steps.pipeline.output")

    beside = tmp_path if "://" not in url else tmp_path / "captures"  # SQLite: beside the catalog's file
    assert output() == (str(beside / "panopipe-out"), "default")
    monkeypatch.setenv("PANOPIPE_OUTPUT_PREFIX", "s3://bucket/derived")
    assert output() == ("s3://bucket/derived", "environment")


def test_show_masks_the_catalogs_password_from_the_option_the_environment_and_the_file(
    capsys, postgres_url, tmp_path, monkeypatch
):
    """`config show` is what a user pastes into a ticket: it printed the catalog URL's password in clear."""
    with Catalog.open(postgres_url):
        pass
    with_password = postgres_url.replace("postgres@", "postgres:s3cretpw@", 1)
    in_query = f"{postgres_url}&password=s3cretpw"
    monkeypatch.chdir(tmp_path)

    def shown(*args: str) -> tuple[str, str]:
        code, out, err = run(capsys, "config", "show", *args)
        assert code == 0 and "s3cretpw" not in out + err
        table = run(capsys, "config", "show", *args)[1]
        assert "s3cretpw" not in table and "***" in table
        return next((r["value"], r["origin"]) for r in json.loads(out) if r["key"] == "panopipe.catalog")

    masked = postgres_url.replace("postgres@", "postgres:***@", 1)
    assert shown("-c", with_password, "--json") == (masked, "option")
    monkeypatch.setenv("PANOPIPE_CATALOG", in_query)
    assert shown("--json") == (f"{postgres_url}&password=***", "environment")
    monkeypatch.delenv("PANOPIPE_CATALOG")
    (tmp_path / "panopipe.toml").write_text(f'[panopipe]\ncatalog = "{with_password}"\n', encoding="utf-8")
    assert shown("--json") == (masked, "file")


def test_a_number_written_another_way_is_no_difference(capsys, project):
    """`duplicate_m = 1` in the file after `1.0` was pushed: push found nothing to push, while every command
    warned that the file differs from the catalog's version, a warning nothing could clear."""
    url, _ = project
    path = Path.cwd() / "panopipe.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("duplicate_m = 0.8", "duplicate_m = 1.0"))
    assert run(capsys, "config", "push", "-c", url, "--yes")[0] == 0
    path.write_text(path.read_text(encoding="utf-8").replace("duplicate_m = 1.0", "duplicate_m = 1"))

    code, _, err = run(capsys, "plan", "-c", url)
    assert code == 0 and "differs" not in err
    code, _, err = run(capsys, "config", "push", "-c", url, "--yes")
    assert code == 0 and "nothing to push" in err


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(capsys, tmp_path, monkeypatch):
    config = tmp_path / "project" / "panopipe.toml"
    config.parent.mkdir()
    config.write_text(
        '[panopipe]\ncatalog = "cat.db"\noutput_prefix = "../prefix"\n\n[steps.pipeline]\noutput = "out"\n\n'
        '[steps.publish]\nroot = "s3://bucket/published"\n\n[steps.nadir]\nlogo = "assets/logo.png"\n',
        encoding="utf-8",
    )
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "captures").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")

    assert run(capsys, "ingest", str(tmp_path / "captures"), "--config", str(config))[0] == 0
    code, out, _ = run(capsys, "config", "show", "--config", str(config), "--json")

    assert code == 0 and (config.parent / "cat.db").is_file() and not any((tmp_path / "elsewhere").iterdir())
    shown = {row["key"]: row["value"] for row in json.loads(out)}
    assert shown["panopipe.catalog"] == str(config.parent / "cat.db")
    assert shown["panopipe.output_prefix"] == str(tmp_path / "prefix")
    assert shown["steps.pipeline.output"] == str(config.parent / "out")
    assert shown["steps.nadir.logo"] == str(config.parent / "assets" / "logo.png")
    assert shown["steps.publish.root"] == "s3://bucket/published"
    # an option or the environment is relative to the current folder
    assert run(capsys, "ingest", str(tmp_path / "captures"), "--config", str(config), "-c", "here.db")[0] == 0
    assert (tmp_path / "elsewhere" / "here.db").is_file()


@pytest.mark.parametrize(
    ("table", "typo"),
    [("steps.derive", "thumbnial = 5"), ("steps.derivee", "thumbnail = 5"), ("qc", "max_sped = 1")],
)
def test_every_command_refuses_an_unknown_key_of_the_config_file(capsys, project, table, typo):
    url, tmp_path = project
    config = tmp_path / "project" / "panopipe.toml"
    text = config.read_text()
    header = f"[{table}]\n"
    text = text.replace(header, header + typo + "\n") if header in text else f"{text}\n{header}{typo}\n"
    config.write_text(text, encoding="utf-8")
    name = typo.partition(" ")[0] if table != "steps.derivee" else "[steps.derivee]"

    for command in (["config", "show"], ["ls"], ["qc", "--dry-run"], ["plan"], ["export"]):
        code, out, err = run(capsys, *command, "-c", url)
        assert (code, out) == (2, ""), command
        assert err.startswith("error: panopipe.toml: unknown ") and name in err and len(err.splitlines()) == 1


def test_a_rigs_cameras_are_shown_one_by_one(capsys, project):
    """A list of cameras given as lists and tables had been one cell, ``0, 0, 0, 90, 0, 0, {'pitch_deg': 90}``:
    each is now a key of its own, as a list of tables alone was."""
    url, _ = project
    with Path("panopipe.toml").open("a", encoding="utf-8") as config:
        config.write(
            '\n[steps.stitch.rig]\nname = "r"\nversion = 1\ndefaults = { hfov_deg = 110, width = 640, '
            "height = 480 }\ncameras = [[0, 0, 0], [90, 0, 0], { pitch_deg = 90, hfov_deg = 180 }]\n"
        )
    code, out, _ = run(capsys, "config", "show", "-c", url, "--json")
    shown = {row["key"]: row["value"] for row in json.loads(out)}
    assert code == 0 and "steps.stitch.rig.cameras" not in shown
    assert shown["steps.stitch.rig.cameras[0]"] == [0, 0, 0] and shown["steps.stitch.rig.cameras[1]"] == [
        90,
        0,
        0,
    ]
    assert (
        shown["steps.stitch.rig.cameras[2].pitch_deg"],
        shown["steps.stitch.rig.cameras[2].hfov_deg"],
    ) == (90, 180)
    code, out, _ = run(capsys, "config", "show", "-c", url)
    cameras = [line for line in out.splitlines() if "rig.cameras" in line]
    assert code == 0 and len(cameras) == 4 and not any("{" in line for line in cameras), cameras
