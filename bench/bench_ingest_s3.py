"""Ingest of 1,000 images from S3 (moto's server on localhost, in a child process): images/s, requests and bytes
per image.

Beside it, what a user would otherwise do: list the prefix and download every object whole with boto3, then
read its metadata (exiftool's ``-fast2`` also stops at the first scan, but only after the object is on disk).
Both sides use 16 threads on the same objects and run interleaved (``bench/fair.py``); panopipe's side also
writes the catalog (a new one each run, made before the clock starts), which the other side does not. Not a
test.

    python bench/bench_ingest_s3.py [--quick] [--files 1000] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import cv2
import numpy as np

import fair
from panopipe.catalog import Catalog
from panopipe.config import Settings
from panopipe.dev import spawn_moto_server
from panopipe.ingest import ingest
from panopipe.metadata import MetadataUpdate, apply_metadata, parse_jpeg_header

THREADS = 16


def frame(size: tuple[int, int] = (2048, 1024)) -> bytes:
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8), size)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def main() -> None:
    args = fair.parse_args(__doc__, {"files": (1000, 200)})
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
    server, endpoint = spawn_moto_server()
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        body = frame()
        keys = [f"day1/R001/cam{n % 6}/R001_cam{n % 6}_{n // 6:06d}.jpg" for n in range(args.files)]

        def upload(index_key: tuple[int, str]) -> None:
            index, key = index_key
            update = MetadataUpdate(
                gps_latitude=48 + index * 1e-5, gps_longitude=11.5, make="bench", model="rig"
            )
            client.put_object(Bucket="bench", Key=key, Body=apply_metadata(body, update))

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(upload, enumerate(keys)))
        settings = Settings(s3_endpoint_url=endpoint, aws_region="us-east-1")
        bytes_read: list[int] = []

        with fair.report(args, "ingest_s3") as report, tempfile.TemporaryDirectory() as tmp:
            report.note(f"{args.files} objects of {len(body) / 1e6:.2f} MB on moto's server at {endpoint}")
            made = iter(range(10**9))

            def panopipe() -> float:
                with Catalog.open(Path(tmp) / f"c{next(made)}.db") as catalog:
                    started = time.perf_counter()
                    result = ingest(catalog, ["s3://bench/day1"], settings, workers=THREADS)
                    seconds = time.perf_counter() - started
                assert result.added == args.files and not result.failed, result.failed
                bytes_read.append(result.bytes_read)
                return seconds

            def whole() -> None:
                pages = client.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="day1/")
                listed = [item["Key"] for page in pages for item in page.get("Contents", [])]
                with ThreadPoolExecutor(THREADS) as pool:
                    list(
                        pool.map(
                            lambda key: parse_jpeg_header(
                                client.get_object(Bucket="bench", Key=key)["Body"].read()
                            ),
                            listed,
                        )
                    )

            report.compare(
                {"panopipe ingest s3://": panopipe, "boto3 list + whole-object GET + header parse": whole},
                title=f"ingest {args.files} objects from moto's server",
                unit="images",
                count=args.files,
            )
            report.note(
                f"bytes read per image: panopipe {bytes_read[-1] / args.files / 1024:.1f} KiB in 1 ranged GET"
                f" (+1 LIST per 1,000); whole objects {len(body) / 1024:.1f} KiB in 1 GET"
                f" ({len(body) * args.files / bytes_read[-1]:.0f}x more)"
            )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
