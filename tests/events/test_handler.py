"""The event handler against real catalogs (SQLite and PostgreSQL) and S3 (moto, in process)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from moto import mock_aws
from tests.aws.s3_events import (
    BUCKET,
    INPUT_PREFIX,
    render_shot,
    s3_record,
    sqs_batch,
    sqs_message,
    upload_shot,
)
from tests.conftest import drop_connections, locked, new_database

from panopipe.catalog import Catalog, Selection, create_catalog_engine
from panopipe.catalog.object_events import padded_sequencer
from panopipe.catalog.schema import artifacts, images, jobs, metadata
from panopipe.config import Settings
from panopipe.events import compare_sequencers
from panopipe.events.handler import EventHandler
from panopipe.executors.inline import InlineExecutor
from panopipe.pipeline import plan, status

OUTPUT = f"s3://{BUCKET}/panopipe-out"


@pytest.fixture(scope="module")
def shot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], dict[str, Any]]:
    folder = tmp_path_factory.mktemp("shot")
    frames, rig = render_shot(folder)
    return folder, frames, rig


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "PANOPIPE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def keys(s3: Any, shot: tuple[Path, list[Path], dict[str, Any]]) -> list[str]:
    folder, frames, _ = shot
    return upload_shot(s3, folder, frames)


def settings(rig: dict[str, Any]) -> Settings:
    return Settings(output_prefix=OUTPUT, buckets=(BUCKET,), steps={"stitch": {"rig": rig}})


def created(keys: list[str], first: int = 0x10) -> list[dict[str, Any]]:
    return [s3_record(key, sequencer=f"{first + i:X}") for i, key in enumerate(keys)]


def snapshot(catalog: Catalog) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The catalog rows that events decide (no ids or timestamps), and the jobs."""
    c, j = images.c, jobs.c
    columns = (c.uri, c.deleted, c.status, c.etag, c.size, c.shot, c.reel, c.frame, c.camera_index)
    columns += (c.captured_at, c.lat, c.lon, c.alt, c.width, c.source_sequencer)
    with catalog.engine.connect() as conn:
        rows = conn.execute(sa.select(*columns).order_by(c.uri)).all()
        job_rows = conn.execute(
            sa.select(j.step, j.subject, j.fingerprint, j.status, j.attempts).order_by(j.step, j.subject)
        ).all()
    return [tuple(r) for r in rows], [tuple(r) for r in job_rows]


def clear(catalog: Catalog) -> None:
    with catalog.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


def test_created_events_catalog_the_frames_and_their_shot(catalog: Catalog, keys: list[str], shot):
    handler = EventHandler(catalog, settings(shot[2]))
    report = handler.handle(sqs_batch(*created(keys)))
    assert report.counts() == {"processed": 6, "skipped": 0, "failed": 0}
    assert report.batch_item_failures() == {"batchItemFailures": []}
    frames = list(catalog.images())
    assert sorted(f.uri for f in frames) == sorted(f"s3://{BUCKET}/{k}" for k in keys)
    assert {f.shot for f in frames} == {"R001-000001"} and {f.status for f in frames} == {"ok"}
    assert report.planned > 0  # no executor: the stale work is planned, not run
    assert set(report.seconds) == {"read", "apply", "reprocess"}


def test_redelivered_and_shuffled_batches_leave_what_one_in_order_delivery_leaves(
    catalog: Catalog, keys: list[str], s3, shot
):
    events = created(keys)
    events.append(s3_record(keys[0], sequencer="0F"))  # an older event for a key: must not win
    events.append(s3_record(keys[5], sequencer="20", removed=True))  # frame 5 removed after it was created
    events[5] = s3_record(keys[5], sequencer="15")
    s3.delete_object(Bucket=BUCKET, Key=keys[5])  # so its creation finds it gone
    handler = EventHandler(catalog, settings(shot[2]), executor=InlineExecutor(), steps=["stitch"])
    first = handler.handle(sqs_batch(*events))
    # skipped: key 0's older event, key 5's creation (gone before it was read) and its removal (never catalogued)
    assert first.counts() == {"processed": 5, "skipped": 3, "failed": 0}
    # camera 5's frame is gone: the shot waits for it (`panopipe run` would fail it, saying so)
    assert first.jobs == {"stitch": {"waiting": 1}}
    in_order = snapshot(catalog)

    clear(catalog)
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    reports = [handler.handle(sqs_batch(*shuffled)) for _ in range(3)]
    assert snapshot(catalog) == in_order
    assert [r.counts()["skipped"] for r in reports[1:]] == [8, 8]  # redeliveries change nothing
    assert all(not r.jobs for r in reports[1:])
    uris = {row[0]: row for row in in_order[0]}
    assert uris[f"s3://{BUCKET}/{keys[0]}"][-1] == padded_sequencer("10")
    assert uris[f"s3://{BUCKET}/{keys[5]}"][1] is True  # deleted


