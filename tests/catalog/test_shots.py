"""Regrouping shots around new frames (as the event handler does) gives the shots of regrouping the whole reel."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.catalog import shots as shot_ops
from panopipe.catalog.schema import images
from panopipe.catalog.subjects import load_subjects
from panopipe.errors import ConfigError

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
TOLERANCE = 0.05


def frame(number: int, camera: int, seconds: float) -> ImageRecord:
    return ImageRecord(
        uri=f"/survey/R001/cam{camera}/frame_{number:06d}_{seconds}.jpg",
        captured_at=T0 + timedelta(seconds=seconds),
        camera_index=camera,
        reel="R001",
        frame=number,
    )


def survey(*extra: ImageRecord) -> list[ImageRecord]:
    """Five shots of four cameras one second apart (the cameras a few ms apart, the third shot lacks camera 3),
    and ``extra`` frames."""
    shots = [frame(f, cam, f + cam * 0.004) for f in range(5) for cam in range(4) if (f, cam) != (2, 3)]
    return [*shots, *extra]


def regroup_around(catalog: Catalog, new: list[ImageRecord]) -> None:
    added = catalog.upsert_images(new).added
    around = {"R001": {image_id: r.captured_at for image_id, r in zip(added, new, strict=True)}}
    catalog.assign_shots(["R001"], TOLERANCE, around=around)


def shots(catalog: Catalog) -> dict[str, str | None]:
    return {image.uri: image.shot for image in catalog.images()}


NEW = {
    "a new shot after the others": [frame(5, cam, 5 + cam * 0.004) for cam in range(4)],
    "a camera a shot lacked": [frame(2, 3, 2.012)],
    "a frame number an earlier shot has": [frame(1, cam, 7 + cam * 0.004) for cam in range(2)],
    "a camera later than the tolerance": [frame(3, 0, 3.08)],
    "a frame among frames too dense to show where runs end": [frame(9, 1, 9.5 + 0.03)],
}
DENSE = [frame(9, cam % 4, 9.5 + i * 0.03) for i, cam in enumerate((0, 2, 3, 0, 1, 2, 3))]


@pytest.mark.parametrize("case", NEW)
def test_regrouping_around_new_frames_gives_the_reels_shots(catalog: Catalog, case: str):
    catalog.upsert_images(survey(*DENSE))
    catalog.assign_shots(["R001"], TOLERANCE)

    regroup_around(catalog, NEW[case])

    around = shots(catalog)
    assert catalog.assign_shots(["R001"], TOLERANCE) == 0
    assert shots(catalog) == around


@pytest.mark.parametrize("around", [False, True], ids=["whole-reel", "around-it"])
def test_a_file_that_could_not_be_read_is_in_no_shot(catalog: Catalog, around: bool):
    """A frame uploaded empty (no capture time) made a shot of its own, with jobs bound to fail, where it
    named camera 2 of frame 1: the shot it belongs to is only missing that camera."""
    catalog.upsert_images(survey())
    catalog.assign_shots(["R001"], TOLERANCE)
    broken = ImageRecord(
        uri="/survey/R001/cam2/R001_cam2_000001_empty.jpg",
        camera_index=2,
        reel="R001",
        frame=1,
        status="failed",
        error="empty file",
    )
    if around:
        regroup_around(catalog, [broken])
    else:
        catalog.upsert_images([broken])
        catalog.assign_shots(["R001"], TOLERANCE)

    found = shots(catalog)
    assert found[broken.uri] is None
    assert set(found.values()) == {None, *(f"R001-{n:06d}" for n in range(5))}


def test_a_new_shot_named_like_an_earlier_one_gets_a_suffix(catalog: Catalog):
    catalog.upsert_images(survey())
    catalog.assign_shots(["R001"], TOLERANCE)
    regroup_around(catalog, NEW["a frame number an earlier shot has"])
    names = {shot for uri, shot in shots(catalog).items() if "_7." in uri}
    assert names == {"R001-000001.2"}


def test_regrouping_around_new_frames_leaves_the_other_runs_alone(catalog: Catalog):
    catalog.upsert_images(survey())
    catalog.assign_shots(["R001"], TOLERANCE)
    first = survey()[0].uri
    with catalog.engine.begin() as conn:
        conn.execute(images.update().where(images.c.uri == first).values(shot="set by hand"))

    regroup_around(catalog, NEW["a new shot after the others"])

    assert shots(catalog)[first] == "set by hand"
    assert {shot for uri, shot in shots(catalog).items() if "_5." in uri} == {"R001-000005"}
    assert catalog.assign_shots(["R001"], TOLERANCE) == 1  # the whole reel's regrouping puts it back
    with catalog.engine.connect() as conn:
        assert conn.execute(sa.select(images.c.shot).where(images.c.uri == first)).scalar() == "R001-000000"


def test_an_upsert_regroups_the_frames_it_moves_in_time_and_no_others(catalog: Catalog):
    """With shot_tolerance_s, an upsert regroups in its transaction around the frames it gives another capture
    time, reel, frame, camera or status (an ingest stopped after it leaves no frame in a shot it left); a frame
    updated otherwise (its position) is not regrouped, and the frames it adds stay in no shot."""
    catalog.upsert_images(survey())
    catalog.assign_shots(["R001"], TOLERANCE)
    first = survey()[0]
    with catalog.engine.begin() as conn:
        conn.execute(images.update().where(images.c.uri == first.uri).values(shot="set by hand"))

    placed = replace(first, lat=48.0)
    catalog.upsert_images([placed, *NEW["a new shot after the others"]], shot_tolerance_s=TOLERANCE)
    assert shots(catalog)[first.uri] == "set by hand"
    assert {shot for uri, shot in shots(catalog).items() if "_5." in uri} == {None}

    later = replace(placed, captured_at=T0 + timedelta(seconds=2.012), camera_index=3, frame=2)
    assert catalog.upsert_images([later], shot_tolerance_s=TOLERANCE).updated
    assert shots(catalog)[first.uri] == "R001-000002"  # the camera shot 2 lacked


def test_a_capture_time_edit_and_its_undo_regroup_the_reel(catalog: Catalog):
    """A camera whose clock ran a second fast put its frame into the next shot (which lacked that camera):
    `edit --shift-time` had fixed the time and left the frame there, stitched into the wrong panorama."""
    fast = frame(1, 3, 2.012)
    catalog.upsert_images([r for r in survey() if (r.frame, r.camera_index) != (1, 3)] + [fast])
    catalog.assign_shots(["R001"], TOLERANCE)
    before = shots(catalog)
    assert before[fast.uri] == before[survey()[8].uri] == "R001-000001.2"  # with frame 2's cameras
    image_id = next(image.id for image in catalog.images() if image.uri == fast.uri)
    changes = catalog.plan_edit(Selection(ids=(image_id,)), shift_time_s=-1.0)

    batch = catalog.apply_edit(changes, reason="cam3 clock", author="test", shot_tolerance_s=TOLERANCE)

    regrouped = shots(catalog)
    assert regrouped[fast.uri] == regrouped[survey()[4].uri] == "R001-000001"  # frame 1's camera 0
    assert {regrouped[r.uri] for r in survey() if r.frame == 2} == {"R001-000002"}
    catalog.undo(batch, author="test", shot_tolerance_s=TOLERANCE)
    assert shots(catalog) == before


def test_an_edit_excludes_or_keeps_a_rig_shots_frames_together(catalog: Catalog):
    """One frame of a rig shot excluded by hand (qc.md's `edit --id ID --set excluded=true`) left the shot
    planned without it: its stitch failed on every run ("missing the frame(s) of camera(s) [0]")."""
    catalog.upsert_images(survey())
    catalog.assign_shots(["R001"], TOLERANCE)
    by_shot = {
        shot: [i.id for i in catalog.images() if i.shot == shot] for shot in ("R001-000001", "R001-000002")
    }
    one = Selection(ids=(by_shot["R001-000001"][0],))

    with pytest.raises(ConfigError) as refused:
        catalog.plan_edit(one, assign={"excluded": True})
    assert str(refused.value) == (
        "shot R001-000001 would have 1 of its 4 frames excluded: a rig shot is stitched from all its frames, "
        "so they are excluded or kept together (--shot R001-000001)"
    )
    whole = catalog.plan_edit(Selection(shots=("R001-000001", "R001-000002")), assign={"excluded": True})
    assert len(whole) == 7  # the second shot lacks camera 3
    catalog.apply_edit(whole, reason="blurred", author="test")
    with pytest.raises(ConfigError, match="shot R001-000002 would have 2 of its 3 frames excluded"):
        catalog.plan_edit(Selection(ids=(by_shot["R001-000002"][0],)), assign={"excluded": False})
    assert len(catalog.plan_edit(Selection(shots=("R001-000002",)), assign={"excluded": False})) == 3


def test_a_shot_left_partly_excluded_is_not_processed(catalog: Catalog):
    """An edit excludes a rig shot whole, but a frame ingested after its shot was thinned comes in kept (and an
    undo restores what its batch changed alone): such a shot's stitch had failed on every run."""
    catalog.upsert_images(survey())
    catalog.assign_shots(["R001"], TOLERANCE)
    whole = catalog.plan_edit(Selection(shots=("R001-000002",)), assign={"excluded": True})
    catalog.apply_edit(whole, reason="thinned", author="test")
    catalog.upsert_images([frame(2, 3, 2.012)])  # the camera the shot lacked, synced late
    catalog.assign_shots(["R001"], TOLERANCE)
    late = {i.shot: i.excluded for i in catalog.images() if i.uri == frame(2, 3, 2.012).uri}
    assert late == {"R001-000002": False}

    with catalog.engine.connect() as conn:
        loaded = {s.key for s in load_subjects(conn, "shot", ["R001-000001", "R001-000002", "R001-000003"])}
    assert loaded == {"R001-000001", "R001-000003"}


def test_a_reel_or_frame_number_edit_renames_no_shot(catalog: Catalog):
    """Regrouping after an edit of reel or frame renamed every shot of the reel, whose outputs (kept per shot)
    were all made again for the same pixels: a 1,000-shot reel renamed restitched 1,000 panoramas."""
    catalog.upsert_images(survey())
    catalog.assign_shots(["R001"], TOLERANCE)
    before = shots(catalog)
    for reel, assign in (("R001", {"reel": "R009"}), ("R009", {"frame": 42})):
        changes = catalog.plan_edit(Selection(reels=(reel,)), assign=assign)
        catalog.apply_edit(changes, reason="renamed", author="test", shot_tolerance_s=TOLERANCE)
        assert shots(catalog) == before


@pytest.mark.parametrize("few", [0, shot_ops.FEW_UPDATES])
def test_shots_written_in_one_statement_or_one_per_frame_are_the_same(
    catalog: Catalog, few: int, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(shot_ops, "FEW_UPDATES", few)
    catalog.upsert_images(survey(*DENSE))
    assert catalog.assign_shots(["R001"], TOLERANCE) == 26
    assert set(shots(catalog).values()) == {
        *(f"R001-{n:06d}" for n in range(5)),
        *(f"R001-000009{suffix}" for suffix in ("", ".2", ".3", ".4")),
    }


def test_the_reels_left_out_of_shots_are_those_with_frames_grouping_would_put_in_one(catalog: Catalog):
    """Frames written and never grouped (an ingest stopped between the two) are found; frames in no shot
    for a reason are not: unreadable, deleted, taken out by an edit, or with neither time nor frame number."""

    def unshot() -> set[str | None]:
        with catalog.connect() as conn:
            return shot_ops.unshot_reels(conn)

    catalog.upsert_images(survey())
    catalog.upsert_images([replace(r, reel="R002", uri=r.uri.replace("R001", "R002")) for r in survey()])
    assert unshot() == {"R001", "R002"}
    catalog.assign_shots(["R001"], TOLERANCE, unshot=True)
    assert unshot() == set()

    failed = ImageRecord(uri="/survey/R003/cam0/empty.jpg", reel="R003", frame=1, status="failed")
    no_time = ImageRecord(uri="/survey/R004/cam0/untimed.jpg", reel="R004")
    gone = replace(frame(1, 0, 1), uri="/survey/R005/cam0/gone.jpg", reel="R005")
    catalog.upsert_images([failed, no_time, gone])
    catalog.mark_deleted([gone.uri])
    out = catalog.plan_edit(Selection(reels=("R001",)), assign={"shot": None})
    catalog.apply_edit(out, reason="not part of the survey", author="test")
    assert unshot() == set()


@pytest.mark.parametrize(
    ("name", "reel"),
    [
        ("R001-000042", "R001"),
        ("R001-000042.2", "R001"),
        ("day-1-1000000", "day-1"),
        ("R001@20240501T083000.000000Z", "R001"),
        ("shot@20240501T083000.000000Z", None),
        ("2b7c5d1e", None),
        ("R001", None),
        ("R001-42", None),
    ],
)
def test_shot_reel_reads_the_names_shots_are_given(name: str, reel: str | None):
    assert shot_ops.shot_reel(name) == reel
