"""What a published panorama says of itself (read by ExifTool) and what the panoramas and Oriented Imagery
exports say of it, through the command line on the demo survey: the rig's heading whatever camera 0's yaw, a
position that no frame without a fix moves, a status that tells an edit not yet run, angles in their ranges,
a cropped panorama's field of view, and no value of a 360° camera's that the catalog says an image lacks."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.pipeline.captures import record
from tests.steps.test_apply_metadata import partial

from panopipe.catalog import Catalog
from panopipe.catalog.values import to_json
from panopipe.cli import main
from panopipe.steps.apply_metadata import panorama_orientation
from panopipe.stitching.projection import rotation_matrix, rotation_to_angles

pytestmark = pytest.mark.exiftool

PUBLISHED = "panopipe-out/publish/demo/R001/demo_R001_000001.jpg"
CAMERAS = Path(__file__).parent / "data" / "exif"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def exiftool(path: Path) -> dict[str, Any]:
    result = subprocess.run(["exiftool", "-j", "-n", "-G1", str(path)], check=True, capture_output=True)
    tags: dict[str, Any] = json.loads(result.stdout)[0]
    return tags


def exported(capsys: pytest.CaptureFixture[str], common: tuple[str, ...], *args: str) -> list[dict[str, str]]:
    code, out, err = run(capsys, "export", *common, *args)
    assert code == 0, err
    return list(csv.DictReader(out.splitlines()))


def demo(capsys: pytest.CaptureFixture[str], folder: Path, catalog_url: str, yaw: int = 0) -> tuple[str, ...]:
    """The demo survey of one shot whose horizontal cameras are turned by ``yaw`` on the rig; its arguments."""
    code, _, err = run(capsys, "demo", "--folder", str(folder), "--shots", "1", "--catalog", catalog_url)
    assert code == 0, err
    config = folder / "panopipe.toml"
    text = config.read_text(encoding="utf-8")
    for camera in range(4):
        text = text.replace(
            f"[{camera * 90}, 0, 0],  # {camera}", f"[{camera * 90 + yaw}, 0, 0],  # {camera}"
        )
    config.write_text(text, encoding="utf-8")
    return "--catalog", catalog_url, "--config", str(config)


def test_the_published_heading_is_the_rigs_whatever_camera_0s_yaw(capsys, tmp_path: Path, catalog_url: str):
    common = demo(capsys, tmp_path, catalog_url, yaw=45)
    with Catalog.open(catalog_url) as catalog:
        frames = sorted(catalog.images(), key=lambda image: image.camera_index or 0)
    at = frames[0].captured_at
    assert at is not None
    track = tmp_path / "track.csv"
    points = [(at - timedelta(seconds=5), 48.1, 11.5), (at + timedelta(seconds=5), 48.1001, 11.5)]
    lines = [f"{to_json('captured_at', t)},{lat},{lon},20\n" for t, lat, lon in points]
    track.write_text("time,lat,lon,heading\n" + "".join(lines), encoding="utf-8")
    assert run(capsys, "edit", *common, "--all", "--track", str(track), "--reason", "INS")[0] == 0
    assert run(capsys, "run", *common)[0] == 0

    with Catalog.open(catalog_url) as catalog:
        cameras = {image.camera_index: image.heading for image in catalog.images()}
    tags = exiftool(tmp_path / PUBLISHED)
    (panorama,) = exported(capsys, common, "--of", "panoramas")
    (oid,) = exported(capsys, common, "--format", "oid")

    assert cameras[0] == 65 and cameras[1] == 155  # the track's 20° turned by each camera's yaw on the rig
    assert (tags["XMP-GPano:PoseHeadingDegrees"], tags["GPS:GPSImgDirection"]) == (20, 20)
    assert (panorama["heading"], oid["CameraHeading"]) == ("20.0", "20.0")

    with Catalog.open(catalog_url) as catalog:  # camera 0's frame goes: camera 1 tells the same heading
        catalog.mark_deleted([frames[0].uri])
    (oid,) = exported(capsys, common, "--format", "oid")
    assert oid["CameraHeading"] == "20.0"


def test_the_rigs_pitch_and_roll_are_its_own_not_a_cameras(catalog_url: str, tmp_path: Path):
    """A rig pitched 10° up and rolled 3° right, its heading 20°, as each camera's frame records it."""
    rig = {0: (0.0, 0.0, 0.0), 1: (90.0, 0.0, 0.0), 4: (0.0, 90.0, 0.0), 5: (0.0, -90.0, 0.0)}
    with Catalog.open(catalog_url) as catalog:
        catalog.upsert_images([record(tmp_path / "f.jpg", b"x", 1, camera_index=0)])
        (frame,) = catalog.images()
    for camera, pose in rig.items():
        seen = rotation_to_angles(rotation_matrix(20.0, 10.0, 3.0) @ rotation_matrix(*pose))
        taken = replace(frame, camera_index=camera, heading=seen[0] % 360, pitch=seen[1], roll=seen[2])
        assert panorama_orientation([taken], rig) == pytest.approx((20.0, 10.0, 3.0)), camera
    up = replace(frame, camera_index=4, heading=20.0, pitch=90.0, roll=0.0)  # a level rig's camera looking up
    assert panorama_orientation([up], rig) == (20.0, 0.0, 0.0)
    # a 360° camera's own angles out of range, brought in without float noise (-159.89999999999998)
    camera = replace(frame, camera_index=None, heading=-359.9, pitch=1.5, roll=200.1)
    assert panorama_orientation([camera], {}) == (0.1, 1.5, -159.9)
    assert panorama_orientation([replace(camera, roll=-179.99996)], {})[2] == 180.0