def test_concurrent_handlers_applying_the_same_events_agree(catalog_url: str, keys: list[str], shot):
    events = [*created(keys), s3_record(keys[5], sequencer="20", removed=True)]
    shuffled = events[:]
    random.Random(5).shuffle(shuffled)
    with Catalog.open(catalog_url) as expected:
        EventHandler(expected, settings(shot[2])).handle(sqs_batch(*events))
        in_order = snapshot(expected)
        clear(expected)
        with Catalog.open(catalog_url) as other, ThreadPoolExecutor(2) as pool:
            handlers = [EventHandler(expected, settings(shot[2])), EventHandler(other, settings(shot[2]))]
            batches = [sqs_batch(*events), sqs_batch(*reversed(shuffled))] * 3
            reports = list(pool.map(lambda n: handlers[n % 2].handle(batches[n]), range(len(batches))))
        assert [r.batch_item_failures() for r in reports] == [{"batchItemFailures": []}] * len(batches)
        assert snapshot(expected) == in_order


def test_hundreds_of_shuffled_deliveries_from_two_handlers_converge_to_the_in_order_rows(
    catalog_url: str, keys: list[str], s3, shot
):
    """Creations and removals (some objects removed, some removed and created again), each delivered many times
    in a seeded random order to two concurrent handlers, leave exactly the rows in-order delivery leaves, and
    frames removed before they were ever grouped are in no shot (issue 12, item 10). The bucket holds what the
    events end with, as S3 does when they are delivered late."""
    events = [s3_record(key, sequencer=f"1{i}") for i, key in enumerate(keys)]
    events += [
        s3_record(key, sequencer=f"2{i}", removed=True) for i, key in enumerate(keys) if i in (0, 2, 3, 5)
    ]
    events += [s3_record(keys[i], sequencer=f"3{i}") for i in (3,)]
    for i in (0, 2, 5):
        s3.delete_object(Bucket=BUCKET, Key=keys[i])
    in_order = sorted(events, key=lambda e: int(e["s3"]["object"]["sequencer"], 16))
    rng = random.Random(12)
    deliveries = events * 20
    rng.shuffle(deliveries)
    assert len(deliveries) == 220
    batches = [sqs_batch(*deliveries[n : n + 11]) for n in range(0, len(deliveries), 11)]
    with Catalog.open(catalog_url) as expected, Catalog.open(catalog_url) as other:
        EventHandler(expected, settings(shot[2])).handle(sqs_batch(*in_order))
        want = snapshot(expected)
        clear(expected)
        handlers = [EventHandler(expected, settings(shot[2])), EventHandler(other, settings(shot[2]))]
        with ThreadPoolExecutor(2) as pool:
            reports = list(pool.map(lambda n: handlers[n % 2].handle(batches[n]), range(len(batches))))
        assert all(r.batch_item_failures() == {"batchItemFailures": []} for r in reports)
        assert snapshot(expected) == want
    rows = {row[0].rsplit("/", 1)[1]: row for row in want[0]}
    removed = [name for name, row in rows.items() if row[1]]
    assert sorted(removed) == sorted(keys[i].rsplit("/", 1)[1] for i in (0, 2, 5))
    assert {rows[name][5] for name in removed} == {None}
    assert len({row[5] for row in rows.values() if not row[1]}) == 1


