"""Benchmark: jobs/s of one AWS Batch worker (``panopipe worker run``, a container of 2 vCPUs) against the
local pool (``panopipe run --executor local``) on this machine, on the same jobs and the same storage.

The jobs: ``derive`` (a 512 px thumbnail and a 2048 px preview, GPS, time and GPano written into both) of
``--images`` 360° images of 4096x2048 (real JPEGs of about 2 MB with EXIF and GPano XMP, ingested into a
SQLite catalog from S3). Inputs and outputs are on S3 for both sides: moto's threaded server, in a child
process of its own. Set-up, once: the images uploaded and ingested, and the same jobs submitted to AWS
Batch (moto, no Docker) as one array job of one chunk with ``panopipe run --executor batch``, which writes
the manifest a Batch child reads. Then, interleaved (``bench/fair.py``):

1. ``panopipe worker run --manifest s3://... --index 0 --workers 2``: what the one child of that array job
   runs in its container (``src/panopipe/executors/worker.py``): the manifest and chunk read from S3, the
   jobs run in a pool of 2 processes (the local executor's), one result object written per job. On a
   machine of more than 2 cores, the worker is confined to 2 of them (CPU affinity), as a container of
   2 vCPUs is;
2. ``panopipe run --steps derive --executor local``: the same jobs planned from a fresh copy of the catalog
   and run by the local pool (one process per core), their outcomes recorded in the catalog.

Each side is a fresh ``panopipe`` process, as a container starts one and a user types one command, so the
interpreter's start, the imports and the pool's start are timed on both sides. Before every run, out of
the clock: the outputs (and the worker's results) deleted from S3, the catalog copied. Both sides must
write the same output objects (content-addressed keys: the same jobs). The goal: the worker's jobs/s at
least 0.9x the local pool's, i.e. the pool's row shows a ratio of at least 0.9x. Beside wall time, the CPU
seconds of each side's process tree (``getrusage`` of the waited-for children: the command and its pool)
per job, which other work on a shared machine changes less; moto's server is not counted.

    python bench/bench_worker.py [--quick] [--images 32] [--vcpus 2] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import requests

import fair
import panopipe
from bench_derive import make_files
from panopipe.catalog import Catalog
from panopipe.config import load_settings
from panopipe.dev import spawn_moto_server
from panopipe.executors.manifest import MANIFEST, RESULTS, Submission
from panopipe.ingest import ingest
from panopipe.metadata import GPano, MetadataUpdate, apply_metadata
from panopipe.pipeline import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' moto Batch set-up, shared
from tests.pipeline.batch_world import create_batch

GOAL = 0.9
BUCKET = "bench-worker"
REGION = "us-east-1"
CLI = "from panopipe.cli import run; run()"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def upload(client: Any, files: list[Path]) -> None:
    """The files as 360° images with capture time, GPS and GPano, under ``in/R001/`` (frames 0, 1, ...)."""

    def put(item: tuple[int, Path]) -> None:
        index, path = item
        update = MetadataUpdate(
            captured_at=T0 + timedelta(seconds=index),
            utc_offset_minutes=120,
            gps_latitude=48.137 + index * 4e-5,
            gps_longitude=11.576,
            gps_altitude=519.4,
            gps_img_direction=0.0,
            make="Bench",
            model="360",
            gpano=GPano(4096, 2048),
        )
        body = apply_metadata(path.read_bytes(), update)
        client.put_object(Bucket=BUCKET, Key=f"in/R001/pano_{index:06d}.jpg", Body=body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, enumerate(files)))


def delete_prefix(client: Any, prefix: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})


def keys(client: Any, prefix: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def panopipe_command(arguments: list[str], vcpus: int | None = None) -> tuple[float, float, Any]:
    """Run ``panopipe ARGUMENTS`` in a fresh process (confined to ``vcpus`` cores if the machine has more);
    its wall seconds, the CPU seconds of it and its pool's processes, and its JSON output."""
    cores = sorted(os.sched_getaffinity(0))[:vcpus] if vcpus is not None and vcpus < fair.CORES else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CLI, *arguments],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=None if cores is None else partial(os.sched_setaffinity, 0, cores),
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's processes were waited for by it
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode:
        raise SystemExit(f"panopipe {' '.join(arguments)}: exit code {done.returncode}\n{done.stderr}")
    return seconds, cpu, json.loads(done.stdout)


