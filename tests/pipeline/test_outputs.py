"""Outputs that retries and reprocessing cannot confuse (content-addressed keys, create-only writes), on a
folder and on S3 (in-process moto), with the catalog on SQLite and PostgreSQL.

moto checks ``If-None-Match: *`` before it stores an object, without a lock between the two (AWS makes them
one step), so two threads can both create a key in moto: the racing test writes the same bytes concurrently
(what two workers of one job make) and different bytes one after the other (what differing machines may make).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import replace

import boto3
import pytest
import sqlalchemy as sa
from moto import mock_aws
from tests.pipeline.captures import Project, add_panoramas
from tests.storage.conftest import aws_env as aws_env

from panopipe.catalog import Selection
from panopipe.catalog.schema import artifacts, jobs
from panopipe.catalog.subjects import selected_subjects
from panopipe.catalog.types import new_id
from panopipe.config import Settings
from panopipe.executors import InlineExecutor
from panopipe.executors.base import JobState
from panopipe.pipeline import load_pipeline, run
from panopipe.pipeline.planner import Work, plan_step
from panopipe.pipeline.store import record_finished, record_submitted
from panopipe.steps.base import JobOutcome, JobSpec
from panopipe.steps.registry import execute_job
from panopipe.storage import FolderStorage, Storage, open_storage, resolve_uri
from panopipe.storage.s3 import S3Storage

STEPS = ["apply-metadata", "derive", "publish"]
BUCKET = "panopipe-outputs"


@pytest.fixture(params=["folder", "s3"])
def settings(request: pytest.FixtureRequest, project: Project) -> Iterator[Settings]:
    """The project's settings with outputs in a folder or in a moto bucket."""
    if request.param == "folder":
        yield project.settings
        return
    request.getfixturevalue("aws_env")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield project.with_steps(pipeline={"output": f"s3://{BUCKET}/out", "backoff_s": 0.01})


def output_storage(settings: Settings) -> Storage:
    return open_storage(settings.steps["pipeline"]["output"])


def recorded(project: Project, step: str) -> dict[str, sa.Row]:
    with project.catalog.engine.connect() as conn:
        rows = conn.execute(sa.select(artifacts).where(artifacts.c.step == step)).all()
    return {row.name: row for row in rows}


def content(uri: str) -> bytes:
    storage, key = resolve_uri(uri)
    return storage.get(key)


def assert_consistent(rows: dict[str, sa.Row]) -> None:
    for row in rows.values():
        assert hashlib.sha256(content(row.output_uri)).hexdigest() == row.output_hash


def pending(project: Project, settings: Settings, step_name: str) -> tuple[Work, JobSpec]:
    """The one job ``step_name`` needs now, and its spec as the runner submits it."""
    step = next(s for s in load_pipeline(project.catalog, settings, [step_name]).steps)
    with project.catalog.transaction() as conn, selected_subjects(conn, Selection()) as selected:
        (work,) = plan_step(conn, step, selected)
    payload = step.payload(work.subject, work.upstream, work.fingerprint)
    return work, JobSpec(new_id(), step.name, work.subject.id, work.fingerprint, payload)


def record(project: Project, work: Work, spec: JobSpec, outcome: JobOutcome) -> dict[str, str | None]:
    job_ids = record_submitted(project.catalog, work.step, [spec], [work.reason], "inline")
    state = JobState(spec.id, outcome.status, outcome)
    return record_finished(
        project.catalog, job_ids[spec.id], work.step, work.subject, work.fingerprint, state
    )


def edit_gps(project: Project, image_id: str) -> None:
    changes = project.catalog.plan_edit(Selection(ids=(image_id,)), assign={"lat": 47.5, "lon": 9.25})
    project.catalog.apply_edit(changes, reason="GPS fix", author="test")


def test_the_job_fingerprint_is_in_the_key_and_publish_places_the_named_copy(
    project: Project, settings: Settings
):
    add_panoramas(project.catalog, project.root, 1)
    work, spec = pending(project, settings, "apply-metadata")

    run(project.catalog, steps=STEPS, settings=settings, executor=InlineExecutor())

    image = recorded(project, "apply-metadata")["image"]
    assert image.output_uri == spec.payload["outputs"]["image"]
    assert image.output_uri.endswith(f"/image-{work.fingerprint[:16]}.jpg")
    published = recorded(project, "publish")["published"]
    assert published.output_uri.endswith("/publish/demo/P001/demo_P001_000000.jpg")
    assert published.output_hash == image.output_hash
    assert (
        recorded(project, "publish")["thumbnail"].output_hash
        == recorded(project, "derive")["thumbnail"].output_hash
    )


