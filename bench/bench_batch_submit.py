"""Benchmark: plan and submit 100,000 rig shots to the ``batch`` executor (AWS Batch on moto, in-process).

Builds a SQLite catalog of ``--shots`` shots of 6 cameras with nothing processed yet (frames of 2448x2048,
their sizes recorded as ingest records them; the production rig's profile configured, as a survey team's
project has it: every stitch job carries it, and each shot's frames are checked against it), then times
``panopipe.pipeline.run(..., wait=False)`` with the batch executor: the plan (stitch for every shot; the later
steps wait for its outputs), the jobs recorded in the catalog, the manifest chunks written to S3 and the
array job submitted. Each timed run starts from a fresh copy of the catalog (untimed). It counts the
SubmitJob calls, which must be steps x ceil(children / 10,000), and checks that no DescribeJobs call was made
(nothing is in flight before the run). The goal is under 10 s.

The alternative, measured beside it on ``--reference-shots`` shots (a smaller catalog built the same way; at
50 calls per second, 100,000 shots would take over half an hour per run): what a user without array jobs
would write, the shot ids read from the same catalog copy and one ``SubmitJob`` per shot (its command
``panopipe run --steps stitch --shot ID``) to the same moto Batch, under AWS Batch's account limit of 50
SubmitJob calls per second, applied by panopipe's client-side limiter (``executors.throttle``: a token
bucket of 50 per second, full at the start of each run, which lets the first second's 50 calls go at once,
generous to this side) with its backoff. Both sides run in the same rounds, panopipe's on that catalog.

    python bench/bench_batch_submit.py [--quick] [--shots 100000] [--reference-shots 500] [--chunk-jobs 200]
        [--json out.json]
"""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

import fair
from bench_plan import CAMERAS, T0, _image, insert_raw
from panopipe.catalog import Catalog
from panopipe.catalog.schema import images
from panopipe.config import Settings
from panopipe.demo import demo_rig
from panopipe.executors.batch import MAX_CHILDREN, BatchExecutor
from panopipe.executors.throttle import RateLimiter, call_aws
from panopipe.pipeline import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' moto Batch set-up, shared
from tests.pipeline.batch_world import create_batch

GOAL_S = 10.0
FRAME = (2448, 2048)
"""The frame size of the production rig (a Mosaic 51's, as ``bench_stitch_production.py``)."""
BUCKET = "bench-batch"
ACCOUNT_SUBMIT_RATE = 50.0
"""SubmitJob calls per second AWS Batch allows an account (per Region)."""


def build(location: str, shots: int) -> None:
    """A catalog of ``shots`` shots of the production rig's frames, with their sizes as ingest records them."""
    ingested = T0 + timedelta(days=1)
    with Catalog.open(location, create=True) as catalog:
        rows = (
            _image(f"/cap/R{s // 10000:03d}/cam{c}/f{s:07d}.jpg", s, c, f"R-{s:07d}", None, ingested)
            | {"width": FRAME[0], "height": FRAME[1]}
            for s in range(shots)
            for c in range(CAMERAS)
        )
        insert_raw(catalog, images, rows)


def per_shot(location: str, client: Any, queue: str, definition: str) -> int:
    """What a user without array jobs would write: every shot of the catalog submitted as a job of its own,
    at most 50 SubmitJob calls per second (the account's limit); the number of shots submitted."""
    with sqlite3.connect(location) as db:
        shots = [row[0] for row in db.execute("SELECT DISTINCT shot FROM images WHERE shot IS NOT NULL")]
    limiter = RateLimiter(ACCOUNT_SUBMIT_RATE, burst=int(ACCOUNT_SUBMIT_RATE))
    for number, shot in enumerate(shots):
        request = {
            "jobName": f"stitch-{number}",
            "jobQueue": queue,
            "jobDefinition": definition,
            "containerOverrides": {"command": ["panopipe", "run", "--steps", "stitch", "--shot", shot]},
        }
        call_aws("batch:SubmitJob", partial(client.submit_job, **request), limiter=limiter)
    return len(shots)