def test_a_creation_racing_a_removal_of_a_new_object_leaves_the_removal(
    catalog_url: str, keys: list[str], s3, shot
):
    """A newer removal committed by another handler after this one read that the object was unknown (a real
    interleaving, injected right after the read) still wins: the creation never revives the image."""
    with Catalog.open(catalog_url) as catalog, Catalog.open(catalog_url) as other:
        creating, removing = EventHandler(catalog, settings(shot[2])), EventHandler(other, settings(shot[2]))
        raced: list[Any] = []

        def remove_meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if not raced and statement.startswith("SELECT") and "images.source_sequencer" in statement:
                s3.delete_object(Bucket=BUCKET, Key=keys[0])  # deleted after this handler read it
                with ThreadPoolExecutor(1) as pool:  # another handler, on its own connection, commits first
                    raced.append(
                        pool.submit(
                            removing.handle, sqs_batch(s3_record(keys[0], sequencer="20", removed=True))
                        ).result()
                    )

        sa.event.listen(catalog.engine, "after_cursor_execute", remove_meanwhile)
        report = creating.handle(sqs_batch(s3_record(keys[0], sequencer="15")))
        sa.event.remove(catalog.engine, "after_cursor_execute", remove_meanwhile)
        assert raced and raced[0].counts()["failed"] == 0 and report.counts()["failed"] == 0
        (image,) = catalog.images(Selection(include_deleted=True))
        assert image.deleted


def test_a_key_that_is_not_utf8_fails_its_message_only(catalog: Catalog):
    """A lone surrogate JSON escaped in a key raised UnicodeEncodeError out of the handler: the whole batch
    failed, and came back until every message of it was in the dead-letter queue."""
    bad = s3_record("incoming/R001/cam0/a.jpg", sequencer="10")
    bad["s3"]["object"]["key"] = "incoming/R001/cam0/a\ud800.jpg"
    fine = s3_record("incoming/R001/notes.txt", sequencer="10")

    report = EventHandler(catalog, Settings()).handle(json.dumps(sqs_batch(bad, fine)))

    assert report.batch_item_failures() == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert [(o.message_id, o.action.value) for o in report.outcomes] == [("m0", "failed"), ("m1", "skipped")]


