"""Published files as Mapillary and Panoramax take them. Mapillary: ``mapillary_tools process``, what its
uploader reads from each image. Panoramax: a Panoramax server (GeoVisio, on a PostGIS database of its own)
given each reel folder by Panoramax's uploader (``panoramax_cli upload``, as docs/exports.md gives it), and
the tag reader it reads them with (``geopic-tag-reader``), for its warnings. Each sees the catalog's
effective metadata (edits included, to the millisecond) of a stitched rig shot and of 360° images, and takes
each as an equirectangular panorama.

The tools pin libraries that clash with ours and with each other's, so ``.ci/run`` installs each in a
virtualenv of its own and names its ``bin`` folder in ``$PANOPIPE_MAPILLARY_BIN`` and
``$PANOPIPE_PANORAMAX_BIN``.

Not checked: Mapillary's upload (its server is not open source), and what a Panoramax server does after it
has published a picture (blurring, which needs a blurring service, and federation)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.conftest import free_port, new_database, require
from tests.pipeline.captures import Project, add_panoramas, add_rig_shots

from panopipe.catalog import Selection
from panopipe.executors import InlineExecutor
from panopipe.pipeline import run

# geopic-tag-reader's fields, as JSON: the times as UTC instants
GEOPIC_SCRIPT = """
import json, sys
from geopic_tag_reader import reader
read = {}
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        tags = reader.readPictureMetadata(f.read())
    read[path] = {
        "lat": tags.lat, "lon": tags.lon, "altitude": tags.altitude, "heading": tags.heading, "type": tags.type,
        "make": tags.make, "ts": tags.ts.timestamp(), "field_of_view": tags.field_of_view,
        "gps_accuracy": tags.gps_accuracy, "warnings": tags.tagreader_warnings,
    }
