"""Benchmark: plan and submit 100,000 rig shots to the ``batch`` executor (AWS Batch on moto, in-process).

Builds a SQLite catalog of ``--shots`` shots of 6 cameras with nothing processed yet, then times
``panopipe.pipeline.run(..., wait=False)`` with the batch executor: the plan (stitch for every shot; the later
steps wait for its outputs), the jobs recorded in the catalog, the manifest chunks written to S3 and the
array job submitted. Each timed run starts from a fresh copy of the catalog (untimed). It counts the
SubmitJob calls, which must be steps x ceil(children / 10,000), and checks that no DescribeJobs call was made
(nothing is in flight before the run). The goal is under 10 s. The alternative, one SubmitJob per job, is
not measured: at AWS Batch's 50 SubmitJob per second per account it takes at least shots / 50 seconds.

    python bench/bench_batch_submit.py [--quick] [--shots 100000] [--chunk-jobs 200] [--json out.json]
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import boto3
from moto import mock_aws

import fair
from bench_plan import CAMERAS, T0, _image, insert_raw
from panopipe.catalog import Catalog
from panopipe.catalog.schema import images
from panopipe.config import Settings
from panopipe.executors.batch import MAX_CHILDREN, BatchExecutor
from panopipe.pipeline import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' moto Batch set-up, shared
from tests.pipeline.batch_world import create_batch

GOAL_S = 10.0
BUCKET = "bench-batch"


def build(location: str, shots: int) -> None:
    ingested = T0 + timedelta(days=1)
    with Catalog.open(location, create=True) as catalog:
        rows = (
            _image(f"/cap/R{s // 10000:03d}/cam{c}/f{s:07d}.jpg", s, c, f"R-{s:07d}", None, ingested)
            for s in range(shots)
            for c in range(CAMERAS)
        )
        insert_raw(catalog, images, rows)


def main() -> None:
    args = fair.parse_args(__doc__, {"shots": (100_000, 5_000), "chunk-jobs": (200, 200)})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "bench"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    with (
        fair.report(args, "batch_submit") as report,
        tempfile.TemporaryDirectory(prefix="panopipe-bench-batch-") as tmp,
        mock_aws(config={"batch": {"use_docker": False}}),
    ):
        original = str(Path(tmp) / "catalog.db")
        started = time.perf_counter()
        build(original, args.shots)
        report.note(
            f"built {args.shots:,} shots ({args.shots * CAMERAS:,} images) in {time.perf_counter() - started:.1f} s"
        )
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        queue, definition = create_batch(boto3.client)
        settings = Settings(project="bench", steps={"pipeline": {"output": f"s3://{BUCKET}/out"}})
        calls: Counter[str] = Counter()
        client = boto3.client("batch")
        client.meta.events.register(
            "after-call.batch", lambda event_name, **_: calls.update([event_name.rsplit(".", 1)[-1]])
        )
        runs = 0

        def submit() -> float:
            nonlocal runs
            runs += 1
            location = str(Path(tmp) / f"run-{runs}.db")
            shutil.copyfile(original, location)
            executor = BatchExecutor(
                queue,
                definition,
                f"s3://{BUCKET}/out/_batch/",
                chunk_jobs=args.chunk_jobs,
                batch_client=client,
            )
            with Catalog.open(location) as catalog:
                begun = time.perf_counter()
                result = run(catalog, settings=settings, executor=executor, wait=False)
                seconds = time.perf_counter() - begun
            os.remove(location)
            assert result.counts == {"stitch": {"submitted": args.shots}}, result.counts
            return seconds

        comparison = report.compare(
            {"panopipe run --executor batch (plan + submit)": submit},
            title=f"plan and submit {args.shots:,} shots to AWS Batch (moto)",
            unit="shots",
            count=args.shots,
            goal=f"< {GOAL_S:g} s",
        )
        children = math.ceil(args.shots / args.chunk_jobs)
        expected = math.ceil(children / MAX_CHILDREN)  # one step submitted: the others read stitch's outputs
        per_run = calls["SubmitJob"] / (args.runs + args.warmup)
        report.note(
            f"SubmitJob calls per run: {per_run:g} (expected 1 step x ceil({children:,} children / {MAX_CHILDREN:,})"
            f" = {expected}); DescribeJobs calls: {calls['DescribeJobs']} (expected 0)"
        )
        report.note(
            f"alternative, one SubmitJob per shot: {args.shots:,} calls, at least {args.shots / 50:,.0f} s at "
            f"50 calls/s (not measured); panopipe's median: {comparison.median(next(iter(comparison.seconds))):.2f} s"
        )
        assert per_run == expected and calls["DescribeJobs"] == 0, calls


if __name__ == "__main__":
    main()
