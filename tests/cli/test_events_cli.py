"""`panopipe events handle` through the command line: exit code 7 when a message failed, 0 otherwise; and
`panopipe worker events` when SQS cannot be reached, or Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from tests.aws.s3_events import EVENTS, s3_record, sqs_batch, sqs_message
from tests.conftest import free_port

from panopipe.catalog import Catalog
from panopipe.cli import main
from panopipe.dev import LocalStack, create_stack, spawn_moto_server
from panopipe.errors import EndpointUnreachableError, EventError

QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/panopipe-events"
TEST_EVENT = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "survey-in"}


@pytest.fixture
def catalog_file(tmp_path: Path) -> str:
    location = str(tmp_path / "c.db")
    Catalog.open(location, create=True).close()
    return location


def test_a_failed_message_makes_events_handle_exit_7(capsys, tmp_path: Path, catalog_file: str):
    batch = sqs_batch()
    batch["Records"] = [sqs_message("fine", TEST_EVENT), sqs_message("poison", "this is not JSON")]
    event = tmp_path / "batch.json"
    event.write_text(json.dumps(batch))
    code = main(["events", "handle", str(event), "--catalog", catalog_file])
    out, err = capsys.readouterr()
    assert code == 7
    assert json.loads(out)["failed_messages"] == ["poison"]
    assert err == (
        "warning: failed: cannot understand the message: not JSON: Expecting value: line 1 column 1 (char 0)\n"
        "error: 1 message(s) failed (poison): see the reasons above\n"
    )


def test_a_failed_event_given_directly_has_no_message_id_to_name(capsys, tmp_path: Path, catalog_file: str):
    event = tmp_path / "event.json"
    event.write_text("{}")
    code = main(["events", "handle", str(event), "--catalog", catalog_file])
    out, err = capsys.readouterr()
    assert (code, json.loads(out)["failed_messages"]) == (7, [None])
    assert err.splitlines()[-1] == "error: 1 message(s) failed: see the reasons above"


def test_a_batch_without_failures_exits_0(capsys, tmp_path: Path, catalog_file: str):
    event = tmp_path / "batch.json"
    event.write_text(json.dumps({"Records": [sqs_message("fine", TEST_EVENT)]}))
    code = main(["events", "handle", str(event), "--catalog", catalog_file])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "") and json.loads(out)["failed_messages"] == []


def test_events_parse_and_handle_read_what_aws_sqs_receive_message_prints(
    capsys, tmp_path: Path, catalog_file: str
):
    """The documented dead-letter replay saves `aws sqs receive-message` output: both commands said
    `unrecognised event shape: top-level keys ['Messages']` (exit 7). Each message's Body is an event, its
    MessageId the id a failure names."""
    (sqs,) = json.loads((EVENTS / "powertools-python/s3SqsEvent.json").read_text())["Records"]
    fields = {"ReceiptHandle": sqs["receiptHandle"], "MD5OfBody": sqs["md5OfBody"], "Attributes": {}}
    received = tmp_path / "messages.json"
    received.write_text(
        json.dumps({"Messages": [fields | {"MessageId": "m-1", "Body": sqs["body"]}]}, indent=4)
    )

    assert main(["events", "parse", str(received)]) == 0
    assert [e["key"] for e in json.loads(capsys.readouterr().out)] == ["test.pdf"]

    test_event = {"MessageId": "test", "Body": json.dumps(TEST_EVENT)}
    received.write_text(
        json.dumps({"Messages": [fields | test_event, fields | {"MessageId": "bad", "Body": "x"}]})
    )
    code = main(["events", "handle", str(received), "--catalog", catalog_file])
    out, err = capsys.readouterr()
    assert (code, json.loads(out)["failed_messages"]) == (7, ["bad"])
    assert err.splitlines()[-1] == "error: 1 message(s) failed (bad): see the reasons above"


def test_events_parse_of_an_unknown_shape_or_an_empty_file_is_one_line(capsys, tmp_path: Path):
    event = tmp_path / "event.json"
    for text, reason in [
        ("", "empty: no event (`aws sqs receive-message` prints nothing when no message is there)"),
        ('{"Message": []}', "unrecognised event shape: top-level keys ['Message'] (known: an S3, SNS or"),
    ]:
        event.write_text(text)
        assert main(["events", "parse", str(event)]) == EventError.exit_code
        out, err = capsys.readouterr()
        assert out == "" and len(err.splitlines()) == 1
        assert err.startswith(f"error: 1 of 1 message(s) could not be understood: event: {reason}"), err


def test_worker_events_without_a_region_says_how_to_set_one(
    capsys, tmp_path: Path, catalog_file: str, monkeypatch
):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    code = main(["worker", "events", "--queue-url", QUEUE_URL, "--max-polls", "1", "--catalog", catalog_file])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert (
        err == "error: no AWS region: set AWS_REGION, a region in ~/.aws/config or aws_region in [panopipe]\n"
    )


def test_worker_events_on_a_queue_that_does_not_exist_is_one_line(capsys, catalog_file: str, monkeypatch):
    # panopipe's AWS_REGION (boto3 itself reads AWS_DEFAULT_REGION) reaches the SQS client
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        code = main(
            ["worker", "events", "--queue-url", QUEUE_URL, "--max-polls", "1", "--catalog", catalog_file]
        )
    out, err = capsys.readouterr()
    assert code == EventError.exit_code and out.startswith("stopped after 0 poll(s): 0 batch(es)")
    assert err.startswith(f"error: cannot poll the queue {QUEUE_URL}: ") and "does not exist" in err
    assert len(err.splitlines()) == 1 and "polling again" not in err  # a refusal is not retried


def test_worker_events_polls_an_unreachable_sqs_again_then_gives_up_with_exit_4_and_its_summary(
    capsys, catalog_file: str, monkeypatch
):
    """It stopped at the first failed poll with exit 7 (event errors), no summary and no hint."""
    queue = f"http://127.0.0.1:{free_port()}/123456789012/q"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", queue.rsplit("/", 2)[0])
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")

    started = time.monotonic()
    code = main(["worker", "events", "--queue-url", queue, "--give-up-after", "2", "--catalog", catalog_file])

    out, err = capsys.readouterr()
    assert code == EndpointUnreachableError.exit_code and 2 <= time.monotonic() - started < 20
    assert out.startswith("stopped after 0 poll(s): 0 batch(es)")
    *retries, last = err.splitlines()
    unreachable = f"cannot poll the queue {queue}: Could not connect to the endpoint URL"
    hint = "check that the SQS endpoint is up and reachable"
    assert retries and all(line.startswith(f"warning: {unreachable}") for line in retries), err
    assert retries[0].endswith(f"{hint}; polling again in 1 s"), retries[0]
    assert last.startswith(f"error: {unreachable}") and hint in last
    assert re.search(r"; gave up after [2-9] s of failed polls$", last), last


@pytest.fixture(scope="module")
def sqs_stack() -> Iterator[LocalStack]:
    """moto's server in a process of its own, with the dev stack's queue."""
    process, endpoint = spawn_moto_server()
    try:
        stack = create_stack(endpoint)
        credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        session = boto3.Session(region_name=stack.region, **credentials)
        session.client("sqs", endpoint_url=endpoint).purge_queue(QueueUrl=stack.queue_url)  # S3's test event
        yield stack
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("gap_ms", [0, 2, 5, 10, 20, 40])
def test_ctrl_c_while_worker_events_polls_exits_0_with_its_summary_even_signalled_twice(
    sqs_stack: LocalStack, catalog_file: str, gap_ms: int
):
    """`timeout -s INT` signals the worker and then its process group (a Ctrl-C pressed twice does the same):
    the second SIGINT, while the first stop printed its summary, exited 130 (2 runs in 14)."""
    command = [
        "worker",
        "events",
        "--queue-url",
        sqs_stack.queue_url,
        "--wait",
        "5",
        "--catalog",
        catalog_file,
    ]
    worker = subprocess.Popen(
        [sys.executable, "-c", "from panopipe.cli import run; run()", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **sqs_stack.environment()},
    )
    assert worker.stderr is not None
    assert worker.stderr.readline().startswith("worker: polling ")
    time.sleep(0.3)  # in the first poll's wait

    worker.send_signal(signal.SIGINT)
    time.sleep(gap_ms / 1000)
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=30)

    assert (worker.returncode, err) == (0, ""), err
    assert out.startswith("stopped after 0 poll(s): 0 batch(es)")


def test_worker_events_polls_the_queue_where_its_url_says_without_an_endpoint_variable(
    sqs_stack: LocalStack, catalog_file: str, capsys, monkeypatch
):
    """botocore sends a queue's calls to the region's SQS endpoint whatever the queue URL's host: a worker given
    moto's queue URL polled sqs.us-east-1.amazonaws.com unless AWS_ENDPOINT_URL said otherwise."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", sqs_stack.region)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")

    command = ["worker", "events", "--queue-url", sqs_stack.queue_url, "--max-polls", "1", "--wait", "0"]
    code = main([*command, "--catalog", catalog_file])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.startswith(f"worker: polling {sqs_stack.queue_url} at {sqs_stack.endpoint_url} "), err
    assert out.startswith("done after 1 poll(s)")


