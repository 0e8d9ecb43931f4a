"""The Catalog API, run unchanged on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from tests.pipeline.test_dispatch import at_once

from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.catalog.bulk import FEW_ROWS, insert_columns
from panopipe.catalog.schema import images
from panopipe.catalog.subjects import CHUNK
from panopipe.catalog.types import dashed, new_id, new_ids
from panopipe.errors import CatalogError, ConfigError, NotFoundError

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def record(n: int, **changes) -> ImageRecord:
    base = ImageRecord(
        uri=f"/survey/R001/cam{n % 4}/frame_{n:06d}.jpg",
        size=1000 + n,
        content_hash=f"{n:064x}",
        modified_at=T0,
        captured_at=T0 + timedelta(seconds=n),
        utc_offset_minutes=120,
        lat=48.0 + n * 1e-4,
        lon=11.0 + n * 1e-4,
        alt=500.0,
        heading=90.0,
        make="Acme",
        model="Rig-4",
        camera_index=n % 4,
        width=4096,
        height=2048,
        reel="R001",
        frame=n,
    )
    return replace(base, **changes)


def test_upsert_is_idempotent(catalog: Catalog):
    first = catalog.upsert_images(record(n) for n in range(10))
    assert len(first.added) == 10 and not first.updated
    second = catalog.upsert_images(record(n) for n in range(10))
    assert not second.added and not second.updated
    assert sorted(second.unchanged) == sorted(first.added)
    assert catalog.count() == 10


def test_a_bulk_insert_of_a_taken_uri_raises_sqlalchemys_integrity_error(catalog: Catalog):
    """From FEW_ROWS rows on, rows go to the driver (COPY, executemany); its errors are raised as SQLAlchemy's,
    as for fewer rows: the event path applies a batch again one event at a time on an IntegrityError."""
    catalog.upsert_images([record(0)])
    columns = {
        "id": new_ids(FEW_ROWS),
        "uri": [record(n).uri for n in range(FEW_ROWS)],
        "ingested_at": [T0] * FEW_ROWS,
        "updated_at": [T0] * FEW_ROWS,
    }
    with pytest.raises(sa.exc.IntegrityError), catalog.engine.begin() as conn:
        insert_columns(conn, images, columns)
    assert catalog.count() == 1


def test_bulk_upsert_into_an_empty_catalog_matches_records_of_earlier_chunks(catalog: Catalog):
    moved_id = new_id()
    first_chunk = [record(n) for n in range(99)] + [record(500, id=moved_id)]
    later_chunk = [record(n) for n in range(99, 150)] + [record(5, alt=600.0), record(501, id=moved_id)]
    result = catalog.upsert_images(first_chunk + later_chunk, chunk_size=100)
    assert len(result.added) == 151 and moved_id in result.added
    assert len(result.updated) == 2 and moved_id in result.updated
    assert catalog.count() == 151
    assert catalog.get(moved_id).uri == record(501).uri
    (changed_id,) = set(result.updated) - {moved_id}
    assert catalog.get(changed_id).alt == 600.0
    image = catalog.get(result.added[0])
    assert (image.status, image.etag, image.extra, image.deleted) == ("ok", None, None, False)
    again = catalog.upsert_images([*first_chunk[:99], *later_chunk])
    assert len(again.unchanged) == 151 and not again.added and not again.updated


def test_bulk_upsert_is_one_transaction(catalog: Catalog):
    records = [record(n) for n in range(200)]
    records[150] = record(150, captured_at=T0.replace(tzinfo=None))  # fails the second chunk
    with pytest.raises(ValueError, match="naive datetime"):
        catalog.upsert_images(records, chunk_size=100)
    assert catalog.count() == 0


@pytest.mark.parametrize("count", [4, FEW_ROWS * 2])
def test_an_upsert_compares_the_rows_another_writer_adds_meanwhile(catalog: Catalog, catalog_url: str, count):
    """An ingest of the same files at once added rows after this upsert looked (here: found the catalog
    empty): they are compared with the records as rows found are, where the insert was a UniqueViolation on
    uq_images_uri (below FEW_ROWS rows and from it: an INSERT, and COPY on PostgreSQL)."""
    half = count // 2
    theirs = [record(n, alt=500.0 if n % 2 else 400.0) for n in range(half)]
    added_by_them: list[str] = []

    def records():
        with Catalog.open(catalog_url) as other:  # committed while this upsert's transaction is open
            added_by_them.extend(other.upsert_images(theirs).added)
        yield from (record(n) for n in range(count))

    result = catalog.upsert_images(records())
    assert len(result.added) == count - half and not set(result.added) & set(added_by_them)
    assert sorted(result.unchanged + result.updated) == sorted(added_by_them)
    assert sorted(result.updated) == sorted(
        i for i, r in zip(added_by_them, theirs, strict=True) if r.alt != 500.0
    )
    assert catalog.count() == count
    assert {image.uri: image.alt for image in catalog.images(Selection())} == {
        record(n).uri: 500.0 for n in range(count)
    }


def test_uris_said_absent_are_not_looked_up_yet_rows_another_writer_added_are_compared(
    catalog: Catalog, catalog_url: str
):
    """An ingest's chunks name the new files of its listing absent: the catalog, not empty, looks up only the
    others; a file that another writer catalogued meanwhile is compared with its record, not added twice."""
    catalog.upsert_images([record(10_000)])  # not empty: records are looked up
    with Catalog.open(catalog_url) as other:
        theirs = other.upsert_images([record(n, alt=400.0) for n in range(3)]).added
    statements: list[str] = []
    sa.event.listen(catalog.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    result = catalog.upsert_images([record(n) for n in range(6)], absent={record(n).uri for n in range(6)})

    assert sorted(result.updated) == sorted(theirs) and len(result.added) == 3
    assert {image.uri: image.alt for image in catalog.images()} == {
        record(n).uri: 500.0 for n in (*range(6), 10_000)
    }
    looked_up = [s for s in statements if s.lstrip().startswith("SELECT") and "images.uri IN" in s]
    assert len(looked_up) == 1  # the rows the insert found taken, read once it had
    statements.clear()
    catalog.upsert_images([record(n) for n in range(6, 9)], absent={record(n).uri for n in range(6, 9)})
    assert not [s for s in statements if "images.uri IN" in s]


def test_two_upserts_of_the_same_files_at_once_record_each_once(catalog: Catalog, catalog_url: str):
    catalog.upsert_images([record(10_000)])  # not empty: each upsert looks its records up
    writers = [Catalog.open(catalog_url) for _ in range(2)]
    try:
        for round_ in range(3):
            batch = [record(n) for n in range(round_ * 1000, round_ * 1000 + 300)]
            results = at_once(2, lambda i, batch=batch: writers[i].upsert_images(batch))
            added = [image_id for result in results for image_id in result.added]
            assert len(added) == len(set(added)) == len(batch)
            assert sorted(added) == sorted(image_id for result in results for image_id in result.unchanged)
    finally:
        for writer in writers:
            writer.close()
    assert catalog.count() == 1 + 3 * 300


def test_changed_file_is_updated_and_keeps_its_id(catalog: Catalog):
    (image_id,) = catalog.upsert_images([record(1)]).added
    result = catalog.upsert_images([record(1, size=5, content_hash="f" * 64, alt=501.5)])
    assert result.updated == (image_id,)
    image = catalog.get(image_id)
    assert (image.size, image.alt, image.content_hash) == (5, 501.5, "f" * 64)


def test_moved_file_keeps_its_id(catalog: Catalog):
    (image_id,) = catalog.upsert_images([record(1)]).added
    moved = record(1, uri="/elsewhere/frame_000001.jpg", id=image_id)
    assert catalog.upsert_images([moved]).updated == (image_id,)
    assert catalog.get(image_id).uri == "/elsewhere/frame_000001.jpg"
    assert catalog.count() == 1


def test_times_round_trip_as_aware_utc(catalog: Catalog):
    local = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC).astimezone()
    (image_id,) = catalog.upsert_images([record(1, captured_at=local)]).added
    image = catalog.get(image_id)
    assert image.captured_at == local and image.captured_at.tzinfo == UTC
    assert image.to_dict()["captured_at"] == "2024-05-01T12:00:00.123000Z"


def test_get_by_prefix_and_errors(catalog: Catalog):
    (image_id,) = catalog.upsert_images([record(1)]).added
    tail = image_id[-12:]
    assert catalog.get(tail[:8]).id == image_id and catalog.get(tail[:4]).id == image_id
    assert catalog.short_ids([image_id]) == {image_id: tail[:8]}
    # the start of a UUIDv7 is its time, shared by the ids made together: taken only when one id has it
    assert catalog.get(image_id[:8]).id == image_id
    catalog.upsert_images([record(2, id=image_id[:9] + "0000-7000-8000-000000000000")])  # made about then
    with pytest.raises(NotFoundError, match="starts several full ids"):
        catalog.get(image_id[:8])
    with pytest.raises(NotFoundError, match="no image"):
        catalog.get("ffffffff")
    with pytest.raises(NotFoundError, match="not an image id"):
        catalog.get("ab")


def test_filters(catalog: Catalog):
    catalog.upsert_images(
        [record(n) for n in range(20)] + [record(100, reel="R002", uri="/survey/R002/x.jpg")]
    )
    assert catalog.count(Selection(reels=("R002",))) == 1
    assert catalog.count(Selection(since=T0 + timedelta(seconds=5), until=T0 + timedelta(seconds=10))) == 5
    box = Selection(bbox=(11.0004, 48.0004, 11.0010, 48.0010))
    assert sorted(i.frame for i in catalog.images(box)) == [4, 5, 6, 7, 8, 9, 10]
    # 1e-4 degrees of latitude and longitude at 48° N is about 13.4 m; 30 m around frame 5 holds frames 3..7.
    near = Selection(near=(48.0005, 11.0005), radius_m=30)
    assert sorted(i.frame for i in catalog.images(near)) == [3, 4, 5, 6, 7]
    assert catalog.count(near) == 5
    assert [i.frame for i in catalog.images(Selection(reels=("R001",)), limit=3, offset=2)] == [2, 3, 4]


def test_columns_match_images_with_ids_as_hex_and_times_as_seconds(catalog: Catalog):
    almost_a_second = T0 + timedelta(microseconds=999_999)  # SQLite's strftime would round it up a second
    catalog.upsert_images(
        [record(n) for n in range(5)]
        + [
            record(5, captured_at=almost_a_second, heading=None),
            record(6, captured_at=None, lat=None, lon=None),
        ]
    )
    fields = ("id", "reel", "captured_at", "lat", "heading", "excluded")
    columns = catalog.columns(None, fields, sort=("frame",))
    expected = list(catalog.images(sort=("frame",)))
    assert columns["id"] == [image.id.replace("-", "") for image in expected]
    assert [dashed(i) for i in columns["id"]] == [image.id for image in expected]
    seconds = [image.captured_at.timestamp() if image.captured_at else None for image in expected]
    assert columns["captured_at"] == pytest.approx(seconds, abs=1e-6)
    assert columns["captured_at"][5] == pytest.approx(almost_a_second.timestamp(), abs=1e-6)
    assert columns["captured_at"][6] is None
    assert columns["heading"] == [image.heading for image in expected]
    assert columns["excluded"] == [False] * 7
    assert columns["lat"][6] is None and columns["reel"] == ["R001"] * 7
    near = catalog.columns(Selection(near=(48.0, 11.0), radius_m=12), ("id",))
    assert near["id"] == [expected[0].id.replace("-", "")]  # a box finds 0 and 1, the distance keeps 0
    assert catalog.columns(Selection(reels=("none",)), fields) == {name: [] for name in fields}
    with pytest.raises(CatalogError, match="no field 'nope'"):
        catalog.columns(None, ("nope",))


def test_invalid_selection_is_a_clear_error():
    with pytest.raises(ConfigError, match="bbox"):
        Selection(bbox=(11.0, 50.0, 12.0, 49.0))
    with pytest.raises(ConfigError, match="go together"):
        Selection(near=(1.0, 2.0))


def test_deleted_images_are_hidden_and_come_back_when_seen_again(catalog: Catalog):
    catalog.upsert_images([record(1), record(2)])
    assert len(catalog.mark_deleted([record(1).uri])) == 1
    assert catalog.count() == 1
    assert catalog.count(Selection(include_deleted=True)) == 2
    assert len(catalog.upsert_images([record(1)]).updated) == 1
    assert catalog.count() == 2


def test_edit_dry_run_apply_history_undo(catalog: Catalog):
    ids = catalog.upsert_images(record(n) for n in range(3)).added
    selection = Selection(ids=ids[:2])
    planned = catalog.plan_edit(selection, assign={"alt": 12.5})
    assert {(c.image_id, c.field, c.old, c.new) for c in planned} == {
        (i, "alt", 500.0, 12.5) for i in ids[:2]
    }
    assert catalog.get(ids[0]).alt == 500.0, "planning an edit must not write"
    batch = catalog.apply_edit(planned, reason="survey GPS fix", author="ana")
    assert [catalog.get(i).alt for i in ids] == [12.5, 12.5, 500.0]
    assert catalog.get(ids[0]).edited_fields == ("alt",)
    assert catalog.count(Selection(bbox=(10, 47, 12, 49))) == 3
    (edit, *_) = catalog.history(image_id=ids[0])
    assert (edit.field, edit.old_value, edit.new_value, edit.author, edit.reason) == (
        "alt",
        500.0,
        12.5,
        "ana",
        "survey GPS fix",
    )
    undone = catalog.undo(batch, author="ana")
    assert {c.new for c in undone} == {500.0}
    assert [catalog.get(i).alt for i in ids] == [500.0, 500.0, 500.0]
    assert catalog.get(ids[0]).edited_fields == ()
    with pytest.raises(CatalogError, match="already undone"):
        catalog.undo(batch, author="ana")


def test_undo_of_an_earlier_edit_keeps_the_later_one(catalog: Catalog):
    (image_id,) = catalog.upsert_images([record(1)]).added
    first = catalog.apply_edit(
        catalog.plan_edit(Selection(ids=(image_id,)), assign={"alt": 10.0}), reason="a", author="x"
    )
    catalog.apply_edit(
        catalog.plan_edit(Selection(ids=(image_id,)), assign={"alt": 20.0}), reason="b", author="x"
    )
    catalog.undo(first, author="x")
    assert catalog.get(image_id).alt == 20.0


def test_history_records_the_value_an_edit_planned_before_another_applied_replaced(catalog: Catalog):
    """Two edits planned at once (two commands), applied one after the other: the second replaced the first's
    value, and a change the first made already is no change of the second's."""
    ids = catalog.upsert_images(record(n) for n in range(2)).added
    original = catalog.get(ids[0]).alt
    first = catalog.plan_edit(Selection(ids=tuple(ids)), assign={"alt": 1.0})
    second = catalog.plan_edit(Selection(ids=tuple(ids)), assign={"alt": 2.0})
    same = catalog.plan_edit(Selection(ids=(ids[0],)), assign={"alt": 1.0})
    assert {c.old for c in second} == {original}
    catalog.apply_edit(first, reason="a", author="x")
    with pytest.raises(CatalogError, match="the edit changes nothing"):
        catalog.apply_edit(same, reason="c", author="x")
    batch = catalog.apply_edit(second, reason="b", author="x")
    assert {(e.old_value, e.new_value) for e in catalog.history(batch=batch)} == {(1.0, 2.0)}
    undone = catalog.undo(batch, author="x")
    assert [catalog.get(i).alt for i in ids] == [1.0, 1.0] and {c.new for c in undone} == {1.0}


