"""`panopipe edit --track`: images placed on a GNSS track by their capture times, with exiftool's own
``-geotag`` as the oracle for the interpolation, on both catalog backends."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.cli import main
from panopipe.config import load_settings
from panopipe.demo import generate_survey, write_project_config
from panopipe.errors import ConfigError
from panopipe.geotag import (
    MAX_SHIFT_S,
    Track,
    camera_yaws,
    parse_time_shift,
    read_track,
    track_edit,
    values_at,
)

START = datetime(2024, 5, 1, 8, 29, 59, tzinfo=UTC)
"""The demo survey's first shot is at 08:30:00 UTC, one a second, each camera 2 ms after the one before."""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def gpx(points: list[tuple[datetime, float, float, float]], version: str = "1.1") -> str:
    namespace = f"http://www.topografix.com/GPX/{version.replace('.', '/')}"
    body = "".join(
        f'<trkpt lat="{lat:.9f}" lon="{lon:.9f}"><ele>{ele:.3f}</ele>'
        f"<time>{moment.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}</time></trkpt>"
        for moment, lat, lon, ele in points
    )
    return f'<?xml version="1.0"?><gpx version="{version}" creator="t" xmlns="{namespace}"><trk><trkseg>{body}</trkseg></trk></gpx>'


def curve(seconds: float) -> tuple[float, float, float]:
    """A bending track: positions and heights that a straight line between far points would get wrong."""
    k = seconds * 2
    return 48.1 + 1e-5 * k + 3e-7 * k * k, 11.5 + 2e-5 * k - 1e-7 * k * k, 500 + 0.3 * k + 0.05 * k * k


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 shots of the demo's 6-camera rig (18 frames), 08:30:00 to 08:30:02.010 UTC."""
    folder = tmp_path_factory.mktemp("survey")
    generate_survey(folder, shots=3, camera_size=(160, 120))
    return folder / "R001"


@pytest.mark.exiftool
def test_positions_are_exiftools_geotag_of_the_same_files_and_track(
    capsys, tmp_path: Path, catalog_url: str, survey: Path
):
    # points every 0.5 s from 08:29:59 to 08:30:01.5: the third shot (08:30:02) is after the track's end
    points = [(START + timedelta(seconds=s / 2), *curve(s / 2)) for s in range(6)]
    track = tmp_path / "ppk.gpx"
    track.write_text(gpx(points))
    assert run(capsys, "ingest", str(survey), "--catalog", catalog_url)[0] == 0
    edit = [
        "edit",
        "--reel",
        "R001",
        "--track",
        str(track),
        "--reason",
        "PPK",
        "--json",
        "--catalog",
        catalog_url,
    ]
    code, out, _ = run(capsys, *edit, "--dry-run")  # what a script checks before it edits
    dry = json.loads(out)
    code, out, err = run(capsys, *edit)
    assert code == 0, err
    not_placed = json.loads(out)["not_placed"]
    assert dry == json.loads(out) | {"batch": None, "dry_run": True}
    assert len(not_placed) == 6 and {item["reason"] for item in not_placed} == {
        "after the track ends (2024-05-01T08:30:01.500000Z)"
    }
    assert "6 of 18 image(s) not placed on the track, left where they are: 6 after the track ends" in err

    copies = tmp_path / "copies"
    shutil.copytree(survey, copies)
    # what a user of exiftool runs: the capture time with its sub-seconds and UTC offset from the file
    geotag = ["-geotag", str(track), "-geotime<SubSecDateTimeOriginal"]
    subprocess.run(["exiftool", "-q", "-r", "-overwrite_original", *geotag, str(copies)], check=True)
    tags = ["-GPSLatitude", "-GPSLongitude", "-GPSAltitude", "-GPSLatitudeRef"]
    read = subprocess.run(["exiftool", "-n", "-j", "-r", *tags, str(copies)], capture_output=True, check=True)
    oracle = {Path(row["SourceFile"]).name: row for row in json.loads(read.stdout)}
    with Catalog.open(catalog_url) as catalog:
        left_out = {item["id"] for item in not_placed}
        checked = 0
        for image in catalog.images():
            expected = oracle[Path(image.uri).name]
            if image.id in left_out:
                assert image.captured_at > START + timedelta(seconds=2.5) and image.edited_fields == ()
                continue
            assert image.lat == pytest.approx(expected["GPSLatitude"], abs=1e-9)
            assert image.lon == pytest.approx(expected["GPSLongitude"], abs=1e-9)
            assert image.alt == pytest.approx(expected["GPSAltitude"], abs=1e-4)
            checked += 1
    assert checked == 12


