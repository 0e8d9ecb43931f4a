"""read_columns: the driver's values converted column by column exactly as SQLAlchemy's row processing would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from panopipe.catalog import Catalog
from panopipe.catalog.bulk import read_columns
from panopipe.catalog.records import ImageRecord
from panopipe.catalog.schema import images


def test_read_columns_returns_what_sqlalchemy_returns(catalog: Catalog) -> None:
    t0 = datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)
    records = [
        ImageRecord(
            uri=f"/cap/cam{i % 3}/f{i:04d}.jpg",
            size=1000 + i,
            captured_at=t0 + timedelta(seconds=i // 3) if i % 4 else None,
            lat=45.0 + i / 1000,
            lon=7.0,
            camera_index=i % 3,
            projection="equirectangular" if i == 5 else None,
            reel="R1",
            frame=i // 3,
            extra={"n": i, "nested": {"a": [1, 2]}} if i % 2 else None,
        )
        for i in range(12)
    ]
    catalog.upsert_images(records)
    query = sa.select(images).order_by(images.c.uri)
    with catalog.connect() as conn:
        expected = [list(values) for values in zip(*conn.execute(query).all(), strict=True)]
        got = read_columns(conn, query)
        empty = read_columns(conn, query.where(images.c.uri == "/nowhere"))
    assert got == expected
    assert [type(v) for v in got[0]] == [str] * 12  # ids as dashed text, as the Uuid column returns them
    assert len(got[0][0]) == 36
    by_name = dict(zip(images.c.keys(), got, strict=True))
    assert t0 + timedelta(seconds=1) in by_name["captured_at"] and None in by_name["captured_at"]
    assert all(v.tzinfo is UTC for v in by_name["captured_at"] if v is not None)
    assert by_name["deleted"] == [False] * 12 and all(type(v) is bool for v in by_name["deleted"])
    extras = [e for e in by_name["extra"] if e is not None]
    assert len(extras) == 6 and {"n": 1, "nested": {"a": [1, 2]}} in extras
    assert empty == [[] for _ in images.c]