def test_an_older_event_never_overwrites_a_newer_one(catalog: Catalog, keys: list[str], s3, shot):
    handler = EventHandler(catalog, settings(shot[2]))
    old_body = s3.get_object(Bucket=BUCKET, Key=keys[1])["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=keys[1], Body=shot[1][2].read_bytes())  # version 2: other content
    handler.handle(sqs_batch(s3_record(keys[1], sequencer="0200")))
    (image,) = catalog.images()
    s3.put_object(Bucket=BUCKET, Key=keys[1], Body=old_body)  # what a late reader of version 1 would see
    late = handler.handle(sqs_batch(s3_record(keys[1], sequencer="01FF")))
    assert late.outcomes[0].reason == "not newer than the event applied"
    assert next(catalog.images()).etag == image.etag


def test_the_removal_of_an_object_never_catalogued_deletes_nothing_and_keeps_its_older_creation_out(
    catalog: Catalog, keys: list[str], s3, shot
):
    handler = EventHandler(catalog, settings(shot[2]))
    body = s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()
    s3.delete_object(Bucket=BUCKET, Key=keys[0])

    removal = handler.handle(sqs_batch(s3_record(keys[0], sequencer="20", removed=True)))

    assert [(o.action.value, o.reason) for o in removal.outcomes] == [
        ("skipped", "not in the catalog: nothing to delete")
    ]
    assert removal.actions()["deleted"] == 0  # the worker's batch line and the Lambda's log count no deletion
    assert removal.counts() == {"processed": 0, "skipped": 1, "failed": 0}
    s3.put_object(Bucket=BUCKET, Key=keys[0], Body=body)  # what a late reader of the creation would see
    late = handler.handle(sqs_batch(s3_record(keys[0], sequencer="10")))
    assert late.outcomes[0].reason == "not newer than the event applied" and catalog.count() == 0


def test_a_removed_object_is_marked_deleted_and_its_artifacts_orphaned(catalog: Catalog, keys, s3, shot):
    """The removed frames stay in their shot, as `panopipe ingest` leaves deleted files' images: `verify` lists
    its outputs `deleted` and a run keeps them (in no shot, the shot had vanished, and its outputs with it)."""
    handler = EventHandler(catalog, settings(shot[2]), executor=InlineExecutor(), steps=["stitch"])
    assert handler.handle(sqs_batch(*created(keys))).jobs == {"stitch": {"succeeded": 1}}
    for key in keys:
        s3.delete_object(Bucket=BUCKET, Key=key)
    removals = [s3_record(key, sequencer="40", removed=True) for key in keys]
    report = handler.handle(sqs_batch(*removals))
    assert {o.action.value for o in report.outcomes} == {"deleted"}
    assert catalog.count() == 0 and catalog.count(Selection(include_deleted=True)) == 6
    assert {image.shot for image in catalog.images(Selection(include_deleted=True))} == {"R001-000001"}
    with catalog.engine.connect() as conn:
        assert conn.execute(sa.select(artifacts.c.orphaned)).scalars().all() == [True]


def test_an_older_creation_delivered_after_the_removal_keeps_the_removed_frame_in_its_shot(
    catalog: Catalog, keys: list[str], s3, shot
):
    """A creation older than the removal the image applied (a redelivery) fills in its record and leaves it
    deleted, in the shot it was in."""
    handler = EventHandler(catalog, settings(shot[2]))
    handler.handle(sqs_batch(*created(keys)))
    body = s3.get_object(Bucket=BUCKET, Key=keys[5])["Body"].read()
    s3.delete_object(Bucket=BUCKET, Key=keys[5])
    assert (
        handler.handle(sqs_batch(s3_record(keys[5], sequencer="40", removed=True))).actions()["deleted"] == 1
    )
    s3.put_object(Bucket=BUCKET, Key=keys[5], Body=body)  # what a late reader of the creation would see

    late = handler.handle(sqs_batch(*created(keys[5:], first=0x15)))

    assert [o.reason for o in late.outcomes] == ["not newer than the event applied"]
    (removed,) = [image for image in catalog.images(Selection(include_deleted=True)) if image.deleted]
    assert removed.uri.endswith(keys[5]) and removed.shot == "R001-000001"


def test_a_removed_frame_makes_its_shot_stale_for_the_handler_and_for_plan(
    catalog: Catalog, keys: list[str], s3, shot
):
    """One frame of a stitched shot removed: the shot, whose panorama was made with it, is made again without
    it (it had been found up to date once the removed frame was put in no shot: still published)."""
    handler = EventHandler(catalog, settings(shot[2]), executor=InlineExecutor(), steps=["stitch"])
    assert handler.handle(sqs_batch(*created(keys))).jobs == {"stitch": {"succeeded": 1}}
    s3.delete_object(Bucket=BUCKET, Key=keys[5])

    report = handler.handle(sqs_batch(s3_record(keys[5], sequencer="40", removed=True)))

    assert report.actions()["deleted"] == 1
    assert report.jobs == {"stitch": {"waiting": 1}}  # as for a shot still uploading: camera 5 is missing
    (due,) = plan(catalog, steps=["stitch"], settings=settings(shot[2]))
    assert (due.subject, due.reason) == ("shot:R001-000001", "input changed")


def test_a_frame_that_failed_at_ingest_fails_its_shot_instead_of_keeping_it_waiting(
    catalog: Catalog, keys: list[str], s3, shot
):
    """A frame uploaded cut short is catalogued failed, in no shot: its camera was taken for one still to come,
    and the shot waited for it on every later batch, never stitched nor failed. It fails now, saying why. (Not
    yet for the rig's last camera when no shot planned with it has that camera: the loader looks for where a
    frame went only where the others show its camera exists, see catalog.subjects.load_subjects.)"""
    s3.put_object(Bucket=BUCKET, Key=keys[2], Body=b"\xff\xd8\xff\xe1\x00\x10Exif")  # a header cut short
    handler = EventHandler(catalog, settings(shot[2]), executor=InlineExecutor(), steps=["stitch"])

    report = handler.handle(sqs_batch(*created(keys)))

    assert report.jobs == {"stitch": {"failed": 1}}
    (failure,) = status(catalog).failures
    assert failure.subject == "shot:R001-000001" and "camera(s) [2] failed at ingest" in (failure.error or "")


def test_a_move_within_the_bucket_keeps_the_images_their_edits_and_shot_in_any_order(
    catalog: Catalog, keys: list[str], s3, shot
):
    """``aws s3 mv`` within the bucket is a CopyObject then a DeleteObject: their events come in any order, in
    one batch or two. The frames were uploaded without a SHA-256; being small (64 KiB or less), each is read
    whole and its content known, as a panopipe upload's stored SHA-256 (which CopyObject copies) makes known."""
    handler = EventHandler(catalog, settings(shot[2]), executor=InlineExecutor(), steps=["stitch"])
    assert handler.handle(sqs_batch(*created(keys))).jobs == {"stitch": {"succeeded": 1}}
    ids = {image.uri: image.id for image in catalog.images()}
    catalog.apply_edit(
        catalog.plan_edit(Selection(ids=tuple(ids.values())), assign={"alt": 519.4}), reason="RTK", author="t"
    )
    targets = [f"{INPUT_PREFIX}archive/{key.removeprefix(INPUT_PREFIX)}" for key in keys]
    for key, target in zip(keys, targets, strict=True):
        s3.copy_object(Bucket=BUCKET, Key=target, CopySource={"Bucket": BUCKET, "Key": key})
        s3.delete_object(Bucket=BUCKET, Key=key)
    copied = [s3_record(target, sequencer="50") for target in targets]
    removed = [s3_record(key, sequencer="60", removed=True) for key in keys]
    batches = [
        [*copied[:2], *removed[2:4]],  # frames 0-1 copied first, 2-3 removed first
        [*removed[:2], *copied[2:4]],
        [copied[4], removed[4], removed[5], copied[5]],  # both events of frames 4-5 in one batch
    ]
    reports = [handler.handle(sqs_batch(*batch)) for batch in batches]

    assert [r.actions() for r in reports] == [
        {"added": 0, "updated": 0, "unchanged": 0, "duplicate": 2, "deleted": 2, "skipped": 0, "failed": 0},
        {"added": 0, "updated": 4, "unchanged": 0, "duplicate": 0, "deleted": 0, "skipped": 0, "failed": 0},
        {"added": 0, "updated": 2, "unchanged": 2, "duplicate": 0, "deleted": 0, "skipped": 0, "failed": 0},
    ]
    images_now = list(catalog.images())
    assert {i.uri: i.id for i in images_now} == {
        f"s3://{BUCKET}/{target}": ids[f"s3://{BUCKET}/{key}"]
        for key, target in zip(keys, targets, strict=True)
    }
    assert {(i.alt, i.shot) for i in images_now} == {(519.4, "R001-000001")}
    assert catalog.count(Selection(include_deleted=True)) == 12  # the keys left keep their events' sequencers
    # Redelivered, the events change nothing, and the panorama stitched before stays (nothing is stale). An
    # image that followed its copy knew no event of the copy's key: the copy's creation is its first.
    before = snapshot(catalog)
    again = handler.handle(sqs_batch(*copied, *removed))
    assert {o.action.value for o in again.outcomes} == {"unchanged", "skipped"} and not again.jobs
    after = snapshot(catalog)
    assert after[1] == before[1]
    assert [row[:-1] for row in after[0]] == [row[:-1] for row in before[0]]
    assert catalog.known_copies(f"s3://{BUCKET}/") == {}


def test_a_removal_follows_what_its_key_still_holds(catalog: Catalog, keys: list[str], s3, shot):
    """In a versioned bucket, removing an older version or a delete marker sends ``ObjectRemoved:Delete`` while
    the key still holds an object; a removal delivered again after a new upload (moto's events carry no
    sequencer, as here) must not delete the image either."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    handler = EventHandler(catalog, settings(shot[2]))
    key = keys[0]
    first = s3.put_object(Bucket=BUCKET, Key=key, Body=shot[1][0].read_bytes())["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=key, Body=shot[1][0].read_bytes() + b"v2")
    handler.handle(sqs_batch(s3_record(key, sequencer="10")))
    (image,) = catalog.images()

    s3.delete_object(Bucket=BUCKET, Key=key, VersionId=first)  # an older version removed: v2 stays current
    older = handler.handle(sqs_batch(s3_record(key, sequencer="20", removed=True)))
    assert [o.action.value for o in older.outcomes] == ["unchanged"]
    assert catalog.get(image.id).deleted is False

    marker = s3.delete_object(Bucket=BUCKET, Key=key)["VersionId"]  # a delete marker hides the object
    assert [
        o.action.value
        for o in handler.handle(sqs_batch(s3_record(key, sequencer="30", removed=True))).outcomes
    ] == ["deleted"]
    s3.delete_object(Bucket=BUCKET, Key=key, VersionId=marker)  # the marker removed: the object is back
    back = handler.handle(sqs_batch(s3_record(key, sequencer="40", removed=True)))
    assert [(o.action.value, o.image_id) for o in back.outcomes] == [("updated", image.id)]
    assert catalog.get(image.id).deleted is False

    # Without sequencers, a removal delivered again after the key got an object again changes nothing.
    again = handler.handle(sqs_batch(s3_record(key, sequencer=None, removed=True)))
    assert [o.action.value for o in again.outcomes] == ["unchanged"] and catalog.count() == 1


def test_the_deployments_output_prefix_is_panopipes_own_output(catalog: Catalog, keys: list[str], s3, shot):
    """A project configuration may send the outputs elsewhere: the prefix the deployment gives stays its own."""
    catalog.push_project_config(
        {"steps": {"pipeline": {"output": str(shot[0] / "out")}}}, author="t", reason="r"
    )
    key = f"{OUTPUT.removeprefix(f's3://{BUCKET}/')}/publish/R001/pano_000001.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=shot[1][0].read_bytes())
    report = EventHandler(catalog, settings(shot[2])).handle(sqs_batch(s3_record(key, sequencer="10")))
    assert [(o.action.value, o.reason) for o in report.outcomes] == [("skipped", "panopipe's own output")]


def test_own_outputs_do_not_trigger_the_handler(catalog: Catalog, keys: list[str], s3, shot):
    handler = EventHandler(catalog, settings(shot[2]), executor=InlineExecutor(), steps=["stitch"])
    handler.handle(sqs_batch(*created(keys)))
    with catalog.engine.connect() as conn:
        (output_uri,) = conn.execute(sa.select(artifacts.c.output_uri)).scalars().all()
    output_key = output_uri.removeprefix(f"s3://{BUCKET}/")
    assert s3.head_object(Bucket=BUCKET, Key=output_key)["ContentLength"] > 0
    before = snapshot(catalog)
    report = handler.handle(sqs_batch(s3_record(output_key, sequencer="50")))
    assert [(o.action.value, o.reason) for o in report.outcomes] == [("skipped", "panopipe's own output")]
    assert snapshot(catalog) == before


def test_bad_input_is_recorded_and_only_unreadable_messages_fail(catalog: Catalog, keys, s3, shot):
    s3.put_object(Bucket=BUCKET, Key="incoming/R001/cam0/empty_000009.jpg", Body=b"")
    s3.put_object(Bucket=BUCKET, Key="incoming/notes.txt", Body=b"hello")
    records = [
        s3_record(keys[0], sequencer="10"),
        s3_record("incoming/notes.txt", sequencer="11"),
        s3_record("incoming/R001/cam0/empty_000009.jpg", sequencer="12", size=0),
        s3_record("incoming/R001/cam0/gone_000010.jpg", sequencer="13"),
        s3_record("incoming/../secrets/x.jpg", sequencer="14"),
        s3_record("incoming/bad\x07name.jpg", sequencer="15"),
        s3_record(keys[1], sequencer="16", bucket="someone-elses-bucket"),
        s3_record(keys[2], sequencer="not-hex"),
        s3_record(f"incoming/R001/cam0/{'x' * (1024 - len(BUCKET) - 20)}_000011.jpg", sequencer="17"),
    ]
    batch = sqs_batch(*records)
    batch["Records"].append(sqs_message("poison", "this is not JSON"))
    report = EventHandler(catalog, settings(shot[2])).handle(batch)

    failed = [{"itemIdentifier": "poison"}, {"itemIdentifier": "m7"}]
    assert report.batch_item_failures() == {"batchItemFailures": failed}
    reasons = {o.message_id: (o.action.value, o.reason) for o in report.outcomes}
    assert reasons["m0"] == ("added", None)
    assert reasons["m1"] == ("skipped", "not a JPEG image (by its name)")
    assert reasons["m2"][0] == "added" and reasons["m2"][1]  # cataloged as failed, with the reason
    assert reasons["m3"] == ("skipped", "object no longer exists (deleted before it could be read)")
    assert reasons["m4"][1].startswith("unsafe key") and reasons["m5"][1].startswith("unsafe key")
    assert reasons["m6"] == ("skipped", "bucket 'someone-elses-bucket' is not one this deployment handles")
    assert reasons["m7"][0] == "failed" and reasons["m7"][1].startswith("sequencer must be")
    assert reasons["m8"][0] == "skipped" and "the most the catalog holds" in reasons["m8"][1]
    assert reasons["poison"][0] == "failed" and "not JSON" in reasons["poison"][1]
    assert {(i.uri.rsplit("/", 1)[1], i.status) for i in catalog.images()} == {
        (keys[0].rsplit("/", 1)[1], "ok"),
        ("empty_000009.jpg", "failed"),
    }


def test_an_event_the_database_refuses_fails_only_its_message(postgres_url: str, keys, s3, shot):
    refused = "incoming/R001/cam0/refused_000002.jpg"
    s3.put_object(Bucket=BUCKET, Key=refused, Body=shot[1][0].read_bytes() + b"other bytes")
    records = [s3_record(keys[0], sequencer="10"), s3_record(refused, sequencer="11")]
    records.append(s3_record(keys[1], sequencer="12"))
    with Catalog.open(postgres_url) as catalog:
        with catalog.engine.begin() as conn:  # the database refuses that one image, as a constraint would
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by the database'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON images FOR EACH ROW "
                "WHEN (strpos(NEW.uri, 'refused') > 0) EXECUTE FUNCTION refuse()"
            )
        report = EventHandler(catalog, settings(shot[2])).handle(sqs_batch(*records))
        assert report.batch_item_failures() == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
        assert [o.action.value for o in report.outcomes] == ["added", "failed", "added"]
        assert "refused by the database" in (report.outcomes[1].reason or "")
        assert catalog.count() == 2


def test_a_batch_writes_in_one_transaction_and_plans_without_one(postgres_url: str, keys, shot):
    """Applying the events and regrouping their shots share one transaction; the planner's reads and the
    configuration's run in autocommit: no BEGIN or COMMIT round trips of their own (issue 15, gap 3)."""
    with Catalog.open(postgres_url) as catalog:
        handler = EventHandler(catalog, settings(shot[2]))
        handler.handle(sqs_batch(*created(keys)[:3]))
        seen: list[str] = []
        for event in ("begin", "commit", "rollback"):
            sa.event.listen(
                catalog.engine,
                event,
                lambda conn, *_, event=event: (
                    seen.append(event)
                    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT"
                    else None
                ),
            )
        report = handler.handle(sqs_batch(*created(keys, first=0x20)[3:]))
        assert seen == ["begin", "commit"]
        assert report.counts()["processed"] == 3 and report.planned > 0
        assert {f.shot for f in catalog.images()} == {"R001-000001"}  # the six frames regrouped as one shot


def test_a_batch_reads_the_configuration_and_the_images_rows_once(postgres_url: str, keys, s3, shot):
    """Per batch the project configuration is read once (planning reuses it, also when none was pushed) and
    the images' rows once (locked; the upsert compares with them); removals are marked in one statement
    (issue 15, gap 3)."""
    with Catalog.open(postgres_url) as catalog:
        handler = EventHandler(catalog, settings(shot[2]))
        handler.handle(sqs_batch(*created(keys)[:3]))
        statements: list[str] = []
        sa.event.listen(
            catalog.engine,
            "before_cursor_execute",
            lambda _c, _u, statement, *_: statements.append(statement),
        )
        report = handler.handle(sqs_batch(*created(keys, first=0x20)[3:]))
        assert report.counts()["processed"] == 3
        assert sum("FROM project_config" in s for s in statements) == 1
        assert sum("FROM images" in s and "images.uri IN" in s for s in statements) == 1
        statements.clear()
        for key in keys:
            s3.delete_object(Bucket=BUCKET, Key=key)
        report = handler.handle(sqs_batch(*(s3_record(k, sequencer="40", removed=True) for k in keys)))
        assert report.actions()["deleted"] == len(keys)
        assert sum(s.startswith("UPDATE images SET deleted") for s in statements) == 1


def test_an_unreachable_catalog_fails_every_message_for_redelivery(keys, shot):
    catalog = Catalog(create_catalog_engine("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"))
    report = EventHandler(catalog, settings(shot[2])).handle(sqs_batch(*created(keys[:2])))
    assert report.batch_item_failures() == {
        "batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]
    }


def test_a_locked_catalog_fails_every_message_at_once_in_one_line(tmp_path: Path, keys, shot, monkeypatch):
    """Another process holding the SQLite catalog's write lock past the busy timeout: every message fails with
    the line that says so, after one wait (each alone would wait again: ten messages, ten times the busy
    timeout, past the Lambda's); delivered again once the lock is gone, they apply."""
    monkeypatch.setattr("panopipe.catalog.engine._BUSY_TIMEOUT_MS", 1000)  # 30 s: what SQLite waits first
    db = tmp_path / "catalog.db"
    batch = sqs_batch(*created(keys[:3]))
    with Catalog.open(db) as catalog:
        handler = EventHandler(catalog, settings(shot[2]))
        waits: list[str] = []
        sa.event.listen(catalog.engine, "handle_error", lambda context: waits.append(context.statement))
        with locked(db):
            report = handler.handle(batch)
        assert len(waits) == 1
        assert report.batch_item_failures() == {
            "batchItemFailures": [{"itemIdentifier": f"m{n}"} for n in range(3)]
        }
        line = f"catalog {db} is locked by another process (waited 1 s): retry when it ends"
        assert [(o.action.value, o.reason) for o in report.outcomes] == [("failed", line)] * 3
        assert handler.handle(batch).actions()["added"] == 3


def test_a_connection_lost_in_the_batch_fails_every_message_at_once(keys, shot):
    """The server ending the batch's connection (``pg_terminate_backend``, as a failover does): every message
    fails with the line that says so, for redelivery, rather than each waiting on the database alone."""
    with new_database() as url, Catalog.open(url) as catalog:
        handler = EventHandler(catalog, settings(shot[2]))
        lost: list[str] = []

        def lose_the_connection(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if not lost and "FOR UPDATE" in statement:  # the batch's transaction locking the images' rows
                lost.append(statement)
                drop_connections(url)

        sa.event.listen(catalog.engine, "before_cursor_execute", lose_the_connection)
        report = handler.handle(sqs_batch(*created(keys[:2])))
        assert lost and report.batch_item_failures() == {
            "batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]
        }
        line = (
            f"the connection to the catalog {catalog.location} was lost (terminating connection due to "
            "administrator command): rerun; what was finished is kept"
        )
        assert [(o.action.value, o.reason) for o in report.outcomes] == [("failed", line)] * 2
        assert catalog.count() == 0


def test_a_database_lost_while_a_warm_handler_looks_up_copies_fails_the_messages(
    catalog: Catalog, keys: list[str], s3, shot
):
    """The removed images' known copies are looked up before the reads: a database lost then (here, at that
    query and after it) fails the batch's messages for redelivery, as at any other point, never the worker."""
    handler = EventHandler(catalog, settings(shot[2]))
    handler.handle(sqs_batch(*created(keys[:2])))  # warm: the next batch reads before the configuration
    s3.delete_object(Bucket=BUCKET, Key=keys[0])
    lost: list[str] = []

    def lose_the_connection(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if lost or "file_copies" in statement:
            lost.append(statement)
            raise sa.exc.OperationalError(statement, {}, ConnectionError("server closed the connection"))

    sa.event.listen(catalog.engine, "before_cursor_execute", lose_the_connection)
    try:
        report = handler.handle(sqs_batch(s3_record(keys[0], sequencer="40", removed=True)))
    finally:
        sa.event.remove(catalog.engine, "before_cursor_execute", lose_the_connection)
    assert lost and report.batch_item_failures() == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert catalog.count() == 2  # nothing applied: the removal comes back


@pytest.mark.parametrize("a, b", [("0A", "00B"), ("643717F9F8B85354", "0643717F9F8B85355"), ("ff", "FF")])
def test_padded_sequencers_sort_as_s3_orders_them(a: str, b: str):
    order = (padded_sequencer(a) > padded_sequencer(b)) - (padded_sequencer(a) < padded_sequencer(b))
    assert order == compare_sequencers(a, b)


def test_a_configuration_pushed_between_batches_applies_to_the_next(catalog: Catalog, keys: list[str], shot):
    handler = EventHandler(catalog, settings(shot[2]))
    first = handler.handle(sqs_batch(*created(keys[:3])))
    assert first.counts() == {"processed": 3, "skipped": 0, "failed": 0}
    # The pipeline's outputs now go under the folder of the uploads: their events are panopipe's own.
    output = f"s3://{BUCKET}/{keys[3].rpartition('/')[0]}"
    steps = {"pipeline": {"output": output}, "stitch": {"rig": shot[2]}}
    catalog.push_project_config({"steps": steps}, author="test", reason="outputs elsewhere")
    second = handler.handle(sqs_batch(*created(keys[3:4], first=0x20), *created(keys[:1], first=0x30)))
    assert [(o.uri, o.action.value, o.reason) for o in second.outcomes] == [
        (f"s3://{BUCKET}/{keys[3]}", "skipped", "panopipe's own output"),
        (f"s3://{BUCKET}/{keys[0]}", "unchanged", None),
    ]
    assert output + "/" in handler.own_prefixes
