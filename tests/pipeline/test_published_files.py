"""What is published is usable by others: readable files, and thumbnails and previews that carry the
catalog's metadata and open as 360° panoramas. ExifTool reads the files back."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from PIL import Image as PILImage
from tests.pipeline.captures import Project, add_panoramas, add_rig_shots

from panopipe.catalog import Selection
from panopipe.executors import InlineExecutor
from panopipe.pipeline import plan, run, verify
from panopipe.steps.base import PipelineContext
from panopipe.steps.publish import PublishStep

PUBLISHED = "demo/R001/demo_R001_000000.jpg"


def exiftool(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["exiftool", "-j", "-n", "-G1", str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)[0]


def test_images_without_reel_or_frame_are_published_by_their_file_name(project: Project):
    # the default template needs a reel and a frame; a 360° image straight from its camera has neither
    add_panoramas(project.catalog, project.root, 2, numbered=False)

    assert run(project.catalog, settings=project.settings, executor=InlineExecutor()).ok

    published = sorted(p.relative_to(project.out).as_posix() for p in project.out.glob("publish/**/*.jpg"))
    assert published == [
        f"publish/{tree}demo/pano_00000{n}.jpg" for tree in ("", "previews/", "thumbnails/") for n in (0, 1)
    ]


def test_thumbnails_and_previews_beside_the_image_when_asked_and_a_change_of_layout_moves_them(
    project: Project,
):
    """``layout = "beside"`` names them after the image (the layout before there was a choice: its parameters
    are those of then, so nothing published that way is made again); a change of layout republishes, and
    the copies at the names of the other layout are removed."""
    add_panoramas(project.catalog, project.root, 2)
    beside = project.with_steps(publish={"layout": "beside"})
    assert run(project.catalog, settings=beside, executor=InlineExecutor()).ok

    def names() -> list[str]:
        publish = project.out / "publish"
        return sorted(p.relative_to(publish).as_posix() for p in publish.rglob("*.jpg"))

    assert names() == [
        f"demo/P001/demo_P001_00000{n}{suffix}.jpg"
        for n in (0, 1)
        for suffix in ("", "_preview", "_thumbnail")
    ]
    context = PipelineContext("demo", str(project.out))
    before_the_choice = PublishStep({}, context).params | {"layout": "apart"}
    assert PublishStep({"layout": "beside"}, context).params == {
        key: value for key, value in before_the_choice.items() if key != "layout"
    }

    stale = {
        (item.step, item.subject, item.reason) for item in plan(project.catalog, settings=project.settings)
    }
    assert stale == {
        ("publish", f"image:{image.id}", "parameters changed") for image in project.catalog.images()
    }
    assert run(project.catalog, settings=project.settings, executor=InlineExecutor()).ok
    assert names() == [
        f"{tree}demo/P001/demo_P001_00000{n}.jpg" for tree in ("", "previews/", "thumbnails/") for n in (0, 1)
    ]


def test_published_files_get_the_umask_mode(project: Project, umask: int):
    add_rig_shots(project.catalog, project.root, 1)

    assert run(project.catalog, settings=project.settings, executor=InlineExecutor()).ok

    published = sorted(project.out.glob("publish/**/*.jpg"))
    assert len(published) == 3
    assert {stat.S_IMODE(p.stat().st_mode) for p in published} == {umask}


@pytest.mark.exiftool
@pytest.mark.parametrize(("tree", "size"), [("thumbnails", (64, 32)), ("previews", (128, 64))])
def test_published_thumbnail_and_preview_carry_gps_time_and_gpano(
    project: Project, executor, tree: str, size: tuple[int, int]
):
    add_rig_shots(project.catalog, project.root, 1)
    run(project.catalog, settings=project.settings, executor=executor)
    frames = list(project.catalog.images())

    tags = exiftool(project.out / "publish" / tree / PUBLISHED)

    assert (tags["File:ImageWidth"], tags["File:ImageHeight"]) == size
    assert tags["GPS:GPSLatitude"] == pytest.approx(sum(f.lat for f in frames) / len(frames), abs=1e-7)
    assert tags["GPS:GPSLongitude"] == pytest.approx(sum(f.lon for f in frames) / len(frames), abs=1e-7)
    assert tags["GPS:GPSAltitude"] == pytest.approx(520.0, abs=1e-3)
    assert tags["ExifIFD:DateTimeOriginal"] == "2024:05:01 12:00:00"  # T0 at its offset of +02:00
    assert tags["ExifIFD:OffsetTimeOriginal"] == "+02:00"
    assert (tags["GPS:GPSDateStamp"], tags["GPS:GPSTimeStamp"]) == ("2024:05:01", "10:00:00")  # UTC
    assert tags["XMP-GPano:ProjectionType"] == "equirectangular"
    assert tags["XMP-GPano:UsePanoramaViewer"] is True
    gpano = [tags[f"XMP-GPano:{n}"] for n in ("FullPanoWidthPixels", "FullPanoHeightPixels")]
    cropped = [tags[f"XMP-GPano:CroppedAreaImage{n}Pixels"] for n in ("Width", "Height")]
    assert gpano == cropped == list(size)
    assert tags["XMP-GPano:PoseHeadingDegrees"] == 90
    assert tags["XMP-panopipe:Shot"] == "R001-000000"


@pytest.mark.exiftool
def test_published_panorama_has_gps_date_and_time_in_utc(project: Project, executor):
    add_panoramas(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)

    tags = exiftool(project.out / "publish/demo/P001/demo_P001_000001.jpg")

    assert (tags["GPS:GPSDateStamp"], tags["GPS:GPSTimeStamp"]) == ("2024:05:01", "10:00:01")
    assert tags["ExifIFD:DateTimeOriginal"] == "2024:05:01 12:00:01"
    assert "GPS:GPSHPositioningError" not in tags  # no accuracy is known of these captures


def test_a_preview_larger_than_its_source_keeps_the_source_size(project: Project, executor):
    add_panoramas(project.catalog, project.root, 1)
    settings = project.with_steps(derive={"thumbnail": 64, "preview": 4096})

    assert run(project.catalog, settings=settings, executor=executor).ok

    with PILImage.open(next(project.out.glob("publish/previews/**/*.jpg"))) as preview:
        assert preview.size == (256, 128)
    assert verify(project.catalog, settings=settings) == []


@pytest.mark.exiftool
def test_an_edited_horizontal_accuracy_is_published_and_reruns_only_what_it_changes(
    project: Project, executor
):
    add_rig_shots(project.catalog, project.root, 1)
    add_panoramas(project.catalog, project.root, 1)
    assert run(project.catalog, settings=project.settings, executor=executor).ok
    shot = Selection(reels=("R001",))
    worst = next(image.id for image in project.catalog.images(shot) if image.camera_index == 3)
    for selection, accuracy in ((shot, 0.02), (Selection(ids=(worst,)), 0.05)):  # a PPK solution's figures
        changes = project.catalog.plan_edit(selection, assign={"gps_accuracy_m": accuracy})
        project.catalog.apply_edit(changes, reason="PPK", author="test")

    stale = {
        (item.step, item.subject.partition(":")[0])
        for item in plan(project.catalog, settings=project.settings)
    }
    assert stale == {("apply-metadata", "shot"), ("derive", "shot"), ("publish", "shot")}
    assert run(project.catalog, settings=project.settings, executor=executor).ok

    for tree in ("", "thumbnails", "previews"):  # the shot's: the largest of its frames' accuracies
        tags = exiftool(project.out / "publish" / tree / PUBLISHED)
        assert tags["GPS:GPSHPositioningError"] == pytest.approx(0.05, abs=5e-4), tree
    assert "GPS:GPSHPositioningError" not in exiftool(project.out / "publish/demo/P001/demo_P001_000000.jpg")
    assert verify(project.catalog, settings=project.settings) == []


@pytest.mark.exiftool
def test_an_edited_pitch_and_roll_are_published_as_the_gpano_pose(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 1)
    add_panoramas(project.catalog, project.root, 1)
    assert run(project.catalog, settings=project.settings, executor=executor).ok
    # the 360° image's camera was tilted: a correction from the vehicle's IMU
    panorama = Selection(reels=("P001",))
    changes = project.catalog.plan_edit(panorama, assign={"pitch": -2.5, "roll": 1.2})
    project.catalog.apply_edit(changes, reason="IMU", author="test")

    stale = {(i.step, i.subject.partition(":")[0]) for i in plan(project.catalog, settings=project.settings)}
    assert stale == {("apply-metadata", "image"), ("derive", "image"), ("publish", "image")}
    assert run(project.catalog, settings=project.settings, executor=executor).ok

    for tree in ("", "thumbnails", "previews"):
        tags = exiftool(project.out / "publish" / tree / "demo/P001/demo_P001_000000.jpg")
        assert (tags["XMP-GPano:PosePitchDegrees"], tags["XMP-GPano:PoseRollDegrees"]) == (-2.5, 1.2), tree
    shot = exiftool(project.out / "publish" / PUBLISHED)  # no pitch or roll in the catalog: none written
    assert "XMP-GPano:PosePitchDegrees" not in shot and "XMP-GPano:PoseRollDegrees" not in shot
    assert verify(project.catalog, settings=project.settings) == []