def test_an_object_a_dead_attempt_left_at_the_key_is_not_what_gets_recorded(
    project: Project, settings: Settings
):
    add_panoramas(project.catalog, project.root, 1)
    _, spec = pending(project, settings, "apply-metadata")
    storage, key = resolve_uri(spec.payload["outputs"]["image"])
    if isinstance(storage, S3Storage):
        # A dead attempt's object that panopipe's writer did not make: no SHA-256 of panopipe's with it.
        storage.client.put_object(Bucket=BUCKET, Key=key, Body=b"torn write of a dead attempt")
    else:
        # A folder holds a file at the key only after a complete write and rename; a killed writer leaves
        # its temporary file beside it.
        assert isinstance(storage, FolderStorage)
        storage.root.mkdir(parents=True)
        (storage.root / ".panopipe-tmp-0123456789abcdef").write_bytes(b"torn write of a dead attempt")

    report = run(project.catalog, steps=["apply-metadata"], settings=settings, executor=InlineExecutor())

    assert report.ok, report.failures
    row = recorded(project, "apply-metadata")["image"]
    assert row.output_uri == spec.payload["outputs"]["image"]
    assert content(row.output_uri).startswith(b"\xff\xd8")  # the JPEG this run made
    assert_consistent(recorded(project, "apply-metadata"))


def test_a_rerun_after_an_edit_replaces_the_output_and_removes_the_superseded_object(
    project: Project, settings: Settings
):
    (image_id,) = add_panoramas(project.catalog, project.root, 1)
    run(project.catalog, steps=STEPS, settings=settings, executor=InlineExecutor())
    before = {step: recorded(project, step) for step in STEPS}
    edit_gps(project, image_id)
    work, new_spec = pending(project, settings, "apply-metadata")

    report = run(project.catalog, steps=STEPS, settings=settings, executor=InlineExecutor())

    assert report.ok, report.failures
    storage = output_storage(settings)
    for step in ("apply-metadata", "derive"):
        after = recorded(project, step)
        for name, old in before[step].items():
            assert after[name].output_uri != old.output_uri
            assert after[name].output_hash != old.output_hash
            assert not storage.exists(storage.key(old.output_uri))  # superseded: deleted
        assert_consistent(after)
    published = recorded(project, "publish")
    for name, old in before["publish"].items():
        assert published[name].output_uri == old.output_uri  # the human-named copy, replaced in place
        assert published[name].output_hash != old.output_hash
    assert_consistent(published)
    assert recorded(project, "apply-metadata")["image"].output_uri == new_spec.payload["outputs"]["image"]
    assert work.reason == "metadata edited"


def test_a_late_attempt_of_the_job_before_an_edit_touches_neither_the_output_nor_the_artifact(
    project: Project, settings: Settings
):
    (image_id,) = add_panoramas(project.catalog, project.root, 1)
    old_work, old_spec = pending(project, settings, "apply-metadata")
    run(project.catalog, steps=["apply-metadata"], settings=settings, executor=InlineExecutor())
    edit_gps(project, image_id)
    run(project.catalog, steps=["apply-metadata"], settings=settings, executor=InlineExecutor())
    current = recorded(project, "apply-metadata")["image"]

    late = execute_job(old_spec)  # a reclaimed container of the old job that finishes after all, and reports
    with project.catalog.engine.connect() as conn:
        job_id = conn.execute(
            sa.select(jobs.c.id).where(jobs.c.fingerprint == old_spec.fingerprint)
        ).scalar_one()
    state = JobState(old_spec.id, late.status, late)
    superseded = record_finished(
        project.catalog, job_id, old_work.step, old_work.subject, old_work.fingerprint, state
    )

    assert late.status == "succeeded"
    # its object is the runner's to delete
    assert superseded == {late.outputs[0].uri: late.outputs[0].hash}
    assert late.outputs[0].uri != current.output_uri
    assert recorded(project, "apply-metadata")["image"] == current
    assert_consistent({"image": current})


def test_two_workers_racing_on_one_job_end_with_one_output_and_one_artifact(
    project: Project, settings: Settings
):
    add_panoramas(project.catalog, project.root, 1)
    work, spec = pending(project, settings, "apply-metadata")
    outcomes: list[JobOutcome] = []
    start = threading.Barrier(2)

    def worker() -> None:
        start.wait()
        outcomes.append(execute_job(spec))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for outcome in outcomes:
        assert record(project, work, spec, outcome) == {}

    assert [o.status for o in outcomes] == ["succeeded", "succeeded"]
    assert outcomes[0].outputs == outcomes[1].outputs
    rows = recorded(project, "apply-metadata")
    assert list(rows) == ["image"]
    assert rows["image"].output_hash == outcomes[0].outputs[0].hash
    assert_consistent(rows)
    storage = output_storage(settings)
    assert [i.key for i in storage.list("apply-metadata/")] == [storage.key(rows["image"].output_uri)]


def test_the_first_complete_write_wins_when_two_workers_make_different_bytes(
    project: Project, settings: Settings
):
    add_panoramas(project.catalog, project.root, 1)
    work, spec = pending(project, settings, "apply-metadata")
    # Another machine's encoder may make other bytes for the same job: stand in with another artist.
    other = replace(spec, payload={**spec.payload, "metadata": {**spec.payload["metadata"], "artist": "B"}})

    first, second = execute_job(spec), execute_job(other)
    for outcome in (second, first):  # their results are recorded in the other order
        record(project, work, spec, outcome)

    assert second.outputs == first.outputs  # the second worker kept the first one's object
    rows = recorded(project, "apply-metadata")
    assert rows["image"].output_hash == first.outputs[0].hash
    assert_consistent(rows)
