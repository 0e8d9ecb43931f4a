"""``export --of panoramas`` and ``export --format oid`` after a real pipeline run, read back by GDAL's ogrinfo
(geometry, CRS, field types) and checked against the published files; Esri's conventions with worked values."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from tests.conftest import require
from tests.pipeline.captures import add_panoramas, record

from panopipe.catalog import Catalog
from panopipe.cli import main
from panopipe.demo import generate_survey
from panopipe.export import IMAGE_COLUMNS, OID_COLUMNS, PANORAMA_COLUMNS, esri_heading, esri_pitch
from panopipe.export.oid import esri_time, oid_row
from panopipe.export.panoramas import Panorama
from panopipe.export.table import Column
from panopipe.metadata import parse_jpeg_header

GDAL_TYPES = {
    "text": "String",
    "integer": "Integer64",
    "real": "Real",
    "boolean": "Integer(Boolean)",
    "datetime": "DateTime",
}

ESRI_FIELDS = (
    "Name",
    "ImagePath",
    "X",
    "Y",
    "Z",
    "SRS",
    "AcquisitionDate",
    "CameraHeading",
    "CameraPitch",
    "CameraRoll",
    "CameraHeight",
    "HorizontalFieldOfView",
    "VerticalFieldOfView",
    "NearDistance",
    "FarDistance",
    "OrientedImageryType",
)
"""The Oriented Imagery table fields panopipe fills, as Esri's "Oriented imagery table" page names them
(https://pro.arcgis.com/en/pro-app/latest/help/data/imagery/oriented-imagery-table.htm)."""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ogrinfo(path: Path) -> tuple[str, dict[str, str]]:
    """``ogrinfo -so -al`` of ``path``: its whole summary and the type of each field."""
    require(shutil.which("ogrinfo") is not None, "ogrinfo (apt-get install gdal-bin)")
    summary = subprocess.run(
        ["ogrinfo", "-so", "-al", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return summary, dict(re.findall(r"^(\w+): (\w+(?:\(\w+\))?) \(", summary, re.MULTILINE))


def assert_points_in_wgs84(summary: str) -> None:
    assert "Geometry: Point" in summary
    assert 'ID["EPSG",4326]' in summary


def declared(columns: tuple[Column, ...]) -> dict[str, str]:
    return {column.name: GDAL_TYPES[column.type] for column in columns}


@pytest.fixture
def surveyed(capsys, tmp_path: Path, catalog_url: str) -> tuple[tuple[str, ...], Path]:
    """The demo survey (2 rig shots) and one 360° image run through the pipeline, the image's pitch and roll
    edited afterwards, and one more 360° image added but not run; the ``--catalog``/``--config`` arguments
    and the config file."""
    code, _, err = run(
        capsys, "demo", "--folder", str(tmp_path / "d"), "--shots", "2", "--catalog", catalog_url
    )
    assert code == 0, err
    config = tmp_path / "d" / "panopipe.toml"
    common = ("--catalog", catalog_url, "--config", str(config))
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path / "captures", 1)
    assert run(capsys, "run", *common)[0] == 0
    edit = ("edit", *common, "--reel", "P001", "--set", "pitch=-10", "--set", "roll=1.2", "--reason", "level")
    assert run(capsys, *edit)[0] == 0
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path / "later", 1)
    return common, config


def test_panoramas_export_in_every_format(capsys, tmp_path: Path, surveyed):
    common, _ = surveyed
    target = tmp_path / "panoramas.csv"

    code, _, err = run(capsys, "export", *common, "--of", "panoramas", "-o", str(target))

    assert (
        code == 0
        and err.strip()
        == f"exported 4 panorama(s) to {target}, {target.with_suffix('.csvt')}, {target.with_suffix('.prj')}"
    )
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert sorted((r["kind"], r["reel"], r["status"]) for r in rows) == [
        ("image", "P001", "outdated"),  # published, then edited: its files hold the values of before
        ("image", "P001", "pending"),
        ("shot", "R001", "published"),
        ("shot", "R001", "published"),
    ]
    for row in rows:
        if row["status"] != "published":
            continue
        assert row["image_uri"] == row["published_uri"]
        for name in ("published_uri", "thumbnail_uri", "preview_uri"):
            assert Path(row[name]).is_file(), name
        written = parse_jpeg_header(Path(row["published_uri"]).read_bytes())
        assert (float(row["lat"]), float(row["lon"])) == pytest.approx(
            (written.gps_latitude, written.gps_longitude), abs=1e-7
        )
        assert float(row["altitude_msl_m"]) == pytest.approx(written.gps_altitude, abs=1e-3)
    by_status = {(row["kind"], row["status"]): row for row in rows}
    pending = by_status["image", "pending"]
    assert pending["published_uri"] == "" and Path(pending["image_uri"]).parent.parent.name == "later"
    edited, shot = by_status["image", "outdated"], by_status["shot", "published"]
    assert (edited["pitch"], edited["roll"], shot["pitch"], shot["roll"]) == ("-10.0", "1.2", "", "")

    summary, types = ogrinfo(target)
    assert_points_in_wgs84(summary)
    assert "Feature Count: 4" in summary
    assert types == declared(PANORAMA_COLUMNS)

    gpkg = tmp_path / "panoramas.gpkg"
    assert run(capsys, "export", *common, "--of", "panoramas", "--format", "gpkg", "-o", str(gpkg))[0] == 0
    summary, types = ogrinfo(gpkg)
    assert_points_in_wgs84(summary)
    assert "Feature Count: 4" in summary
    assert "Layer name: panoramas" in summary
    assert types == declared(PANORAMA_COLUMNS)  # pitch and roll are Real though the shots have none

    geojson = tmp_path / "panoramas.geojson"
    assert (
        run(capsys, "export", *common, "--of", "panoramas", "--format", "geojson", "-o", str(geojson))[0] == 0
    )
    summary, types = ogrinfo(geojson)
    assert_points_in_wgs84(summary)
    assert "Feature Count: 4" in summary
    # GeoJSON has no schema: GDAL types each property from its values (small integers as Integer).
    assert types == declared(PANORAMA_COLUMNS) | {"frame": "Integer"}
    properties = json.loads(geojson.read_text())["features"][0]["properties"]
    assert properties["captured_at"].endswith("Z") and "alt" not in properties

    Path(shot["thumbnail_uri"]).unlink()  # the published thumbnail drifts: its publish job is marked stale
    assert run(capsys, "verify", *common, "--repair")[0] == 6
    code, out, _ = run(capsys, "export", *common, "--of", "panoramas", "--shot", shot["id"])
    assert code == 0 and [row["status"] for row in csv.DictReader(out.splitlines())] == ["stale"]


def test_oid_table_for_arcgis(capsys, tmp_path: Path, surveyed):
    common, config = surveyed
    target = tmp_path / "oid.csv"
    base = "https://cdn.example.com/survey/"

    code, _, err = run(capsys, "export", *common, "--format", "oid", "--base-url", base, "-o", str(target))

    # the image not yet published has no URL: a web client cannot fetch a local file, so ArcGIS gets no row
    warning, exported = err.strip().splitlines()
    assert warning.startswith("warning: --base-url: 1 file(s) outside the publish root")
    assert (
        code == 0
        and exported.startswith("exported 3 panorama(s) to ")
        and exported.endswith("1 left out (no position or image yet)")
    )
    rows = {row["PanopipeId"]: row for row in csv.DictReader(target.open(encoding="utf-8"))}
    assert tuple(next(iter(rows.values())))[: len(ESRI_FIELDS)] == ESRI_FIELDS
    assert [c.name for c in OID_COLUMNS] == [*ESRI_FIELDS, "Reel", "Frame", "PanopipeId"]
    mount = tomllib.loads(config.read_text())["steps"]["stitch"]["rig"]["mount_height_m"]
    publish_root = Path(tomllib.loads(config.read_text())["steps"]["pipeline"]["output"]) / "publish"
    listed = stdout_lines(capsys, "export", *common, "--of", "panoramas")
    panoramas = {row["id"]: row for row in csv.DictReader(listed)}
    for key, row in rows.items():
        panorama = panoramas[key]
        assert (row["X"], row["Y"], row["Z"]) == (
            panorama["lon"],
            panorama["lat"],
            panorama["altitude_msl_m"],
        )
        assert row["SRS"] == "4326;5773" and row["OrientedImageryType"] == "360"
        # a shot's position is the mean of its frames': without float noise (11.576185099999998) in the table
        assert all(len(row[axis].partition(".")[2]) <= 9 for axis in ("X", "Y")), row
        assert (row["HorizontalFieldOfView"], row["VerticalFieldOfView"]) == ("360.0", "180.0")
        assert row["Reel"] == panorama["reel"] and row["Frame"] == panorama["frame"]
        captured = datetime.fromisoformat(panorama["captured_at"])
        assert datetime.fromisoformat(row["AcquisitionDate"]).replace(tzinfo=UTC) == captured
        relative = Path(panorama["published_uri"]).relative_to(publish_root).as_posix()
        assert row["ImagePath"] == base + relative
        assert row["Name"] == Path(relative).stem
        if panorama["kind"] == "shot":
            assert (row["CameraHeight"], row["CameraPitch"], row["CameraRoll"]) == (
                str(float(mount)),
                "90.0",
                "0.0",
            )
            assert row["CameraHeading"] == panorama["heading"]
    edited = next(row for row in rows.values() if row["CameraRoll"] == "1.2")
    assert (edited["CameraPitch"], edited["CameraHeight"]) == ("80.0", "")  # 10° below the horizon

    summary, types = ogrinfo(target)
    assert_points_in_wgs84(summary)
    assert "Feature Count: 3" in summary
    assert types == declared(OID_COLUMNS)

    code, _, _ = run(
        capsys, "export", *common, "--format", "oid", "--camera-height", "1.8", "-o", str(target)
    )
    assert code == 0
    assert {row["CameraHeight"] for row in csv.DictReader(target.open(encoding="utf-8"))} == {"1.8"}

    unrigged = tmp_path / "unrigged.toml"  # no [steps.stitch] rig: no mount height is assumed
    unrigged.write_text(f'[steps.pipeline]\noutput = "{publish_root.parent}"\n', encoding="utf-8")
    code, out, _ = run(capsys, "export", "--catalog", common[1], "--config", str(unrigged), "--format", "oid")
    assert code == 0 and {row["CameraHeight"] for row in csv.DictReader(out.splitlines())} == {""}

    # once pushed, the catalog's rig applies wherever the export runs, a local file without one included
    assert run(capsys, "config", "push", *common, "--yes", "--reason", "the rig")[0] == 0
    code, out, _ = run(capsys, "export", "--catalog", common[1], "--config", str(unrigged), "--format", "oid")
    heights = {row["CameraHeight"] for row in csv.DictReader(out.splitlines()) if row["Reel"] != "P001"}
    assert code == 0 and heights == {str(float(mount))}


def stdout_lines(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    """The lines ``panopipe args`` prints on stdout (it must succeed)."""
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return out.splitlines()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "gpkg"], "error: --format gpkg writes a file: give --output FILE.gpkg"),
        (["--format", "oid", "--of", "images"], "error: --format oid lists panoramas"),
        (["--of", "imgs"], "error: unknown --of 'imgs'; did you mean 'images'?"),
        (["--format", "xlsx"], "error: unknown --format 'xlsx'"),
        (["--of", "panoramas", "--base-url", "ftp://host/x"], "error: --base-url must be an http(s) URL"),
        (
            ["--format", "oid", "--base-url", "https://host/x?sig=1"],
            "error: --base-url 'https://host/x?sig=1' has a query",
        ),
        (
            ["--of", "panoramas", "--base-url", "https://host/x#top"],
            "error: --base-url 'https://host/x#top' has a query",
        ),
        (["--base-url", "https://host/x"], "error: --base-url names published files"),
        (["--camera-height", "2"], "error: --camera-height is a field of the Oriented Imagery table"),
    ],
)
def test_options_that_do_not_go_together(capsys, tmp_path: Path, args: list[str], message: str):
    Catalog.open(tmp_path / "c.db").close()
    code, out, err = run(capsys, "export", "--catalog", str(tmp_path / "c.db"), *args)
    assert (code, out) == (2, "") and err.startswith(message) and len(err.strip().splitlines()) == 1