def exiftool_positions(files: Path, track: Path) -> dict[str, dict[str, float]]:
    """What ``exiftool -geotag`` writes into copies of the images in ``files``: position tags by file name."""
    copies = files.parent / f"{files.name}-geotagged"
    shutil.copytree(files, copies)
    geotag = ["-geotag", str(track), "-geotime<SubSecDateTimeOriginal"]
    subprocess.run(["exiftool", "-q", "-r", "-overwrite_original", *geotag, str(copies)], check=True)
    tags = ["-GPSLatitude", "-GPSLongitude", "-GPSAltitude"]
    read = subprocess.run(["exiftool", "-n", "-j", "-r", *tags, str(copies)], capture_output=True, check=True)
    return {Path(row["SourceFile"]).name: row for row in json.loads(read.stdout)}


@pytest.mark.exiftool
def test_a_track_across_the_antimeridian_is_followed_the_short_way_as_exiftool_does(
    capsys, tmp_path: Path, survey: Path
):
    """The second shot's cameras fire 08:30:01.000 to .010; the track crosses 180 degrees at about .005."""
    db = str(tmp_path / "c.db")
    lons = [179.9997, 179.9999, -179.999902, -179.9997]
    points = [(START + timedelta(seconds=s + 0.5), -17.0 + s * 1e-5, lon, 10.0) for s, lon in enumerate(lons)]
    track = tmp_path / "ship.gpx"
    track.write_text(gpx(points))
    shutil.copytree(survey, tmp_path / "R001")
    assert run(capsys, "ingest", str(tmp_path / "R001"), "--catalog", db)[0] == 0
    edit = ["edit", "--all", "--track", str(track), "--reason", "ship", "--catalog", db]
    assert run(capsys, *edit)[0] == 0

    oracle = exiftool_positions(tmp_path / "R001", track)
    with Catalog.open(db) as catalog:
        placed = [image for image in catalog.images() if image.edited_fields]
        for image in placed:
            expected = oracle[Path(image.uri).name]
            assert (image.lat, image.lon) == pytest.approx(
                (expected["GPSLatitude"], expected["GPSLongitude"]), abs=1e-9
            )
    crossing = {image.lon > 0 for image in placed if image.shot == "R001-000002"}
    assert len(placed) == 18 and crossing == {True, False}


def test_shift_time_moves_every_image_and_places_them_at_the_moved_times(
    capsys, tmp_path: Path, survey: Path
):
    db = str(tmp_path / "c.db")
    points = [(START + timedelta(seconds=s), *curve(s)) for s in range(5)]  # 08:29:59 to 08:30:03
    track = tmp_path / "track.gpx"
    track.write_text(gpx(points))
    assert run(capsys, "ingest", str(survey), "--catalog", db)[0] == 0
    with Catalog.open(db) as catalog:
        before = {image.id: image for image in catalog.images()}
    edit = ["edit", "--all", "--track", str(track), "--reason", "clock", "--catalog", db, "--json"]
    code, out, err = run(capsys, *edit, "--shift-time", "+1.5s")
    assert code == 0, err
    assert {item["reason"].partition(" (")[0] for item in json.loads(out)["not_placed"]} == {
        "after the track ends"
    }
    with Catalog.open(db) as catalog:
        for image in catalog.images():
            moved = before[image.id].captured_at + timedelta(seconds=1.5)
            assert image.captured_at == moved  # placed on the track or not
            if moved <= points[-1][0]:  # placed at the moved time: the straight line between its two points
                at = [(moved - START).total_seconds()], list(range(len(points)))
                lat, lon = (np.interp(*at, [p[axis] for p in points])[0] for axis in (1, 2))
                assert (image.lat, image.lon) == pytest.approx((lat, lon), abs=1e-9)
            else:
                assert (image.lat, image.lon) == (before[image.id].lat, before[image.id].lon)
        batch = json.loads(out)["batch"]
    assert run(capsys, "undo", batch, "--catalog", db)[0] == 0
    with Catalog.open(db) as catalog:
        assert {image.id: (image.captured_at, image.lat) for image in catalog.images()} == {
            i: (image.captured_at, image.lat) for i, image in before.items()
        }