def main() -> None:
    args = fair.parse_args(
        __doc__,
        {"images": (32, 8), "vcpus": (2, 2)},
    )
    # The panopipe processes started here import the same code as this one.
    source = str(Path(panopipe.__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION)
    server, endpoint = spawn_moto_server()
    # boto3's own (Batch), and panopipe's S3 endpoint for the pool's processes, which read no config file
    os.environ.update(AWS_ENDPOINT_URL=endpoint, PANOPIPE_S3_ENDPOINT_URL=endpoint)
    requests.post(f"{endpoint}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    try:
        with (
            fair.report(args, "worker") as report,
            tempfile.TemporaryDirectory(prefix="panopipe-bench-worker-") as tmp,
        ):
            compare(report, args, Path(tmp))
    finally:
        server.terminate()
        server.wait()


def compare(report: fair.Report, args: argparse.Namespace, tmp: Path) -> None:
    """Set up (images, catalog, manifest), then the comparison."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    queue, definition = create_batch(lambda service: boto3.client(service, region_name=REGION))
    config = tmp / "panopipe.toml"
    config.write_text(
        "[panopipe]\n"
        'project = "bench"\n'
        f'aws_region = "{REGION}"\n'
        f'batch_job_queue = "{queue}"\n'
        f'batch_job_definition = "{definition}"\n'
        f"batch_chunk_jobs = {args.images}\n"  # one chunk: the work of one container
        "[steps.pipeline]\n"
        f'output = "s3://{BUCKET}/out"\n'
    )
    started = time.perf_counter()
    files = make_files(args.images)
    upload(s3, files)
    original = tmp / "catalog.db"
    settings = load_settings(config, catalog=str(original))
    with Catalog.open(original, create=True) as catalog:
        ingested = ingest(catalog, [f"s3://{BUCKET}/in"], settings, workers=16)
    assert ingested.added == args.images and not ingested.failed, ingested.failed
    submitted = tmp / "submitted.db"
    shutil.copyfile(original, submitted)
    with Catalog.open(submitted) as catalog:
        result = run(catalog, steps=["derive"], settings=replace(settings, executor="batch"), wait=False)
    assert result.counts == {"derive": {"submitted": args.images}}, result.counts
    (manifest_key,) = (key for key in keys(s3, "out/_batch/") if key.endswith(MANIFEST))
    manifest = f"s3://{BUCKET}/{manifest_key}"
    results = manifest_key.removesuffix(MANIFEST) + RESULTS
    assert Submission.at(manifest, settings).manifest().chunks == 1
    megabytes = sum(path.stat().st_size for path in files) / len(files) / 1e6
    report.note(
        f"{args.images} images of 4096x2048 ({megabytes:.1f} MB each) on moto's server, ingested and submitted"
        f" as one array job of one chunk in {time.perf_counter() - started:.1f} s (set-up, untimed)"
    )
    outputs: dict[str, set[str]] = {}
    cpus: dict[str, list[float]] = {}  # CPU seconds of each run (warm-up included), by side
    runs = iter(range(10**9))
    worker_side = f"panopipe worker run, 1 container of {args.vcpus} vCPUs ({args.vcpus} processes)"
    local_side = f"panopipe run --executor local ({fair.CORES} processes)"

    def worker() -> float:
        delete_prefix(s3, "out/derive/")
        delete_prefix(s3, results)
        command = ["worker", "run", "--manifest", manifest, "--index", "0"]
        seconds, cpu, done = panopipe_command(
            [*command, "--workers", str(args.vcpus), "--config", str(config)], args.vcpus
        )
        cpus.setdefault(worker_side, []).append(cpu)
        assert (done["succeeded"], done["failed"], done["skipped"]) == (args.images, 0, 0), done
        outputs.setdefault("worker", keys(s3, "out/derive/"))
        return seconds

    def local() -> float:
        delete_prefix(s3, "out/derive/")
        location = tmp / f"run-{next(runs)}.db"
        shutil.copyfile(original, location)
        command = ["run", "--steps", "derive", "--executor", "local", "--json"]
        seconds, cpu, done = panopipe_command([*command, "--catalog", str(location), "--config", str(config)])
        cpus.setdefault(local_side, []).append(cpu)
        location.unlink()
        assert done["counts"] == {"derive": {"succeeded": args.images}}, done
        outputs.setdefault("local", keys(s3, "out/derive/"))
        return seconds

    comparison = report.compare(
        {worker_side: worker, local_side: local},
        title=f"derive of {args.images} 4096x2048 images on S3 (moto): a Batch worker against the local pool",
        unit="jobs",
        count=args.images,
        goal=f"worker >= {GOAL:g}x the local pool's jobs/s (the pool's ratio >= {GOAL:g}x)",
    )
    assert outputs["worker"] == outputs["local"] and len(outputs["worker"]) == 2 * args.images, outputs
    ratio = comparison.ratio(local_side)
    report.note(
        f"same jobs: both sides wrote the same {len(outputs['worker'])} output objects (content-addressed keys)"
    )
    report.note(
        f"worker / local pool jobs/s, median of the rounds: {ratio:.2f}x (goal >= {GOAL:g}x: "
        f"{'met' if ratio >= GOAL else 'not met'})"
    )
    worker_cpu, local_cpu = (
        statistics.median(cpus[side]) / args.images for side in (worker_side, local_side)
    )
    report.note(
        f"CPU seconds per job (the panopipe process and its pool's, start-up included; moto's server not "
        f"counted), median of the runs: worker {worker_cpu:.3f}, local pool {local_cpu:.3f} "
        f"(local / worker {local_cpu / worker_cpu:.2f}x)"
    )


if __name__ == "__main__":
    main()
