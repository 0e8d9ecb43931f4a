"""Benchmark: sync 1,000 files of 200 KB to moto's threaded S3 server on localhost.

Compares ``panopipe.sync.sync_folder`` with ``aws s3 sync`` (when the AWS CLI is installed) and with a plain
boto3 ``upload_file`` loop, all with the same concurrency and the same files, interleaved (``bench/fair.py``):
every upload run goes to an empty prefix (emptied again, untimed, after the run), and the no-op runs resync
a prefix each tool filled once (for boto3: one HEAD per file, the floor of a no-op sync that verifies every
object). The server runs in a child process so that it does not share the interpreter lock with the client.

    python bench/bench_sync.py [--quick] [--files 1000] [--size-kb 200] [--workers 8] [--json out.json]
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig

import fair
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
    def options(parser) -> None:
        parser.add_argument("--size-kb", type=int, default=200)
        parser.add_argument("--workers", type=int, default=8)

    args = fair.parse_args(__doc__, {"files": (1000, 200)}, extra=options)
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
    client.create_bucket(Bucket="bench")
    settings = Settings(s3_endpoint_url=endpoint, aws_region=REGION)
    config = TransferConfig(max_concurrency=1)
    relative = [p.relative_to(capture).as_posix() for p in paths]

    def panopipe(prefix: str) -> None:
        report = sync_folder(capture, open_storage(f"s3://bench/{prefix}", settings), workers=args.workers)
        assert report.ok and len(report.uploaded) + len(report.skipped) == len(paths), report.failed

    def awscli(prefix: str) -> None:
        command = ["aws", "s3", "sync", str(capture), f"s3://bench/{prefix}", "--endpoint-url", endpoint]
        subprocess.run([*command, "--only-show-errors"], check=True)

    def boto3_upload(prefix: str) -> None:
        with ThreadPoolExecutor(args.workers) as pool:
            upload = lambda p, k: client.upload_file(str(p), "bench", f"{prefix}/{k}", Config=config)  # noqa: E731
            list(pool.map(upload, paths, relative))

    def boto3_head(prefix: str) -> None:
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda k: client.head_object(Bucket="bench", Key=f"{prefix}/{k}"), relative))

    def empty(prefix: str) -> None:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix=f"{prefix}/"):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket="bench", Delete={"Objects": keys})

    def upload_run(name: str, tool: Callable[[str], None]) -> fair.Side:
        def run() -> float:
            try:
                return timed(lambda: tool(f"upload-{name}"))
            finally:
                empty(f"upload-{name}")

        return run

    # name: (upload, name of the no-op resync, no-op resync)
    tools: dict[str, tuple[Callable[[str], None], str, Callable[[str], None]]] = {
        "panopipe sync_folder": (panopipe, "panopipe sync_folder", panopipe)
    }
    try:
        with fair.report(args, "sync") as report:
            report.note(
                f"{len(paths)} files x {args.size_kb} KB = {megabytes:.0f} MB, {args.workers} workers"
            )
            if shutil.which("aws"):
                tools["aws s3 sync"] = (awscli, "aws s3 sync", awscli)
            else:
                report.unavailable("aws s3 sync", "the AWS CLI is not installed")
            tools["boto3 upload_file loop"] = (boto3_upload, "boto3 head_object loop", boto3_head)
            report.compare(
                {name: upload_run(name, upload) for name, (upload, _, _) in tools.items()},
                title=f"sync {len(paths)} new files of {args.size_kb} KB to moto's server",
                unit="files",
                count=len(paths),
            )
            for name, (upload, _, _) in tools.items():
                upload(f"noop-{name}")
            report.compare(
                {
                    label: (lambda noop=noop, name=name: noop(f"noop-{name}"))
                    for name, (_, label, noop) in tools.items()
                },
                title=f"no-op resync of {len(paths)} files (all already stored)",
                unit="files",
                count=len(paths),
            )
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
