"""The demo survey, ingested for real, goes through the whole pipeline; stitched panoramas match the scene."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import sqlalchemy as sa

from panopipe.catalog import Catalog
from panopipe.catalog.schema import artifacts
from panopipe.config import Settings, load_settings
from panopipe.demo import generate_survey, run_demo
from panopipe.ingest import ingest
from panopipe.pipeline import run, verify
from panopipe.stitching import psnr


def test_demo_survey_runs_end_to_end(catalog: Catalog, tmp_path: Path):
    location = catalog.engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    result = run_demo(tmp_path / "demo", location, shots=2)

    assert result.first_run.ok and result.first_run.counts["publish"] == {"succeeded": 2}
    assert [(i.step, i.subject) for i in result.plan_after_edit] == [
        ("apply-metadata", "shot:R001-000002"),
        ("derive", "shot:R001-000002"),
        ("publish", "shot:R001-000002"),
    ]
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


def test_demo_rig_not_configured_fails_with_a_clear_reason(catalog: Catalog, tmp_path: Path, executor):
    survey = generate_survey(tmp_path / "demo", shots=1, camera_size=(160, 120))
    ingest(catalog, [survey.folder / survey.reel], Settings())
    settings = replace(Settings(), steps={"pipeline": {"output": str(tmp_path / "out")}})
    (failure,) = run(catalog, settings=settings, steps=["stitch"], executor=executor).failures
    assert "frame 0 is 160x120 but camera 0 of rig 'demo-6' is 1200x900" in failure.error
