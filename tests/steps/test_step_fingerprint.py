"""Step.fingerprint: the canonical JSON's SHA-256, its parameters' part serialised once per step."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from panopipe.catalog import Catalog
from panopipe.catalog.records import IMAGE_COLUMNS, Image, to_json_value
from panopipe.catalog.subjects import Subject
from panopipe.config import Settings
from panopipe.pipeline import load_pipeline
from panopipe.steps.base import Upstream
from panopipe.steps.fingerprint import fingerprint


def test_step_fingerprints_are_those_of_the_whole_canonical_document(tmp_path: Path) -> None:
    t = datetime(2024, 5, 1, 8, tzinfo=UTC)
    fields = dict.fromkeys(IMAGE_COLUMNS) | {
        "status": "ok",
        "deleted": False,
        "ingested_at": t,
        "updated_at": t,
    }
    image = Image(
        **fields | {"id": "018f-id", "uri": "/p/a.jpg", "content_hash": "h1", "captured_at": t, "lat": 1.5}
    )
    with Catalog.open(str(tmp_path / "c.db"), create=True) as catalog:
        steps = load_pipeline(catalog, Settings(project="p")).steps
    assert steps and any(step.reads_if_set for step in steps)
    # a field read only when set is in the document when it has a value, and absent, not null, when it has
    # none: outputs made before the step read it keep their fingerprints
    for frame in (image, dataclasses.replace(image, gps_accuracy_m=0.02)):
        subject = Subject("image:" + frame.id, (frame,))
        for step in steps:
            for upstream in (None, Upstream("stitch", "s3://b/x.jpg", "abc", {})):
                inputs = {upstream.step: upstream.hash} if upstream else [frame.content_hash]
                metadata = [
                    {name: to_json_value(getattr(frame, name)) for name in step.reads}
                    | {
                        name: getattr(frame, name)
                        for name in step.reads_if_set
                        if getattr(frame, name) is not None
                    }
                ]
                document = {"step": step.name, "version": step.version, "params": step.params}
                expected = fingerprint(document | {"inputs": inputs, "metadata": metadata})
                assert step.fingerprint(subject, upstream) == expected
