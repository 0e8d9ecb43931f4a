"""Catalog benchmarks: upserts of 100,000 images, and `ls --bbox --since` on a 1,000,000-image catalog.

Prints panopipe's figures beside plain inserts with the driver (sqlite3 executemany / PostgreSQL COPY) into
the same indexed table, measured in the same run. Not a test.

    python bench/bench_catalog.py [--upserts 100000] [--images 1000000]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.catalog.types import new_id

POSTGRES = os.environ.get("PANOPIPE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def records(count: int, seed: int = 1) -> list[ImageRecord]:
    rng = random.Random(seed)
    return [
        ImageRecord(
            uri=f"/survey/R{n // 10000:03d}/cam{n % 6}/f_{n:07d}.jpg",
            size=2_000_000 + n,
            content_hash=f"{rng.getrandbits(256):064x}",
            modified_at=T0,
            captured_at=T0 + timedelta(seconds=n / 6),
            utc_offset_minutes=120,
            lat=48.0 + rng.random() * 0.5,
            lon=11.0 + rng.random() * 0.5,
            alt=500 + rng.random() * 50,
            heading=rng.random() * 360,
            make="Acme",
            model="Rig-6",
            camera_index=n % 6,
            width=4096,
            height=2048,
            reel=f"R{n // 10000:03d}",
            frame=n // 6,
        )
        for n in range(count)
    ]


def fresh_postgres() -> tuple[str, str]:
    name = f"panopipe_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}", name


def drop_postgres(name: str) -> None:
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} rows/s"


def bench_upserts(count: int, folder: Path) -> None:
    rows = records(count)
    print(f"\n== upserts of {count:,} new images ==")
    # SQLite: panopipe vs plain sqlite3 executemany into the same schema.
    with Catalog.open(folder / "upsert.db") as catalog:
        started = time.perf_counter()
        catalog.upsert_images(rows)
        ours = time.perf_counter() - started
        started = time.perf_counter()
        catalog.upsert_images(rows)
        again = time.perf_counter() - started
    with Catalog.open(folder / "plain.db"):
        pass
    plain = sqlite3.connect(folder / "plain.db")
    tuples = [
        (
            uuid.UUID(new_id()).hex,
            r.uri,
            r.size,
            r.content_hash,
            r.modified_at.isoformat(" "),
            r.captured_at.isoformat(" "),
            r.lat,
            r.lon,
            r.alt,
            r.heading,
            r.make,
            r.model,
            r.camera_index,
            r.width,
            r.height,
            r.reel,
            r.frame,
            T0.isoformat(" "),
            T0.isoformat(" "),
        )
        for r in rows
    ]
    started = time.perf_counter()
    with plain:
        plain.executemany(
            "INSERT INTO images (id, uri, size, content_hash, modified_at, captured_at, lat, lon, alt, heading, make,"
            " model, camera_index, width, height, reel, frame, ingested_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            tuples,
        )
    baseline = time.perf_counter() - started
    print(
        f"SQLite      panopipe {rate(count, ours):>18}   plain sqlite3 executemany {rate(count, baseline):>18}"
        f"   ratio {baseline / ours:.2f}   (re-upsert, all unchanged: {rate(count, again)})"
    )
    url, name = fresh_postgres()
    try:
        with Catalog.open(url) as catalog:
            started = time.perf_counter()
            catalog.upsert_images(rows)
            ours = time.perf_counter() - started
        url2, name2 = fresh_postgres()
        try:
            with Catalog.open(url2):
                pass
            with psycopg.connect(url2) as conn, conn.cursor() as cursor:
                started = time.perf_counter()
                with cursor.copy(
                    "COPY images (id, uri, size, content_hash, modified_at, captured_at, lat, lon, alt, heading, make,"
                    " model, camera_index, width, height, reel, frame, ingested_at, updated_at) FROM STDIN"
                ) as copy:
                    for t in tuples:
                        copy.write_row(t)
                conn.commit()
                baseline = time.perf_counter() - started
        finally:
            drop_postgres(name2)
        print(
            f"PostgreSQL  panopipe {rate(count, ours):>18}   plain psycopg COPY        {rate(count, baseline):>18}"
            f"   ratio {baseline / ours:.2f}"
        )
    finally:
        drop_postgres(name)


def bench_query(count: int, folder: Path) -> None:
    print(f"\n== ls --bbox --since on {count:,} images ==")
    selection = Selection(bbox=(11.20, 48.20, 11.21, 48.21), since=T0 + timedelta(hours=1))
    url, name = fresh_postgres()
    try:
        for label, location in (("SQLite", folder / "query.db"), ("PostgreSQL", url)):
            with Catalog.open(location) as catalog:
                _bulk_fill(catalog, count)
                if catalog.engine.dialect.name == "postgresql":
                    with catalog.engine.begin() as conn:
                        conn.exec_driver_sql("ANALYZE images")
                timings = []
                for _ in range(5):
                    started = time.perf_counter()
                    found = list(catalog.images(selection))
                    timings.append(time.perf_counter() - started)
                print(
                    f"{label:<11} {len(found)} images in {min(timings) * 1000:.1f} ms (best of 5; goal < 50 ms)"
                )
    finally:
        drop_postgres(name)


def _bulk_fill(catalog: Catalog, count: int) -> None:
    for start in range(0, count, 100_000):
        batch = records(min(100_000, count - start), seed=start)
        batch = [ImageRecord(**{**_as_dict(r), "uri": f"{r.uri}.{start}"}) for r in batch]
        catalog.upsert_images(batch, chunk_size=5000)


def _as_dict(record: ImageRecord) -> dict:
    return {name: getattr(record, name) for name in record.__slots__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upserts", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_upserts(args.upserts, Path(tmp))
        bench_query(args.images, Path(tmp))


if __name__ == "__main__":
    main()