def test_the_format_is_the_one_the_file_name_says(capsys, tmp_path: Path):
    """An output file's extension names its format; one it does not name, or one that names another format
    than --format, is a mistake said in one line, and no file is written."""
    Catalog.open(tmp_path / "c.db").close()
    mistakes = [
        (
            ["-o", "images.txt"],
            "error: cannot tell the format of 'images.txt' from its extension: name the file",
        ),
        (
            ["--format", "csv", "-o", "images.geojson"],
            "error: 'images.geojson' names a geojson file, not csv: use",
        ),
        (
            ["--format", "oid", "-o", "oid.gpkg"],
            "error: 'oid.gpkg' names a gpkg file, not oid: use --format gpkg, ",
        ),
    ]
    with contextlib.chdir(tmp_path):
        for args, message in mistakes:
            code, out, err = run(capsys, "export", "--catalog", "c.db", *args)
            assert (code, out) == (2, "") and err.startswith(message) and len(err.splitlines()) == 1, err
        assert sorted(path.name for path in tmp_path.iterdir()) == ["c.db"]
        assert run(capsys, "export", "--catalog", "c.db", "--format", "csv", "-o", "images.txt")[0] == 0
        assert Path("images.txt").read_text().startswith("id,")
        assert run(capsys, "export", "--catalog", "c.db", "--format", "oid", "-o", "OID.CSV")[0] == 0


