"""Event handler throughput (not a test): S3 records/s per process for 10-record SQS batches against a fresh
PostgreSQL database and moto's server for S3 (in a child process, as S3 is not in the Lambda's), beside a
reference doing the plainest version of the same work on the same batches.

- panopipe: ``EventHandler.handle`` per batch (read each object's header with a ranged GET, apply the events
  to the catalog in order, assign shots and plan the reprocessing);
- reference: the same batches (the SQS bodies parsed, keys URL-decoded) through boto3 ``GetObject`` with the
  same 64 KiB range, 16 threads as panopipe, the header parsed, and the rows inserted with psycopg's
  ``executemany`` into a plain table of the same database, one transaction per batch, on a connection kept
  open (no ordering, idempotence, shots or planning).

The objects are a rig's frames along a track: one JPEG with each frame's capture time and position written
in. Every run handles new objects (uploaded before the clock starts, a new reel per run) after a warm-up run
(``bench/fair.py``); the goal is 200 records/s. Beside wall time, CPU seconds per record: this process (all
its threads, ``getrusage``), moto's server process and the PostgreSQL backends of the database, measured
over the timed part of each run; and the round trips per batch (SQL statements, BEGIN and COMMIT, checks
of pooled connections, HTTP requests). Also the time per batch in each phase, database connections opened
per warm invocation, and the Lambda zip's size and cold import time (``--quick`` or ``--no-package`` skip
the zips). ``--profile FILE`` writes a cProfile of one more panopipe run (all threads are not profiled: only
the calling one) and prints its top functions.

    python bench/bench_handler.py [--quick] [--records 400] [--postgres postgresql://...] [--no-package]
        [--profile out.prof] [--statements] [--json out.json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import psycopg
import sqlalchemy as sa

from panopipe.aws.lambda_handler import freeze_warm_objects
from panopipe.aws.package import build_lambda_zip, cold_import
from panopipe.catalog import Catalog
from panopipe.config import Settings
from panopipe.demo import generate_survey
from panopipe.dev import create_stack, spawn_moto_server
from panopipe.events.handler import EventHandler
from panopipe.ingest import HEADER_CHUNK
from panopipe.metadata import parse_jpeg_header
from panopipe.metadata.writer import MetadataUpdate, apply_metadata
from panopipe.storage import CONCURRENT_REQUESTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.aws.s3_events import s3_record, sqs_batch

import fair

OURS = "panopipe EventHandler, 10-record SQS batches"
REFERENCE = "boto3 ranged GetObject + psycopg executemany"


def process_cpu(pids: Iterable[int]) -> float:
    """CPU seconds (user + system) used so far by the processes ``pids`` (those that have exited count 0)."""
    total = 0.0
    for pid in pids:
        try:
            fields = fair.process_stat(pid)[1]
        except OSError:
            continue
        total += (fields[11] + fields[12]) / fair.TICKS
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """CPU seconds of this process, moto's server and the database's PostgreSQL backends, and round trips,
    over the timed part of each run of each side (the first ``warmup`` runs of a side are left out)."""

    def __init__(self, admin: psycopg.Connection[Any], database: str, moto_pid: int, warmup: int) -> None:
        self.admin, self.database, self.moto_pid, self.warmup = admin, database, moto_pid, warmup
        self.cpu: dict[str, dict[str, list[float]]] = {}
        self.trips: dict[str, dict[str, list[int]]] = {}

    def backends(self) -> dict[int, float]:
        rows = self.admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,))
        return {pid: process_cpu([pid]) for (pid,) in rows}

    def sample(self) -> tuple[float, float, dict[int, float]]:
        return own_cpu(), process_cpu([self.moto_pid]), self.backends()

    def record(self, side: str, before: tuple[float, float, dict[int, float]]) -> None:
        after = self.sample()
        server = sum(cpu - before[2].get(pid, 0.0) for pid, cpu in after[2].items())
        cpu = self.cpu.setdefault(side, {"this process": [], "moto server": [], "PostgreSQL": []})
        cpu["this process"].append(after[0] - before[0])
        cpu["moto server"].append(after[1] - before[1])
        cpu["PostgreSQL"].append(server)

    def count(self, side: str, kind: str, n: int) -> None:
        """``n`` round trips of ``kind`` in a run of ``side``."""
        self.trips.setdefault(side, {}).setdefault(kind, []).append(n)

    def notes(self, records: int, batches: int) -> list[str]:
        notes = []
        for side, parts in self.cpu.items():
            per_record = {
                part: statistics.median(values[self.warmup :]) / records * 1000
                for part, values in parts.items()
            }
            trips = ", ".join(
                f"{statistics.median(n[self.warmup :]) / batches:.1f} {kind}"
                for kind, n in self.trips.get(side, {}).items()
            )
            notes.append(
                f"{side}: CPU per record (median of the runs) "
                + ", ".join(f"{part} {ms:.2f} ms" for part, ms in per_record.items())
                + f"; per batch: {trips}"
            )
        return notes


def bench_throughput(report: fair.Report, args: argparse.Namespace) -> None:
    name = f"bench_handler_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(args.postgres, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
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
        meter = Meter(admin, name, server.pid, args.warmup)
        durations: list[float] = []
        per_invocation: list[int] = []
        phases: dict[str, float] = {}
        http_requests = [0]

        def count_request(**_: Any) -> None:
            http_requests[0] += 1

        with Catalog.open(url) as catalog, psycopg.connect(url) as plain:
            connects: list[int] = []
            statements = [0]
            sa.event.listen(catalog.engine, "connect", lambda *a: connects.append(1))

            def count_statement(*_: Any) -> None:
                statements[0] += 1

            def count_transaction(conn: sa.Connection, *_: Any) -> None:
                # BEGIN, COMMIT or ROLLBACK: psycopg sends each in a round trip of its own, none in autocommit
                if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                    statements[0] += 1

            sa.event.listen(catalog.engine, "before_cursor_execute", count_statement)
            timed: dict[str, list[float]] = {}

            def statement_started(conn: sa.Connection, *_: Any) -> None:
                conn.info["panopipe_bench_started"] = time.perf_counter()

            def statement_ended(conn: sa.Connection, _: Any, statement: str, *__: Any) -> None:
                seconds = time.perf_counter() - conn.info.pop("panopipe_bench_started")
                timed.setdefault(" ".join(statement.split())[:70], []).append(seconds)

            if args.statements:
                sa.event.listen(catalog.engine, "before_cursor_execute", statement_started)
                sa.event.listen(catalog.engine, "after_cursor_execute", statement_ended)
            ping = catalog.engine.dialect.do_ping

            def counted_ping(connection: Any) -> bool:
                # a pooled connection checked before use: a round trip too (not a cursor execute)
                statements[0] += 1
                return ping(connection)

            catalog.engine.dialect.do_ping = counted_ping  # type: ignore[method-assign]
            for event in ("begin", "commit", "rollback"):
                sa.event.listen(catalog.engine, event, count_transaction)
            handler = EventHandler(catalog, settings)  # executor none: plan only, as a Lambda without workers
            for storage_client in (handler._storage(stack.bucket).client, s3):
                storage_client.meta.events.register("before-send", count_request)
            plain.execute(
                "CREATE TABLE reference_images (uri text PRIMARY KEY, size bigint, etag text,"
                " captured_at timestamptz, lat double precision, lon double precision, alt double precision,"
                " make text, model text)"
            )
            plain.commit()
            pool = ThreadPoolExecutor(CONCURRENT_REQUESTS)

            def upload_reel() -> list[dict[str, Any]]:
                """A new reel's objects uploaded; its SQS batches of 10 records."""
                reel = next(reels)
                keys = [
                    f"incoming/R{reel:03d}/cam{i % 6}/R_cam{i % 6}_{i // 6 + 1:06d}.jpg"
                    for i in range(args.records)
                ]
                for i, key in enumerate(keys):
                    # A rig along a track: the 6 cameras of a shot fire together, a shot a second, 10 m apart,
                    # each camera looking its own way (so no two frames have the same bytes: none is a copy).
                    shot = i // 6
                    frame = MetadataUpdate(
                        captured_at=started_at + timedelta(days=reel, seconds=shot),
                        gps_latitude=47.0 + reel * 0.1 + shot * 9e-5,
                        gps_longitude=11.0,
                        gps_img_direction=60.0 * (i % 6),
                    )
                    s3.put_object(Bucket=stack.bucket, Key=key, Body=apply_metadata(body, frame))
                return [
                    sqs_batch(
                        *(
                            s3_record(k, sequencer=f"{n + 1:02X}", bucket=stack.bucket)
                            for k in keys[i : i + 10]
                        )
                    )
                    for n, i in enumerate(range(0, len(keys), 10))
                ]

            def measured(side: str, handle: Callable[[dict[str, Any]], None]) -> Callable[[], float]:
                def run() -> float:
                    batches = upload_reel()
                    requests_before, statements_before = http_requests[0], statements[0]
                    before = meter.sample()
                    started = time.perf_counter()
                    for batch in batches:
                        handle(batch)
                    seconds = time.perf_counter() - started
                    meter.record(side, before)
                    meter.count(side, "HTTP requests", http_requests[0] - requests_before)
                    # the reference: BEGIN, the inserts (psycopg pipelines executemany: one round trip), COMMIT
                    sql = statements[0] - statements_before if side == OURS else len(batches) * 3
                    meter.count(side, "database round trips", sql)
                    return seconds

                return run

            def ours(batch: dict[str, Any]) -> None:
                before = len(connects)
                t = time.perf_counter()
                result = handler.handle(batch)
                durations.append(time.perf_counter() - t)
                per_invocation.append(len(connects) - before)
                for phase, seconds in result.seconds.items():
                    phases[phase] = phases.get(phase, 0.0) + seconds
                assert result.counts()["processed"] == len(batch["Records"]), result.to_dict()

            def reference(batch: dict[str, Any]) -> None:
                keys = [
                    unquote_plus(record["s3"]["object"]["key"])
                    for message in batch["Records"]
                    for record in json.loads(message["body"])["Records"]
                ]

                def read(key: str) -> tuple[Any, ...]:
                    response = s3.get_object(
                        Bucket=stack.bucket, Key=key, Range=f"bytes=0-{HEADER_CHUNK - 1}"
                    )
                    meta = parse_jpeg_header(response["Body"].read())
                    size = int(response["ContentRange"].rpartition("/")[2])
                    return (
                        f"s3://{stack.bucket}/{key}",
                        size,
                        response["ETag"],
                        meta.captured_at,
                        meta.gps_latitude,
                        meta.gps_longitude,
                        meta.gps_altitude,
                        meta.make,
                        meta.model,
                    )

                rows = list(pool.map(read, keys))
                with plain.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO reference_images VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows
                    )
                plain.commit()

            # As the Lambda entry point does after its first invocation; one process, so both sides alike.
            freeze_warm_objects()
            comparison = report.compare(
                {OURS: measured(OURS, ours), REFERENCE: measured(REFERENCE, reference)},
                title="S3 event records per process, PostgreSQL catalog",
                unit="records",
                count=args.records,
                goal=">= 200 records/s",
            )
            per_run = -(-args.records // 10)
            batches = per_run * (args.runs + args.warmup)
            comparison.notes += [
                *meter.notes(args.records, per_run),
                f"batch latency: median {statistics.median(durations) * 1000:.0f} ms, max {max(durations) * 1000:.0f} ms",
                "time per batch: "
                + ", ".join(f"{phase} {seconds / batches * 1000:.0f} ms" for phase, seconds in phases.items())
                + " (read: one presigned ranged GET per object, concurrently)",
                f"database connections opened per warm invocation: max {max(per_invocation[1:] or [0])}",
            ]
            if args.statements:
                comparison.notes += [
                    f"statement (driver call to result): {len(times) / batches:.1f} per batch,"
                    f" {sum(times) / batches * 1000:.2f} ms per batch: {text}"
                    for text, times in sorted(timed.items(), key=lambda item: -sum(item[1]))
                ]
            for note in comparison.notes:
                print(f"note: {note}")
            if args.profile:
                batches_ = upload_reel()
                profile = cProfile.Profile()
                profile.runcall(lambda: [handler.handle(b) for b in batches_])
                profile.dump_stats(args.profile)
                pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
            pool.shutdown()
            handler.close()
    finally:
        server.terminate()
        server.wait()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


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
        parser.add_argument("--profile", type=Path, help="write a cProfile of one more panopipe run here")
        parser.add_argument(
            "--statements", action="store_true", help="print the time of each kind of SQL statement per batch"
        )

    args = fair.parse_args(__doc__, {"records": (400, 100)}, extra=options)
    with fair.report(args, "handler") as report:
        bench_throughput(report, args)
        if not (args.no_package or args.quick):
            bench_package(report)


if __name__ == "__main__":
    main()
