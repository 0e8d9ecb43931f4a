"""The apply-metadata step run on real JPEG files as a worker runs it, its output read by ExifTool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from panopipe.steps.apply_metadata import ApplyMetadataStep

DATA = Path(__file__).parents[1] / "data"
METADATA: dict[str, Any] = {
    "captured_at": "2024-05-01T08:00:00Z",
    "utc_offset_minutes": 120,
    "gps_latitude": 48.1,
    "gps_longitude": 11.5,
    "gps_altitude": 520.0,
    "gps_img_direction": 90.0,
    "pitch": None,
    "roll": None,
    "gps_h_positioning_error": None,
    "make": "Cam",
    "model": None,
    "artist": None,
    "copyright": None,
    "image_description": None,
    "panopipe": {"project": "p", "reel": "R6", "frame": 1},
}
GPANO = ("FullPanoWidthPixels", "FullPanoHeightPixels", "CroppedAreaImageWidthPixels")
GPANO += ("CroppedAreaImageHeightPixels", "CroppedAreaLeftPixels", "CroppedAreaTopPixels")


def exiftool(*args: str | Path) -> list[dict[str, Any]]:
    result = subprocess.run(["exiftool", "-j", "-n", *map(str, args)], check=True, capture_output=True)
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def partial(path: Path, size: tuple[int, int], full: tuple[int, int], top: int) -> Path:
    """A JPEG of ``size`` pixels whose GPano (written by ExifTool) says it is the band of the ``full``
    panorama from row ``top``, as a 360° camera writes a cropped image."""
    pixels = (np.random.default_rng(7).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=85)
    values = dict(zip(GPANO, (*full, *size, 0, top), strict=True))
    assignments = [f"-XMP-GPano:{name}={value}" for name, value in values.items()]
    command = ["exiftool", "-q", "-overwrite_original", "-XMP-GPano:ProjectionType=equirectangular"]
    subprocess.run([*command, *assignments, str(path)], check=True)
    return path


def applied(source: Path, tmp_path: Path) -> dict[str, Any]:
    """The GPano of the step's output for ``source``, as ExifTool reads it."""
    output = tmp_path / "output.jpg"
    payload = {"inputs": [str(source)], "metadata": METADATA, "outputs": {"image": str(output)}}
    ApplyMetadataStep.execute(payload, lambda line: None)
    (tags,) = exiftool(*(f"-XMP-GPano:{name}" for name in GPANO), "-ImageSize", output)
    return {name: tags.get(name) for name in (*GPANO, "ImageSize")}


def gpano(size: tuple[int, int], full: tuple[int, int], left: int = 0, top: int = 0) -> dict[str, Any]:
    return {**dict(zip(GPANO, (*full, *size, left, top), strict=True)), "ImageSize": f"{size[0]} {size[1]}"}


@pytest.mark.exiftool
def test_a_partial_panorama_keeps_its_place_in_the_full_one(tmp_path: Path) -> None:
    """A 360° camera's cropped image (the band of a 400x200 sphere from row 20): its output is the same
    pixels, so it keeps its FullPano* and CroppedArea* values, not a full sphere of its size that viewers
    would stretch."""
    source = partial(tmp_path / "band.jpg", (400, 150), (400, 200), 20)
    assert applied(source, tmp_path) == gpano((400, 150), (400, 200), top=20)


@pytest.mark.exiftool
@pytest.mark.parametrize(
    ("size", "full", "top"),
    [
        ((400, 150), (400, 200), 60),  # the band would end below the sphere
        ((400, 150), (300, 200), 20),  # wider than the panorama
    ],
)
def test_a_gpano_that_does_not_fit_the_pixels_gives_a_full_panorama(
    tmp_path: Path, size: tuple[int, int], full: tuple[int, int], top: int
) -> None:
    source = partial(tmp_path / "band.jpg", size, full, top)
    assert applied(source, tmp_path) == gpano(size, size)


@pytest.mark.exiftool
def test_a_scaled_copy_whose_gpano_describes_its_source_gives_a_full_panorama(tmp_path: Path) -> None:
    """A Samsung Gear 360 frame scaled down to 32x28 pixels whose GPano still says 7776x3888."""
    source = shutil.copy(DATA / "exif" / "mapillary_tools" / "adobe_coords.jpg", tmp_path / "scaled.jpg")
    (tags,) = exiftool("-XMP-GPano:all", source)
    assert (tags["CroppedAreaImageWidthPixels"], tags["FullPanoWidthPixels"]) == (7776, 7776)
    assert applied(Path(source), tmp_path) == gpano((32, 28), (32, 28))


@pytest.mark.exiftool
def test_a_full_panorama_stays_full(tmp_path: Path) -> None:
    """A GoPro MAX equirectangular photo, whose GPano is its own full size."""
    source = DATA / "writer" / "GSAG2002.JPG"
    assert applied(source, tmp_path) == gpano((5760, 2880), (5760, 2880))


@pytest.mark.exiftool
def test_the_thumbnail_and_preview_of_a_partial_panorama_keep_its_place_scaled(tmp_path: Path) -> None:
    """derive's copies of the band of an 800x400 sphere from row 40 (800x300 pixels): a 200x75 thumbnail is
    the band of a 200x100 sphere from row 10, not a full sphere of its own size."""
    from panopipe.steps.derive import DeriveStep

    source = partial(tmp_path / "band.jpg", (800, 300), (800, 400), 40)
    outputs = {"thumbnail": str(tmp_path / "thumbnail.jpg"), "preview": str(tmp_path / "preview.jpg")}
    payload = {
        "inputs": [str(source)],
        "metadata": METADATA,
        "params": {"thumbnail": 200, "preview": 400, "quality": 85},
        "outputs": outputs,
    }

    DeriveStep.execute(payload, lambda line: None)

    found = {
        Path(tags["SourceFile"]).stem: {name: tags.get(name) for name in (*GPANO, "ImageSize")}
        for tags in exiftool(*(f"-XMP-GPano:{name}" for name in GPANO), "-ImageSize", *outputs.values())
    }
    assert found == {
        "thumbnail": gpano((200, 75), (200, 100), top=10),
        "preview": gpano((400, 150), (400, 200), top=20),
    }
