"""verify finds drifted outputs and repair makes them stale; status and the HTML report show where things stand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

import pytest
from tests.pipeline.captures import Project, add_panoramas, add_rig_shots

from panopipe.catalog import Selection
from panopipe.export.panoramas import load_panoramas
from panopipe.pipeline import plan, run, status, verify, write_html_report
from panopipe.pipeline.verify import OUTDATED


def test_verify_reports_missing_changed_and_outdated_outputs_and_repair_reruns_the_drifted(
    project: Project, executor
):
    ids = add_panoramas(project.catalog, project.root, 3)
    run(project.catalog, settings=project.settings, executor=executor)
    calls: list[
        tuple[int, int]
    ] = []  # what drives verify's progress bar: done of a total known from the start
    assert verify(project.catalog, settings=project.settings, progress=lambda *call: calls.append(call)) == []
    assert len(calls) > 3 and calls == [(n, len(calls)) for n in range(1, len(calls) + 1)]

    thumbnail = next(project.out.glob(f"derive/image/{ids[0]}/thumbnail-*.jpg"))
    thumbnail.unlink()
    preview = next(project.out.glob(f"derive/image/{ids[1]}/preview-*.jpg"))
    made = preview.read_bytes()
    preview.write_bytes(made + b"junk")
    changes = project.catalog.plan_edit(Selection(ids=(ids[2],)), assign={"lat": 45.0})
    project.catalog.apply_edit(changes, reason="fix", author="t")

    drifts = verify(project.catalog, settings=project.settings, repair=True)

    found = {(d.step, d.subject, d.name, d.problem) for d in drifts}
    # the edited image's outputs differ from the catalog because of the edit: a run rewrites them, as plan
    # says, so they are outdated (publish's too, though plan found it up to date before the edit ran)
    assert found == {
        ("derive", f"image:{ids[0]}", "thumbnail", "missing"),
        ("derive", f"image:{ids[1]}", "preview", "changed"),
        ("apply-metadata", f"image:{ids[2]}", "image", "outdated"),
        *(("derive", f"image:{ids[2]}", name, "outdated") for name in ("thumbnail", "preview")),
        *(("publish", f"image:{ids[2]}", name, "outdated") for name in ("published", "thumbnail", "preview")),
    }
    assert [d.is_drift for d in drifts].count(True) == 2
    gps = next(d for d in drifts if d.step == "apply-metadata")
    assert gps.details[0] == OUTDATED and re.fullmatch(
        r"gps_latitude: file has 48\.\d+, catalog says 45", gps.details[1]
    )
    reasons = {(i.step, i.subject): i.reason for i in plan(project.catalog, settings=project.settings)}
    assert reasons[("derive", f"image:{ids[0]}")] == "output missing"
    assert reasons[("derive", f"image:{ids[1]}")].startswith("output changed")
    assert reasons[("apply-metadata", f"image:{ids[2]}")] == "metadata edited"  # not marked by --repair

    assert not preview.exists()  # the rerun writes its key anew, where it would keep what it found

    run(project.catalog, settings=project.settings, executor=executor)
    assert verify(project.catalog, settings=project.settings) == []
    assert len(plan(project.catalog, settings=project.settings)) == 0
    assert preview.read_bytes() == made  # the preview as derive makes it, not the damaged one
    (published,) = project.out.glob("publish/previews/demo/P001/demo_P001_000001.jpg")
    assert published.read_bytes() == made


def test_a_heading_of_360_degrees_is_not_drift(project: Project, executor):
    """GPSImgDirection is written 0 to 359.9999: a heading of 360 (which cameras write) reads back as 0."""
    ids = add_panoramas(project.catalog, project.root, 2)
    for image_id, heading in zip(ids, (360.0, 359.99999), strict=True):
        changes = project.catalog.plan_edit(Selection(ids=(image_id,)), assign={"heading": heading})
        project.catalog.apply_edit(changes, reason="north", author="t")
    run(project.catalog, settings=project.settings, steps=["apply-metadata"], executor=executor)

    assert verify(project.catalog, settings=project.settings) == []


def test_a_position_the_catalog_counts_as_no_fix_left_in_the_files_is_drift(project: Project, executor):
    """A receiver that reports 0.3, 0.3 without a fix: once ``[qc] null_island_deg`` says so, the image has no
    position, and the outputs written with that one are drift until a run removes it."""
    (image,) = add_panoramas(project.catalog, project.root, 1)
    changes = project.catalog.plan_edit(Selection(ids=(image,)), assign={"lat": 0.3, "lon": 0.3})
    project.catalog.apply_edit(changes, reason="receiver", author="t")
    run(project.catalog, settings=project.settings, executor=executor)
    settings = replace(project.settings, qc={"null_island_deg": 0.5})

    drifts = verify(project.catalog, settings=settings)

    assert sorted((d.step, d.name, d.problem) for d in drifts) == [
        ("apply-metadata", "image", "metadata"),
        ("derive", "preview", "metadata"),
        ("derive", "thumbnail", "metadata"),
        *(("publish", name, "metadata") for name in ("preview", "published", "thumbnail")),
    ]
    assert {d.details for d in drifts} == {
        ("gps_latitude: file has 0.3, catalog says None", "gps_longitude: file has 0.3, catalog says None")
    }
    run(project.catalog, settings=settings, executor=executor)
    assert verify(project.catalog, settings=settings) == []


@pytest.mark.exiftool
def test_published_panorama_carries_the_catalog_metadata(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 1)
    run(project.catalog, settings=project.settings, executor=executor)
    published = project.out / "publish/demo/R001/demo_R001_000000.jpg"
    frames = list(project.catalog.images())

    out = subprocess.run(
        ["exiftool", "-j", "-n", "-G1", "-a", str(published)], check=True, capture_output=True, text=True
    ).stdout
    tags = json.loads(out)[0]

    assert tags["GPS:GPSLatitude"] == pytest.approx(sum(f.lat for f in frames) / len(frames), abs=1e-7)
    assert tags["GPS:GPSLongitude"] == pytest.approx(sum(f.lon for f in frames) / len(frames), abs=1e-7)
    assert tags["IFD0:Artist"] == "Ada" and tags["IFD0:Copyright"] == "CC-BY 4.0"
    assert tags["IFD0:Make"] == "Acme"
    assert tags["ExifIFD:ColorSpace"] == 1  # stitched from frames without a profile: sRGB
    assert tags["XMP-GPano:ProjectionType"] == "equirectangular"
    assert tags["XMP-GPano:FullPanoWidthPixels"] == 256
    assert tags["XMP-GPano:PoseHeadingDegrees"] == 90
    assert tags["ExifIFD:OffsetTimeOriginal"] == "+02:00"
    assert tags["ExifIFD:DateTimeOriginal"] == "2024:05:01 12:00:00"
    panopipe_tags = {k.split(":")[1]: v for k, v in tags.items() if k.startswith("XMP-panopipe:")}
    assert panopipe_tags == {"Project": "demo", "Reel": "R001", "Frame": 0, "Shot": "R001-000000"}


def test_status_and_html_report_show_counts_and_failures(project: Project, executor, tmp_path: Path):
    add_rig_shots(project.catalog, project.root, 2, skip_camera={0: 5})
    add_panoramas(project.catalog, project.root, 1)
    run(project.catalog, settings=project.settings, executor=executor)

    current = status(project.catalog)

    assert current.jobs["stitch"] == {"failed": 1, "succeeded": 1}
    assert current.jobs["publish"] == {"succeeded": 2}
    assert current.artifacts == {"apply-metadata": 2, "derive": 2, "publish": 2, "stitch": 1}
    (failure,) = current.failures
    assert failure.subject == "shot:R001-000000" and "camera(s) [5]" in failure.error
    page = write_html_report(project.catalog, tmp_path / "report.html").read_text()
    assert "<svg" in page and "shot:R001-000000" in page and "camera(s) [5]" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    # the other shot, the 360° image, the failed shot's 5 frames; and a numbered marker per subject with a thumbnail
    assert page.count("<circle") == 6 + 1 + 5 + 2
    links = re.findall(r'<image href="([^"]+)"', page)
    assert links == re.findall(r'<img src="([^"]+)"', page) and len(links) == 2
    assert all(not Path(link).is_absolute() and (tmp_path / link).is_file() for link in links)
    # the published thumbnails, which keep their names: an edit run since leaves the page's links working
    assert all(Path(link).parts[:3] == ("out", "publish", "thumbnails") for link in links), links
    changes = project.catalog.plan_edit(Selection(), assign={"alt": 600.0})
    project.catalog.apply_edit(changes, reason="RTK", author="test")
    assert run(project.catalog, settings=project.settings, executor=executor).counts["derive"] == {
        "succeeded": 2
    }
    assert all((tmp_path / link).is_file() for link in links)
    assert (
        re.search(r">\d+ m</text>", page) and "°N</text>" in page and "°E</text>" in page
    )  # scale bar, axes


def test_status_and_report_count_the_failures_they_do_not_list(
    project: Project, executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Failures past the listing's limit are counted (JSON, the page's heading) and grouped by reason; the
    map draws at most its cap of points, the failed ones first, says it shows a sample and counts every image
    in failed jobs (it had drawn all failed ones beyond the cap, counted only those of the listed failures,
    and drawn the others as healthy)."""
    add_rig_shots(project.catalog, project.root, 3, skip_camera={0: 5, 1: 5, 2: 5})
    add_panoramas(project.catalog, project.root, 1)
    run(project.catalog, settings=project.settings, executor=executor)

    current = status(project.catalog, failures_limit=2)

    assert [f.subject for f in current.failures] == ["shot:R001-000000", "shot:R001-000001"]
    assert current.failures_total == 3 and current.to_dict()["failures_truncated"] is True
    (group,) = current.failure_groups
    assert (group.step, group.status, group.count) == (
        "stitch",
        "failed",
        3,
    ) and "camera(s) [5]" in group.message
    assert group.subjects == ("shot:R001-000000", "shot:R001-000001", "shot:R001-000002")
    assert status(project.catalog).to_dict()["failures_truncated"] is False

    monkeypatch.setattr(sys.modules["panopipe.pipeline.status"], "FAILURES_LIMIT", 2)  # the function's name
    monkeypatch.setattr("panopipe.pipeline.report.MAX_POINTS", 8)
    page = write_html_report(project.catalog, tmp_path / "report.html").read_text()
    assert "<h2>Failures (3)</h2>" in page  # in one row: one reason
    assert page.count("<td>stitch</td><td>failed</td><td>3</td>") == 1
    assert "8 of 16 images shown, <span class='failed'>15 in failed jobs (8 of them shown)</span>" in page
    assert page.count('<circle cx="') - page.count('class="shot"') == 8  # the points, not the shots' marks

    shots_failed = ["shot:R001-000000", "shot:R001-000001", "shot:R001-000002"]
    few = project.catalog.positions(shots_failed[:1], limit=8)  # 5 failed images, 11 others
    assert (len(few.flagged), len(few.points), few.flagged_total, few.total) == (5, 3, 5, 16) and few.sampled
    everything = project.catalog.positions(shots_failed, limit=100)
    assert (len(everything.flagged), len(everything.points)) == (15, 1) and not everything.sampled