def test_a_frame_without_a_fix_moves_no_panorama_and_an_edit_not_run_says_so(
    capsys, tmp_path: Path, catalog_url: str
):
    common = demo(capsys, tmp_path, catalog_url)
    assert run(capsys, "run", *common)[0] == 0
    with Catalog.open(catalog_url) as catalog:
        fixed = [(image.lat, image.lon) for image in catalog.images() if image.camera_index != 3]
    positions = tmp_path / "nofix.csv"
    positions.write_text("reel,frame,camera_index,lat,lon\nR001,1,3,0,0\n", encoding="utf-8")
    assert run(capsys, "edit", *common, "--positions", str(positions), "--reason", "no fix")[0] == 0

    (before,) = exported(capsys, common, "--of", "panoramas")
    assert before["status"] == "outdated"  # the published file holds the position of before the edit
    assert run(capsys, "run", *common)[0] == 0
    (after,) = exported(capsys, common, "--of", "panoramas")
    (oid,) = exported(capsys, common, "--format", "oid")
    tags = exiftool(tmp_path / PUBLISHED)

    lat = sum(lat for lat, _ in fixed) / len(fixed)
    lon = sum(lon for _, lon in fixed) / len(fixed)
    assert after["status"] == "published"
    assert (tags["GPS:GPSLatitude"], tags["GPS:GPSLongitude"]) == pytest.approx((lat, lon), abs=1e-7)
    assert (float(after["lat"]), float(after["lon"])) == pytest.approx((lat, lon), abs=1e-7)
    assert (float(oid["Y"]), float(oid["X"])) == pytest.approx((lat, lon), abs=1e-7)


def test_angles_in_their_ranges_and_a_cropped_panoramas_field_of_view(
    capsys, tmp_path: Path, catalog_url: str
):
    common = demo(capsys, tmp_path, catalog_url)
    band = partial(
        tmp_path / "band.jpg", (256, 64), (256, 128), 32
    )  # 90° of sky to ground around the horizon
    with Catalog.open(catalog_url) as catalog:
        data = band.read_bytes()
        fields = {"reel": "P001", "projection": "equirectangular", "width": 256, "height": 64}
        catalog.upsert_images([record(band, data, 1, **fields)])
    edit = ("edit", *common, "--shot", "R001-000001", "--set", "heading=360", "--set", "roll=-120")
    assert run(capsys, *edit, "--reason", "upside down")[0] == 0
    assert run(capsys, "run", *common)[0] == 0

    tags = exiftool(tmp_path / PUBLISHED)
    code, out, err = run(capsys, "export", *common, "--format", "oid")
    rows = {row["Reel"]: row for row in csv.DictReader(out.splitlines())}

    assert (tags["XMP-GPano:PoseHeadingDegrees"], tags["GPS:GPSImgDirection"]) == (0, 0)
    assert tags["XMP-GPano:PoseRollDegrees"] == -120
    assert code == 0 and "1 panorama(s) roll more than 90°" in err
    assert (rows["R001"]["CameraHeading"], rows["R001"]["CameraRoll"]) == (
        "0.0",
        "",
    )  # Esri's roll: -90 to 90
    assert (rows["P001"]["HorizontalFieldOfView"], rows["P001"]["VerticalFieldOfView"]) == ("360.0", "90.0")
    assert rows["R001"]["VerticalFieldOfView"] == "180.0"


