"""StitchStep.problem: what the catalog tells about a shot before it is stitched, shot by shot, in one plan."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from panopipe.catalog import Catalog
from panopipe.catalog.records import IMAGE_COLUMNS, Image
from panopipe.catalog.subjects import Subject
from panopipe.config import Settings
from panopipe.demo import demo_rig
from panopipe.pipeline import load_pipeline


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