print(json.dumps(read))
"""


def tool_bin(variable: str, executables: tuple[str, ...], what: str) -> Path:
    """The folder ``$variable`` names, holding ``executables``; the test fails in CI, or is skipped elsewhere,
    without it."""
    folder = os.environ.get(variable, "")
    found = bool(folder) and all(shutil.which(name, path=folder) for name in executables)
    require(found, f"{what} (${variable}: the virtualenv .ci/run makes)")
    return Path(folder)


def panoramax_bin() -> Path:
    return tool_bin("PANOPIPE_PANORAMAX_BIN", ("flask", "panoramax_cli", "python"), "a Panoramax server")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def published(project: Project) -> list[Path]:
    """Every file in the published reel folders (``publish/PROJECT/REEL/``), which a user uploads as they are."""
    return sorted(project.out.glob("publish/demo/*/*"))


@pytest.fixture
def survey(project: Project) -> tuple[Project, dict[str, dict[str, object]]]:
    """A rig shot and three 360° images, non-destructive edits (times shifted by 250 ms; one position moved
    by a few metres, a track Mapillary's checks of speed and duplicates pass; a PPK solution's horizontal
    accuracy, worse for one 360° image), run and published; the catalog's effective metadata of each
    published file, by its name. The reel folders hold the panoramas alone (thumbnails and previews are
    published apart): an uploader given one takes no copy twice."""
    add_rig_shots(project.catalog, project.root, 1)
    moved = add_panoramas(project.catalog, project.root, 3)[1]
    catalog = project.catalog
    moved_to = {"lat": 48.10012, "lon": 11.50013, "alt": 533.5, "gps_accuracy_m": 0.35}
    for changes in (
        catalog.plan_edit(shift_time_s=0.25, assign={"gps_accuracy_m": 0.02}),
        catalog.plan_edit(Selection(ids=(moved,)), assign=moved_to),
    ):
        catalog.apply_edit(changes, reason="PPK", author="test")
    assert run(catalog, settings=project.settings, executor=InlineExecutor()).ok
    frames = list(catalog.images())
    expected = {}
    for name, reel, frame in [("demo_R001_000000.jpg", "R001", 0)] + [
        (f"demo_P001_{n:06d}.jpg", "P001", n) for n in range(3)
    ]:
        images = [image for image in frames if image.reel == reel and image.frame == frame]
        expected[name] = {
            "lat": sum(image.lat for image in images) / len(images),
            "lon": sum(image.lon for image in images) / len(images),
            "alt": images[0].alt,
            "heading": images[0].heading,
            "captured_at": min(image.captured_at for image in images),
            "gps_accuracy_m": max(image.gps_accuracy_m for image in images),
        }
    assert [path.name for path in published(project)] == sorted(expected)
    assert expected["demo_P001_000001.jpg"]["lat"] == 48.10012  # the edit is what the readers must see
    return project, expected


def test_panoramax_reads_each_published_panorama_as_the_catalog_has_it(survey):
    project, expected = survey
    paths = published(project)

    out = subprocess.run(
        [str(panoramax_bin() / "python"), "-c", GEOPIC_SCRIPT, *map(str, paths)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    read = {Path(path).name: tags for path, tags in json.loads(out).items()}

    for name, want in expected.items():
        tags = read[name]
        assert (tags["lat"], tags["lon"]) == pytest.approx((want["lat"], want["lon"]), abs=1e-7), name
        assert tags["altitude"] == round(want["alt"])  # geopic-tag-reader keeps whole metres
        assert tags["heading"] == round(want["heading"])  # and whole degrees
        assert datetime.fromtimestamp(tags["ts"], UTC) == want["captured_at"], name
        assert (tags["type"], tags["field_of_view"], tags["make"]) == ("equirectangular", 360, "Acme")
        # the horizontal accuracy its quality score is computed from; nothing to warn of
        assert (tags["gps_accuracy"], tags["warnings"]) == (want["gps_accuracy_m"], []), name


@pytest.fixture
def panoramax(tmp_path: Path) -> Iterator[str]:
    """A Panoramax server (GeoVisio's development server, which processes uploads in threads of its own) on a
    PostGIS database of its own, keeping pictures under ``tmp_path``: its URL."""
    tools = panoramax_bin()
    with new_database("panopipe_test_panoramax") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
        (tmp_path / "panoramax").mkdir()
        env = os.environ | {
            "DB_URL": url,
            "FS_URL": str(tmp_path / "panoramax"),  # a folder (GeoVisio takes a plain path or s3://)
            "FLASK_SECRET_KEY": "test",
        }
        flask = [str(tools / "flask"), "--app", "geovisio"]
        subprocess.run([*flask, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
        port = free_port()
        with (tmp_path / "panoramax.log").open("w") as log:
            server = subprocess.Popen([*flask, "run", "--port", str(port)], env=env, stdout=log, stderr=log)
        try:
            api = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, (tmp_path / "panoramax.log").read_text()
                try:
                    get_json(f"{api}/api")
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the Panoramax server did not answer within 60 s"
                    time.sleep(0.2)
            yield api
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)  # the server sees files, not the catalog
def test_a_panoramax_server_publishes_each_reel_folder_as_the_catalog_has_it(survey, panoramax: str):
    project, expected = survey
    reels = sorted(project.out.glob("publish/demo/*"))

    for reel in reels:  # the command docs/exports.md gives, and --wait until the server has processed them
        subprocess.run(
            [str(panoramax_bin() / "panoramax_cli"), "upload", "--api-url", panoramax, "--wait", str(reel)],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=180,
            env=os.environ | {"COLUMNS": "200"},
        )

    collections = get_json(f"{panoramax}/api/collections")["collections"]
    items = {
        collection["id"]: get_json(f"{panoramax}/api/collections/{collection['id']}/items")["features"]
        for collection in collections
    }
    # One sequence per reel folder, with every panorama of the reel and nothing else.
    sequences = sorted(
        sorted(i["properties"]["original_file:name"] for i in found) for found in items.values()
    )
    assert sequences == sorted(sorted(path.name for path in reel.glob("*.jpg")) for reel in reels)
    shown = {i["properties"]["original_file:name"]: i for found in items.values() for i in found}
    for name, want in expected.items():
        item = shown[name]
        tags = item["properties"]
        assert item["geometry"]["coordinates"] == pytest.approx([want["lon"], want["lat"]], abs=1e-7), name
        assert datetime.fromisoformat(tags["datetime"]) == want["captured_at"], name
        assert tags["view:azimuth"] == round(want["heading"])
        # shown to 0.1 m (GeoVisio formats it so): 0.02 m shows as 0.0
        assert tags["quality:horizontal_accuracy"] == float(f"{want['gps_accuracy_m']:.1f}"), name
        camera = tags["pers:interior_orientation"]
        assert (camera["field_of_view"], camera["camera_manufacturer"]) == (360, "Acme")


def test_mapillary_tools_reads_each_published_panorama_as_the_catalog_has_it(survey, tmp_path: Path):
    project, expected = survey
    description = tmp_path / "mapillary_image_description.json"
    mapillary_tools = (
        tool_bin("PANOPIPE_MAPILLARY_BIN", ("mapillary_tools",), "Mapillary's uploader") / "mapillary_tools"
    )

    # the project's published folder as it is: a sequence per reel folder, thumbnails and previews elsewhere
    subprocess.run(
        [
            *(str(mapillary_tools), "process", str(project.out / "publish" / "demo")),
            *("--desc_path", str(description)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    described = json.loads(description.read_text())

    assert [item.get("error") for item in described] == [None] * len(expected), described
    read = {item["MAPFilename"]: item for item in described}
    for name, want in expected.items():
        item = read[name]
        lat_lon = (item["MAPLatitude"], item["MAPLongitude"])
        assert lat_lon == pytest.approx((want["lat"], want["lon"]), abs=1e-7), name
        assert item["MAPAltitude"] == pytest.approx(want["alt"], abs=1e-3)
        assert item["MAPCompassHeading"]["TrueHeading"] == pytest.approx(want["heading"], abs=1e-4)
        captured = datetime.strptime(item["MAPCaptureTime"], "%Y_%m_%d_%H_%M_%S_%f").replace(tzinfo=UTC)
        assert captured == want["captured_at"], name  # UTC, to the millisecond
        assert (item["MAPDeviceMake"], item["MAPOrientation"]) == ("Acme", 1)