def main() -> None:
    args = fair.parse_args(
        __doc__, {"shots": (100_000, 5_000), "chunk-jobs": (200, 200), "reference-shots": (500, 100)}
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "bench"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    with (
        fair.report(args, "batch_submit") as report,
        tempfile.TemporaryDirectory(prefix="panopipe-bench-batch-") as tmp,
        mock_aws(config={"batch": {"use_docker": False}}),
    ):
        originals: dict[int, str] = {}
        for shots in dict.fromkeys((args.shots, args.reference_shots)):
            originals[shots] = str(Path(tmp) / f"catalog-{shots}.db")
            started = time.perf_counter()
            build(originals[shots], shots)
            report.note(
                f"built {shots:,} shots ({shots * CAMERAS:,} images) in {time.perf_counter() - started:.1f} s"
            )
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        queue, definition = create_batch(boto3.client)
        # The production rig's profile, as a survey team configures it: it enters every stitch job's parameters,
        # and each shot's frame sizes are checked against it while planning.
        steps = {"pipeline": {"output": f"s3://{BUCKET}/out"}, "stitch": {"rig": demo_rig(*FRAME).to_dict()}}
        settings = Settings(project="bench", steps=steps)
        calls: Counter[str] = Counter()
        client = boto3.client("batch")
        client.meta.events.register(
            "after-call.batch", lambda event_name, **_: calls.update([event_name.rsplit(".", 1)[-1]])
        )
        runs = iter(range(10**9))
        made: dict[str, list[int]] = {}  # SubmitJob calls of each run, by side

        def fresh(shots: int) -> str:
            location = str(Path(tmp) / f"run-{next(runs)}.db")
            shutil.copyfile(originals[shots], location)
            return location

        def submit(shots: int) -> float:
            location = fresh(shots)
            executor = BatchExecutor(
                queue,
                definition,
                f"s3://{BUCKET}/out/_batch/",
                chunk_jobs=args.chunk_jobs,
                batch_client=client,
            )
            before = calls["SubmitJob"]
            with Catalog.open(location) as catalog:
                begun = time.perf_counter()
                result = run(catalog, settings=settings, executor=executor, wait=False)
                seconds = time.perf_counter() - begun
            made.setdefault(f"panopipe {shots}", []).append(calls["SubmitJob"] - before)
            os.remove(location)
            assert result.counts == {"stitch": {"submitted": shots}}, result.counts
            return seconds

        def reference(shots: int) -> float:
            location = fresh(shots)
            before = calls["SubmitJob"]
            begun = time.perf_counter()
            submitted = per_shot(location, client, queue, definition)
            seconds = time.perf_counter() - begun
            made.setdefault(f"reference {shots}", []).append(calls["SubmitJob"] - before)
            os.remove(location)
            assert submitted == shots, submitted
            return seconds

        ours = "panopipe run --executor batch (plan + submit)"
        comparison = report.compare(
            {ours: lambda: submit(args.shots)},
            title=f"plan and submit {args.shots:,} shots to AWS Batch (moto)",
            unit="shots",
            count=args.shots,
            goal=f"< {GOAL_S:g} s",
        )
        children = math.ceil(args.shots / args.chunk_jobs)
        expected = math.ceil(children / MAX_CHILDREN)  # one step submitted: the others read stitch's outputs
        per_run = set(made[f"panopipe {args.shots}"])
        report.note(
            f"SubmitJob calls per run: {', '.join(map(str, sorted(per_run)))} (expected 1 step x "
            f"ceil({children:,} children / {MAX_CHILDREN:,}) = {expected}); DescribeJobs calls: "
            f"{calls['DescribeJobs']} (expected 0)"
        )
        assert per_run == {expected} and calls["DescribeJobs"] == 0, calls
        shots = args.reference_shots
        theirs = f"one SubmitJob per shot, at most {ACCOUNT_SUBMIT_RATE:g}/s"
        alike = report.compare(
            {ours: lambda: submit(shots), theirs: lambda: reference(shots)},
            title=f"submit {shots:,} shots to AWS Batch (moto): one array job against one SubmitJob per shot"
            f" (at --reference-shots {shots:,}, not {args.shots:,})",
            unit="shots",
            count=shots,
            notes=[
                f"measured at {shots:,} shots (--reference-shots); the per-shot side needs at least "
                f"{(args.shots - ACCOUNT_SUBMIT_RATE) / ACCOUNT_SUBMIT_RATE:,.0f} s for {args.shots:,} shots "
                f"at the account's {ACCOUNT_SUBMIT_RATE:g} SubmitJob/s"
            ],
        )
        assert set(made[f"reference {shots}"]) == {shots}, made
        report.note(
            f"at {shots:,} shots: SubmitJob calls per run {made[f'panopipe {shots}'][0]} (panopipe) against "
            f"{shots:,} (one per shot); per-shot side {alike.median(theirs):.2f} s, panopipe "
            f"{alike.median(ours):.2f} s; panopipe's median for {args.shots:,} shots: "
            f"{comparison.median(ours):.2f} s"
        )


if __name__ == "__main__":
    main()