def test_report_says_when_it_shows_only_the_first_thumbnails(
    project: Project, executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Past its cap of shots the page had left the others out without a word."""
    add_panoramas(project.catalog, project.root, 3)
    run(project.catalog, settings=project.settings, executor=executor)
    monkeypatch.setattr("panopipe.pipeline.report.MAX_SHOTS", 2)

    page = write_html_report(project.catalog, tmp_path / "report.html").read_text()

    assert "numbered: the first 2 shots with a thumbnail (more are not shown)" in page
    assert len(re.findall(r'<img src="([^"]+)"', page)) == 2
    monkeypatch.setattr("panopipe.pipeline.report.MAX_SHOTS", 3)
    page = write_html_report(project.catalog, tmp_path / "report.html").read_text()
    assert "numbered: shots with a thumbnail" in page and len(re.findall(r'<img src="', page)) == 3


def test_report_links_thumbnails_under_any_folder_name(project: Project, executor, tmp_path: Path):
    """A ``#``, ``%`` or space in a thumbnail's path is quoted in the page's links, which a browser reads as
    URLs: unquoted, ``#`` would start a fragment and ``%20`` name another file."""
    out = tmp_path / "survey #2, 100%20 done"
    settings = project.with_steps(pipeline={"output": str(out), "backoff_s": 0.01})
    add_panoramas(project.catalog, project.root, 1)
    run(project.catalog, settings=settings, executor=executor)

    page = write_html_report(project.catalog, tmp_path / "report.html").read_text()

    links = re.findall(r'<img src="([^"]+)"', page)
    assert len(links) == 1 and not {"#", " ", ","} & set(links[0])
    assert links[0].startswith("survey%20%232%2C%20100%2520%20done/")
    assert (tmp_path / unquote(links[0])).is_file()


def test_status_of_an_empty_catalog(project: Project, tmp_path: Path):
    assert status(project.catalog).jobs == {}
    assert "No image has a position" in write_html_report(project.catalog, tmp_path / "r.html").read_text()


def test_the_jobs_of_a_shot_an_edit_regrouped_away_leave_status_after_a_full_run(project: Project, executor):
    """A camera's clock a half second off made a shot of its frame alone, whose jobs failed; once the clock
    was fixed the shot was gone, but status and the report counted its failures for ever."""
    add_rig_shots(project.catalog, project.root, 2)
    late = next(i for i in project.catalog.images() if i.frame == 1 and i.camera_index == 0)
    changes = project.catalog.plan_edit(Selection(ids=(late.id,)), shift_time_s=0.5)
    batch = project.catalog.apply_edit(changes, reason="clock", author="test", shot_tolerance_s=0.05)
    assert project.catalog.get(late.id).shot == "R001-000001.2"
    run(project.catalog, settings=project.settings, executor=executor)
    assert any(f.subject == "shot:R001-000001.2" for f in status(project.catalog).failures)

    project.catalog.undo(batch, author="test", shot_tolerance_s=0.05)
    report = run(project.catalog, settings=project.settings, executor=executor)

    assert report.ok and project.catalog.get(late.id).shot == "R001-000001"
    found = status(project.catalog)
    assert found.failures == () and found.jobs["stitch"] == {"succeeded": 2}


def test_an_edit_run_through_the_nadir_cap_leaves_nothing_outdated(project: Project, executor):
    """The cap reads the stitched panorama, not the frames' metadata: an edit of the heading is not its to
    redo, and once a run rewrote what reads it, the panorama is published again, as plan and verify say."""
    add_rig_shots(project.catalog, project.root, 1)
    covered = project.with_steps(nadir={"enabled": True})
    assert run(project.catalog, settings=covered, executor=executor).ok
    changes = project.catalog.plan_edit(Selection(reels=("R001",)), assign={"heading": 45.0})
    project.catalog.apply_edit(changes, reason="compass", author="t")
    (edited,) = load_panoramas(project.catalog, settings=covered)
    assert edited.status == "outdated"
    assert {d.problem for d in verify(project.catalog, settings=covered)} == {"outdated"}

    assert run(project.catalog, settings=covered, executor=executor).ok

    assert len(plan(project.catalog, settings=covered)) == 0
    assert verify(project.catalog, settings=covered) == []
    (panorama,) = load_panoramas(project.catalog, settings=covered)
    assert (panorama.heading, panorama.status) == (45.0, "published")


MISSING = r"the {what} it publishes is missing: \S+; run `panopipe verify --repair`, then `panopipe run`"


def test_a_derived_output_gone_fails_its_publish_which_keeps_what_it_published_until_repaired(
    project: Project, executor
):
    """A thumbnail derive recorded and the storage lost (a lifecycle rule, a clean-up of intermediates): the
    publish job published the image alone and succeeded, and the thumbnail it had published was deleted with
    the artifact it no longer had; a rerun of derive makes the same bytes, so publish never ran again."""
    ids = add_panoramas(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    published = {p: p.read_bytes() for p in project.out.glob("publish/**/*_000000.jpg")}
    assert len(published) == 3
    next(project.out.glob(f"derive/image/{ids[0]}/thumbnail-*.jpg")).unlink()
    settings = project.with_steps(apply_metadata={"artist": "Jane"})  # publish runs again, derive does not

    report = run(project.catalog, settings=settings, executor=executor)

    assert report.counts["publish"] == {"succeeded": 1, "failed": 1}
    (failure,) = report.failures
    assert failure.subject == f"image:{ids[0]}"
    assert re.fullmatch(MISSING.format(what="derive thumbnail"), failure.error)
    assert "/thumbnail-" in failure.error
    # nothing of it published, and nothing it had published removed
    assert {p: p.read_bytes() for p in project.out.glob("publish/**/*_000000.jpg")} == published

    verify(project.catalog, settings=settings, repair=True)
    report = run(project.catalog, settings=settings, executor=executor)

    assert report.ok and report.counts == {"derive": {"succeeded": 1}, "publish": {"succeeded": 1}}
    (derived,) = project.out.glob(f"derive/image/{ids[0]}/thumbnail-*.jpg")
    thumbnail = project.out / "publish/thumbnails/demo/P001/demo_P001_000000.jpg"
    assert thumbnail.read_bytes() == derived.read_bytes()
    assert verify(project.catalog, settings=settings) == []
    assert len(plan(project.catalog, settings=settings)) == 0


def test_an_apply_metadata_output_gone_fails_its_publish_with_what_to_run(project: Project, executor):
    ids = add_panoramas(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    next(project.out.glob(f"apply-metadata/image/{ids[0]}/image-*.jpg")).unlink()
    renamed = project.with_steps(publish={"template": "{project}/{reel}/y_{frame:06d}.jpg"})

    def names() -> list[str]:
        publish = project.out / "publish"
        return sorted(p.relative_to(publish).as_posix() for p in publish.rglob("*.jpg"))

    report = run(project.catalog, settings=renamed, executor=executor)

    (failure,) = report.failures
    assert failure.subject == f"image:{ids[0]}"
    assert re.fullmatch(MISSING.format(what="apply-metadata image"), failure.error)
    assert f"apply-metadata/image/{ids[0]}/image-" in failure.error
    # the first keeps its old names, none of the new ones
    assert names() == [
        f"{tree}demo/P001/{name}"
        for tree in ("", "previews/", "thumbnails/")
        for name in ("demo_P001_000000.jpg", "y_000001.jpg")
    ]

    verify(project.catalog, settings=renamed, repair=True)
    assert run(project.catalog, settings=renamed, executor=executor).ok

    assert names() == [
        f"{tree}demo/P001/y_00000{n}.jpg" for tree in ("", "previews/", "thumbnails/") for n in (0, 1)
    ]
    assert verify(project.catalog, settings=renamed) == []
    assert len(plan(project.catalog, settings=renamed)) == 0
