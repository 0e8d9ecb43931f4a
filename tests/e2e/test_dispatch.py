"""Uploads start reprocessing with no command, end to end on moto's threaded server (S3, SQS, Batch): a rig
shot of the demo uploaded -> S3 events in SQS -> the Lambda entry point (as the event source mapping calls
it) catalogs the frames and queues the stitch -> dispatcher ticks (the scheduled Lambda entry point) submit
one array job per step -> `panopipe worker run` for each child -> stitched, tagged, derived, published.

What moto ignores, and how this test makes up for it (see also :mod:`tests.pipeline.batch_world`):

- moto's Batch without Docker runs no container and would mark every job SUCCEEDED the moment it is
  submitted: jobs are kept RUNNING (``leave_running``), the test runs ``panopipe worker run --manifest ...
  --index i`` for each child and then ends the child in moto's job model.
- moto runs no Lambda for the queue or the schedule: the test receives the SQS messages and calls
  ``panopipe.aws.lambda_handler.handler`` with them in the event source mapping's shape, and calls
  ``panopipe.aws.lambda_handler.dispatcher`` as the EventBridge rule would, once per "minute".
- moto writes S3 event times without a time zone (S3 writes UTC with a "Z", which the handler requires): the
  test sets moto's format to S3's, as ``panopipe dev up`` does.
- The bucket notification here has no prefix filter (the stack's has one): the events of panopipe's own
  outputs do reach the queue, and the test checks that the handler ignores them.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from moto.s3 import notifications
from tests.pipeline.batch_world import BUCKET, World, manifest_of, set_status
from typer.testing import CliRunner

from panopipe.aws import lambda_handler
from panopipe.catalog import Catalog
from panopipe.catalog.schema import artifacts, jobs
from panopipe.cli.app import app
from panopipe.demo import generate_survey, write_project_config
from panopipe.dev import _lambda_record

INPUT = "incoming/"
OUTPUT = f"s3://{BUCKET}/out"
STEPS = ("stitch", "apply-metadata", "derive", "publish")


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), standalone_mode=False)
    assert result.exception is None, result.output
    return result


def receive_all(world: World, queue_url: str) -> list[dict[str, Any]]:
    sqs, messages = world.client("sqs"), []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])
        if not batch.get("Messages"):
            return messages
        messages += batch["Messages"]
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch["Messages"])
        ]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)


def deliver(messages: list[dict[str, Any]], queue_arn: str) -> list[dict[str, Any]]:
    """The messages to the Lambda entry point in batches of 10, as the event source mapping does; its answers."""
    context = SimpleNamespace(aws_request_id="test")
    return [
        lambda_handler.handler(
            {"Records": [_lambda_record(m, queue_arn) for m in messages[i : i + 10]]}, context
        )
        for i in range(0, len(messages), 10)
    ]


def run_children(world: World, done: set[str]) -> int:
    """Stand in for Batch's containers: `panopipe worker run` for each child not run yet, then end it."""
    ran = 0
    for array in world.arrays():
        size = array.get("arrayProperties", {}).get("size", 0)
        for index in range(max(size, 1)):
            child = f"{array['jobId']}:{index}" if size else array["jobId"]
            if child in done:
                continue
            done.add(child)
            cli("worker", "run", "--manifest", manifest_of(array), "--index", str(index), "--workers", "1")
            set_status(child, success=True, exit_code=0)
            ran += 1
    return ran


@pytest.fixture
def queue(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The bucket's events queue (every ObjectCreated/ObjectRemoved, no prefix filter); its URL and ARN."""
    monkeypatch.setattr(notifications, "_EVENT_TIME_FORMAT", "%Y-%m-%dT%H:%M:%S.%fZ")
    sqs = world.client("sqs")
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    world.client("s3").put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]
        },
    )
    return url, arn


