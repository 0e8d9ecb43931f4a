"""Object events applied through ``Catalog.apply_object_events``, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import locked

from panopipe.catalog import Catalog, FileLocation, ImageRecord, Selection
from panopipe.catalog.object_events import ObjectChange, padded_sequencer
from panopipe.catalog.schema import file_copies
from panopipe.errors import CatalogError

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def created(uri: str, sequencer: str, group: str | None = None, camera: int = 0) -> ObjectChange:
    record = ImageRecord(uri=uri, captured_at=T0, camera_index=camera, reel="R001", frame=1, etag=sequencer)
    return ObjectChange(uri, padded_sequencer(sequencer), record=record, group=group)


def removed(uri: str, sequencer: str, group: str | None = None) -> ObjectChange:
    return ObjectChange(uri, padded_sequencer(sequencer), group=group)


def actions(applied: Sequence[Any]) -> list[str | None]:
    return [None if a is None else a.action.value for a in applied]


def test_a_removal_of_an_unknown_object_keeps_an_older_creation_out(catalog: Catalog):
    assert actions(catalog.apply_object_events([removed("/a.jpg", "20")])) == ["skipped"]  # nothing to delete
    late = catalog.apply_object_events([created("/a.jpg", "10")])
    assert late[0] is not None and late[0].reason == "not newer than the event applied"
    assert catalog.count() == 0 and catalog.count(Selection(include_deleted=True)) == 1


def test_one_objects_events_apply_in_delivery_order_within_a_batch(catalog: Catalog):
    changes = [created("/a.jpg", "10"), removed("/a.jpg", "11"), created("/a.jpg", "12")]
    assert actions(catalog.apply_object_events(changes)) == ["added", "deleted", "updated"]
    (image,) = catalog.images()
    assert image.etag == "12"


def test_removals_report_their_images_and_the_shots_left_without_frames(catalog: Catalog):
    catalog.apply_object_events([created(f"/cam{n}.jpg", "10", camera=n) for n in range(2)])
    catalog.assign_shots(["R001"], 0.05)
    seen: list[tuple[list[str], list[str]]] = []

    def on_removed(conn: Any, image_ids: Sequence[str], shots: Sequence[str]) -> None:
        seen.append((sorted(image_ids), list(shots)))

    first = catalog.apply_object_events([removed("/cam0.jpg", "20")], on_removed=on_removed)
    second = catalog.apply_object_events([removed("/cam1.jpg", "20")], on_removed=on_removed)
    assert first[0] is not None and second[0] is not None
    assert seen == [([first[0].image_id], []), ([second[0].image_id], ["R001-000001"])]


def test_a_failing_event_fails_alone_and_stops_only_the_rest_of_its_group(catalog: Catalog):
    catalog.apply_object_events([created("/bad.jpg", "10")])

    def refuse(conn: Any, image_ids: Sequence[str], shots: Sequence[str]) -> None:
        raise CatalogError("refused")

    changes = [
        created("/a.jpg", "10", group="m0"),
        removed("/bad.jpg", "20", group="m1"),
        created("/b.jpg", "10", group="m1"),
        created("/c.jpg", "10", group="m2"),
    ]
    applied = catalog.apply_object_events(changes, on_removed=refuse)
    assert actions(applied) == ["added", "failed", None, "added"]
    assert applied[1] is not None and applied[1].reason == "refused"
    assert sorted(i.uri for i in catalog.images()) == ["/a.jpg", "/bad.jpg", "/c.jpg"]


def test_a_catalog_locked_during_the_one_by_one_fallback_fails_the_changes_left_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The batch fails on one change, then another process locks the catalog: the first change tried alone
    waits the busy timeout once, and it and the changes left fail with the line that says so, without waiting
    again each."""
    monkeypatch.setattr("panopipe.catalog.engine._BUSY_TIMEOUT_MS", 1000)
    db = tmp_path / "catalog.db"

    def refuse(conn: Any, image_ids: Sequence[str], shots: Sequence[str]) -> None:
        raise CatalogError("refused")

    with Catalog.open(db) as catalog, contextlib.ExitStack() as stack:
        catalog.apply_object_events([created("/bad.jpg", "10")])
        connected: list[sa.Connection] = []

        def lock_after_the_batch(conn: sa.Connection) -> None:
            connected.append(conn)
            if len(connected) == 2:  # the first change alone
                stack.enter_context(locked(db))

        waits: list[str] = []
        sa.event.listen(catalog.engine, "engine_connect", lock_after_the_batch)
        sa.event.listen(catalog.engine, "handle_error", lambda context: waits.append(context.statement))
        changes = [created("/a.jpg", "10", group="m0"), removed("/bad.jpg", "20", group="m1")]
        changes.append(created("/c.jpg", "10", group="m2"))
        applied = catalog.apply_object_events(changes, on_removed=refuse)
        line = f"catalog {db} is locked by another process (waited 1 s): retry when it ends"
        assert [(a.action.value, a.reason) for a in applied if a is not None] == [("failed", line)] * 3
        assert len(connected) == 2 and len(waits) == 1


