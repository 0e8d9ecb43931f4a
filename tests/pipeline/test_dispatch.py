"""The dispatcher and the claims that keep two submitters from submitting a job twice, on SQLite and PostgreSQL.

The whole flow (upload -> event -> queued stitch -> dispatcher ticks -> every step) is in
tests/e2e/test_dispatch.py; what moto ignores is listed in :mod:`tests.pipeline.batch_world`.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from tests.pipeline.batch_world import BUCKET, Containers, World, manifest_of, to_s3
from tests.pipeline.captures import add_panoramas, add_rig_shots

from panopipe.aws.package import EXCLUDED, import_blocker
from panopipe.catalog import Catalog, Selection
from panopipe.catalog.schema import jobs
from panopipe.catalog.types import new_id, utcnow
from panopipe.config import Settings
from panopipe.errors import ConfigError, PanopipeError
from panopipe.executors import InlineExecutor
from panopipe.executors.factory import build_executor
from panopipe.pipeline import plan, run
from panopipe.pipeline.config import load_pipeline
from panopipe.pipeline.dispatch import dispatch
from panopipe.pipeline.remote import refresh, work_uri
from panopipe.pipeline.runner import initiate
from panopipe.pipeline.store import (
    CLAIM_TTL_S,
    claimed_jobs,
    new_claim,
    record_submitted,
    release_claim,
    renew_claim,
)
from panopipe.steps.base import JobSpec
from panopipe.steps.registry import STEP_TYPES

JOBS = 300
SHOTS = 6


def batch_settings(world: World) -> Settings:
    """The batch executor's settings on moto's server, outputs in its bucket."""
    return Settings(
        project="demo",
        batch_job_queue=world.queue,
        batch_job_definition=world.definition,
        batch_chunk_jobs=2,
        steps={"pipeline": {"output": f"s3://{BUCKET}/out"}, "derive": {"thumbnail": 64, "preview": 0}},
    )


def queue_for_dispatcher(catalog: Catalog, settings: Settings) -> None:
    """What the event path does with the batch executor (``PANOPIPE_EXECUTOR=batch``): every job due is
    queued for the dispatcher, none submitted."""
    executor = build_executor("batch", settings=settings, work_uri=work_uri(load_pipeline(catalog, settings)))
    assert executor is not None
    try:
        report = initiate(catalog, Selection(), None, settings, executor=executor)
    finally:
        executor.close()
    assert set(report.counts) <= {"apply-metadata"}


def at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` for ``i`` in ``range(count)`` in threads released together; their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_two_claimers_at_once_share_the_queued_jobs_without_overlap(catalog_url: str, tmp_path: Path):
    specs = [JobSpec(new_id(), "stitch", f"shot:R001-{n:06d}", f"f{n}") for n in range(JOBS)]

    def claim(catalog: Catalog, token: str) -> set[str]:
        record_submitted(catalog, stitch, specs, ["new input"] * JOBS, "batch", claim=token)
        return claimed_jobs(catalog, token)

    with Catalog.open(catalog_url) as catalog:
        settings = Settings(steps={"pipeline": {"output": str(tmp_path / "out")}})
        stitch = load_pipeline(catalog, settings, ["stitch"]).steps[0]
        ids = list(record_submitted(catalog, stitch, specs, ["new input"] * JOBS, "batch").values())
    submitters = [Catalog.open(catalog_url) for _ in range(2)]  # two processes' engines
    try:
        tokens = [new_claim(), new_claim()]
        claimed = at_once(2, lambda i: claim(submitters[i], tokens[i]))
    finally:
        for submitter in submitters:
            submitter.close()

    assert not claimed[0] & claimed[1] and claimed[0] | claimed[1] == set(ids)
    with Catalog.open(catalog_url) as catalog:
        assert claim(catalog, new_claim()) == set()  # all held
        # Queueing the same jobs again (a late planner) leaves claimed jobs alone.
        record_submitted(catalog, stitch, specs, ["again"] * JOBS, "batch")
        assert claim(catalog, new_claim()) == set()
        release_claim(catalog, tokens[0])
        assert claim(catalog, tokens[0]) == claimed[0]
        with catalog.transaction() as conn:  # a submitter that died holding its claim: it expires
            old = utcnow() - timedelta(seconds=CLAIM_TTL_S + 1)
            conn.execute(jobs.update().where(jobs.c.external_id == tokens[1]).values(submitted_at=old))
        assert claim(catalog, new_claim()) == claimed[1]
        with catalog.transaction() as conn:  # a run that renews its claim (its pool is at work) keeps it
            conn.execute(jobs.update().where(jobs.c.external_id == tokens[0]).values(submitted_at=old))
        renew_claim(catalog, tokens[0])
        assert claim(catalog, new_claim()) == set()


# The event path as the deployed function runs it: OpenCV, Pillow and numpy cannot be imported (the Lambda
# package leaves them out), so a step that needs them and ran here would fail.
EVENT_FUNCTION = """
import json, sys
from panopipe.aws.package import EXCLUDED, import_blocker
from panopipe.catalog import Catalog, Selection
from panopipe.config import Settings
from panopipe.executors import InlineExecutor
from panopipe.pipeline.runner import initiate
settings = Settings(project="demo", steps=json.loads(sys.argv[2]), batch_job_queue=sys.argv[3])
with Catalog.open(sys.argv[1]) as catalog:
    report = initiate(catalog, Selection(), None, settings, executor=InlineExecutor())
