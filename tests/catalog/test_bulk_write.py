"""Bulk writes through the driver (``catalog.bulk``): inserts that skip taken rows, updates by key, on SQLite and
PostgreSQL, below and from :data:`FEW_ROWS` rows (SQLAlchemy's statements, then the driver's)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from panopipe.catalog import Catalog
from panopipe.catalog.bulk import FEW_ROWS, insert_columns, update_by_key
from panopipe.catalog.schema import images
from panopipe.catalog.types import new_ids

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def columns(ids: list[str], first: int) -> dict[str, list[object]]:
    return {
        "id": ids,
        "uri": [f"/survey/f{n:06d}.jpg" for n in range(first, first + len(ids))],
        "reel": ["R001"] * len(ids),
        "ingested_at": [T0] * len(ids),
        "updated_at": [T0] * len(ids),
    }


@pytest.mark.parametrize("count", [FEW_ROWS // 2, FEW_ROWS * 3])
def test_an_insert_that_skips_conflicts_keeps_the_rows_there_and_counts_the_new_ones(catalog: Catalog, count):
    there = new_ids(count // 2)
    with catalog.transaction() as conn:
        assert insert_columns(conn, images, columns(there, 0)) == len(there)
    # The first half of these URIs is taken (by rows of other ids): those rows are skipped, not an error.
    ids = new_ids(count)
    with catalog.transaction() as conn:
        added = insert_columns(conn, images, columns(ids, 0), skip_conflicts=["uri"])
        stored = {uri: i for uri, i in conn.execute(sa.select(images.c.uri, images.c.id))}

    assert added == count - len(there)
    assert len(stored) == count
    expected = columns(there + ids[len(there) :], 0)
    assert {uri: str(i) for uri, i in stored.items()} == dict(
        zip(expected["uri"], expected["id"], strict=True)
    )


@pytest.mark.parametrize("count", [FEW_ROWS // 2, FEW_ROWS * 3])
def test_update_by_key_sets_each_rows_own_values_and_leaves_the_others(catalog: Catalog, count):
    ids = new_ids(count + 1)
    with catalog.transaction() as conn:
        insert_columns(conn, images, columns(ids, 0))
        update_by_key(
            conn,
            images,
            "id",
            ids[:count],
            {"reel": [f"R{n}" for n in range(count)], "frame": list(range(count))},
        )
    with catalog.connect() as conn:
        rows = {
            str(i): (reel, frame)
            for i, reel, frame in conn.execute(sa.select(images.c.id, images.c.reel, images.c.frame))
        }

    assert rows == {**{i: (f"R{n}", n) for n, i in enumerate(ids[:count])}, ids[count]: ("R001", None)}