def test_a_rig_shot_the_track_ends_within_is_left_whole(capsys, tmp_path: Path, survey: Path):
    """The third shot's cameras fire 2 ms apart from 08:30:02.000; a track ending at 08:30:02.005 could place
    cameras 0-2 and not 3-5, which would stitch frames from two places into one panorama."""
    db = str(tmp_path / "c.db")
    points = [(START + timedelta(seconds=s), *curve(s)) for s in range(3)]
    points.append((START + timedelta(seconds=3.005), *curve(3.005)))
    track = tmp_path / "track.gpx"
    track.write_text(gpx(points))
    assert run(capsys, "ingest", str(survey), "--catalog", db)[0] == 0
    code, out, err = run(
        capsys, "edit", "--all", "--track", str(track), "--reason", "PPK", "--catalog", db, "--json"
    )
    assert code == 0, err
    edit = json.loads(out)
    reasons = sorted(item["reason"] for item in edit["not_placed"])
    assert reasons == 3 * ["after the track ends (2024-05-01T08:30:02.005000Z)"] + 3 * [
        "another frame of its rig shot is not placed "
        "(R001-000003: after the track ends (2024-05-01T08:30:02.005000Z))"
    ]
    assert "6 of 18 image(s) not placed on the track" in err
    with Catalog.open(db) as catalog:
        edited = {image.shot: image.edited_fields for image in catalog.images() if image.edited_fields}
        unmoved = [image.edited_fields for image in catalog.images() if image.shot == "R001-000003"]
    assert set(edited) == {"R001-000001", "R001-000002"} and unmoved == 6 * [()]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shift-time", "+1h"], "places none of the 18 selected images, captured (moved by +3600 s) "),
        (["--set", "pitch=0"], "--track places images by time: make --positions or --set an edit of its own"),
        (["--positions", "fixed.csv"], "--track places images by time: make --positions or --set an edit"),
    ],
)
def test_a_track_that_places_nothing_or_a_mixed_edit_is_a_usage_error(
    capsys, tmp_path: Path, survey: Path, extra: list[str], message: str
):
    db = str(tmp_path / "c.db")
    track = tmp_path / "track.gpx"
    track.write_text(gpx([(START + timedelta(seconds=s), *curve(s)) for s in range(5)]))
    (tmp_path / "fixed.csv").write_text("reel,frame,lat\nR001,1,48\n")
    assert run(capsys, "ingest", str(survey), "--catalog", db)[0] == 0
    edit = ["edit", "--reel", "R001", "--track", str(track), "--reason", "PPK", "--catalog", db]
    extra = [str(tmp_path / word) if word.endswith(".csv") else word for word in extra]
    code, out, err = run(capsys, *edit, *extra)
    assert (code, out) == (2, "") and message in err and len(err.splitlines()) == 1, err
    assert run(capsys, "history", "--catalog", db, "--json")[1] == "[]\n"
    code, _, err = run(capsys, *[word if word != "R001" else "R009" for word in edit])  # a mistyped reel
    assert code == 3 and err.startswith("error: no image matches the selection")
    code, _, err = run(capsys, *edit, "--reel", "R01")  # beside the reel that exists: nothing changes either
    assert (code, err) == (3, "error: nothing changed: no reel 'R01' in the catalog (did you mean 'R001'?)\n")
    assert run(capsys, "history", "--catalog", db, "--json")[1] == "[]\n"


def test_track_points_left_out_are_counted_in_a_warning(capsys, tmp_path: Path, survey: Path):
    db = str(tmp_path / "c.db")
    track = tmp_path / "track.gpx"
    timeless = '<trkpt lat="48.1" lon="11.5"></trkpt></trkseg>'  # a logger's point before its first fix
    track.write_text(
        gpx([(START + timedelta(seconds=s), *curve(s)) for s in range(5)]).replace("</trkseg>", timeless)
    )
    assert run(capsys, "ingest", str(survey), "--catalog", db)[0] == 0
    code, _, err = run(
        capsys, "edit", "--all", "--track", str(track), "--reason", "t", "--dry-run", "--catalog", db
    )
    assert code == 0 and f"warning: 1 point(s) of {track} left out: without a time or a position" in err


def solution_csv(path: Path, column: str, value: Callable[[int], float]) -> Path:
    """A CSV solution at ``path``: 5 points a second apart from START, heading north, ``column`` at point s
    ``value(s)``."""
    rows = [
        f"{(START + timedelta(seconds=s)).isoformat()},{48.1 + s * 1e-5},11.5,{value(s)}" for s in range(5)
    ]
    path.write_text(f"time,lat,lon,{column}\n" + "\n".join(rows) + "\n")
    return path