def test_gpkg_without_the_gis_extra_says_how_to_install_it(capsys, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyogrio", None)  # as if the gis extra were not installed
    target = tmp_path / "images.gpkg"
    Catalog.open(tmp_path / "c.db").close()
    code, _, err = run(capsys, "export", "--catalog", str(tmp_path / "c.db"), "-o", str(target))
    assert (
        code == 2 and err.strip() == "error: writing a GeoPackage needs pyogrio: pip install 'panopipe[gis]'"
    )
    assert not target.exists()


@pytest.mark.parametrize(
    "pitch, camera_pitch",
    [(None, 90.0), (0.0, 90.0), (-10.0, 80.0), (-90.0, 0.0), (90.0, 180.0), (12.5, 102.5)],
)
def test_esri_pitch_is_90_at_the_horizon(pitch: float | None, camera_pitch: float):
    assert esri_pitch(pitch) == camera_pitch


@pytest.mark.parametrize(
    "heading, camera_heading", [(None, None), (0.0, 0.0), (65.0, 65.0), (-90.0, 270.0), (370.0, 10.0)]
)
def test_esri_heading_is_clockwise_from_north_in_0_to_360(
    heading: float | None, camera_heading: float | None
):
    assert esri_heading(heading) == camera_heading


def test_acquisition_date_is_utc():
    local = datetime(2024, 5, 1, 10, 0, 0, 50_000, tzinfo=timezone(timedelta(hours=2)))
    assert esri_time(local) == "2024-05-01 08:00:00.050"


def test_images_export_opens_in_gdal_with_its_declared_types(capsys, tmp_path: Path, catalog_url: str):
    survey = generate_survey(tmp_path / "survey", shots=1, camera_size=(160, 120))
    assert run(capsys, "ingest", str(survey.folder / survey.reel), "--catalog", catalog_url)[0] == 0
    for name, fmt in (("images.csv", "csv"), ("images.gpkg", "gpkg"), ("images.geojson", "geojson")):
        target = tmp_path / name
        code, _, err = run(capsys, "export", "--catalog", catalog_url, "--format", fmt, "-o", str(target))
        assert code == 0 and err.startswith("exported 6 image(s) to "), err
        summary, types = ogrinfo(target)
        assert_points_in_wgs84(summary)
        assert "Feature Count: 6" in summary
        if fmt == "geojson":  # no schema: GDAL types a property by its values, one that has none as String
            never_set = dict.fromkeys(("pitch", "roll", "projection", "measure", "route_offset_m"), "String")
            small = dict.fromkeys(
                ("utc_offset_minutes", "camera_index", "width", "height", "frame"), "Integer"
            )
            assert types == declared(IMAGE_COLUMNS) | never_set | small
        else:
            assert types == declared(IMAGE_COLUMNS)
    # exported again over the files, the format told by the extension alone: each replaced whole, in its own
    # format, nothing temporary left beside them
    for name, driver in (("images.csv", "CSV"), ("images.gpkg", "GPKG"), ("images.geojson", "GeoJSON")):
        code, _, err = run(capsys, "export", "--catalog", catalog_url, "-o", str(tmp_path / name))
        summary = ogrinfo(tmp_path / name)[0]
        assert code == 0 and "Feature Count: 6" in summary and f"using driver `{driver}'" in summary, err
    written = {"images.csv", "images.csvt", "images.prj", "images.gpkg", "images.geojson"}
    assert {path.name for path in tmp_path.iterdir() if path.name.startswith(("images", "."))} == written


def test_docs_list_every_column_with_its_type():
    text = (Path(__file__).parents[1] / "docs" / "exports.md").read_text(encoding="utf-8")
    missing = [
        c.name
        for c in (*IMAGE_COLUMNS, *PANORAMA_COLUMNS, *OID_COLUMNS)
        if f"| `{c.name}` | {c.type} |" not in text
    ]
    assert missing == []


def test_a_panorama_whose_job_failed_says_so(capsys, tmp_path: Path, catalog_url: str):
    config = tmp_path / "panopipe.toml"
    config.write_text(
        f'[steps.pipeline]\noutput = "{tmp_path / "out"}"\nbackoff_s = 0.01\n', encoding="utf-8"
    )
    with Catalog.open(catalog_url) as catalog:
        broken = record(
            tmp_path / "P001" / "pano_000007.jpg", b"\xff\xd8 cut short", 7, projection="equirectangular"
        )
        catalog.upsert_images([broken])
    common = ("--catalog", catalog_url, "--config", str(config))
    assert run(capsys, "run", *common)[0] != 0

    code, out, _ = run(capsys, "export", *common, "--of", "panoramas")

    (row,) = csv.DictReader(out.splitlines())
    assert code == 0 and (row["status"], row["published_uri"], row["image_uri"]) == ("failed", "", broken.uri)


def test_a_panorama_covered_but_not_yet_tagged_points_at_its_covered_image(
    capsys, tmp_path: Path, catalog_url: str
):
    config = tmp_path / "panopipe.toml"
    config.write_text(
        f'[steps.pipeline]\noutput = "{tmp_path / "out"}"\n\n[steps.nadir]\nenabled = true\n',
        encoding="utf-8",
    )
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path, 1)
    common = ("--catalog", catalog_url, "--config", str(config))
    assert run(capsys, "run", *common, "--steps", "nadir")[0] == 0

    code, out, _ = run(capsys, "export", *common, "--of", "panoramas")

    (row,) = csv.DictReader(out.splitlines())
    assert code == 0 and row["status"] == "processed"
    assert Path(row["image_uri"]).is_relative_to(tmp_path / "out" / "nadir")


