"""``[steps.apply-metadata] enabled = false``, on SQLite and PostgreSQL: publish publishes what apply-metadata
would have read (the stitched panorama, the 360° image file, or their nadir cap) as it is, with derive's
thumbnails and previews, which carry the catalog's metadata; verify checks that copy's content, not its tags.
It published the output apply-metadata made before it was turned off, which an edit left stale for ever
(verify: drift; verify --repair and run: the same stale file again), or nothing at all on a new project.
ExifTool reads the files back."""

from __future__ import annotations

import re

import pytest
from tests.pipeline.captures import Project, add_panoramas, add_rig_shots
from tests.pipeline.test_nadir_pipeline import RED, bottom_is_red, published, reasons
from tests.pipeline.test_published_files import exiftool
from tests.pipeline.test_verify_status import MISSING

from panopipe.catalog import Selection
from panopipe.config import Settings
from panopipe.pipeline import plan, run, verify

DAY_S = 86400.0


def recorded(project: Project, step: str, kind: str, name: str) -> bytes:
    """The bytes of the one output ``name`` that ``step`` recorded for a subject of ``kind``."""
    (path,) = project.out.glob(f"{step}/{kind}/*/{name}-*.jpg")
    return path.read_bytes()


def settled(project: Project, settings: Settings) -> bool:
    return (
        verify(project.catalog, settings=settings) == []
        and len(plan(project.catalog, settings=settings)) == 0
    )


@pytest.mark.exiftool
def test_an_edit_with_apply_metadata_off_publishes_the_panorama_as_it_is_and_settles(
    project: Project, executor
):
    add_rig_shots(project.catalog, project.root, 1)
    add_panoramas(project.catalog, project.root, 1)
    assert run(project.catalog, settings=project.settings, executor=executor).ok
    off = project.with_steps(apply_metadata={"enabled": False})
    changes = project.catalog.plan_edit(Selection(), shift_time_s=DAY_S)
    project.catalog.apply_edit(changes, reason="clock", author="test")

    report = run(project.catalog, settings=off, executor=executor)

    assert report.ok and report.counts == {"derive": {"succeeded": 2}, "publish": {"succeeded": 2}}
    assert settled(project, off)
    assert published(project, "R001").read_bytes() == recorded(project, "stitch", "shot", "panorama")
    assert published(project, "P001").read_bytes() == (project.root / "P001/pano_000000.jpg").read_bytes()
    for reel in ("R001", "P001"):
        assert "GPS:GPSLatitude" not in exiftool(published(project, reel))  # no catalog metadata written
        for tree in ("thumbnails", "previews"):  # derive's copies carry it, the edit too
            tags = exiftool(published(project, reel, tree))
            assert tags["ExifIFD:DateTimeOriginal"] == "2024:05:02 12:00:00", (reel, tree)
            assert tags["GPS:GPSLatitude"] == pytest.approx(48.1, abs=1e-7)

    # the content of what it published is still checked, and repaired
    published(project, "R001").write_bytes(b"not the panorama")
    (drift,) = verify(project.catalog, settings=off, repair=True)
    assert (drift.step, drift.name, drift.problem) == ("publish", "published", "changed")
    assert run(project.catalog, settings=off, executor=executor).counts == {"publish": {"succeeded": 1}}
    assert published(project, "R001").read_bytes() == recorded(project, "stitch", "shot", "panorama")
    assert settled(project, off)


