"""360° images in the forms cameras and editors write them, through nadir, derive and publish, on SQLite and
PostgreSQL: an EXIF orientation, a GPano area of a panorama (cropped), an ICC profile. ExifTool is the oracle of
what the outputs carry."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image, ImageCms
from tests.metadata.test_writer import ADOBE_RGB, icc_profile
from tests.pipeline.captures import RIG, Project, add_rig_shots, jpeg, record
from tests.pipeline.test_nadir_pipeline import RED, published

from panopipe.catalog import Selection
from panopipe.catalog.schema import jobs
from panopipe.errors import ConfigError
from panopipe.executors import InlineExecutor
from panopipe.pipeline import load_pipeline, run
from panopipe.stitching import synthetic_panorama

CAMERAS = Path(__file__).parents[1] / "data" / "exif"


def add_image(project: Project, n: int, pixels: np.ndarray, *exiftool_args: str) -> Path:
    """Frame ``n`` of reel P001, a 360° image of ``pixels``, its tags set by ExifTool's ``exiftool_args``."""
    path = project.root / "P001" / f"pano_{n:06d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg(pixels, 95))
    if exiftool_args:
        subprocess.run(["exiftool", "-q", "-overwrite_original", "-n", *exiftool_args, path], check=True)
    height, width = pixels.shape[:2]
    fields = {"projection": "equirectangular", "width": width, "height": height, "reel": "P001"}
    project.catalog.upsert_images([record(path, path.read_bytes(), n, **fields)])
    return path


