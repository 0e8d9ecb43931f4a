"""End to end, as `panopipe dev up` + `panopipe worker events` run it: moto's server (S3 + SQS with the bucket
notification), a real rig shot uploaded, the worker feeding SQS batches to the handler, PostgreSQL catalog."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
import sqlalchemy as sa
from tests.aws.s3_events import render_shot
from tests.relay import Relay

from panopipe.aws.stack import build_template
from panopipe.catalog import Catalog, Selection
from panopipe.catalog.schema import artifacts, jobs
from panopipe.cli import main
from panopipe.config import Settings
from panopipe.demo import generate_survey, write_project_config
from panopipe.dev import LocalStack, create_stack, run_worker, spawn_moto_server, start_moto_server
from panopipe.errors import ConfigError
from panopipe.events.handler import EventHandler
from panopipe.ingest import ingest
from panopipe.storage import open_storage
from panopipe.storage.aws_clients import aws_client
from panopipe.sync import sync_capture, sync_folder

S3_TEST_EVENT = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "survey-in"}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    server, endpoint = start_moto_server()
    try:
        local = create_stack(endpoint, bucket="survey-in", max_receive_count=2, visibility_timeout_s=1)
        for name, value in local.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        yield local
    finally:
        server.stop()


def stack_settings(stack: LocalStack, catalog: str, rig: dict[str, Any]) -> Settings:
    """The settings the stack's function runs with, on ``catalog``, stitching with ``rig``."""
    return Settings(
        catalog=catalog,
        s3_endpoint_url=stack.endpoint_url,
        output_prefix=stack.output_uri,
        buckets=(stack.bucket,),
        project="demo",
        steps={"stitch": {"rig": rig}},
    )


def queue_depth(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def test_uploaded_shot_is_cataloged_processed_and_outputs_do_not_retrigger(
    stack: LocalStack, postgres_url: str, tmp_path: Path
):
    frames, rig = render_shot(tmp_path / "shot")
    settings = stack_settings(stack, postgres_url, rig)
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    for frame in frames:
        key = stack.input_prefix + frame.relative_to(tmp_path / "shot").as_posix()
        s3.put_object(Bucket=stack.bucket, Key=key, Body=frame.read_bytes())
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="not an S3 event")  # a poison message

    with Catalog.open(postgres_url) as catalog:
        handler = EventHandler.from_settings(catalog, settings)
        report = run_worker(handler, stack.queue_url, sqs=sqs, max_polls=5, wait_s=1)
        handler.close()

        assert report.counts["processed"] == 6 and report.counts["skipped"] == 0
        assert report.acknowledged == 7 and report.left == 2  # + s3:TestEvent; the poison message twice
        images = list(catalog.images())
        assert len(images) == 6 and {i.shot for i in images} == {"R001-000001"}
        assert {i.uri.rsplit("/", 1)[1] for i in images} == {f.name for f in frames}
        with catalog.engine.connect() as conn:
            job_rows = conn.execute(sa.select(jobs.c.step, jobs.c.status)).all()
            outputs = conn.execute(sa.select(artifacts.c.output_uri)).scalars().all()
    assert sorted(job_rows) == sorted(
        (step, "succeeded") for step in ("stitch", "apply-metadata", "derive", "publish")
    )
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=stack.output_prefix)["Contents"]
    assert {f"s3://{stack.bucket}/{o['Key']}" for o in listed} == set(outputs) and len(
        outputs
    ) == 1 + 1 + 2 + 3  # publish: image, thumbnail, preview
    # The outputs written back did not notify: the queue is empty; the poison message is in the DLQ.
    assert queue_depth(sqs, stack.queue_url) == 0
    (dead,) = sqs.receive_message(QueueUrl=stack.dead_letter_queue_url, WaitTimeSeconds=1)["Messages"]
    assert dead["Body"] == "not an S3 event"


