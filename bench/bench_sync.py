"""Benchmark: sync 1,000 files of 200 KB to moto's threaded S3 server on localhost.

Compares ``panopipe.sync.sync_folder`` with ``aws s3 sync`` (when the AWS CLI is installed) and with a plain
boto3 ``upload_file`` loop, all with the same concurrency, and times the second (no-op) sync of each tool that
has one (for boto3: one HEAD per file, the floor of a no-op sync that verifies every object). The server
runs in a child process so that it does not share the interpreter lock with the client.

    python bench/bench_sync.py [--files 1000] [--size-kb 200] [--workers 8]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig

from panopipe.config import Settings
from panopipe.storage import open_storage
from panopipe.sync import sync_folder

OUT = Path(__file__).parent / "out"
REGION = "us-east-1"


def serve(port_queue: multiprocessing.Queue) -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port_queue.put(server.get_host_and_port()[1])
    threading.Event().wait()  # serve until the parent terminates this process


def make_capture(folder: Path, files: int, size: int) -> list[Path]:
    paths = [folder / f"reel{i // 250:02}" / f"cam{i % 2}" / f"{i:06}.jpg" for i in range(files)]
    for path in paths:
        if not path.exists() or path.stat().st_size != size:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(size))
    return paths


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size-kb", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    OUT.mkdir(exist_ok=True)
    capture = OUT / "capture"
    size = args.size_kb * 1000
    paths = make_capture(capture, args.files, size)
    megabytes = len(paths) * size / 1e6

    (OUT / "aws-config").write_text(f"[default]\ns3 =\n  max_concurrent_requests = {args.workers}\n")
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(OUT / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(OUT / "aws-credentials"),
    )
    os.environ.pop("AWS_PROFILE", None)

    port_queue: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(port_queue,), daemon=True)
    server.start()
    endpoint = f"http://127.0.0.1:{port_queue.get(timeout=30)}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    for bucket in ("bench-panopipe", "bench-awscli", "bench-boto3"):
        client.create_bucket(Bucket=bucket)

    results: dict[str, tuple[float, float | None]] = {}
    try:
        destination = open_storage(
            "s3://bench-panopipe/capture", Settings(s3_endpoint_url=endpoint, aws_region=REGION)
        )
        first = sync_folder(capture, destination, workers=args.workers)
        if not first.ok or len(first.uploaded) != len(paths):
            sys.exit(f"panopipe sync failed: {dict(list(first.failed.items())[:3])}")
        second = sync_folder(capture, destination, workers=args.workers)
        assert len(second.skipped) == len(paths)
        results["panopipe sync_folder"] = (first.seconds, second.seconds)

        if shutil.which("aws"):
            command = [
                "aws",
                "s3",
                "sync",
                str(capture),
                "s3://bench-awscli/capture",
                "--endpoint-url",
                endpoint,
            ]
            command.append("--only-show-errors")
            results["aws s3 sync"] = (
                timed(lambda: subprocess.run(command, check=True)),
                timed(lambda: subprocess.run(command, check=True)),
            )

        config = TransferConfig(max_concurrency=1)

        keys = [f"capture/{p.relative_to(capture).as_posix()}" for p in paths]

        def upload_loop() -> None:
            with ThreadPoolExecutor(args.workers) as pool:
                list(
                    pool.map(
                        lambda p, k: client.upload_file(str(p), "bench-boto3", k, Config=config), paths, keys
                    )
                )

        def head_loop() -> None:
            with ThreadPoolExecutor(args.workers) as pool:
                list(pool.map(lambda k: client.head_object(Bucket="bench-boto3", Key=k), keys))

        results["boto3 upload_file loop"] = (timed(upload_loop), timed(head_loop))
    finally:
        server.terminate()

    reference = results["panopipe sync_folder"][0]
    print(
        f"{len(paths)} files x {args.size_kb} KB = {megabytes:.0f} MB, {args.workers} workers, moto server on localhost"
    )
    print(
        f"{'tool':<24} {'seconds':>8} {'files/s':>8} {'MB/s':>7} {'time/panopipe':>13} {'no-op run (s)':>14}"
    )
    for tool, (seconds, noop) in results.items():
        noop_text = f"{noop:.2f}" if noop is not None else "-"
        print(
            f"{tool:<24} {seconds:>8.2f} {len(paths) / seconds:>8.0f} {megabytes / seconds:>7.1f} "
            f"{seconds / reference:>12.2f}x {noop_text:>14}"
        )


if __name__ == "__main__":
    main()