def tags(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-n", "-G1", path], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]


def shown(path: Path) -> np.ndarray:
    """The pixels of ``path`` as a viewer shows them (turned as its EXIF orientation says), RGB."""
    with Image.open(path) as image:
        orientation = image.getexif().get(0x0112, 1)
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    return {3: pixels[::-1, ::-1], 6: np.rot90(pixels, -1), 8: np.rot90(pixels)}.get(orientation, pixels)


def is_red(pixels: np.ndarray) -> bool:
    return bool((np.abs(pixels - [255, 0, 0]) < 40).all())


def test_an_image_turned_by_its_exif_orientation_is_covered_and_derived_as_a_viewer_shows_it(
    project: Project,
):
    add_image(project, 0, synthetic_panorama(256, 128, seed=3), "-Orientation=3")
    covered = project.with_steps(nadir={"enabled": True, "fill": RED})

    report = run(project.catalog, settings=covered, executor=InlineExecutor())

    assert report.ok, report.failures
    image = published(project, "P001")
    assert tags(image)["IFD0:Orientation"] == 3  # the copy is the camera's: stored as it was, shown turned
    assert is_red(shown(image)[-4:]) and not is_red(shown(image)[:4])  # the bottom a viewer sees
    for tree in ("thumbnails", "previews"):
        copy = published(project, "P001", tree)
        assert "IFD0:Orientation" not in tags(copy)  # its pixels are turned already
        assert is_red(shown(copy)[-2:])
        with Image.open(copy) as scaled:
            size = scaled.size
        expected = np.asarray(Image.fromarray(shown(image).astype(np.uint8)).resize(size), dtype=int)
        assert np.abs(shown(copy) - expected).mean() < 8  # the same picture, the same way up


def test_a_cropped_panorama_is_covered_where_its_gpano_area_holds_the_nadir(project: Project):
    panorama = synthetic_panorama(256, 128, seed=4)
    gpano = ["-XMP-GPano:ProjectionType=equirectangular", "-XMP-GPano:FullPanoWidthPixels=256"]
    gpano += ["-XMP-GPano:FullPanoHeightPixels=128", "-XMP-GPano:CroppedAreaLeftPixels=0"]
    gpano += ["-XMP-GPano:CroppedAreaImageWidthPixels=256"]
    add_image(
        project,
        1,
        panorama[32:],
        *gpano,
        "-XMP-GPano:CroppedAreaImageHeightPixels=96",
        "-XMP-GPano:CroppedAreaTopPixels=32",
    )
    top = add_image(
        project,
        2,
        panorama[:64],
        *gpano,
        "-XMP-GPano:CroppedAreaImageHeightPixels=64",
        "-XMP-GPano:CroppedAreaTopPixels=0",
    )
    covered = project.with_steps(nadir={"enabled": True, "fill": RED})

    report = run(project.catalog, settings=covered, executor=InlineExecutor())

    assert report.ok, report.failures
    assert report.counts["nadir"] == {"succeeded": 2}
    with Image.open(project.out / "publish" / "demo" / "P001" / "demo_P001_000001.jpg") as image:
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    assert pixels.shape == (96, 256, 3) and is_red(pixels[-4:]) and not is_red(pixels[:4])
    with project.catalog.engine.connect() as conn:
        logs = dict(conn.execute(sa.select(jobs.c.subject, jobs.c.log).where(jobs.c.step == "nadir")).all())
    (above,) = [log for log in logs.values() if "is not in the image" in log]
    assert f"the nadir of {top}" in above and "rows 0-64 of 128" in above
    untouched = project.out / "publish" / "demo" / "P001" / "demo_P001_000002.jpg"
    with Image.open(untouched) as image, Image.open(top) as source:
        assert np.array_equal(np.asarray(image), np.asarray(source))  # not encoded again


def test_derived_images_keep_the_colour_profile_of_the_source(project: Project, tmp_path: Path):
    profile = tmp_path / "profile.icc"
    profile.write_bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    source = add_image(project, 1, synthetic_panorama(256, 128, seed=6), f"-ICC_Profile<={profile}")
    add_image(project, 2, synthetic_panorama(256, 128, seed=7))

    assert run(project.catalog, settings=project.settings, executor=InlineExecutor()).ok

    icc = tags(source)["ICC_Profile:ProfileDescription"]
    for tree in ("thumbnails", "previews"):
        folder = project.out / "publish" / tree / "demo" / "P001"
        (profiled,) = [path for path in folder.iterdir() if "ICC_Profile:ProfileDescription" in tags(path)]
        assert tags(profiled)["ICC_Profile:ProfileDescription"] == icc
        assert len(list(folder.iterdir())) == 2  # and the other one has none


@pytest.mark.parametrize(
    ("profile", "color_space"),
    [(None, 1), (icc_profile(), 1), (icc_profile(ADOBE_RGB), 0xFFFF)],
    ids=["sRGB declared", "sRGB profile", "Adobe RGB profile"],
)
def test_published_images_say_srgb_unless_they_carry_another_profile(
    project: Project, tmp_path: Path, profile: bytes | None, color_space: int
):
    """EXIF ColorSpace: sRGB, or "uncalibrated" (colours to take from the profile) beside a profile of other
    colours; thumbnails and previews, encoded anew, say it of the source's profile they carry."""
    path = tmp_path / "profile.icc"
    path.write_bytes(profile or b"")
    declared = "-ExifIFD:ColorSpace=1" if profile is None else f"-ICC_Profile<={path}"
    add_image(project, 0, synthetic_panorama(256, 128, seed=8), declared)

    assert run(project.catalog, settings=project.settings, executor=InlineExecutor()).ok

    for tree in ("", "thumbnails", "previews"):
        assert tags(published(project, "P001", tree))["ExifIFD:ColorSpace"] == color_space, tree


def test_a_time_edit_leaves_none_of_the_camera_s_gpano_photo_dates(project: Project):
    """A GoPro MAX image's GPano FirstPhotoDate and LastPhotoDate hold its camera's time: the published image
    carries the edited time in EXIF and neither of them, which a reader that prefers XMP would take."""
    data = (CAMERAS / "trek-view-360" / "GSAG2002.JPG").read_bytes()
    fields = {"projection": "equirectangular", "width": 5760, "height": 2880, "reel": "P001"}
    path = project.root / "P001" / "GSAG2002.JPG"
    (image_id,) = project.catalog.upsert_images([record(path, data, 0, **fields)]).added
    assert run(project.catalog, settings=project.settings, executor=InlineExecutor()).ok
    edited = datetime(2020, 5, 9, 12, 20, tzinfo=UTC)
    changes = project.catalog.plan_edit(Selection(ids=(image_id,)), assign={"captured_at": edited})
    project.catalog.apply_edit(changes, reason="clock", author="t")

    assert run(project.catalog, settings=project.settings, executor=InlineExecutor()).ok

    found = tags(published(project, "P001"))
    assert found["ExifIFD:DateTimeOriginal"] == "2020:05:09 14:20:00"  # at the image's offset, +02:00
    assert [tag for tag in found if tag.endswith("PhotoDate")] == []
    assert found["XMP-GPano:CaptureSoftware"] == "GoPro Max"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"thumbnail": 0}, "thumbnail must be a whole number of pixels from 16 to 65536, got 0"),
        ({"thumbnail": 8}, "thumbnail must be a whole number of pixels from 16 to 65536, got 8"),
        (
            {"preview": 3.5},
            "preview must be a whole number of pixels from 16 to 65536, or 0 for none, got 3.5",
        ),
        ({"quality": 0}, "quality must be an integer from 1 to 100, got 0"),
        ({"quality": 3.5}, "quality must be an integer from 1 to 100, got 3.5"),
        ({"quality": 101}, "quality must be an integer from 1 to 100, got 101"),
    ],
)
def test_a_bad_derived_size_or_quality_is_a_configuration_error(project: Project, table, message):
    with pytest.raises(ConfigError, match=rf"^\[steps.derive\]: {message}$"):
        load_pipeline(project.catalog, project.with_steps(derive=table))
    load_pipeline(project.catalog, project.with_steps(derive={"preview": 0}))  # no preview: valid


@pytest.mark.parametrize("mixed", [False, True], ids=["one profile", "profiles differ"])
def test_a_panorama_carries_the_colour_profile_its_frames_share(project: Project, mixed: bool):
    """Frames of one Adobe RGB profile: the stitched panorama carries it, and the published image says
    "uncalibrated"; frames whose profiles differ: it carries none, says sRGB, and the job's log says why."""
    profiles = dict.fromkeys(range(len(RIG.cameras)), icc_profile(ADOBE_RGB))
    if mixed:
        profiles[0] = icc_profile()
    add_rig_shots(project.catalog, project.root, 1, icc_profiles=profiles)

    assert run(project.catalog, settings=project.settings, executor=InlineExecutor()).ok

    (panorama,) = (project.out / "stitch").rglob("*.jpg")
    found = [tags(path) for path in (panorama, published(project, "R001"))]
    for image in found:
        assert ("ICC_Profile:RedMatrixColumn" in image) is not mixed
    assert found[1]["ExifIFD:ColorSpace"] == (1 if mixed else 0xFFFF)
    with project.catalog.engine.connect() as conn:
        (log,) = conn.execute(sa.select(jobs.c.log).where(jobs.c.step == "stitch")).scalars()
    assert ("ICC profiles differ" in log) is mixed