def test_an_uploaded_rig_shot_is_stitched_tagged_derived_and_published_by_dispatcher_ticks(
    world: World, queue: tuple[str, str], postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    queue_url, queue_arn = queue
    survey = generate_survey(tmp_path / "survey", shots=1, camera_size=(96, 72))
    config = write_project_config(tmp_path, postgres_url, (96, 72))
    text = config.read_text(encoding="utf-8")
    text = text.replace(json.dumps(str(tmp_path.resolve() / "panopipe-out")), json.dumps(OUTPUT))
    text = text.replace("thumbnail = 512", "thumbnail = 32").replace("preview = 2048", "preview = 64")
    config.write_text(text, encoding="utf-8")
    Catalog.open(postgres_url).close()
    cli("config", "push", "--config", str(config), "--catalog", postgres_url, "--yes", "--reason", "e2e")
    for name, value in {
        "PANOPIPE_CATALOG": postgres_url,
        "PANOPIPE_BUCKETS": BUCKET,
        "PANOPIPE_OUTPUT_PREFIX": OUTPUT,
        "PANOPIPE_EXECUTOR": "inline",  # light steps in the function; stitch is heavy: queued
        "PANOPIPE_BATCH_JOB_QUEUE": world.queue,
        "PANOPIPE_BATCH_JOB_DEFINITION": world.definition,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PANOPIPE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path / "survey")  # no panopipe.toml here: the catalog's configuration applies
    monkeypatch.setattr(lambda_handler, "_handler", None)
    s3 = world.client("s3")
    for frame in survey.files:
        key = INPUT + frame.relative_to(survey.folder).as_posix()
        s3.put_object(Bucket=BUCKET, Key=key, Body=frame.read_bytes())

    answers = deliver(receive_all(world, queue_url), queue_arn)

    assert answers == [{"batchItemFailures": []}]
    with Catalog.open(postgres_url) as catalog:
        assert {image.shot for image in catalog.images()} == {"R001-000001"}
        with catalog.connect() as conn:
            queued = conn.execute(
                sa.select(jobs.c.step, jobs.c.status, jobs.c.executor, jobs.c.external_id)
            ).all()
        assert queued == [("stitch", "queued", "batch", None)]  # queued for the dispatcher, not submitted
        assert world.arrays() == []

        ticks, done = [], set()
        for _ in range(8):  # the schedule's minutes
            ticks.append(lambda_handler.dispatcher({"source": "aws.events"}, SimpleNamespace()))
            if not run_children(world, done) and not ticks[-1]["ended"]:
                break
        submitted = [tick["submitted"] for tick in ticks if tick["submitted"]]
        assert submitted == [{step: 1} for step in STEPS]  # one job per step, one step after the other
        names = [array["jobName"] for array in world.arrays()]
        assert [name.startswith(f"panopipe-{step}-") for name, step in zip(names, STEPS, strict=True)] == [
            True
        ] * len(STEPS)

        with catalog.connect() as conn:
            states = conn.execute(sa.select(jobs.c.step, jobs.c.status)).all()
            outputs = set(conn.execute(sa.select(artifacts.c.output_uri)).scalars())
        assert sorted(states) == sorted((step, "succeeded") for step in STEPS)
        stored = {f"s3://{BUCKET}/{key}" for key in world.s3_keys("out/") if "/_batch/" not in key}
        assert stored == outputs and len(outputs) == 1 + 1 + 2 + 3  # publish: image, thumbnail, preview
        assert json.loads(cli("plan", "--catalog", postgres_url, "--json").stdout) == []

        # The outputs' own events came back to the queue: all ignored, nothing planned or queued.
        echoes = receive_all(world, queue_url)
        assert len(echoes) >= len(outputs)
        assert deliver(echoes, queue_arn) == [{"batchItemFailures": []}] * len(range(0, len(echoes), 10))
        with catalog.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == len(STEPS)
        assert lambda_handler.dispatcher({}, SimpleNamespace())["submitted"] == {}
