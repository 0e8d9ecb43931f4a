"""Builders for event tests: S3 notification records and SQS batches made from the real samples in
tests/data/events/, and a rendered rig shot uploaded to a bucket."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from panopipe.demo import generate_survey

EVENTS = Path(__file__).resolve().parents[1] / "data" / "events"
BUCKET = "survey-in"
INPUT_PREFIX = "incoming/"


def _sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


_CREATED = _sample("powertools-python/s3Event.json")["Records"][0]
_REMOVED = _sample("powertools-python/s3EventDeleteObject.json")["Records"][0]
_SQS = _sample("powertools-python/s3SqsEvent.json")["Records"][0]


def s3_record(
    key: str,
    *,
    sequencer: str | None,
    removed: bool = False,
    bucket: str = BUCKET,
    size: int = 1,
    etag: str = "0" * 32,
) -> dict[str, Any]:
    """An S3 notification record like the sample, for ``key`` (URL-encoded here as S3 does)."""
    record = copy.deepcopy(_REMOVED if removed else _CREATED)
    record["s3"]["bucket"] = {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}
    obj: dict[str, Any] = {"key": quote_plus(key)}
    if not removed:
        obj |= {"size": size, "eTag": etag}
    if sequencer is not None:
        obj["sequencer"] = sequencer
    record["s3"]["object"] = obj
    return record


def sqs_message(message_id: str, body: dict[str, Any] | str) -> dict[str, Any]:
    """An SQS record (as Lambda receives it) carrying ``body``."""
    message = copy.deepcopy(_SQS)
    message["messageId"] = message_id
    message["body"] = body if isinstance(body, str) else json.dumps(body)
    return message


def sqs_batch(*records: dict[str, Any]) -> dict[str, Any]:
    """One SQS message per S3 record, ids ``m0``, ``m1``..."""
    return {"Records": [sqs_message(f"m{i}", {"Records": [r]}) for i, r in enumerate(records)]}


def render_shot(folder: Path) -> tuple[list[Path], dict[str, Any]]:
    """The six frames of one demo rig shot (160x120), and the rig profile to stitch them with."""
    survey = generate_survey(folder, shots=1, camera_size=(160, 120))
    return sorted(folder.rglob("cam*/*.jpg")), survey.rig.to_dict()


def upload_shot(s3: Any, folder: Path, frames: list[Path]) -> list[str]:
    """Upload the frames under :data:`INPUT_PREFIX`; their keys."""
    keys = []
    for frame in frames:
        key = INPUT_PREFIX + frame.relative_to(folder).as_posix()
        s3.put_object(Bucket=BUCKET, Key=key, Body=frame.read_bytes())
        keys.append(key)
    return keys