def test_a_solutions_heading_is_turned_by_each_cameras_yaw_in_the_rig(capsys, tmp_path: Path, survey: Path):
    db = str(tmp_path / "c.db")
    solution = solution_csv(tmp_path / "sbet.csv", "heading", lambda s: (350 + 10 * s) % 360)
    config = write_project_config(
        tmp_path, db, (160, 120)
    )  # the demo's rig: cameras 0-3 at yaw 0, 90, 180, 270
    assert run(capsys, "ingest", str(survey), "--catalog", db)[0] == 0
    with Catalog.open(db) as catalog:
        yaws = camera_yaws(catalog, load_settings(config))
        assert yaws == {0: 0.0, 1: 90.0, 2: 180.0, 3: 270.0, 4: 0.0, 5: 0.0}
        placed = track_edit(catalog, Selection(), read_track(solution), camera_yaws={0: 0.0, 1: 90.0})
        headings = {}
        for image in catalog.images():
            moment = (image.captured_at - START).total_seconds()
            if image.id in placed.per_image and image.camera_index in (0, 1):
                headings[image.camera_index] = placed.per_image[image.id]["heading"]
                vehicle = (350 + 10 * moment) % 360
                assert headings[image.camera_index] == pytest.approx(
                    (vehicle + 90 * image.camera_index) % 360
                )
            elif image.id in placed.per_image:
                assert "heading" not in placed.per_image[image.id]  # no yaw for cameras 2-5: kept
        assert set(headings) == {0, 1} and placed.headings_kept == {2: 3, 3: 3, 4: 3, 5: 3}
    code, _, err = run(
        capsys,
        "edit",
        "--all",
        "--track",
        str(solution),
        "--reason",
        "INS",
        "--catalog",
        db,
        "--config",
        str(config),
    )
    assert code == 0 and "kept their heading" not in err, err  # the config's rig has every camera's yaw
    without_rig = ["edit", "--all", "--track", str(solution), "--reason", "INS", "--catalog", db, "--dry-run"]
    code, _, err = run(capsys, *without_rig)
    assert code == 0 and "18 image(s) of camera(s) 0, 1, 2, 3, 4, 5 kept their heading" in err


def test_a_solutions_accuracy_is_the_worse_of_the_two_points_around_each_image(
    capsys, tmp_path: Path, survey: Path
):
    db = str(tmp_path / "c.db")
    solution = solution_csv(tmp_path / "ppk.csv", "gps_accuracy_m", lambda s: 0.01 * (s + 1))
    assert run(capsys, "ingest", str(survey), "--catalog", db)[0] == 0

    code, out, err = run(
        capsys, "edit", "--all", "--track", str(solution), "--reason", "PPK", "--json", "--catalog", db
    )

    assert code == 0, err
    accuracies = {c["id"]: c["new"] for c in json.loads(out)["changes"] if c["field"] == "gps_accuracy_m"}
    with Catalog.open(db) as catalog:
        for image in catalog.images():
            if image.id in accuracies:  # on point s: its own; between s and s + 1: point s + 1's, the worse
                later = math.ceil((image.captured_at - START).total_seconds())
                assert accuracies[image.id] == pytest.approx(0.01 * (later + 1)), image.captured_at
    assert len(accuracies) == 18  # every image: the track covers the survey


def track_of(times: list[float], **values: list[float]) -> Track:
    return Track("t", np.array(times), {name: np.array(column) for name, column in values.items()})


def test_values_between_points_ends_and_gaps():
    track = track_of(
        [0.0, 1.0, 2.0, 30.0],
        lat=[10.0, 11.0, 12.0, 13.0],
        lon=[0.0, 0.5, 0.5, 0.0],
        heading=[350.0, 10.0, 90.0, 91.0],
        gps_accuracy_m=[0.02, 0.01, 0.04, 0.02],
    )
    values, reasons = values_at(track, np.array([0.5, 1.0, 1.25, -1.0, 31.0, 10.0, math.nan]), max_gap_s=10.0)
    assert values["lat"][:3] == pytest.approx([10.5, 11.0, 11.25])
    assert values["lon"][:3] == pytest.approx([0.25, 0.5, 0.5])
    assert values["heading"][:3] == pytest.approx([0.0, 10.0, 30.0])  # 350 -> 10 the short way, through north
    assert values["gps_accuracy_m"][:3] == pytest.approx([0.02, 0.01, 0.04])  # the worse of the two around
    assert np.isnan(values["lat"][3:]).all() and reasons[:3] == ["", "", ""]
    assert reasons[3:] == [
        "before the track starts (1970-01-01T00:00:00Z)",
        "after the track ends (1970-01-01T00:00:30Z)",
        "in a gap between track points (28.0 s, over --max-gap 10 s)",
        "no capture time",
    ]