def test_an_oid_name_is_the_published_name_not_its_url_encoding():
    url = "https://cdn.example.com/survey/demo/Stra%C3%9Fe/demo_Stra%C3%9Fe_000009.jpg"
    panorama = Panorama(
        *("shot:x", "shot", "Straße", 9, "x", datetime(2024, 5, 1, tzinfo=UTC), 48.1, 11.5, 520.0, 1.5),
        *(90.0, None, None, url, url, None, None, "ok"),
    )
    row = oid_row(panorama, None)
    assert (row["Name"], row["ImagePath"]) == ("demo_Straße_000009", url)
    local = oid_row(replace(panorama, image_uri="/data/demo/R1/100%25_000009.jpg"), None)  # a file's own name
    assert local["Name"] == "100%25_000009"


def test_a_shot_across_the_antimeridian_is_placed_there_not_at_longitude_0(capsys, tmp_path: Path, surveyed):
    common, _ = surveyed
    # the frames of shot R001-000002, 2 cm apart either side of 180° (Fiji)
    rows = "".join(
        f"R001,2,{camera},-17.7,{179.99999 if camera % 2 else -179.99999}\n" for camera in range(6)
    )
    (tmp_path / "fiji.csv").write_text("reel,frame,camera_index,lat,lon\n" + rows, encoding="utf-8")
    assert run(capsys, "edit", *common, "--positions", str(tmp_path / "fiji.csv"), "--reason", "Fiji")[0] == 0

    code, out, _ = run(capsys, "export", *common, "--of", "panoramas", "--shot", "R001-000002")

    (row,) = csv.DictReader(out.splitlines())
    assert code == 0 and abs(float(row["lon"])) == pytest.approx(180.0) and float(row["lat"]) == -17.7


