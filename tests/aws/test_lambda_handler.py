"""The Lambda entry point: PostgreSQL catalog from the environment, S3 through moto, JSON logs."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from moto import mock_aws
from tests.aws.s3_events import BUCKET, render_shot, s3_record, sqs_batch, sqs_message, upload_shot

from panopipe.aws import lambda_handler
from panopipe.catalog import Catalog, shared_engine
from panopipe.errors import CatalogError


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, postgres_url: str, tmp_path: Path) -> Iterator[Any]:
    Catalog.open(postgres_url).close()  # a migrated catalog, as `panopipe db upgrade` leaves it
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "panopipe-events",
        "PANOPIPE_CATALOG": postgres_url,
        "PANOPIPE_BUCKETS": BUCKET,
        "PANOPIPE_OUTPUT_PREFIX": f"s3://{BUCKET}/panopipe-out",
        "PANOPIPE_EXECUTOR": "none",
        "PANOPIPE_CONFIG": str(tmp_path / "none.toml"),
    }
    (tmp_path / "none.toml").write_text("")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PANOPIPE_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setattr(lambda_handler, "_handler", None)
    monkeypatch.setattr(lambda_handler, "_frozen", False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3
    gc.unfreeze()  # the test process goes on building and dropping objects


def test_warm_invocations_reuse_the_connection_and_log_json(env, tmp_path: Path, capfd):
    frames, _ = render_shot(tmp_path / "shot")
    keys = upload_shot(env, tmp_path / "shot", frames)
    connects = []
    sa.event.listen(
        shared_engine(lambda_handler.load_settings().catalog), "connect", lambda *a: connects.append(1)
    )
    batches = [sqs_batch(*(s3_record(k, sequencer=f"{i:02X}") for k in keys[i : i + 2])) for i in (0, 2, 4)]
    batches[1]["Records"].append(sqs_message("poison", "{not json"))

    responses = []
    for number, batch in enumerate(batches):
        responses.append(lambda_handler.handler(batch, SimpleNamespace(aws_request_id=f"req-{number}")))
        if number == 0:
            opened_by_first = len(connects)

    # the engine's schema check on first use opened the connection the invocations reuse: none opens another
    assert opened_by_first == 0 and connects == []
    assert responses == [
        {"batchItemFailures": []},
        {"batchItemFailures": [{"itemIdentifier": "poison"}]},
        {"batchItemFailures": []},
    ]
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    handled = [line for line in lines if line["message"] == "handled"]
    assert [(h["request_id"], h["processed"], h["skipped"], h["failed"]) for h in handled] == [
        ("req-0", 2, 0, 0),
        ("req-1", 2, 0, 1),
        ("req-2", 2, 0, 0),
    ]
    failed = next(line for line in lines if line["message"] == "failed")
    assert failed["request_id"] == "req-1" and "not JSON" in failed["reason"]


def test_the_handler_plans_with_the_catalogs_project_configuration(env, tmp_path: Path, capfd):
    frames, rig = render_shot(tmp_path / "shot")
    keys = upload_shot(env, tmp_path / "shot", frames)
    (tmp_path / "none.toml").write_text("[steps.derive]\nthumbnail = 64\n")  # the function's local file
    with Catalog.open(lambda_handler.load_settings().catalog) as catalog:
        steps = {"stitch": {"rig": rig}, "derive": {"enabled": False}, "publish": {"enabled": False}}
        catalog.push_project_config({"steps": steps}, author="test", reason="stitch and tag only")

    first = sqs_batch(*(s3_record(k, sequencer=f"{i:02X}") for i, k in enumerate(keys)))
    assert lambda_handler.handler(first, SimpleNamespace(aws_request_id="req-0")) == {"batchItemFailures": []}
    with Catalog.open(lambda_handler.load_settings().catalog) as catalog:  # a push reaches the warm function
        steps["derive"] = {"enabled": True, "thumbnail": 64}
        catalog.push_project_config({"steps": steps}, author="test", reason="thumbnails too")
    second = [key.replace("R001", "R002") for key in keys]  # the frames again, as a second reel's shot
    for key, frame in zip(second, frames, strict=True):  # other bytes after each image: no copies
        env.put_object(Bucket=BUCKET, Key=key, Body=frame.read_bytes() + b"R002")
    again = sqs_batch(*(s3_record(k, sequencer=f"{16 + i:02X}") for i, k in enumerate(second)))
    assert lambda_handler.handler(again, SimpleNamespace(aws_request_id="req-1")) == {"batchItemFailures": []}

    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    # one shot: stitch and apply-metadata, never the local file's derive and publish; then derive as pushed
    assert [line["planned"] for line in lines if line["message"] == "handled"] == [2, 3]
    warnings = [
        line["message"] for line in lines if "differs from the project configuration" in line["message"]
    ]
    assert len(warnings) == 2 and all("config push" in warning for warning in warnings)  # once per version
    assert "(version 1)" in warnings[0] and "(version 2)" in warnings[1]


def test_the_objects_of_a_warm_function_are_frozen_after_its_first_invocation(env, tmp_path: Path):
    frames, _ = render_shot(tmp_path / "shot")
    keys = upload_shot(env, tmp_path / "shot", frames)
    gc.unfreeze()
    lambda_handler.handler(sqs_batch(s3_record(keys[0], sequencer="01")), SimpleNamespace(aws_request_id="a"))
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # the modules, clients and pools the first invocation built
    lambda_handler.handler(sqs_batch(s3_record(keys[1], sequencer="02")), SimpleNamespace(aws_request_id="b"))
    assert gc.get_freeze_count() <= frozen  # once: no more objects frozen (some frozen ones were freed)


def test_a_function_pointed_at_no_catalog_fails_saying_so_and_creates_nothing(
    env, monkeypatch, tmp_path: Path
):
    missing = tmp_path / "survey.db"
    monkeypatch.setenv("PANOPIPE_CATALOG", str(missing))
    event = sqs_batch(s3_record("incoming/R001/cam0/a_000001.jpg", sequencer="01"))
    with pytest.raises(CatalogError, match=f"no catalog at {missing}"):
        lambda_handler.handler(event, SimpleNamespace(aws_request_id="a"))
    assert not missing.exists()