def test_a_csv_solution_gives_positions_and_heights_and_a_gpx_point_needs_a_time(tmp_path: Path):
    solution = tmp_path / "sbet.csv"
    solution.write_text(  # a solution's export: its vertical accuracy beside, left unread
        "Time,Lat,Lon,Alt,Heading,GPS_Accuracy_M,SDHeight\n"
        "2024-05-01T08:30:00Z,48.1,11.5,500,359,0.02,0.03\n"
        "2024-05-01T10:30:00.5+02:00,48.2,11.6,,-359,0.015,0.03\n"  # 08:30:00.5Z; a yaw of -180 to 180 as well
    )
    track = read_track(solution)
    assert set(track.values) == {"lat", "lon", "alt", "gps_accuracy_m", "heading"}
    assert list(track.values["gps_accuracy_m"]) == [0.02, 0.015]
    values, _ = values_at(track, np.array([START.timestamp() + 1.25]), 10.0)
    assert values["lat"][0] == pytest.approx(48.15) and values["heading"][0] == pytest.approx(0.0)
    assert np.isnan(values["alt"][0])  # the second point has no height: no height is made up
    old = tmp_path / "old.gpx"
    old.write_text(
        '<gpx version="1.0" xmlns="http://www.topografix.com/GPX/1/0"><trk><trkseg>'
        '<trkpt lat="48.1" lon="11.5"><time>2024-05-01t08:30:00z</time></trkpt>'  # UTC in lower case too
        '<trkpt lat="48.1" lon="11.5"><ele>3</ele></trkpt>'  # no time: left out, counted
        '<trkpt lat="48.2" lon="11.5"><time>2024-05-01T08:30:00Z</time></trkpt>'  # the same time again
        "</trkseg></trk></gpx>"
    )
    track = read_track(old)
    assert (list(track.values["lat"]), track.skipped) == ([48.1], 2)
    assert list(track.times) == [(START + timedelta(seconds=1)).timestamp()]
    assert set(track.values) == {"lat", "lon"}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.csv", "time,lat\n", "CSV line 1: no 'lon' column (found 'time', 'lat'); a track has the columns"),
        ("a.csv", "when;lat;lon\n", "CSV line 1: no 'time' column (found 'when;lat;lon')"),
        (
            "a.csv",
            "time,lat,lon\n2024-05-01T08:30:00,48,11\n",
            "CSV line 2: time '2024-05-01T08:30:00' has no zone",
        ),
        (
            "a.csv",
            "time,lat,lon\n2024-05-01T08:30:00Z,north,11\n",
            "CSV line 2: invalid value 'north' for lat",
        ),
        (
            "a.csv",
            "time,lat,lon,heading\n2024-05-01T08:30:00Z,48,11,inf\n",
            "CSV line 2: invalid heading inf: expected a finite number",
        ),
        (
            "a.csv",
            "time,lat,lon\n2024-05-01T08:30:00Z,48\n",
            "CSV line 2: 2 field(s), but the header line names 3",
        ),
        (
            "a.csv",
            "time,lat,lon\n0001-01-01T00:00:00+05:00,48.1,11.5\n",
            "CSV line 2: invalid time '0001-01-01T00:00:00+05:00': in UTC it falls outside the years 1 to 9999",
        ),
        (  # a time out of range is no time, as one GPX cannot be read: the point is left out
            "a.gpx",
            "<gpx><trkpt lat='1' lon='2'><time>9999-12-31T23:00:00-05:00</time></trkpt></gpx>",
            "no track point has a time and a position",
        ),
        ("a.gpx", "<gpx><trk>", "cannot read it as GPX (no element found"),
        (
            "a.gpx",
            "<gpx><trkpt lat='1' lon='2'><time>2024-05-01T08:30:00Z</time></trkpt><trkpt lat='95' lon='2'/></gpx>",
            "track point 2: invalid lat 95.0: expected -90.0 to 90.0",
        ),
        (
            "a.gpx",
            "<gpx><trkpt lat='1' lon='200'/></gpx>",
            "track point 1: invalid lon 200.0: expected -180.0",
        ),
        (
            "a.gpx",
            "<gpx><trkpt lat='1' lon='inf'/></gpx>",
            "track point 1: invalid lon inf: expected a finite",
        ),
        ("a.gpx", "<gpx><trkpt lat='1' lon='2'><ele>nan</ele></trkpt></gpx>", "point 1: invalid alt nan"),
        ("a.gpx", "<gpx><trkpt lat='north' lon='2'/></gpx>", "point 1: invalid value 'north' for lat"),
        ("a.gpx", "<gpx><wpt lat='1' lon='2'/></gpx>", "no track points (trkpt) in it"),
        ("a.gpx", "<gpx><trkpt lat='1' lon='2'/></gpx>", "no track point has a time and a position"),
    ],
)
def test_a_bad_track_file_is_one_clear_error(tmp_path: Path, name: str, text: str, message: str):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match="^" + str(path).replace(".", r"\.")) as raised:
        read_track(path)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("+2s", 2.0), ("-1.5s", -1.5), ("250ms", 0.25), ("+1h", 3600.0), ("-36525d", -MAX_SHIFT_S)],
)
def test_a_time_shift_is_a_signed_number_and_a_unit(text: str, seconds: float):
    assert parse_time_shift(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("infs", "invalid --shift-time 'infs': expected e.g. +2s"),
        ("nans", "invalid --shift-time 'nans': expected e.g. +2s"),
        ("2", "invalid --shift-time '2': expected e.g. +2s"),
        ("1e20s", "invalid --shift-time '1e20s': at most 100 years (36525d) either way"),
        ("-36526d", "invalid --shift-time '-36526d': at most 100 years"),
    ],
)
def test_a_time_shift_that_is_no_number_or_beyond_a_century_is_a_usage_error(text: str, message: str):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        parse_time_shift(text)


