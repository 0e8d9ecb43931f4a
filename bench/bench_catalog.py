"""Catalog benchmarks: upserts of 100,000 images, and `ls --bbox --since` on a 1,000,000-image catalog.

Prints panopipe's upserts beside plain inserts with the driver (sqlite3 executemany / psycopg COPY) into the
same indexed table. Both sides start from the same ``ImageRecord`` list (the plain side's time includes
building the driver's tuples, as a user's would; a third side shows the driver alone, tuples built before) and each run writes into a new empty catalog made before the
clock starts; runs are interleaved (``bench/fair.py``). Not a test.

    python bench/bench_catalog.py [--quick] [--upserts 100000] [--images 1000000] [--json out.json]
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

import fair
from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.catalog.types import new_ids

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


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """The URL of a new database, dropped afterwards."""
    name = f"panopipe_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def plain_tuples(rows: list[ImageRecord]) -> list[tuple]:
    """The rows as the driver takes them: what a user inserting with the driver has to build too."""
    ids = new_ids(len(rows))
    return [
        (
            ids[n].replace("-", ""),
            r.uri,
            r.size,
            r.content_hash,
            r.modified_at.isoformat(" "),
            r.captured_at.isoformat(" "),
            r.utc_offset_minutes,
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
        for n, r in enumerate(rows)
    ]


COLUMNS = (
    "id, uri, size, content_hash, modified_at, captured_at, utc_offset_minutes, lat, lon, alt, heading, make, model,"
    " camera_index, width, height, reel, frame, ingested_at, updated_at"
)


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def bench_upserts(report: fair.Report, count: int, folder: Path) -> None:
    """Each run inserts the same records into a new, empty catalog (made before the clock starts)."""
    rows = records(count)
    made = iter(range(10**9))

    def sqlite_panopipe() -> float:
        with Catalog.open(folder / f"upsert{next(made)}.db") as catalog:
            return timed(lambda: catalog.upsert_images(rows))

    def sqlite_plain(prebuilt: list[tuple] | None) -> float:
        path = folder / f"plain{next(made)}.db"
        Catalog.open(path).close()
        plain = sqlite3.connect(path)

        def insert() -> None:
            with plain:
                plain.executemany(
                    f"INSERT INTO images ({COLUMNS}) VALUES ({', '.join('?' * 20)})",
                    prebuilt or plain_tuples(rows),
                )

        try:
            return timed(insert)
        finally:
            plain.close()

    def postgres_panopipe() -> float:
        with fresh_postgres() as url, Catalog.open(url) as catalog:
            return timed(lambda: catalog.upsert_images(rows))

    def postgres_plain(prebuilt: list[tuple] | None) -> float:
        with fresh_postgres() as url:
            Catalog.open(url).close()
            with psycopg.connect(url) as conn, conn.cursor() as cursor:

                def insert() -> None:
                    with cursor.copy(f"COPY images ({COLUMNS}) FROM STDIN") as copy:
                        for row in prebuilt or plain_tuples(rows):
                            copy.write_row(row)
                    conn.commit()

                return timed(insert)

    tuples = plain_tuples(rows)
    backends = (
        ("SQLite", sqlite_panopipe, sqlite_plain, "sqlite3 executemany"),
        ("PostgreSQL", postgres_panopipe, postgres_plain, "psycopg COPY"),
    )
    for backend, panopipe, plain, driver in backends:
        report.compare(
            {
                "panopipe upsert_images": panopipe,
                driver: lambda plain=plain: plain(None),
                f"{driver}, tuples built before the clock": lambda plain=plain: plain(tuples),
            },
            title=f"catalog upserts of {count:,} new images, {backend}",
            unit="rows",
            count=count,
        )
    with Catalog.open(folder / "again.db") as catalog:
        catalog.upsert_images(rows)
        report.compare(
            {"panopipe upsert_images": lambda: timed(lambda: catalog.upsert_images(rows))},
            title=f"catalog re-upsert of {count:,} unchanged images, SQLite",
            unit="rows",
            count=count,
        )


def bench_query(report: fair.Report, count: int, folder: Path) -> None:
    selection = Selection(bbox=(11.20, 48.20, 11.21, 48.21), since=T0 + timedelta(hours=1))
    with fresh_postgres() as url:
        for label, location in (("SQLite", str(folder / "query.db")), ("PostgreSQL", url)):
            with Catalog.open(location) as catalog:
                _bulk_fill(catalog, count)
                if catalog.engine.dialect.name == "postgresql":
                    with catalog.engine.begin() as conn:
                        conn.exec_driver_sql("ANALYZE images")
                found = len(list(catalog.images(selection)))
                report.compare(
                    {
                        f"panopipe images(bbox, since), {found} found": lambda c=catalog: timed(
                            lambda: list(c.images(selection))
                        )
                    },
                    title=f"ls --bbox --since on {count:,} images, {label}",
                    unit="queries",
                    goal="< 50 ms",
                )


def _bulk_fill(catalog: Catalog, count: int) -> None:
    for start in range(0, count, 100_000):
        batch = records(min(100_000, count - start), seed=start)
        batch = [ImageRecord(**{**_as_dict(r), "uri": f"{r.uri}.{start}"}) for r in batch]
        catalog.upsert_images(batch, chunk_size=5000)


def _as_dict(record: ImageRecord) -> dict:
    return {name: getattr(record, name) for name in record.__slots__}


def main() -> None:
    args = fair.parse_args(__doc__, {"upserts": (100_000, 10_000), "images": (1_000_000, 50_000)})
    with fair.report(args, "catalog") as report, tempfile.TemporaryDirectory() as tmp:
        bench_upserts(report, args.upserts, Path(tmp))
        bench_query(report, args.images, Path(tmp))


if __name__ == "__main__":
    main()