def test_a_database_failure_while_regrouping_fails_the_changes_and_never_escapes(catalog: Catalog):
    """A database error while the shots are regrouped, one of no condition of the catalog's: the batch rolls
    back, then each change with its regrouping, so each fails alone as its outcome; nothing half-applied is
    committed."""
    lost: list[str] = []

    def lose_the_connection(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE images SET shot"):
            lost.append(statement)
            raise sa.exc.OperationalError(statement, {}, ConnectionError("server closed the connection"))

    sa.event.listen(catalog.engine, "before_cursor_execute", lose_the_connection)
    try:
        applied = catalog.apply_object_events(
            [created(f"/cam{n}.jpg", "10", camera=n) for n in range(2)], shot_tolerance_s=0.05
        )
    finally:
        sa.event.remove(catalog.engine, "before_cursor_execute", lose_the_connection)
    assert len(lost) == 3  # the batch, then each change
    assert actions(applied) == ["failed", "failed"]
    assert catalog.count(Selection(include_deleted=True)) == 0


def test_changes_made_while_the_rows_are_locked_apply_as_given(catalog: Catalog):
    catalog.apply_object_events([created("/a.jpg", "10"), created("/b.jpg", "10")])
    locked: list[bool] = []

    def ready() -> list[ObjectChange]:
        # Meanwhile, on PostgreSQL, the batch's transaction holds the rows of the URIs given, in URI order.
        if catalog.engine.dialect.name == "postgresql":
            with catalog.engine.connect() as other:
                other.exec_driver_sql("SET lock_timeout = '50ms'")
                try:
                    other.exec_driver_sql("SELECT 1 FROM images WHERE uri = '/b.jpg' FOR UPDATE")
                except sa.exc.OperationalError:
                    locked.append(True)
        return [
            created("/b.jpg", "11"),
            removed("/a.jpg", "11"),
            created("/c.jpg", "11"),
            created("/b.jpg", "09"),
        ]

    applied = catalog.apply_object_events(ready, uris=["/a.jpg", "/b.jpg", "/c.jpg"])
    assert actions(applied) == ["updated", "deleted", "added", "skipped"]
    assert locked == ([True] if catalog.engine.dialect.name == "postgresql" else [])
    assert sorted(i.uri for i in catalog.images()) == ["/b.jpg", "/c.jpg"]


def test_changes_beyond_the_uris_given_read_their_rows_themselves(catalog: Catalog):
    catalog.apply_object_events([created("/a.jpg", "10")])
    applied = catalog.apply_object_events(
        lambda: [created("/a.jpg", "09"), created("/b.jpg", "10")], uris=["/b.jpg"]
    )
    assert actions(applied) == ["skipped", "added"]


def test_an_upload_of_a_catalogued_local_file_takes_its_image_over(catalog: Catalog):
    def record(uri: str, content: str, **fields: Any) -> ImageRecord:
        return ImageRecord(uri=uri, captured_at=T0, reel="R001", frame=1, content_hash=content * 64, **fields)

    catalog.upsert_images(
        [
            record("/data/R001/cam0/1.jpg", "a", camera_index=0),
            record("/data/R001/cam1/1.jpg", "b", camera_index=1),
            record("/data/R001/cam2/1.jpg", "c", camera_index=2),
        ]
    )
    local = {i.uri: i.id for i in catalog.images()}
    catalog.mark_deleted(["/data/R001/cam2/1.jpg"])
    first = local["/data/R001/cam0/1.jpg"]
    catalog.apply_edit(
        catalog.plan_edit(Selection(ids=(first,)), assign={"alt": 12.5}), reason="r", author="a"
    )

    def upload(key: str, content: str, camera: int) -> ObjectChange:
        uri = f"s3://bucket/day1/R001/{key}"
        return ObjectChange(
            uri, padded_sequencer("10"), record=record(uri, content, camera_index=camera, etag="e")
        )

    applied = catalog.apply_object_events(
        [
            upload("cam0/1.jpg", "a", 0),
            upload("cam0/copy-of-1.jpg", "a", 0),  # the same content again: a copy of the image just taken
            upload(
                "cam2/1.jpg", "c", 2
            ),  # its local image is deleted: brought back, as ingest brings it back
        ]
    )

    assert actions(applied) == ["updated", "duplicate", "updated"]
    assert applied[0] is not None and applied[0].image_id == first
    assert applied[1] is not None and applied[1].image_id == first
    image = catalog.get(first)
    assert (image.uri, image.alt, image.etag) == ("s3://bucket/day1/R001/cam0/1.jpg", 12.5, "e")
    assert catalog.get(local["/data/R001/cam2/1.jpg"]).uri == "s3://bucket/day1/R001/cam2/1.jpg"
    assert catalog.count() == 3  # cam1 stays local: nothing uploaded it
    assert [(uri, c.image_uri) for uri, c in catalog.known_copies("s3://bucket/").items()] == [
        ("s3://bucket/day1/R001/cam0/copy-of-1.jpg", image.uri)
    ]
    # The file left behind is known as a copy of the image, so that an ingest of its folder need not read it.
    (left,) = catalog.known_copies("/data/").items()
    assert (left[0], left[1].file.id, left[1].image_uri) == ("/data/R001/cam0/1.jpg", first, image.uri)
    # A sync that repoints the catalog afterwards finds the image moved already.
    moved = FileLocation("s3://bucket/day1/R001/cam0/1.jpg", etag="e")
    assert catalog.relocate({"/data/R001/cam0/1.jpg": moved}) == []
    assert catalog.get(first).uri == moved.uri


def stored(uri: str, content: str, sequencer: str | None = None, **fields: Any) -> ObjectChange:
    """The creation of an object holding ``content`` (its SHA-256 as panopipe's uploads store it)."""
    fields = {"reel": "R001", "frame": 1} | fields
    record = ImageRecord(uri=uri, captured_at=T0, content_hash=content * 64, **fields)
    return ObjectChange(uri, padded_sequencer(sequencer), record=record)


def with_successor(removal: ObjectChange, copy: ObjectChange) -> ObjectChange:
    """``removal`` as the handler sends it when the removed image has a known copy: the copy's header read."""
    return replace(removal, successor=copy.record)


def test_a_copy_within_the_bucket_is_known_as_one_and_its_image_follows_it_when_the_original_goes(
    catalog: Catalog,
):
    """``aws s3 cp`` then ``aws s3 rm`` (or ``aws s3 mv`` whose removal event comes last)."""
    original, copy = "s3://b/in/R001/a.jpg", "s3://b/in/R002/a.jpg"
    (added,) = catalog.apply_object_events([stored(original, "a", "10")])
    assert added is not None and added.action.value == "added"
    image_id = added.image_id
    catalog.apply_edit(
        catalog.plan_edit(Selection(ids=(image_id,)), assign={"alt": 7.5}), reason="r", author="a"
    )

    (copied,) = catalog.apply_object_events([stored(copy, "a", "20", reel="R002")])
    assert (copied.action.value, copied.reason, copied.image_id) == (
        "duplicate",
        f"a copy of {original}",
        image_id,
    )
    assert catalog.count(Selection(include_deleted=True)) == 1
    assert list(catalog.known_copies("s3://b/")) == [copy]

    (moved,) = catalog.apply_object_events(
        [with_successor(removed(original, "30"), stored(copy, "a", reel="R002"))]
    )
    assert (moved.action.value, moved.image_id) == ("updated", image_id)
    image = catalog.get(image_id)
    assert (image.uri, image.reel, image.alt, image.deleted) == (copy, "R002", 7.5, False)
    assert catalog.known_copies("s3://b/") == {}
    # The key it left keeps the removal's sequencer: a late older event of that key brings nothing back.
    (late,) = catalog.apply_object_events([stored(original, "a", "10")])
    assert late.reason == "not newer than the event applied"
    assert [i.id for i in catalog.images()] == [image_id]
    # Events of the copy's key apply to the image there now.
    (gone,) = catalog.apply_object_events([removed(copy, "01")])
    assert (gone.action.value, gone.image_id) == ("deleted", image_id)


def test_a_removal_whose_copy_is_gone_or_holds_other_content_deletes_its_image(catalog: Catalog):
    original, copy = "s3://b/in/a.jpg", "s3://b/in/b.jpg"
    # The copy was removed after the handler read it: forgotten, it no longer counts. Or the object at the
    # copy's key holds other content now.
    for copy_removed, successor in ((True, stored(copy, "a")), (False, stored(copy, "c"))):
        clear_images(catalog)
        catalog.apply_object_events([stored(original, "a", "10")])
        catalog.apply_object_events([stored(copy, "a", "20")])
        if copy_removed:
            catalog.apply_object_events([removed(copy, "30")])
            assert catalog.known_copies("s3://b/") == {}
        (outcome,) = catalog.apply_object_events([with_successor(removed(original, "40"), successor)])
        assert outcome.action.value == "deleted"
        assert catalog.count() == 0


def test_a_move_within_the_bucket_keeps_its_image_in_any_order(catalog: Catalog):
    """``aws s3 mv``: the copy's creation and the original's removal, in one batch or in either order."""
    original, target = "s3://b/in/a.jpg", "s3://b/in/moved/a.jpg"
    for n, batches in enumerate(
        [
            [[stored(target, "a", "05"), removed(original, "40")]],  # one batch
            [[removed(original, "40")], [stored(target, "a", "05")]],  # the removal first
        ]
    ):
        clear_images(catalog)
        (added,) = catalog.apply_object_events([stored(original, "a", "10")])
        image_id = added.image_id
        catalog.apply_edit(
            catalog.plan_edit(Selection(ids=(image_id,)), assign={"alt": n}), reason="r", author="a"
        )
        results = [actions(catalog.apply_object_events(batch)) for batch in batches]
        assert results == ([["updated", "unchanged"]] if n == 0 else [["deleted"], ["updated"]])
        image = catalog.get(image_id)
        assert (image.uri, image.alt, image.deleted) == (target, n, False)
        assert catalog.count() == 1
        (late,) = catalog.apply_object_events([stored(original, "a", "10")])  # its key's creation, late
        assert late.reason == "not newer than the event applied"


def clear_images(catalog: Catalog) -> None:
    with catalog.engine.begin() as conn:
        for table in ("file_copies", "edits", "images"):
            conn.execute(sa.text(f"DELETE FROM {table}"))


def test_a_relocation_that_a_concurrent_writer_overtook_is_tried_again(postgres_url: str):
    # PostgreSQL only: on SQLite a second writer waits for the first, so nothing overtakes it.
    with Catalog.open(postgres_url) as catalog:
        catalog.upsert_images([ImageRecord(uri="/data/a.jpg", content_hash="a" * 64, size=1)])
        (image,) = catalog.images()
        overtaken: list[str] = []

        def overtake(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            """Before the relocation records the file left behind, another writer records it first."""
            if statement.startswith("INSERT INTO file_copies") and not overtaken:
                overtaken.append(statement)
                with catalog.engine.begin() as other:
                    copy = {"uri": "/data/a.jpg", "image_id": image.id, "content_hash": "a" * 64}
                    other.execute(file_copies.insert().values(copy))

        sa.event.listen(catalog.engine, "before_cursor_execute", overtake)
        try:
            assert catalog.relocate({"/data/a.jpg": FileLocation("s3://b/a.jpg", size=1, etag="e")}) == []
        finally:
            sa.event.remove(catalog.engine, "before_cursor_execute", overtake)
        assert overtaken and catalog.get(image.id).uri == "s3://b/a.jpg"
        assert [(uri, c.image_uri) for uri, c in catalog.known_copies("/data/").items()] == [
            ("/data/a.jpg", "s3://b/a.jpg")
        ]
