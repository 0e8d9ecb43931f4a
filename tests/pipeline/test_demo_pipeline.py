"""The demo survey, ingested for real, goes through the whole pipeline; stitched panoramas match the scene."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import cv2
import pytest
import sqlalchemy as sa
from tests.pipeline.captures import Project, add_rig_shots

from panopipe.catalog import Catalog, Selection
from panopipe.catalog.schema import artifacts
from panopipe.config import load_settings
from panopipe.demo import GNSS_ALTITUDE_BIAS_M, RTK_ALTITUDE_M, run_demo
from panopipe.errors import ConfigError
from panopipe.pipeline import plan, run, verify
from panopipe.stitching import psnr


def test_demo_survey_runs_end_to_end(catalog: Catalog, tmp_path: Path):
    location = catalog.engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    result = run_demo(tmp_path / "demo", location, shots=2)

    assert result.first_run.ok and result.first_run.counts["publish"] == {"succeeded": 2}
    # The reel's altitude corrected from RTK: every shot's tags, thumbnails and publication, never a stitch.
    shots = ("shot:R001-000001", "shot:R001-000002")
    assert [(i.step, i.subject, i.reason) for i in result.plan_after_edit] == [
        *(("apply-metadata", shot, "metadata edited") for shot in shots),
        *(("derive", shot, "metadata edited") for shot in shots),
        *(("publish", shot, "after apply-metadata") for shot in shots),
    ]
    assert result.edited_images == 12 and "RTK altitude 519.4 m" in result.edit_reason
    as_ingested = [(row["frames"], row["alt"]) for row in result.ingested_shots]
    assert as_ingested == [
        (6, round(RTK_ALTITUDE_M + GNSS_ALTITUDE_BIAS_M + 0.2 * math.sin(n), 2)) for n in (0, 1)
    ]
    assert {image.alt for image in catalog.images(Selection())} == {RTK_ALTITUDE_M}
    assert result.second_run.ok and len(result.plan_at_end) == 0
    assert verify(catalog, settings=load_settings(result.config_file)) == []
    assert "<svg" in result.report.read_text()
    with catalog.engine.connect() as conn:
        panoramas = dict(
            conn.execute(sa.select(artifacts.c.shot, artifacts.c.output_uri).filter_by(step="stitch")).all()
        )
    for truth in result.survey.truth:
        stitched = cv2.imread(panoramas[truth.stem])
        expected = cv2.resize(cv2.imread(str(truth)), stitched.shape[1::-1], interpolation=cv2.INTER_AREA)
        band = slice(
            stitched.shape[0] // 4, stitched.shape[0] * 3 // 4
        )  # the horizon band, away from the poles
        assert psnr(stitched[band], expected[band]) > 30  # about 34 dB: JPEG twice and resampling
    # Run again on the same catalog, the demo says what to do before writing anything.
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "demo").rglob("*")}
    with pytest.raises(
        ConfigError, match=r"already holds images .*: give another --folder, or delete .*demo first"
    ):
        run_demo(tmp_path / "demo", location, shots=2)
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "demo").rglob("*")} == before


def test_without_a_rig_the_worker_derives_the_profile_from_the_decoded_frames(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 2)  # sizes not in the catalog: planning cannot tell
    stitch = {k: v for k, v in project.settings.steps["stitch"].items() if k != "rig"}
    settings = project.with_steps(stitch=stitch)
    assert [item.problem for item in plan(project.catalog, settings=settings, steps=["stitch"])] == [
        None,
        None,
    ]
    failures = run(project.catalog, settings=settings, steps=["stitch"], executor=executor).failures
    assert [f.subject for f in failures] == ["shot:R001-000000", "shot:R001-000001"]
    first, _, profile = failures[0].error.partition("\n")
    assert "needs [steps.stitch.rig]" in first and "6 frames, camera indexes 0-5, each 96x72" in first
    pasted = tomllib.loads(profile)["steps"]["stitch"]["rig"]
    rerun = run(
        project.catalog, settings=project.with_steps(stitch={**stitch, "rig": pasted}), executor=executor
    )
    assert rerun.ok and rerun.counts["stitch"] == {"succeeded": 2}
