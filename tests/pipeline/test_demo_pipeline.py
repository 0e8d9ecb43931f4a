"""The demo survey, ingested for real, goes through the whole pipeline; stitched panoramas match the scene."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import sqlalchemy as sa

from panopipe.catalog import Catalog
from panopipe.catalog.schema import artifacts
from panopipe.config import Settings
from panopipe.demo import run_demo
from panopipe.pipeline import plan, run, verify
from panopipe.stitching import psnr


def test_demo_survey_runs_end_to_end(catalog: Catalog, tmp_path: Path, executor):
    result = run_demo(tmp_path / "demo", catalog, Settings(), shots=2)
    settings = Settings(
        project="demo",
        steps={"pipeline": {"output": str(tmp_path / "out")}, "stitch": {"rig": result.survey.rig.to_dict()}},
    )

    report = run(catalog, settings=settings, executor=executor)

    assert report.ok and report.counts["publish"] == {"succeeded": 2}
    assert len(plan(catalog, settings=settings)) == 0 and verify(catalog, settings=settings) == []
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


def test_demo_rig_not_configured_fails_with_a_clear_reason(catalog: Catalog, tmp_path: Path, executor):
    run_demo(tmp_path / "demo", catalog, Settings(), shots=1)
    settings = replace(Settings(), steps={"pipeline": {"output": str(tmp_path / "out")}})
    (failure,) = run(catalog, settings=settings, steps=["stitch"], executor=executor).failures
    assert "but camera 0 of rig 'demo-6' is 1200x900" in failure.error