@pytest.mark.exiftool
def test_a_step_turned_off_hands_out_none_of_what_it_made_before(capsys, tmp_path: Path, catalog_url: str):
    # derive's thumbnail and preview stay on disk once derive is turned off, without the edits made since
    config = tmp_path / "panopipe.toml"
    config.write_text(f'[steps.pipeline]\noutput = "{tmp_path / "out"}"\n', encoding="utf-8")
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path, 1)
    common = ("--catalog", catalog_url, "--config", str(config))
    assert run(capsys, "run", *common)[0] == 0
    config.write_text(f"{config.read_text()}\n[steps.derive]\nenabled = false\n", encoding="utf-8")
    edit = ("edit", *common, "--reel", "P001", "--set", "pitch=-10", "--reason", "level")
    assert run(capsys, *edit)[0] == 0
    assert run(capsys, "run", *common)[0] == 0

    code, out, _ = run(capsys, "export", *common, "--of", "panoramas")

    (row,) = csv.DictReader(out.splitlines())
    (old_thumbnail,) = (tmp_path / "out" / "derive").rglob("thumbnail-*.jpg")
    pitch = "XMP-GPano:PosePitchDegrees"
    assert exiftool(Path(row["image_uri"])).get(pitch) == -10
    assert exiftool(old_thumbnail).get(pitch) != -10, "what the export must not hand out is stale"
    assert code == 0 and (row["status"], row["thumbnail_uri"], row["preview_uri"]) == ("published", "", "")


def exiftool(path: Path) -> dict[str, object]:
    result = subprocess.run(["exiftool", "-j", "-n", "-G1", str(path)], check=True, capture_output=True)
    tags: dict[str, object] = json.loads(result.stdout)[0]
    return tags