@pytest.mark.parametrize("nadir", [False, True], ids=["nadir-off", "nadir-on"])
def test_with_apply_metadata_off_from_the_start_the_finished_pixels_are_published(
    project: Project, executor, nadir: bool
):
    add_rig_shots(project.catalog, project.root, 1)
    add_panoramas(project.catalog, project.root, 1)
    settings = project.with_steps(apply_metadata={"enabled": False}, nadir={"enabled": nadir, "fill": RED})
    assert plan(project.catalog, settings=settings).counts()["publish"] == 2

    report = run(project.catalog, settings=settings, executor=executor)

    assert report.ok and report.counts["publish"] == {"succeeded": 2}, report.failures
    shot = (
        recorded(project, "nadir", "shot", "image")
        if nadir
        else recorded(project, "stitch", "shot", "panorama")
    )
    image = (
        recorded(project, "nadir", "image", "image")
        if nadir
        else (project.root / "P001/pano_000000.jpg").read_bytes()
    )
    assert published(project, "R001").read_bytes() == shot
    assert published(project, "P001").read_bytes() == image
    for kind, reel in (("shot", "R001"), ("image", "P001")):
        for name in ("thumbnail", "preview"):
            assert published(project, reel, f"{name}s").read_bytes() == recorded(
                project, "derive", kind, name
            )
        assert bottom_is_red(published(project, reel)) == nadir
    assert not list(project.out.glob("apply-metadata/**/*.jpg"))
    assert settled(project, settings)


@pytest.mark.exiftool
def test_turning_apply_metadata_or_the_nadir_cap_on_or_off_republishes(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 1)
    assert run(project.catalog, settings=project.settings, executor=executor).ok
    assert exiftool(published(project, "R001"))["IFD0:Artist"] == "Ada"

    off = project.with_steps(apply_metadata={"enabled": False})
    assert reasons(project, off) == {"publish": {"parameters changed"}}
    assert run(project.catalog, settings=off, executor=executor).counts == {"publish": {"succeeded": 1}}
    assert published(project, "R001").read_bytes() == recorded(project, "stitch", "shot", "panorama")
    assert settled(project, off)

    covered = project.with_steps(apply_metadata={"enabled": False}, nadir={"enabled": True, "fill": RED})
    assert reasons(project, covered) == {
        "nadir": {"new input"},
        "derive": {"after nadir"},
        "publish": {"after nadir"},
    }
    assert run(project.catalog, settings=covered, executor=executor).ok
    assert published(project, "R001").read_bytes() == recorded(project, "nadir", "shot", "image")
    assert bottom_is_red(published(project, "R001"))
    assert settled(project, covered)

    assert run(project.catalog, settings=off, executor=executor).counts == {
        "derive": {"succeeded": 1},
        "publish": {"succeeded": 1},
    }  # the cap off: the stitched panorama again
    assert published(project, "R001").read_bytes() == recorded(project, "stitch", "shot", "panorama")
    assert settled(project, off)

    on = project.settings  # the output apply-metadata made before is current: published again as it is
    assert reasons(project, on) == {"publish": {"parameters changed"}}
    assert run(project.catalog, settings=on, executor=executor).counts == {"publish": {"succeeded": 1}}
    assert published(project, "R001").read_bytes() == recorded(project, "apply-metadata", "shot", "image")
    assert exiftool(published(project, "R001"))["IFD0:Artist"] == "Ada"
    assert settled(project, on)


def test_a_stitched_panorama_gone_fails_its_publish_with_what_to_run(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 2)
    off = project.with_steps(apply_metadata={"enabled": False})
    assert run(project.catalog, settings=off, executor=executor).ok
    next(project.out.glob("stitch/shot/R001-000000/panorama-*.jpg")).unlink()
    renamed = project.with_steps(
        apply_metadata={"enabled": False}, publish={"template": "{project}/{reel}/y_{frame:06d}.jpg"}
    )

    report = run(project.catalog, settings=renamed, executor=executor)

    (failure,) = report.failures
    assert failure.subject == "shot:R001-000000"
    assert re.fullmatch(MISSING.format(what="stitch panorama"), failure.error)
    verify(project.catalog, settings=renamed, repair=True)
    assert run(project.catalog, settings=renamed, executor=executor).ok
    assert published(project, "R001").with_name("y_000000.jpg").exists()
    assert settled(project, renamed)
