"""Benchmark: what the JSON wire format of jobs costs per job, beside the pickling it replaced in the pool.

A job of the local process pool crosses to the worker as ``encode_job`` text and its outcome comes back as
``encode_outcome`` text; before, both were pickled by ``ProcessPoolExecutor``, which still pickles the text.
This measures, for a stitch job of a 6-camera rig (the largest payload: the rig profile) and its outcome
with a log: encode + decode of both, against pickle dumps + loads of both objects, in microseconds per job.

    python bench/bench_codec.py [--quick] [--jobs 20000] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import fair
from panopipe.demo import demo_rig
from panopipe.executors import decode_job, decode_outcome, encode_job, encode_outcome
from panopipe.steps.base import JobOutcome, JobSpec, Output


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


def main() -> None:
    args = fair.parse_args(__doc__, {"jobs": (20_000, 2_000)})
    job, outcome = sample()
    assert decode_job(encode_job(job)) == job and decode_outcome(encode_outcome(outcome)) == outcome

    def codec() -> None:
        for _ in range(args.jobs):
            decode_job(encode_job(job)), decode_outcome(encode_outcome(outcome))

    def pickled() -> None:
        for _ in range(args.jobs):
            pickle.loads(pickle.dumps(job)), pickle.loads(pickle.dumps(outcome))

    with fair.report(args, "codec") as report:
        size = len(encode_job(job)) + len(encode_outcome(outcome))
        report.note(f"a 6-camera stitch job and its outcome: {size:,} bytes of JSON")
        report.compare(
            {"panopipe JSON codec": codec, "pickle (the pool before)": pickled},
            title="encode + decode a job and its outcome",
            unit="jobs",
            count=args.jobs,
        )


if __name__ == "__main__":
    main()