def test_worker_events_says_why_it_refused_events_one_warning_per_reason(
    sqs_stack: LocalStack, catalog_file: str, capsys, monkeypatch
):
    """Refused keys were only counted (`skipped 7`), their reasons shown with -v alone: an uploader could not
    tell why files never reached the catalog. panopipe's own outputs, skipped as expected, stay counted only."""
    for name, value in sqs_stack.environment().items():
        monkeypatch.setenv(name, value)
    bucket = f"s3://{sqs_stack.bucket}"
    refused = [
        "incoming/R010//cam0/R010_cam0_000001.jpg",
        "incoming/R011/./cam0/R011_cam0_000001.jpg",
        "incoming/R012\\cam0\\R012_cam0_000001.jpg",
        "incoming/R013/cam0/R013_cam0_000001\x01.jpg",
        "incoming/R014/cam0/notes.txt",
    ]
    records = [s3_record(key, sequencer="10", bucket=sqs_stack.bucket) for key in refused]
    records += [s3_record("incoming/R015/cam0/a.jpg", sequencer="10", bucket="elsewhere")]
    records += [s3_record(f"{sqs_stack.output_prefix}publish/a.jpg", sequencer="10", bucket=sqs_stack.bucket)]
    sqs = boto3.client("sqs", endpoint_url=sqs_stack.endpoint_url)
    # A queue of its own: a poll the Ctrl-C tests abandoned may still be waiting on the stack's. One message,
    # which one poll receives whole (S3 sends a record a message, which polls receive in batches).
    queue = sqs.create_queue(QueueName="refusals")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": records}))

    command = ["worker", "events", "--queue-url", queue, "--max-polls", "1", "--wait", "1"]
    code = main([*command, "--catalog", catalog_file])

    err = capsys.readouterr().err
    assert code == 0 and "batch: 1 message(s): " in err and "skipped 7, failed 0" in err, err
    unsafe = "skipped {} event(s), not catalogued: unsafe key: {}"
    assert sorted(line for line in err.splitlines() if line.startswith("warning: ")) == sorted(
        [
            "warning: "
            + unsafe.format(2, "empty, '.' and '..' segments are not allowed")
            + f" ({bucket}/{refused[0]}, {bucket}/{refused[1]})",
            "warning: "
            + unsafe.format(1, "keys are relative, '/'-separated paths")
            + f" ({bucket}/{refused[2]})",
            "warning: "
            + unsafe.format(1, "control characters are not allowed")
            + f" ({bucket}/incoming/R013/cam0/R013_cam0_000001\\x01.jpg)",
            "warning: skipped 1 event(s), not catalogued: not a JPEG image (by its name)"
            f" ({bucket}/{refused[4]})",
            "warning: skipped 1 event(s), not catalogued: bucket 'elsewhere' is not one this deployment handles"
            " (s3://elsewhere/incoming/R015/cam0/a.jpg)",
        ]
    )
