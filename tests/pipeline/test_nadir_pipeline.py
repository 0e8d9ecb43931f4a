"""The nadir cap in the pipeline, on SQLite and PostgreSQL: off by default; when on, every published image,
thumbnail and preview is covered; changing it reruns it and what follows, never the stitching."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.pipeline.captures import Project, add_panoramas, add_rig_shots, jpeg, record

from panopipe.errors import ConfigError
from panopipe.executors import InlineExecutor
from panopipe.pipeline import load_pipeline, plan, run
from panopipe.stitching import synthetic_panorama

RED = "#ff0000"


def reasons(project: Project, settings) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for item in plan(project.catalog, settings=settings):
        found.setdefault(item.step, set()).add(item.reason)
    return found


def bottom_is_red(path: Path) -> bool:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    bottom = pixels[-max(2, pixels.shape[0] // 32) :]
    return bool((np.abs(bottom - [255, 0, 0]) < 40).all())


def published(project: Project, reel: str, tree: str = "") -> Path:
    """The published panorama of ``reel``'s first frame, or its copy in ``tree`` (thumbnails, previews)."""
    return project.out / "publish" / tree / "demo" / reel / f"demo_{reel}_000000.jpg"


def test_off_by_default_and_when_on_everything_published_is_covered(project: Project):
    add_rig_shots(project.catalog, project.root, 1)
    add_panoramas(project.catalog, project.root, 1)
    assert "nadir" not in plan(project.catalog, settings=project.settings).counts()
    assert run(project.catalog, settings=project.settings, executor=InlineExecutor()).ok
    assert not bottom_is_red(published(project, "R001"))

    covered = project.with_steps(nadir={"enabled": True, "fill": RED})
    assert reasons(project, covered) == {
        "nadir": {"new input"},
        "apply-metadata": {"after nadir"},
        "derive": {"after nadir"},
        "publish": {"parameters changed"},  # derive's are part of its
    }
    report = run(project.catalog, settings=covered, executor=InlineExecutor())

    assert report.ok, report.failures
    assert report.counts["nadir"] == {"succeeded": 2}  # the shot's panorama and the 360° image
    for reel in ("R001", "P001"):
        for tree in ("", "thumbnails", "previews"):
            assert bottom_is_red(published(project, reel, tree)), (reel, tree)
    assert len(plan(project.catalog, settings=covered)) == 0


def test_a_changed_cap_reruns_it_and_what_follows_and_off_brings_the_ground_back(project: Project):
    add_rig_shots(project.catalog, project.root, 1)
    covered = project.with_steps(nadir={"enabled": True, "fill": RED})
    assert run(project.catalog, settings=covered, executor=InlineExecutor()).ok

    wider = project.with_steps(nadir={"enabled": True, "fill": RED, "angle_deg": 30})
    assert reasons(project, wider) == {
        "nadir": {"parameters changed"},
        "apply-metadata": {"after nadir"},
        "derive": {"after nadir"},
        "publish": {"after apply-metadata"},
    }  # no stitch
    assert run(project.catalog, settings=wider, executor=InlineExecutor()).ok

    off = project.with_steps(nadir={"enabled": False, "fill": RED})
    assert reasons(project, off) == {
        "apply-metadata": {"parameters changed"},
        "derive": {"parameters changed"},
        "publish": {"parameters changed"},
    }
    assert run(project.catalog, settings=off, executor=InlineExecutor()).ok
    assert not bottom_is_red(published(project, "R001"))
    assert not bottom_is_red(published(project, "R001", "thumbnails"))


def test_a_replaced_logo_file_reruns_the_cap(project: Project, tmp_path: Path):
    add_panoramas(project.catalog, project.root, 1)
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (32, 32), (255, 0, 0, 255)).save(logo)
    with_logo = project.with_steps(nadir={"enabled": True, "logo": str(logo), "fill": "#0000ff"})
    assert run(project.catalog, settings=with_logo, executor=InlineExecutor()).ok
    assert bottom_is_red(published(project, "P001"))

    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(logo)  # transparent: the fill shows

    assert reasons(project, with_logo)["nadir"] == {"parameters changed"}
    assert run(project.catalog, settings=with_logo, executor=InlineExecutor()).ok
    pixels = np.asarray(Image.open(published(project, "P001")).convert("RGB"), dtype=int)
    assert (np.abs(pixels[-2:] - [0, 0, 255]) < 40).all()


def test_an_image_that_is_not_a_full_panorama_fails_with_why_and_the_rest_goes_on(project: Project):
    add_panoramas(project.catalog, project.root, 2)
    cropped = jpeg(np.zeros((100, 300, 3), np.uint8))
    fields = {"projection": "equirectangular", "width": 300, "height": 100, "reel": "P009"}
    project.catalog.upsert_images([record(project.root / "P009" / "cropped.jpg", cropped, 1, **fields)])
    covered = project.with_steps(nadir={"enabled": True})

    report = run(project.catalog, settings=covered, executor=InlineExecutor())

    assert report.counts["nadir"] == {"succeeded": 2, "failed": 1}
    (failure,) = report.failures
    assert "is 300x100, not a full equirectangular panorama" in failure.error
    assert report.counts["publish"] == {"succeeded": 2}


