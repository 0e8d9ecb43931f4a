"""StitchStep.problem: what the catalog tells about a shot before it is stitched, shot by shot, in one plan, and
where a frame it misses is when the catalog has it."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from panopipe.catalog import Catalog
from panopipe.catalog.records import IMAGE_COLUMNS, Image
from panopipe.catalog.selection import Selection
from panopipe.catalog.subjects import Subject
from panopipe.config import Settings
from panopipe.demo import demo_rig, generate_survey
from panopipe.executors import InlineExecutor
from panopipe.ingest import ingest
from panopipe.pipeline import load_pipeline, plan, run


def shot(key: str, sizes: list[tuple[int, int] | None]) -> Subject:
    t = datetime(2024, 5, 1, 8, tzinfo=UTC)
    base = Image(
        **dict.fromkeys(IMAGE_COLUMNS) | {"status": "ok", "deleted": False, "ingested_at": t, "updated_at": t}
    )
    frames = tuple(
        replace(
            base,
            id=f"{key}-{i}",
            uri=f"/c/{key}/{i}.jpg",
            shot=key,
            camera_index=i,
            width=s and s[0],
            height=s and s[1],
        )
        for i, s in enumerate(sizes)
    )
    return Subject(f"shot:{key}", frames)


def test_each_shot_gets_its_own_problem_after_sound_shots_of_the_rig(tmp_path: Path) -> None:
    rig = demo_rig(2448, 2048)
    settings = Settings(project="p", steps={"stitch": {"rig": rig.to_dict()}})
    with Catalog.open(str(tmp_path / "c.db"), create=True) as catalog:
        [stitch] = load_pipeline(catalog, settings, ["stitch"]).steps
    sound = [(2448, 2048)] * len(rig.cameras)

    assert stitch.problem(shot("A", sound)) is None
    assert stitch.problem(shot("B", sound)) is None  # the same layout, remembered
    wrong = stitch.problem(shot("C", [*sound[:-1], (2048, 2448)]))
    assert wrong is not None and f"camera {len(sound) - 1} of rig" in wrong and "2048x2448" in wrong
    missing = stitch.problem(shot("D", sound[:-1]))
    assert missing is not None and missing.startswith("shot D is missing the frame(s) of camera(s)")
    assert stitch.problem(shot("E", [None] * len(sound))) is None  # sizes unknown: the worker checks them
    assert stitch.problem(shot("F", sound)) is None


@pytest.mark.exiftool
def test_a_missing_frame_that_ingest_could_not_read_or_put_in_a_shot_of_its_own_is_named_so(
    catalog: Catalog, tmp_path: Path
) -> None:
    survey = generate_survey(tmp_path / "survey", shots=3, camera_size=(64, 48))
    reel = survey.folder / "R001"
    cut = reel / "cam2" / "R001_cam2_000002.jpg"
    cut.write_bytes(cut.read_bytes()[:300])  # inside its header: ingest cannot read it
    late = reel / "cam0" / "R001_cam0_000003.jpg"  # captured 0.7 s after the others of its frame
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-SubSecTimeOriginal=700", late], check=True)
    settings = Settings(
        project="p",
        steps={"pipeline": {"output": str(tmp_path / "out")}, "stitch": {"rig": survey.rig.to_dict()}},
    )
    [failed] = ingest(catalog, [reel], settings).failed
    assert failed.uri == str(cut) and failed.reason.startswith("truncated: the file ends at byte 300")

    problems = {item.subject: item.problem for item in plan(catalog, steps=["stitch"], settings=settings)}

    apart = "further apart than [ingest] shot_tolerance_s"
    assert problems == {
        "shot:R001-000001": None,
        "shot:R001-000002": "shot R001-000002 is missing the frame(s) of camera(s) [2]: has 5 of 6; its frame(s) of "
        f"camera(s) [2] failed at ingest ({failed.reason})",
        "shot:R001-000003": "shot R001-000003 is missing the frame(s) of camera(s) [0]: has 5 of 6; its frame(s) of "
        f"camera(s) [0] are in shot R001-000003.2, captured 0.7 s later, {apart}",
        "shot:R001-000003.2": "shot R001-000003.2 is missing the frame(s) of camera(s) [1, 2, 3, 4, 5]: has 1 of 6; "
        f"its frame(s) of camera(s) [1, 2, 3, 4, 5] are in shot R001-000003, captured 0.7 s earlier, {apart}",
    }
    report = run(catalog, steps=["stitch"], settings=settings, executor=InlineExecutor())
    assert {failure.subject: failure.error for failure in report.failures} == {
        subject: problem for subject, problem in problems.items() if problem
    }
    # planned alone, the shot of one frame says so too: no other shot shows that the rig has more cameras
    [alone] = plan(catalog, Selection(shots=("R001-000003.2",)), ["stitch"], settings, force=True)
    assert alone.problem == problems["shot:R001-000003.2"]
    # a frame an edit put in another shot is named so, with no word of the tolerance
    edit = catalog.plan_edit(Selection(shots=("R001-000003.2",)), assign={"shot": "elsewhere"})
    catalog.apply_edit(edit, reason="test", author="t", shot_tolerance_s=0.05)
    [edited] = plan(catalog, Selection(shots=("R001-000003",)), ["stitch"], settings, force=True)
    assert edited.problem is not None and edited.problem.endswith(
        "its frame(s) of camera(s) [0] are in shot elsewhere, captured 0.7 s later (put there by an edit)"
    )