def test_the_queue_worker_polls_again_through_an_sqs_blip_and_handles_what_came_meanwhile(
    stack: LocalStack, tmp_path: Path
):
    """The worker stopped at the first poll that could not connect (exit 7), and an operator had to restart
    it; now it polls again with backoff, a warning each time, until SQS is back."""
    sqs = boto3.client("sqs")
    sqs.purge_queue(QueueUrl=stack.queue_url)  # S3's test event of the new notification
    retries: list[tuple[str, float]] = []
    with Relay(stack.endpoint_url) as relay, Catalog.open(str(tmp_path / "c.db"), create=True) as catalog:
        through = aws_client("sqs", Settings(), endpoint_url=relay.endpoint)
        relay.cut()

        def back(error: str, wait_s: float) -> None:
            retries.append((error, wait_s))
            if len(retries) == 2:
                sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps(S3_TEST_EVENT))
                relay.resume()

        handler = EventHandler(catalog, Settings())
        report = run_worker(handler, stack.queue_url, sqs=through, max_polls=2, wait_s=1, on_retry=back)
        handler.close()

    assert report.failure is None and (report.polls, report.acknowledged) == (2, 1)
    assert [wait for _, wait in retries] == [1.0, 2.0]  # doubling
    assert all("check that the SQS endpoint is up and reachable" in error for error, _ in retries)


def test_a_spawned_moto_server_holds_the_stack_and_stops_with_terminate():
    process, endpoint = spawn_moto_server()
    try:
        stack = create_stack(endpoint, bucket="survey-in")
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=stack.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.put_object(Bucket=stack.bucket, Key="incoming/R001/cam0/a_000001.jpg", Body=b"x")
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket)["Contents"]] == [
            "incoming/R001/cam0/a_000001.jpg"
        ]
    finally:
        process.terminate()
    process.wait(timeout=10)  # raises TimeoutExpired if it did not stop


def test_a_catalogued_capture_uploaded_to_the_stack_keeps_one_image_per_frame(
    stack: LocalStack, postgres_url: str, tmp_path: Path
):
    frames, rig = render_shot(tmp_path / "shot")
    capture = frames[0].parents[1]  # shot/R001
    settings = stack_settings(stack, postgres_url, rig)
    with Catalog.open(postgres_url) as catalog:
        ingest(catalog, [capture], settings)  # catalogued on the laptop, into the stack's database
        ids = {Path(i.uri).name: i.id for i in catalog.images()}
        destination = open_storage(f"s3://{stack.bucket}/{stack.input_prefix}R001", settings)
        # The uploads notify the queue; here the handler sees them before the catalog is repointed.
        sync_folder(capture, destination)
        handler = EventHandler.from_settings(catalog, settings)
        report = run_worker(handler, stack.queue_url, sqs=boto3.client("sqs"), max_polls=3, wait_s=1)
        handler.close()

        assert report.counts["processed"] == 6
        images = list(catalog.images())
        assert {Path(i.uri).name: i.id for i in images} == ids  # each image followed its file to S3
        assert all(i.uri.startswith(destination.root_uri) for i in images)
        # The sync that would have repointed them finds them there.
        synced = sync_capture(catalog, capture, destination, settings)
        assert (len(synced.skipped), synced.not_repointed) == (6, ())
        assert {Path(i.uri).name: i.id for i in catalog.images()} == ids


def test_dev_up_on_a_port_in_use_says_so_in_one_line_at_once(capsys: pytest.CaptureFixture[str]):
    # moto's own start() would wait for ever: werkzeug's server thread ends on "Address already in use".
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done: list[int] = []
        up = threading.Thread(
            target=lambda: done.append(main(["dev", "up", "--port", str(port)])), daemon=True
        )
        up.start()
        up.join(timeout=20)

        assert done == [ConfigError.exit_code]
        message = f"port {port} is in use: pick another with --port (0: a free one)"
        assert capsys.readouterr().err.splitlines() == [f"error: {message}"]
        with pytest.raises(ConfigError, match=re.escape(message)):
            spawn_moto_server(port)  # the same line from the child process


