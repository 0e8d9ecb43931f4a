"""Published files as Mapillary's and Panoramax's own readers see them: ``mapillary_tools process`` (what
Mapillary's uploader reads from each image) and Panoramax's ``geopic-tag-reader`` (what a Panoramax server
reads on upload). They read the catalog's effective metadata (edits included, to the millisecond) from a
stitched rig shot and from 360° images, and take each as an equirectangular panorama.

The readers pin libraries that clash with ours, so ``.ci/run`` installs them in a virtualenv of their own and
names its ``bin`` folder in ``$PANOPIPE_READERS_BIN``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.conftest import require
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


def readers_bin() -> Path:
    """The folder of the readers' executables; the test fails in CI, or is skipped elsewhere, without it."""
    folder = Path(os.environ.get("PANOPIPE_READERS_BIN", ""))
    found = all(
        shutil.which(name, path=str(folder)) for name in ("mapillary_tools", "geopic-tag-reader", "python")
    )
    require(
        bool(os.environ.get("PANOPIPE_READERS_BIN")) and found,
        "Mapillary's and Panoramax's readers ($PANOPIPE_READERS_BIN: the virtualenv .ci/run makes)",
    )
    return folder


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
        [str(readers_bin() / "python"), "-c", GEOPIC_SCRIPT, *map(str, paths)],
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


def test_mapillary_tools_reads_each_published_panorama_as_the_catalog_has_it(survey, tmp_path: Path):
    project, expected = survey
    description = tmp_path / "mapillary_image_description.json"

    # the project's published folder as it is: a sequence per reel folder, thumbnails and previews elsewhere
    subprocess.run(
        [
            *(str(readers_bin() / "mapillary_tools"), "process", str(project.out / "publish" / "demo")),
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
