"""`panopipe events handle` through the command line: exit code 7 when a message failed, 0 otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.aws.s3_events import sqs_batch, sqs_message

from panopipe.catalog import Catalog
from panopipe.cli import main

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