def test_a_shift_past_the_year_9999_is_a_usage_error(catalog: Catalog):
    late = datetime(9999, 12, 31, 12, tzinfo=UTC)
    catalog.upsert_images([ImageRecord(uri="/late.jpg", captured_at=late, lat=1.0, lon=2.0)])
    with pytest.raises(
        ConfigError, match=r"moves the capture time of image .* \(9999-12-31T12:00:00\+00:00\) past"
    ):
        catalog.plan_edit(Selection(), shift_time_s=parse_time_shift("1d"))


def test_capture_times_of_unknown_utc_offset_are_placed_as_utc_with_a_warning(
    capsys, tmp_path: Path, catalog_url: str
):
    """A camera that writes no OffsetTimeOriginal (and no GPS time) gives a clock time of unknown zone: the
    track places it as UTC, and says so, with how to correct a clock on local time."""
    with Catalog.open(catalog_url) as catalog:
        catalog.upsert_images(
            [
                ImageRecord(
                    uri=f"/r/{n}.jpg",
                    reel="R",
                    frame=n,
                    captured_at=START + timedelta(seconds=n),
                    utc_offset_minutes=offset,
                )
                for n, offset in ((1, None), (2, 120), (3, None), (9, None))  # the 4th after the track ends
            ]
        )
    track = tmp_path / "track.gpx"
    track.write_text(gpx([(START + timedelta(seconds=s), *curve(s)) for s in range(5)]))
    edit = ["edit", "--all", "--track", str(track), "--reason", "PPK", "--catalog", catalog_url]
    code, out, err = run(capsys, *edit, "--json")
    assert code == 0, err
    assert len(json.loads(out)["not_placed"]) == 1
    warning = (
        "warning: 2 of 3 placed image(s) have a capture time of unknown UTC offset (no OffsetTimeOriginal or "
        "GPS time): placed as if their camera's clock were on UTC. If it was on local time, undo this edit, "
        "correct their times and offset (for UTC+02:00: panopipe edit --shift-time -2h --set "
        "utc_offset_minutes=120) and place them again\n"
    )
    assert err.count("warning:") == 2 and err.endswith(warning), err
    # A track the clock's zone puts hours away places nothing: the error names the unknown offsets.
    code, _, err = run(capsys, *edit, "--shift-time", "-2h")
    assert code == 2 and err.endswith(
        "?; 3 of them have a capture time of unknown UTC offset, taken as UTC: a camera clock on local time is "
        "off by its offset\n"
    ), err