def test_the_image_s_own_metadata_goes_through_the_cap(project: Project):
    """ExifTool reads the camera's tags (and the catalog's) in the covered, published image."""
    path = project.root / "P001" / "pano_000000.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(jpeg(synthetic_panorama(256, 128, seed=5)))
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-Software=CamFirmware 1.2", "-XMP-dc:Subject=kerb", path],
        check=True,
    )
    fields = {"projection": "equirectangular", "width": 256, "height": 128, "reel": "P001"}
    project.catalog.upsert_images([record(path, path.read_bytes(), 0, **fields)])
    covered = project.with_steps(nadir={"enabled": True, "fill": RED})

    assert run(project.catalog, settings=covered, executor=InlineExecutor()).ok

    out = subprocess.run(
        ["exiftool", "-j", "-n", "-G1", published(project, "P001")],
        check=True,
        capture_output=True,
        text=True,
    )
    tags = json.loads(out.stdout)[0]
    assert tags["IFD0:Software"] == "CamFirmware 1.2"
    assert tags["XMP-dc:Subject"] == "kerb"
    assert tags["XMP-GPano:ProjectionType"] == "equirectangular"
    assert tags["IFD0:Artist"] == "Ada"  # the catalog's metadata, written after the cap
    assert bottom_is_red(published(project, "P001"))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"angle_deg": 75}, "angle_deg must be a number from 1 to 60"),
        ({"fill": "red"}, "fill: expected 'blur' or a colour #RRGGBB"),
        ({"quality": 0}, "quality must be an integer from 1 to 100"),
        ({"logo": "missing.png"}, "cannot read logo missing.png"),
        ({"enabled": "yes"}, "enabled must be true or false"),
    ],
)
def test_a_bad_cap_is_a_configuration_error_before_anything_runs(project: Project, table, message):
    with pytest.raises(ConfigError, match=rf"\[steps.nadir\]: {message}"):
        load_pipeline(project.catalog, project.with_steps(nadir={"enabled": True, **table}))


def test_a_logo_that_is_not_an_image_is_refused(project: Project, tmp_path: Path):
    logo = tmp_path / "logo.svg"
    logo.write_text("<svg/>", encoding="utf-8")
    with pytest.raises(ConfigError, match="is neither a PNG nor a JPEG"):
        load_pipeline(project.catalog, project.with_steps(nadir={"enabled": True, "logo": str(logo)}))


def _logo(kind: str) -> bytes:
    """A real logo: a PNG with transparency, or a JPEG."""
    pixels = synthetic_panorama(96, 64, seed=3)
    buffer = io.BytesIO()
    if kind == "png":
        alpha = np.full((*pixels.shape[:2], 1), 128, np.uint8)
        Image.fromarray(np.concatenate([pixels, alpha], axis=2), "RGBA").save(buffer, "PNG")
    else:
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _bad_sector(data: bytes) -> bytes:
    """``data`` with 512 bytes in its middle zeroed, as a bad sector of a disk or card leaves a file."""
    middle = len(data) // 2
    return data[:middle] + bytes(512) + data[middle + 512 :]


@pytest.mark.parametrize(
    ("kind", "damage", "reason"),
    [
        ("png", lambda data: data[: len(data) // 2], r"cut short: the chunk at byte 33 runs past the end"),
        ("png", _bad_sector, r"its chunk at byte 33 \('IDAT'\) fails its checksum"),
        (
            "jpeg",
            lambda data: data[: len(data) // 2],
            "cut short: no end-of-image marker after its image data",
        ),
    ],
    ids=["truncated PNG", "PNG with a zeroed sector", "truncated JPEG"],
)
def test_a_damaged_logo_is_a_configuration_error_before_anything_runs(
    project: Project, tmp_path: Path, kind: str, damage, reason: str
):
    """Planning had taken it: then every job failed alike, or OpenCV decoded what was left of it and the cap
    pasted the garbage on every image."""
    logo = tmp_path / f"logo.{kind}"
    logo.write_bytes(damage(_logo(kind)))
    settings = project.with_steps(nadir={"enabled": True, "logo": str(logo)})

    with pytest.raises(
        ConfigError, match=rf"^\[steps.nadir\]: logo {re.escape(str(logo))} is damaged \({reason}"
    ):
        load_pipeline(project.catalog, settings)

    logo.write_bytes(_logo(kind))
    load_pipeline(project.catalog, settings)  # the same logo, intact