def test_dev_up_notifies_as_the_stack_does_jpg_keys_under_the_input_prefix_only(stack: LocalStack):
    [bucket] = [spec for spec in build_template()["Resources"].values() if spec["Type"] == "AWS::S3::Bucket"]
    configurations = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    wired = {
        (c["Event"], tuple((r["Name"], r["Value"] if r["Name"] == "suffix" else "<prefix>") for r in rules))
        for c in configurations
        for rules in [c["Filter"]["S3Key"]["Rules"]]
    }
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    local = s3.get_bucket_notification_configuration(Bucket=stack.bucket)["QueueConfigurations"]
    assert {
        (event, tuple((r["Name"], r["Value"] if r["Name"] == "suffix" else "<prefix>") for r in rules))
        for c in local
        for event in c["Events"]
        for rules in [c["Filter"]["Key"]["FilterRules"]]
    } == wired
    assert all(
        r["Value"] == stack.input_prefix
        for c in local
        for r in c["Filter"]["Key"]["FilterRules"]
        if r["Name"] == "prefix"
    )

    sqs.purge_queue(QueueUrl=stack.queue_url)  # S3's s3:TestEvent
    notified = ["incoming/R001/cam0/a.jpg", "incoming/R360/GSAG2002.JPG", "incoming/R360/c.jpeg"]
    for key in (*notified, "incoming/R001/notes.txt", "incoming/R001/cam0/b.png"):
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x")
    received = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    keys = [r["s3"]["object"]["key"] for m in received["Messages"] for r in json.loads(m["Body"])["Records"]]
    assert sorted(unquote_plus(key) for key in keys) == sorted(notified)  # S3 sends keys URL-encoded


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--input-prefix", "incoming/", "--output-prefix", "incoming/out/"],
            "input prefix 'incoming/' and output prefix 'incoming/out/' must not overlap",
        ),
        (  # S3 refused it: botocore's traceback
            ["--bucket", "x"],
            "parameter BucketName='x' is not valid: 3 to 63 lower-case letters, digits, dots and hyphens, "
            "without '..', not an IP address (S3's bucket naming rules)",
        ),
    ],
    ids=["overlapping-prefixes", "bucket-name"],
)
def test_dev_up_refuses_what_the_stack_refuses(
    capsys: pytest.CaptureFixture[str], args: list[str], error: str
):
    done: list[int] = []
    up = threading.Thread(target=lambda: done.append(main(["dev", "up", *args])), daemon=True)
    up.start()
    up.join(timeout=20)

    assert done == [ConfigError.exit_code]
    assert capsys.readouterr().err.splitlines() == [f"error: {error}"]


def test_a_reel_moved_within_the_bucket_keeps_its_images(
    stack: LocalStack, postgres_url: str, tmp_path: Path
):
    """`aws s3 mv --recursive` within the bucket, as S3 (here moto's server) notifies it: a CopyObject (which
    keeps the x-amz-meta-sha256 panopipe's upload stored) and a DeleteObject per file, the events of the two
    in whatever batches the queue makes; the images keep their ids and edits, at their new keys."""
    frames, rig = render_shot(tmp_path / "shot")
    capture = frames[0].parents[1]
    settings = stack_settings(stack, postgres_url, rig)
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    with Catalog.open(postgres_url) as catalog:
        handler = EventHandler(catalog, settings)  # plans only: the moves are what is tested
        ingest(catalog, [capture], settings)
        sync_capture(
            catalog,
            capture,
            open_storage(f"s3://{stack.bucket}/{stack.input_prefix}R001", settings),
            settings,
        )
        run_worker(handler, stack.queue_url, sqs=sqs, max_polls=3, wait_s=1)
        names = {frame.name for frame in frames}  # the module's tests share the catalog
        ids = {Path(i.uri).name: i.id for i in catalog.images() if Path(i.uri).name in names}
        edit = catalog.plan_edit(Selection(ids=tuple(ids.values())), assign={"alt": 519.4})
        catalog.apply_edit(edit, reason="RTK", author="t")
        listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"{stack.input_prefix}R001/")["Contents"]
        for obj in listed:
            moved = obj["Key"].replace(stack.input_prefix, f"{stack.input_prefix}2024/", 1)
            s3.copy_object(
                Bucket=stack.bucket, Key=moved, CopySource={"Bucket": stack.bucket, "Key": obj["Key"]}
            )
            s3.delete_object(Bucket=stack.bucket, Key=obj["Key"])
        report = run_worker(handler, stack.queue_url, sqs=sqs, max_polls=3, wait_s=1)
        handler.close()

        assert report.counts["failed"] == 0 and queue_depth(sqs, stack.queue_url) == 0
        images = [i for i in catalog.images() if Path(i.uri).name in names]
        assert {Path(i.uri).name: i.id for i in images} == ids
        assert all(f"/{stack.input_prefix}2024/R001/" in i.uri for i in images)
        assert {i.alt for i in images} == {519.4} and {i.shot for i in images} == {"R001-000001"}


