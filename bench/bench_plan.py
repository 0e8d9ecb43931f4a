"""Benchmark: a no-op ``plan`` over a catalog of 1,000,000 images where everything is up to date.

Builds the catalog with raw ``executemany`` inserts: 900,000 rig frames (150,000 shots of 6 cameras) and
100,000 single 360° images, with the artifacts a finished run leaves (stitch, apply-metadata, derive's
thumbnail and preview, publish), then times ``panopipe.pipeline.plan`` on SQLite (a new file) and on
PostgreSQL (a fresh database, dropped afterwards), repeated after a warm-up (``bench/fair.py``). The goal is
under 5 s; there is no other tool to compare with.

    python bench/bench_plan.py [--quick] [--images 1000000] [--postgres postgresql://...] [--json out.json]
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

import fair
from panopipe.catalog import Catalog
from panopipe.catalog.schema import artifacts, images
from panopipe.catalog.types import new_id
from panopipe.config import Settings
from panopipe.iterutil import batched
from panopipe.pipeline import load_pipeline, plan

GOAL_S = 5.0
CAMERAS = 6
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def populate(catalog: Catalog, total: int, settings: Settings) -> None:
    """``total`` images (90% rig frames, 10% 360° images) and a finished run's artifacts."""
    steps = {step.name: step for step in load_pipeline(catalog, settings).steps}
    shots = total * 9 // 10 // CAMERAS
    singles = total - shots * CAMERAS
    ingested, produced = T0 + timedelta(days=1), T0 + timedelta(days=2)

    def image_rows():
        for s in range(shots):
            for camera in range(CAMERAS):
                yield _image(
                    f"/cap/R{s // 10000:03d}/cam{camera}/f{s:07d}.jpg",
                    s,
                    camera,
                    f"R-{s:07d}",
                    None,
                    ingested,
                )
        for n in range(singles):
            yield _image(f"/cap/P/p{n:07d}.jpg", n, None, None, "equirectangular", ingested)

    single_ids: list[str] = []
    with catalog.engine.begin() as conn:
        for chunk in batched(image_rows(), 20_000):
            conn.execute(images.insert(), list(chunk))
        single_ids = [
            r[0]
            for r in conn.execute(
                images.select().with_only_columns(images.c.id).where(images.c.projection == "equirectangular")
            )
        ]

    def artifact_rows():
        subjects = [(f"shot:R-{s:07d}", f"R-{s:07d}", None) for s in range(shots)]
        subjects += [(f"image:{i}", None, i) for i in single_ids]
        for subject, shot, image_id in subjects:
            for step in steps.values():
                if shot is None and step.name == "stitch":
                    continue
                for name in step.outputs:
                    yield {
                        "step": step.name,
                        "subject": subject,
                        "name": name,
                        "image_id": image_id,
                        "shot": shot,
                        "step_version": step.version,
                        "params_hash": step.params_hash,
                        "fingerprint": uuid.uuid4().hex * 2,
                        "output_uri": f"/out/{step.name}/{subject}/{name}.jpg",
                        "output_hash": None,
                        "output_size": 1,
                        "job_id": None,
                        "created_at": produced,
                    }

    insert_raw(catalog, artifacts, artifact_rows())


def insert_raw(catalog: Catalog, table: sa.Table, rows: Iterator[dict[str, Any]]) -> None:
    """Insert through the driver (``executemany``; ``COPY`` on PostgreSQL), values converted by the columns'
    own bind processors."""
    dialect = catalog.engine.dialect
    first = next(rows)
    columns = list(first)
    processors = [table.c[name].type._cached_bind_processor(dialect) for name in columns]
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})"
    raw = catalog.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for chunk in batched(itertools.chain([first], rows), 50_000):
            values = [
                tuple(
                    v if convert is None else convert(v)
                    for convert, v in zip(processors, row.values(), strict=True)
                )
                for row in chunk
            ]
            if dialect.name == "postgresql":  # COPY: executemany's round trips dominate on a server
                with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in values:
                        copy.write_row(row)
            else:
                cursor.executemany(sql, values)
        raw.commit()
    finally:
        raw.close()


def _image(
    uri: str, n: int, camera: int | None, shot: str | None, projection: str | None, at: datetime
) -> dict:
    return {
        "id": new_id(),
        "uri": uri,
        "size": 2_000_000,
        "content_hash": f"{n:064x}",
        "captured_at": T0 + timedelta(seconds=n),
        "lat": 48.0 + n * 1e-6,
        "lon": 11.0 + n * 1e-6,
        "camera_index": camera,
        "reel": uri.split("/")[2],
        "frame": n,
        "shot": shot,
        "projection": projection,
        "status": "ok",
        "deleted": False,
        "ingested_at": at,
        "updated_at": at,
    }


def measure(report: fair.Report, label: str, location: str, total: int, out: Path) -> None:
    settings = Settings(project="bench", steps={"pipeline": {"output": str(out)}})
    with Catalog.open(location) as catalog:
        started = time.perf_counter()
        populate(catalog, total, settings)
        report.note(
            f"{label}: built {total:,} images and their artifacts in {time.perf_counter() - started:.1f} s"
        )
        if catalog.engine.url.get_backend_name() == "postgresql":
            with catalog.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")

        def noop_plan() -> None:
            result = plan(catalog, settings=settings)
            assert len(result) == 0, result.counts()

        report.compare(
            {"panopipe plan": noop_plan},
            title=f"no-op plan over {total:,} images, {label}",
            unit="plans",
            goal=f"< {GOAL_S:g} s",
        )


def main() -> None:
    args = fair.parse_args(
        __doc__,
        {"images": (1_000_000, 50_000)},
        extra=lambda parser: parser.add_argument(
            "--postgres",
            default=os.environ.get("PANOPIPE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
        ),
    )
    with (
        fair.report(args, "plan") as report,
        tempfile.TemporaryDirectory(prefix="panopipe-bench-plan-") as tmp,
    ):
        measure(report, "SQLite", str(Path(tmp) / "catalog.db"), args.images, Path(tmp) / "out")
        name = f"panopipe_bench_plan_{os.getpid()}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = f"{args.postgres.rsplit('/', 1)[0]}/{name}"
            measure(report, "PostgreSQL", url, args.images, Path(tmp) / "out")
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
