"""Benchmark: what the JSON wire format of jobs costs per job, beside the pickling it replaced in the pool.

A job of the local process pool crosses to the worker as ``encode_job`` text and its outcome comes back as
``encode_outcome`` text; before, both were pickled by ``ProcessPoolExecutor``, which still pickles the text.
This measures, for a stitch job of a 6-camera rig (the largest payload: the rig profile) and its outcome
with a log: encode + decode of both, against pickle dumps + loads of both objects, in microseconds per job.

    python bench/bench_codec.py [--jobs 20000]
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime

from panopipe.executors import decode_job, decode_outcome, encode_job, encode_outcome
from panopipe.steps.base import JobOutcome, JobSpec, Output
from panopipe.stitching import demo_rig


def sample() -> tuple[JobSpec, JobOutcome]:
    frames = [f"s3://survey-bucket/2026/R001/cam{i}/frame_000123.jpg" for i in range(6)]
    payload = {
        "params": {"rig": demo_rig(4000, 3000).to_dict(), "stitcher": "calibrated", "width": 8192},
        "inputs": frames,
        "outputs": {"panorama": "s3://survey-bucket/panopipe-out/stitch/shot/R001-000123/panorama.jpg"},
    }
    job = JobSpec("0f3c9a2e-1d4b-4c8e-9a7f-2b6d5e8c1a3f", "stitch", "shot:R001-000123", "ab" * 32, payload)
    now = datetime.now(UTC)
    output = Output("panorama", payload["outputs"]["panorama"], "cd" * 32, 9_876_543)
    log = "\n".join(f"stitched view {i}: 4000x3000 -> 8192x4096, seam cost 0.{i}" for i in range(6))
    return job, JobOutcome("succeeded", (output,), None, log, 1, now, now)


def per_job_us(jobs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(jobs):
            work()
        best = min(best, time.perf_counter() - started)
    return best / jobs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    jobs = parser.parse_args().jobs
    job, outcome = sample()
    assert decode_job(encode_job(job)) == job and decode_outcome(encode_outcome(outcome)) == outcome

    def codec() -> object:
        return decode_job(encode_job(job)), decode_outcome(encode_outcome(outcome))

    def pickled() -> object:
        return pickle.loads(pickle.dumps(job)), pickle.loads(pickle.dumps(outcome))

    json_us, pickle_us = per_job_us(jobs, codec), per_job_us(jobs, pickled)
    size = len(encode_job(job)) + len(encode_outcome(outcome))
    print(f"job + outcome: {size:,} bytes of JSON")
    print(f"JSON codec: {json_us:.1f} µs per job; pickle: {pickle_us:.1f} µs")
    print(f"difference: {json_us - pickle_us:.1f} µs per job")


if __name__ == "__main__":
    main()