def test_a_shots_frames_removed_from_the_bucket_keep_its_outputs_for_verify_as_folder_ingest_does(
    stack: LocalStack, catalog_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """All of a shot's frames deleted from the bucket (ObjectRemoved events, `worker events`): `verify` lists
    its outputs `deleted` (exit 6) and a full `run` removes nothing, as after the same files deleted and
    `panopipe ingest`; the removed images had been put in no shot, so verify listed nothing and the next run
    deleted the shot's records and outputs, published files included. Uploaded again, the frames rejoin their
    shot (nothing to redo); moved within the bucket, the images keep their ids and shots."""
    survey = generate_survey(tmp_path / "demo", shots=2, camera_size=(160, 120))
    config = str(write_project_config(survey.folder, catalog_url, (160, 120)))
    s3 = boto3.client("s3")
    keys = {
        frame: f"{stack.input_prefix}{frame.relative_to(survey.folder).as_posix()}" for frame in survey.files
    }
    second = [frame for frame in survey.files if frame.name.endswith("_000002.jpg")]
    options = ["--catalog", catalog_url, "--config", config]

    def cli(*args: str) -> tuple[int, str]:
        code = main([*args, *options])
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        return code, out

    def worker() -> None:
        code, out = cli("worker", "events", "--queue-url", stack.queue_url, "--max-polls", "3", "--wait", "1")
        assert code == 0 and ", failed 0" in out, out

    def shots() -> dict[str, tuple[str | None, bool]]:
        with Catalog.open(catalog_url) as catalog:
            return {
                image.id: (image.shot, image.deleted)
                for image in catalog.images(Selection(include_deleted=True))
            }

    assert cli("db", "upgrade")[0] == 0
    for frame, key in keys.items():
        s3.put_object(Bucket=stack.bucket, Key=key, Body=frame.read_bytes())
    worker()
    published = sorted((survey.folder / "panopipe-out" / "publish").rglob("*.jpg"))
    assert [path.name for path in published if "R001_000002" in path.name] != []
    before = shots()

    for frame in second:
        s3.delete_object(Bucket=stack.bucket, Key=keys[frame])
    worker()

    code, out = cli("verify", "--json")
    listed = json.loads(out)
    assert code == 6 and len(listed) == 7  # stitch, apply-metadata, derive (2), publish (3)
    assert {(o["subject"], o["problem"]) for o in listed} == {("shot:R001-000002", "deleted")}
    code, out = cli("run", "--json")
    assert code == 0 and json.loads(out)["removed"] == 0
    assert sorted((survey.folder / "panopipe-out" / "publish").rglob("*.jpg")) == published
    assert {i: shot for i, (shot, _) in shots().items()} == {i: shot for i, (shot, _) in before.items()}

    for frame in second:  # put back
        s3.put_object(Bucket=stack.bucket, Key=keys[frame], Body=frame.read_bytes())
    worker()
    assert shots() == before
    assert cli("verify", "--json") == (0, "[]\n")

    for frame in survey.files:  # `aws s3 mv` of the reel within the bucket
        moved = keys[frame].replace(stack.input_prefix, f"{stack.input_prefix}2024/", 1)
        s3.copy_object(
            Bucket=stack.bucket, Key=moved, CopySource={"Bucket": stack.bucket, "Key": keys[frame]}
        )
        s3.delete_object(Bucket=stack.bucket, Key=keys[frame])
    worker()
    assert {i: kept for i, kept in shots().items() if not kept[1]} == before  # the old keys: placeholders
    assert cli("verify", "--json") == (0, "[]\n")
    code, out = cli("run", "--json")
    assert code == 0 and json.loads(out)["removed"] == 0
