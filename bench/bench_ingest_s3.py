"""Ingest of 1,000 images from S3 (moto's server on localhost): requests and bytes per image, images/s.

Beside it, what a user would otherwise do: download every object whole with boto3 and read its metadata
(exiftool's `-fast2` also stops at the first scan, but only after the object is on disk). Not a test.

    python bench/bench_ingest_s3.py [--files 1000]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import cv2
import numpy as np
from moto.server import ThreadedMotoServer

from panopipe.catalog import Catalog
from panopipe.config import Settings
from panopipe.ingest import ingest
from panopipe.metadata import MetadataUpdate, apply_metadata, parse_jpeg_header


def frame(size: tuple[int, int] = (2048, 1024)) -> bytes:
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8), size)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="bench")
    body = frame()
    keys = [f"day1/R001/cam{n % 6}/R001_cam{n % 6}_{n // 6:06d}.jpg" for n in range(args.files)]

    def upload(index_key: tuple[int, str]) -> None:
        index, key = index_key
        update = MetadataUpdate(gps_latitude=48 + index * 1e-5, gps_longitude=11.5, make="bench", model="rig")
        client.put_object(Bucket="bench", Key=key, Body=apply_metadata(body, update))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(upload, enumerate(keys)))
    print(f"{args.files} objects of {len(body) / 1e6:.2f} MB on moto's server at {endpoint}")

    settings = Settings(s3_endpoint_url=endpoint, aws_region="us-east-1")
    with tempfile.TemporaryDirectory() as tmp, Catalog.open(Path(tmp) / "c.db") as catalog:
        started = time.perf_counter()
        report = ingest(catalog, ["s3://bench/day1"], settings)
        ours = time.perf_counter() - started
    assert report.added == args.files and not report.failed, report.failed

    def whole(key: str) -> None:
        parse_jpeg_header(client.get_object(Bucket="bench", Key=key)["Body"].read())

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(whole, keys))
    baseline = time.perf_counter() - started
    server.stop()
    print(
        f"panopipe ingest s3://       {args.files / ours:8.0f} images/s   "
        f"{report.bytes_read / args.files / 1024:6.1f} KiB and 1 ranged GET per image (+1 LIST per 1,000)"
    )
    print(
        f"boto3 whole-object download {args.files / baseline:8.0f} images/s   "
        f"{len(body) / 1024:6.1f} KiB and 1 GET per image"
    )
    print(
        f"ratio (images/s): {baseline / ours:.2f}x; bytes read: {len(body) * args.files / report.bytes_read:.0f}x fewer"
    )


if __name__ == "__main__":
    main()
