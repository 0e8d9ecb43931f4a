"""Fixtures for pipeline tests: a project (catalog, capture folder, output folder, settings) and one executor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.pipeline.batch_world import moto_server, world  # noqa: F401 - fixtures of the batch tests
from tests.pipeline.captures import RIG, Project
from tests.storage.conftest import aws_env  # noqa: F401 - a fixture of the batch tests

from panopipe.catalog import Catalog
from panopipe.config import Settings
from panopipe.executors import LocalExecutor


@pytest.fixture
def project(catalog: Catalog, tmp_path: Path) -> Project:
    out = tmp_path / "out"
    settings = Settings(
        project="demo",
        steps={
            "pipeline": {"output": str(out), "backoff_s": 0.01},
            "stitch": {"rig": RIG.to_dict(), "params": {"width": 256, "height": 128}},
            "derive": {"thumbnail": 64, "preview": 128},
            "apply-metadata": {"artist": "Ada", "copyright": "CC-BY 4.0"},
        },
    )
    return Project(catalog, tmp_path / "captures", out, settings)


@pytest.fixture(scope="session")
def executor() -> Iterator[LocalExecutor]:
    """One pool of 2 workers shared by the session (starting a pool per run costs more than the jobs)."""
    pool = LocalExecutor(2, backoff_s=0.01)
    yield pool
    pool.close()
