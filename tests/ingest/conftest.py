"""Fixtures of the ingest tests: a rendered rig survey of 2 shots of 6 cameras (12 real JPEGs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from panopipe.demo import generate_survey


@pytest.fixture(scope="session")
def survey_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("survey")
    generate_survey(folder, shots=2, camera_size=(160, 120))
    return folder


@pytest.fixture
def survey(survey_template: Path, tmp_path: Path) -> Path:
    """A copy of the survey's reel R001 (``R001/cam0/R001_cam0_000001.jpg`` ...) of the test's own."""
    folder = tmp_path / "survey"
    shutil.copytree(survey_template / "R001", folder / "R001")
    return folder