print(json.dumps({"counts": report.counts, "failures": [f.error for f in report.failures]}))
"""


def test_with_batch_configured_an_event_queues_heavy_steps_and_runs_light_ones(project):
    # Without a Batch job queue (a laptop), every step runs on the handler's executor: tests/events.
    add_rig_shots(project.catalog, project.root, 2)
    add_panoramas(project.catalog, project.root / "panoramas", 1)
    queue = "arn:aws:batch:us-east-1:123456789012:job-queue/q"

    ran = subprocess.run(
        [
            *(sys.executable, "-c", import_blocker(EXCLUDED) + EVENT_FUNCTION),
            *(project.catalog.url, json.dumps(project.settings.steps), queue),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(ran.stdout)

    assert [name for name, step in STEP_TYPES.items() if step.heavy] == ["stitch", "nadir", "derive"]
    # The shots' stitch is queued for the dispatcher (no later step of theirs runs here); the single
    # panorama needs no stitch: its tags are written here, its thumbnails are queued, publish waits for them.
    assert report == {
        "counts": {"stitch": {"queued": 2}, "apply-metadata": {"succeeded": 1}, "derive": {"queued": 1}},
        "failures": [],
    }
    with project.catalog.connect() as conn:
        queued = conn.execute(
            sa.select(jobs.c.executor, jobs.c.external_id).where(jobs.c.status == "queued")
        ).all()
    assert queued == [("batch", None)] * 3
    assert [
        (i.step, i.reason) for i in plan(project.catalog, steps=["stitch"], settings=project.settings)
    ] == [("stitch", "queued before, not finished")] * 2


@pytest.mark.parametrize("batch", [True, False], ids=["stack", "laptop"])
def test_an_event_leaves_a_shot_whose_frames_are_still_arriving_until_they_have(project, batch: bool):
    # Shot 0's camera 3 is not uploaded yet (aws s3 cp sends cam0/ whole before cam1/).
    add_rig_shots(project.catalog, project.root, 2, skip_camera={0: 3})
    queue = "arn:aws:batch:us-east-1:123456789012:job-queue/q" if batch else None
    settings = replace(project.settings, batch_job_queue=queue)

    first = initiate(project.catalog, Selection(), None, settings, executor=InlineExecutor())

    assert first.counts["stitch"] == (
        {"waiting": 1, "queued": 1} if batch else {"waiting": 1, "succeeded": 1}
    )
    assert first.ok and not first.failures
    with project.catalog.connect() as conn:
        stitched = conn.execute(sa.select(jobs.c.subject).where(jobs.c.step == "stitch")).scalars().all()
    assert stitched == ["shot:R001-000001"]  # nothing recorded for the shot still arriving
    (waiting,) = [i for i in plan(project.catalog, steps=["stitch"], settings=settings) if i.problem]
    assert waiting.problem == "shot R001-000000 is missing the frame(s) of camera(s) [3]: has 5 of 6"

    add_rig_shots(project.catalog, project.root, 2)  # the rest of the upload: camera 3's frame
    second = initiate(
        project.catalog, Selection(shots=("R001-000000",)), None, settings, executor=InlineExecutor()
    )

    assert second.counts["stitch"] == ({"queued": 1} if batch else {"succeeded": 1})


def test_with_the_nadir_cap_on_an_event_queues_the_cap_of_a_360_image_and_runs_nothing_after_it(project):
    add_rig_shots(project.catalog, project.root, 1)
    add_panoramas(project.catalog, project.root / "panoramas", 1)
    settings = replace(
        project.with_steps(nadir={"enabled": True}),
        batch_job_queue="arn:aws:batch:us-east-1:123456789012:job-queue/q",
    )

    report = initiate(project.catalog, Selection(), None, settings, executor=InlineExecutor())

    assert report.counts == {"stitch": {"queued": 1}, "nadir": {"queued": 1}}


def test_an_event_whose_shots_are_all_queued_does_not_plan_their_later_steps(project):
    """Once stitch is queued for every shot an event touched, the later steps find every selected subject
    busy: stitch and apply-metadata (planned together, up to the first step that runs here) read the
    candidates once, derive and publish read nothing (issue 15, gap 3: an upload's batch in the deployed
    function)."""
    add_rig_shots(project.catalog, project.root, 2)
    ids = tuple(image.id for image in project.catalog.images())
    settings = replace(project.settings, batch_job_queue="arn:aws:batch:us-east-1:123456789012:job-queue/q")
    statements: list[str] = []
    sa.event.listen(
        project.catalog.engine,
        "before_cursor_execute",
        lambda _c, _u, statement, *_: statements.append(statement),
    )
    report = initiate(project.catalog, Selection(ids=ids), None, settings, executor=InlineExecutor())

    assert report.counts == {"stitch": {"queued": 2}}
    assert sum("seen_0" in statement for statement in statements) == 1  # stitch and apply-metadata's


def test_two_dispatchers_at_once_submit_each_job_once(catalog_url: str, tmp_path: Path, world: World):
    settings = batch_settings(world)
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path / "captures", SHOTS)
        to_s3(catalog, tmp_path / "captures")
        queue_for_dispatcher(catalog, settings)
    dispatchers = [Catalog.open(catalog_url) for _ in range(2)]
    try:
        dry = dispatch(dispatchers[0], settings, dry_run=True)
        assert dry.submitted == {"apply-metadata": SHOTS} and world.arrays() == []

        reports = at_once(2, lambda i: dispatch(dispatchers[i], settings))
    finally:
        for dispatcher in dispatchers:
            dispatcher.close()

    assert sum(r.submitted.get("apply-metadata", 0) for r in reports) == SHOTS
    submitted = Counter()
    for array in world.arrays():
        prefix = manifest_of(array).removeprefix(f"s3://{BUCKET}/").removesuffix("manifest.json")
        body = world.client("s3").get_object(Bucket=BUCKET, Key=f"{prefix}chunks.jsonl.gz")["Body"].read()
        submitted.update(json.loads(line)["id"] for line in gzip.decompress(body).splitlines())
    with Catalog.open(catalog_url) as catalog, catalog.connect() as conn:
        rows = conn.execute(sa.select(jobs.c.id, jobs.c.status, jobs.c.external_id)).all()
        assert dispatch(catalog, settings, dry_run=True).submitted == {}  # all in flight
    assert sorted(submitted) == sorted(row.id for row in rows) and set(submitted.values()) == {1}
    assert {row.status for row in rows} == {"queued"}
    assert all(row.external_id and not row.external_id.startswith("claim:") for row in rows)


def test_a_tick_whose_submission_fails_releases_its_claims_for_the_next(
    catalog_url: str, tmp_path: Path, world: World
):
    # moto refuses a SubmitJob to a job queue that does not exist, as AWS does.
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path / "captures", 2)
        to_s3(catalog, tmp_path / "captures")
        settings = batch_settings(world)
        queue_for_dispatcher(catalog, settings)
        settings = replace(
            settings, batch_job_queue=world.queue.replace("job-queue/workers", "job-queue/missing")
        )
        with pytest.raises(PanopipeError):
            dispatch(catalog, settings)
        with catalog.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.status, jobs.c.external_id)).all()
        assert rows == [("queued", None)] * 2 and world.arrays() == []
        assert world.s3_keys("out/_batch/") == []  # its manifest and chunks deleted: no job reads them

        report = dispatch(catalog, replace(settings, batch_job_queue=world.queue))

        assert report.submitted == {"apply-metadata": 2} and len(world.arrays()) == 1
        assert [key.rpartition("/")[2] for key in world.s3_keys("out/_batch/")] == [
            "chunks.jsonl.gz",
            "manifest.json",
        ]


def test_a_run_whose_submission_aws_refuses_fails_its_jobs_and_leaves_none_for_the_dispatcher(
    catalog_url: str, tmp_path: Path, world: World
):
    # moto refuses a SubmitJob to a job queue that does not exist, as AWS does.
    missing = world.queue.replace("job-queue/workers", "job-queue/missing")
    settings = replace(batch_settings(world), executor="batch", batch_job_queue=missing)
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path / "captures", 2)
        to_s3(catalog, tmp_path / "captures")
        with pytest.raises(ConfigError, match="AWS refused batch:SubmitJob"):
            run(catalog, steps=["apply-metadata"], settings=settings, wait=False)
        with catalog.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.status, jobs.c.external_id, jobs.c.error)).all()
        assert [(status, external_id) for status, external_id, _ in rows] == [("failed", None)] * 2
        assert all(error.startswith("not submitted: AWS refused batch:SubmitJob") for *_, error in rows)

        ok = replace(settings, batch_job_queue=world.queue)
        assert dispatch(catalog, ok, dry_run=True).submitted == {}  # nothing left queued behind the error
        assert run(catalog, steps=["apply-metadata"], settings=ok, wait=False).counts == {
            "apply-metadata": {"submitted": 2}
        }


def test_ticks_take_a_360_image_through_the_queued_nadir_cap_and_every_step_after_it(
    catalog_url: str, tmp_path: Path, world: World
):
    # the logo under the output prefix, where the dispatcher (planning) and the workers read it
    logo = io.BytesIO()
    Image.new("RGBA", (32, 32), (255, 0, 0, 255)).save(logo, "PNG")
    world.client("s3").put_object(Bucket=BUCKET, Key="out/assets/logo.png", Body=logo.getvalue())
    settings, containers = batch_settings(world), Containers(world)
    cap = {"enabled": True, "logo": f"s3://{BUCKET}/out/assets/logo.png"}
    settings = replace(settings, steps={**settings.steps, "nadir": cap})
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path / "captures", 2)
        to_s3(catalog, tmp_path / "captures")
        executor = build_executor(
            "batch", settings=settings, work_uri=work_uri(load_pipeline(catalog, settings))
        )
        assert executor is not None
        try:
            assert initiate(catalog, Selection(), None, settings, executor=executor).counts == {
                "nadir": {"queued": 2}
            }
        finally:
            executor.close()

        ticks = []
        for _ in range(5):
            ticks.append(dispatch(catalog, settings).submitted)
            containers.run()
            refresh(catalog, settings)

        assert ticks == [{"nadir": 2}, {"apply-metadata": 2}, {"derive": 2}, {"publish": 2}, {}]
        assert len(plan(catalog, settings=settings)) == 0
    listed = world.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="out/publish/")["Contents"]
    (published, *_) = [item["Key"] for item in listed if item["Key"].endswith("_000000.jpg")]
    body = world.client("s3").get_object(Bucket=BUCKET, Key=published)["Body"].read()
    bottom = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=int)[-2:]
    assert (np.abs(bottom - [255, 0, 0]) < 40).all()  # the logo, read from S3 by the worker


def test_a_tick_submits_what_was_queued_and_what_follows_jobs_that_ended_never_what_a_config_push_made_due(
    catalog_url: str, tmp_path: Path, world: World
):
    # The dry run and the tick share one rule: after each tick's jobs ran (and `status` recorded them:
    # the dry run asks AWS nothing), the dry run says what the next tick submits.
    settings, containers = batch_settings(world), Containers(world)
    with Catalog.open(catalog_url) as catalog:
        add_panoramas(catalog, tmp_path / "captures", SHOTS)
        to_s3(catalog, tmp_path / "captures")
        assert dispatch(catalog, settings, dry_run=True).submitted == {}  # nobody uploaded anything
        queue_for_dispatcher(catalog, settings)  # the event path: uploads

        def tick(die: dict[int, tuple[str, int]] | None = None) -> dict[str, int]:
            due = dispatch(catalog, settings, dry_run=True).submitted
            submitted = dispatch(catalog, settings).submitted
            assert submitted == due
            containers.run(die=die)
            refresh(catalog, settings)
            return submitted

        # The first child (2 jobs) dies: its jobs fail, and no tick submits them again (`run` retries them).
        assert tick(die={0: ("Essential container in task exited", 1)}) == {"apply-metadata": SHOTS}
        assert tick() == {"derive": SHOTS - 2}

        # A configuration change makes every panorama's apply-metadata (and what follows) due, which the
        # dispatcher leaves to `panopipe run`; the publish that follows the derive that just ended goes on.
        content = {"steps": {**settings.steps, "apply-metadata": {"artist": "Bo"}}}
        catalog.push_project_config(content, author="test", reason="artist")
        planned = plan(catalog, settings=settings)  # first in each subject's plan: what a tick used to take
        reasons = Counter(i.reason.partition(":")[0] for i in planned if i.step == "apply-metadata")
        assert reasons == {"parameters changed": SHOTS - 2, "failed before": 2}
        assert tick() == {"publish": SHOTS - 2}

        assert dispatch(catalog, settings, dry_run=True).submitted == {}
        last = dispatch(catalog, settings)
        assert last.submitted == {} and last.ended == {}
        assert plan(catalog, settings=settings).counts()["apply-metadata"] == SHOTS