def test_edits_applied_at_once_each_record_the_value_the_one_before_set(catalog_url: str):
    """Four commands' edits of the same images, planned together and applied at once: each waits for the rows
    (or SQLite's write lock) and records as old values what the edit committed before it set."""
    with Catalog.open(catalog_url) as catalog:
        ids = catalog.upsert_images(record(n) for n in range(300)).added
        plans = [catalog.plan_edit(Selection(ids=tuple(ids)), assign={"alt": float(n)}) for n in range(1, 5)]
    catalogs = [Catalog.open(catalog_url) for _ in plans]
    try:
        at_once(len(plans), lambda n: catalogs[n].apply_edit(plans[n], reason="race", author="x"))
    finally:
        for each in catalogs:
            each.close()
    with Catalog.open(catalog_url) as catalog:
        history = catalog.history()
        final = {catalog.get(i).alt for i in ids}
    by_batch: dict[str, set[tuple[object, object]]] = {}
    for edit in history:  # oldest first
        by_batch.setdefault(edit.batch, set()).add((edit.old_value, edit.new_value))
    chain = list(by_batch.values())
    assert all(len(pairs) == 1 or i == 0 for i, pairs in enumerate(chain)), chain
    news = [next(iter(pairs))[1] for pairs in chain]
    assert [next(iter(pairs))[0] for pairs in chain[1:]] == news[:-1] and final == {news[-1]}


