"""One place builds the executor: by the name in the settings, for the runner, the event handler and the CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.pipeline.captures import Project, add_panoramas
from tests.pipeline.test_cli_pipeline import invoke

from panopipe.catalog import Catalog
from panopipe.catalog.schema import jobs
from panopipe.config import Settings, load_settings
from panopipe.errors import ConfigError
from panopipe.events.handler import EventHandler
from panopipe.executors import EVENT_EXECUTOR, EXECUTORS, InlineExecutor, LocalExecutor, build_executor
from panopipe.executors.batch import BatchExecutor
from panopipe.pipeline import run


def test_each_name_builds_its_executor_with_the_retry_settings() -> None:
    local = build_executor("local", retries=4, backoff_s=0.25, workers=3)
    inline = build_executor("inline", retries=4, backoff_s=0.25)

    assert isinstance(local, LocalExecutor) and local.workers == 3
    assert (local.retries, local.backoff_s) == (4, 0.25)
    assert isinstance(inline, InlineExecutor) and (inline.retries, inline.backoff_s) == (4, 0.25)
    assert build_executor("none") is None
    assert isinstance(build_executor(None), LocalExecutor), "unset: the pipeline run's pool"
    assert isinstance(build_executor(None, default=EVENT_EXECUTOR), InlineExecutor)
    assert EXECUTORS == ("local", "inline", "batch", "none")


def test_the_batch_executor_needs_its_queue_its_definition_and_an_s3_output(monkeypatch) -> None:
    for name in ("PANOPIPE_BATCH_JOB_QUEUE", "PANOPIPE_BATCH_JOB_DEFINITION", "PANOPIPE_BATCH_CHUNK_JOBS"):
        monkeypatch.delenv(name, raising=False)
    ready = Settings(batch_job_queue="queue", batch_job_definition="worker:1", batch_chunk_jobs=50)

    built = build_executor("batch", settings=ready, work_uri="s3://bucket/out/_batch/")

    assert isinstance(built, BatchExecutor) and (built.job_queue, built.chunk_jobs) == ("queue", 50)
    with pytest.raises(
        ConfigError,
        match=r"needs batch_job_queue \(\[panopipe\] batch_job_queue or \$PANOPIPE_BATCH_JOB_QUEUE",
    ):
        build_executor("batch", settings=Settings(batch_job_definition="d"), work_uri="s3://b/o/_batch/")
    with pytest.raises(ConfigError, match="needs batch_job_definition"):
        build_executor("batch", settings=Settings(batch_job_queue="q"), work_uri="s3://b/o/_batch/")
    with pytest.raises(
        ConfigError, match=r"workers write to S3: set \[steps.pipeline\] output .* not '/tmp/out'"
    ):
        build_executor("batch", settings=ready, work_uri="/tmp/out/_batch/")
    monkeypatch.setenv("PANOPIPE_BATCH_CHUNK_JOBS", "lots")
    with pytest.raises(ConfigError, match="batch_chunk_jobs must be a whole number above 0, got 'lots'"):
        load_settings()
    monkeypatch.setenv("PANOPIPE_BATCH_CHUNK_JOBS", "500")
    assert load_settings().batch_chunk_jobs == 500


def test_a_batch_executor_that_only_follows_jobs_needs_none_of_the_submission_settings(monkeypatch) -> None:
    for name in ("PANOPIPE_BATCH_JOB_QUEUE", "PANOPIPE_BATCH_JOB_DEFINITION"):
        monkeypatch.delenv(name, raising=False)

    follower = build_executor("batch", settings=Settings(), work_uri="/tmp/out/_batch/", follow=True)

    assert isinstance(follower, BatchExecutor) and follower.attach({"job": "array:3"}) == ["job"]
    with pytest.raises(ConfigError, match="only follows jobs"):
        follower.submit([])


def test_unknown_names_and_workers_without_a_pool_are_refused() -> None:
    with pytest.raises(
        ConfigError, match="unknown executor 'fargate': choose one of local, inline, batch, none"
    ):
        build_executor("fargate")
    for name in ("inline", "batch", "none"):
        with pytest.raises(ConfigError, match=f"local executor's process pool; the {name} executor"):
            build_executor(name, workers=2)
    assert build_executor("local", workers=2) is not None


def test_settings_check_the_name_against_the_same_registry(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PANOPIPE_EXECUTOR", "lambda")
    with pytest.raises(
        ConfigError, match="unknown executor 'lambda': choose one of local, inline, batch, none"
    ):
        load_settings()
    monkeypatch.setenv("PANOPIPE_EXECUTOR", "inline")
    assert load_settings().executor == "inline"
    monkeypatch.delenv("PANOPIPE_EXECUTOR")
    assert load_settings().executor is None


def _executors(catalog: Catalog) -> set[str]:
    with catalog.engine.connect() as conn:
        return set(conn.execute(sa.select(jobs.c.executor).distinct()).scalars())


def test_a_run_uses_the_executor_the_settings_name(project: Project) -> None:
    add_panoramas(project.catalog, project.root, 1)

    with pytest.raises(ConfigError, match="executor 'none' only plans jobs"):
        run(project.catalog, settings=replace(project.settings, executor="none"), steps=["derive"])
    assert _executors(project.catalog) == set(), "refused before any job was recorded"

    report = run(project.catalog, settings=replace(project.settings, executor="inline"), steps=["derive"])
    assert report.ok and _executors(project.catalog) == {"inline"}


def test_cli_run_takes_the_executor_option(tmp_path: Path) -> None:
    location = str(tmp_path / "catalog.db")
    with Catalog.open(location) as catalog:
        add_panoramas(catalog, tmp_path / "captures", 2)
    config = tmp_path / "panopipe.toml"
    config.write_text(f'[panopipe]\nexecutor = "none"\n\n[steps.pipeline]\noutput = "{tmp_path / "out"}"\n')

    code, _ = invoke("run", "--catalog", location, "--config", str(config), "--executor", "inline")

    assert code == 0
    with Catalog.open(location) as catalog:
        assert _executors(catalog) == {"inline"}


@pytest.mark.parametrize(("name", "kind"), [(None, InlineExecutor), ("local", LocalExecutor), ("none", None)])
def test_the_event_handler_builds_its_executor_through_the_factory(
    catalog: Catalog, tmp_path: Path, name: str | None, kind: type | None
) -> None:
    settings = Settings(executor=name, steps={"pipeline": {"output": str(tmp_path / "out"), "retries": 5}})

    handler = EventHandler.from_settings(catalog, settings)
    try:
        assert type(handler.executor) is kind if kind else handler.executor is None
        if isinstance(handler.executor, InlineExecutor):
            assert handler.executor.retries == 5, "the pipeline's retry settings"
    finally:
        handler.close()
