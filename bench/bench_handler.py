"""Event handler throughput (not a test): S3 records/s per process for 10-record SQS batches against a fresh
PostgreSQL database and moto's server for S3 (in a child process, as S3 is not in the Lambda's), with the time
per batch spent reading S3, writing the catalog and planning; database connections opened per warm invocation;
and the Lambda zip's size and cold import time. The objects are a rig's frames along a track: one JPEG with
each frame's capture time and position written in. Every run handles new objects (uploaded before the clock
starts, a new reel per run) after a warm-up run (``bench/fair.py``); the goal is 200 records/s. ``--quick``
skips the Lambda zips, as does ``--no-package``.

    python bench/bench_handler.py [--quick] [--records 400] [--postgres postgresql://...] [--no-package] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psycopg
import sqlalchemy as sa

from panopipe.aws.package import build_lambda_zip, cold_import
from panopipe.catalog import Catalog
from panopipe.config import Settings
from panopipe.demo import generate_survey
from panopipe.dev import create_stack, spawn_moto_server
from panopipe.events.handler import EventHandler
from panopipe.metadata.writer import MetadataUpdate, apply_metadata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.aws.s3_events import s3_record, sqs_batch

import fair


def bench_throughput(report: fair.Report, args: argparse.Namespace) -> None:
    name = f"bench_handler_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{args.postgres.rsplit('/', 1)[0]}/{name}"
    server, endpoint = spawn_moto_server()
    try:
        stack = create_stack(endpoint, bucket="bench-in")
        os.environ.update(stack.environment())
        s3 = boto3.client("s3")
        with tempfile.TemporaryDirectory() as tmp:
            generate_survey(Path(tmp), shots=1, camera_size=(640, 480))
            body = sorted(Path(tmp).rglob("cam0/*.jpg"))[0].read_bytes()
        started_at = datetime(2024, 5, 1, 8, tzinfo=UTC)
        settings = Settings(
            catalog=url, s3_endpoint_url=endpoint, output_prefix=stack.output_uri, buckets=(stack.bucket,)
        )
        reels = iter(range(1000))
        durations: list[float] = []
        per_invocation: list[int] = []
        phases: dict[str, float] = {}
        with Catalog.open(url) as catalog:
            connects: list[int] = []
            sa.event.listen(catalog.engine, "connect", lambda *a: connects.append(1))
            handler = EventHandler(catalog, settings)  # executor none: plan only, as a Lambda without workers

            def upload_reel() -> list[str]:
                reel = next(reels)
                keys = [
                    f"incoming/R{reel:03d}/cam{i % 6}/R_cam{i % 6}_{i // 6 + 1:06d}.jpg"
                    for i in range(args.records)
                ]
                for i, key in enumerate(keys):
                    # A rig along a track: the 6 cameras of a shot fire together, a shot a second, 10 m apart.
                    shot = i // 6
                    frame = MetadataUpdate(
                        captured_at=started_at + timedelta(days=reel, seconds=shot),
                        gps_latitude=47.0 + reel * 0.1 + shot * 9e-5,
                        gps_longitude=11.0,
                    )
                    s3.put_object(Bucket=stack.bucket, Key=key, Body=apply_metadata(body, frame))
                return keys

            def run() -> float:
                keys = upload_reel()
                batches = [keys[i : i + 10] for i in range(0, len(keys), 10)]
                started = time.perf_counter()
                for n, batch in enumerate(batches):
                    before = len(connects)
                    t = time.perf_counter()
                    result = handler.handle(
                        sqs_batch(
                            *(s3_record(k, sequencer=f"{n + 1:02X}", bucket=stack.bucket) for k in batch)
                        )
                    )
                    durations.append(time.perf_counter() - t)
                    per_invocation.append(len(connects) - before)
                    for phase, seconds in result.seconds.items():
                        phases[phase] = phases.get(phase, 0.0) + seconds
                    assert result.counts()["processed"] == len(batch), result.to_dict()
                return time.perf_counter() - started

            batches = -(-args.records // 10) * (args.runs + args.warmup)
            comparison = report.compare(
                {"panopipe EventHandler, 10-record SQS batches": run},
                title="S3 event records per process, PostgreSQL catalog",
                unit="records",
                count=args.records,
                goal=">= 200 records/s",
            )
            handler.close()
        comparison.notes += [
            f"batch latency: median {statistics.median(durations) * 1000:.0f} ms, max {max(durations) * 1000:.0f} ms",
            "time per batch: "
            + ", ".join(f"{phase} {seconds / batches * 1000:.0f} ms" for phase, seconds in phases.items())
            + " (read: one presigned ranged GET per object, concurrently)",
            f"database connections opened per warm invocation: max {max(per_invocation[1:] or [0])}",
        ]
        for note in comparison.notes:
            print(f"note: {note}")
    finally:
        server.terminate()
        server.wait()
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_package(report: fair.Report) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("x86_64", "arm64"):
            package = build_lambda_zip(Path(tmp) / f"{arch}.zip", arch=arch)
            report.note(
                f"lambda zip ({arch}): {package.size / 1e6:.2f} MB, {package.files} files (budget 15 MB)"
            )
        timings, modules = cold_import(Path(tmp) / "x86_64.zip", runs=5)
        report.note(
            f"cold import of the handler (fresh python -I, cv2/PIL/numpy blocked): first {timings[0] * 1000:.0f} ms,"
            f" median {statistics.median(timings) * 1000:.0f} ms, best {min(timings) * 1000:.0f} ms"
            f" (budget 300 ms); {len(modules)} top-level modules"
        )


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
        parser.add_argument("--no-package", action="store_true", help="skip building the Lambda zips")

    args = fair.parse_args(__doc__, {"records": (400, 100)}, extra=options)
    with fair.report(args, "handler") as report:
        bench_throughput(report, args)
        if not (args.no_package or args.quick):
            bench_package(report)


if __name__ == "__main__":
    main()