def test_shift_time_and_per_image_values(catalog: Catalog):
    ids = catalog.upsert_images(record(n) for n in range(2)).added
    changes = catalog.plan_edit(Selection(ids=(ids[0],)), shift_time_s=2.0)
    assert [(c.field, c.new - c.old) for c in changes] == [("captured_at", timedelta(seconds=2))]
    per_image = catalog.resolve_keys([{"reel": "R001", "frame": "1", "lat": "47.5", "lon": "10.25"}])
    changes = catalog.plan_edit(per_image=per_image)
    assert {(c.image_id, c.field, c.new) for c in changes} == {(ids[1], "lat", 47.5), (ids[1], "lon", 10.25)}


def test_a_positions_row_by_reel_and_frame_sets_every_camera_of_that_frame(catalog: Catalog):
    # two exposures of a 2-camera rig: frames 7 and 8, cameras 0 and 1 (a GNSS solution has a row per exposure)
    rig = [record(n, frame=7 + n // 2, camera_index=n % 2) for n in range(4)]
    ids = catalog.upsert_images(rig).added
    per_image = catalog.resolve_keys([{"reel": "R001", "frame": "7", "lat": "47.5"}])
    assert per_image == {ids[0]: {"lat": 47.5}, ids[1]: {"lat": 47.5}}
    one = catalog.resolve_keys([{"reel": "R001", "frame": "8", "camera_index": "1", "lat": "47.5"}])
    assert one == {ids[3]: {"lat": 47.5}}
    with pytest.raises(ConfigError, match="CSV line 3: an image of line 2 again"):
        catalog.resolve_keys(
            [{"reel": "R001", "frame": "7", "lat": "1"}, {"reel": "R001", "frame": "7", "camera_index": "0"}]
        )


def test_ids_resolve_short_or_full_and_a_malformed_one_is_a_clear_error(catalog: Catalog):
    ids = catalog.upsert_images(record(n) for n in range(2)).added
    short = catalog.short_ids(ids)
    assert catalog.resolve_ids(Selection(ids=(short[ids[0]], ids[1]))) == Selection(ids=tuple(ids))
    assert catalog.resolve_ids(Selection(reels=("R001",))) == Selection(reels=("R001",))
    with pytest.raises(NotFoundError, match="'not-a-uuid' is not an image id"):  # on PostgreSQL: no DataError
        catalog.resolve_ids(Selection(ids=("not-a-uuid",)))
    per_image = catalog.resolve_keys([{"id": short[ids[1]], "lat": "47.5"}])
    assert per_image == {ids[1]: {"lat": 47.5}}
    with pytest.raises(ConfigError, match="CSV line 2: 'not-a-uuid' is not an image id"):
        catalog.resolve_keys([{"id": "not-a-uuid", "lat": "47.5"}])


def test_an_edit_of_more_images_than_a_statement_takes_parameters(catalog: Catalog):
    # PostgreSQL's protocol takes at most 65,535 parameters per statement, SQLite 32,766 or 250,000 by build
    (image_id,) = catalog.upsert_images([record(1)]).added
    per_image = {new_id(): {"lat": 1.0} for _ in range(70_000)} | {image_id: {"lat": 47.5}}
    changes = catalog.plan_edit(per_image=per_image)
    assert [(c.image_id, c.field, c.new) for c in changes] == [(image_id, "lat", 47.5)]


def test_an_edit_and_its_undo_of_many_images_write_every_kind_of_field(catalog: Catalog):
    # FEW_ROWS and more: the rows go through the driver (executemany on SQLite, arrays on PostgreSQL), in
    # chunks whose progress is reported
    count = max(FEW_ROWS, CHUNK) + 50
    ids = catalog.upsert_images(record(n) for n in range(count)).added
    before = {image.id: image for image in catalog.images()}
    per_image = {
        image_id: {"lat": 47.0 + n * 1e-5, "reel": f"R{n % 3}", "camera_index": 7, "excluded": n % 2 == 0}
        for n, image_id in enumerate(ids)
    }
    changes = catalog.plan_edit(per_image=per_image, shift_time_s=1.5)
    progress: list[tuple[int, int]] = []
    batch = catalog.apply_edit(changes, reason="PPK", author="t", progress=lambda *p: progress.append(p))
    assert progress == [(min(done, count), count) for done in range(CHUNK, count + CHUNK, CHUNK)]
    for n, image in enumerate(sorted(catalog.images(), key=lambda i: ids.index(i.id))):
        assert (image.lat, image.reel, image.camera_index, image.excluded) == (
            pytest.approx(47.0 + n * 1e-5),
            f"R{n % 3}",
            7,
            n % 2 == 0,
        )
        assert image.captured_at == before[image.id].captured_at + timedelta(seconds=1.5)
        excluded = {"excluded"} if n % 2 == 0 else set()  # excluded=False is no change: nothing recorded
        assert set(image.edited_fields) == {"lat", "reel", "camera_index", "captured_at", *excluded}
    assert len(catalog.history(batch=batch)) == len(changes) == 4 * count + (count + 1) // 2
    progress.clear()
    catalog.undo(batch, author="t", progress=lambda *p: progress.append(p))
    assert progress[-1] == (count, count)
    restored = {
        image.id: replace(image, updated_at=before[image.id].updated_at) for image in catalog.images()
    }
    assert restored == before  # all but the time of the change


def test_edits_are_validated(catalog: Catalog):
    (image_id,) = catalog.upsert_images([record(1)]).added
    with pytest.raises(ConfigError, match="cannot edit 'width'"):
        catalog.plan_edit(Selection(ids=(image_id,)), assign={"width": 3})
    with pytest.raises(ConfigError, match="invalid lat"):
        catalog.plan_edit(Selection(ids=(image_id,)), assign={"lat": 91.0})
    with pytest.raises(ConfigError, match="no image match"):
        catalog.resolve_keys([{"reel": "R009", "frame": "1", "lat": "1"}])
    with pytest.raises(ConfigError, match="reason"):
        catalog.apply_edit(
            catalog.plan_edit(Selection(ids=(image_id,)), assign={"alt": 1.0}), reason=" ", author="x"
        )


def test_reingest_keeps_edits_and_undo_restores_the_new_captured_value(catalog: Catalog):
    (image_id,) = catalog.upsert_images([record(1)]).added
    batch = catalog.apply_edit(
        catalog.plan_edit(Selection(ids=(image_id,)), assign={"alt": 12.5}), reason="fix", author="x"
    )
    assert catalog.upsert_images([record(1)]).unchanged == (image_id,)
    assert catalog.upsert_images([record(1, alt=600.0, size=1)]).updated == (image_id,)
    assert catalog.get(image_id).alt == 12.5
    catalog.undo(batch, author="x")
    assert catalog.get(image_id).alt == 600.0


def test_shots_group_one_frame_per_camera_within_tolerance(catalog: Catalog):
    records = [
        record(
            f * 4 + cam,
            camera_index=cam,
            frame=f,
            captured_at=T0 + timedelta(seconds=f, milliseconds=cam * 5),
        )
        for f in range(3)
        for cam in range(4)
    ]
    catalog.upsert_images(records)
    assert catalog.assign_shots(["R001"], tolerance_s=0.05) == 12
    shots: dict[str, list[int]] = {}
    for image in catalog.images():
        shots.setdefault(image.shot, []).append(image.camera_index)
    assert shots == {"R001-000000": [0, 1, 2, 3], "R001-000001": [0, 1, 2, 3], "R001-000002": [0, 1, 2, 3]}
    assert catalog.assign_shots(["R001"], tolerance_s=0.05) == 0