def test_a_value_the_catalog_says_a_360_image_lacks_leaves_the_published_file(
    capsys, tmp_path: Path, catalog_url: str
):
    """What 360° cameras wrote of values that an edit cleared, or of a position without a fix (0, 0), is not
    published: uploaders would place and turn the panorama by what its thumbnail and the exports say it lacks."""
    common = demo(capsys, tmp_path, catalog_url)
    reel = tmp_path / "R360"
    reel.mkdir()
    theta = CAMERAS / "trek-view-360" / "R0014760.JPG"  # RICOH THETA V: GPS position and altitude, GPano pose
    first, nofix = shutil.copy(theta, reel / "R360_0001.jpg"), shutil.copy(theta, reel / "R360_0002.jpg")
    shutil.copy(CAMERAS / "mapillary_tools" / "adobe_coords.jpg", reel / "R360_0003.jpg")  # Gear 360: XMP GPS
    heading = ["-GPSImgDirection=50", "-GPSImgDirectionRef=T", "-XMP-GPano:PoseHeadingDegrees=50"]
    later = "-DateTimeOriginal=2020:05:11 11:28:26"
    for path, values in ((first, heading), (nofix, ["-GPSLatitude=0", "-GPSLongitude=0", later])):
        subprocess.run(["exiftool", "-q", "-overwrite_original", *values, str(path)], check=True)
    assert run(capsys, "ingest", *common, str(reel))[0] == 0
    assert run(capsys, "run", *common)[0] == 0
    for shot, fields in (
        ("R360-000001", ("heading", "alt", "pitch", "roll")),
        ("R360-000003", ("lat", "lon")),
    ):
        cleared = [arg for field in fields for arg in ("--set", f"{field}=")]
        assert run(capsys, "edit", *common, "--shot", shot, *cleared, "--reason", "wrong")[0] == 0

    code, out, _ = run(capsys, "verify", *common, "--json")  # before the run: what it will remove
    found = {detail for drift in json.loads(out) for detail in drift["details"][1:]}
    assert code == 0 and {detail.partition(":")[0] for detail in found} == {
        *("gps_latitude", "gps_longitude", "gps_altitude", "gps_img_direction"),
        *("pose_heading", "pose_pitch", "pose_roll"),
    }
    assert all(detail.endswith("catalog says None") for detail in found)
    assert run(capsys, "run", *common)[0] == 0

    published = tmp_path / "panopipe-out/publish/demo/R360"
    tags = {n: exiftool(published / f"demo_R360_00000{n}.jpg") for n in (1, 2, 3)}
    rows = {row["frame"]: row for row in exported(capsys, common, "--of", "panoramas", "--reel", "R360")}
    gone = {
        1: ["GPS:GPSAltitude", "GPS:GPSAltitudeRef", "GPS:GPSImgDirection", "GPS:GPSImgDirectionRef"],
        2: ["GPS:GPSLatitude", "GPS:GPSLatitudeRef", "GPS:GPSLongitude", "GPS:GPSLongitudeRef"],
        3: ["XMP-exif:GPSLatitude", "XMP-exif:GPSLongitude", "GPS:GPSLatitude", "GPS:GPSLongitude"],
    }
    gone[1] += [f"XMP-GPano:Pose{angle}Degrees" for angle in ("Heading", "Pitch", "Roll")]
    assert {n: [tag for tag in names if tag in tags[n]] for n, names in gone.items()} == {1: [], 2: [], 3: []}
    assert (rows["1"]["heading"], rows["1"]["altitude_msl_m"], rows["1"]["pitch"], rows["1"]["roll"]) == (
        ("",) * 4
    )
    assert (rows["2"]["lat"], rows["2"]["lon"], rows["3"]["lat"], rows["3"]["lon"]) == ("",) * 4
    # what the catalog has stays
    assert tags[1]["GPS:GPSLatitude"] == pytest.approx(53.18205) and tags[1]["IFD0:Make"] == "RICOH"
    assert tags[2]["GPS:GPSAltitude"] == pytest.approx(63.34) and tags[2]["GPS:GPSMapDatum"] == "WGS-84"
    assert tags[3]["GPS:GPSImgDirection"] == pytest.approx(176.3)
    code, out, _ = run(capsys, "verify", *common, "--json")
    assert (code, json.loads(out)) == (0, [])
