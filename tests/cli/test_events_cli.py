"""`panopipe events handle` through the command line: exit code 7 when a message failed, 0 otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from moto import mock_aws
from tests.aws.s3_events import sqs_batch, sqs_message

from panopipe.catalog import Catalog
from panopipe.cli import main
from panopipe.errors import EventError

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
    assert (code, out) == (EventError.exit_code, "")
    assert err.startswith(f"error: cannot poll the queue {QUEUE_URL}: ") and "does not exist" in err
    assert len(err.splitlines()) == 1
