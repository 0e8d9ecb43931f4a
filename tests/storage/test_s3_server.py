"""End to end over HTTP: moto's threaded server on localhost, reached through the endpoint URL in Settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from panopipe.config import Settings
from panopipe.errors import ObjectNotFoundError
from panopipe.storage import open_storage
from panopipe.storage.s3 import MiB, S3Storage
from panopipe.sync import sync_folder

from .conftest import SMALL_PARTS


@pytest.fixture(scope="module")
def endpoint_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_sync_and_read_back_through_the_endpoint(endpoint_url: str, aws_env: None, tmp_path: Path) -> None:
    settings = Settings(s3_endpoint_url=endpoint_url, aws_region="eu-west-1")
    boto3.client("s3", endpoint_url=endpoint_url, region_name="eu-west-1").create_bucket(
        Bucket="e2e-captures", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    capture = tmp_path / "capture"
    (capture / "reel 1").mkdir(parents=True)
    small = os.urandom(300_000)
    big = os.urandom(11 * MiB)
    (capture / "reel 1/0001+ü.jpg").write_bytes(small)
    (capture / "reel 1/pano.jpg").write_bytes(big)
    destination = S3Storage.from_uri("s3://e2e-captures/site-a", settings=settings, transfer=SMALL_PARTS)

    report = sync_folder(capture, destination, workers=4)
    again = sync_folder(capture, destination, workers=4)

    assert report.uploaded == (
        "s3://e2e-captures/site-a/reel 1/0001+ü.jpg",
        "s3://e2e-captures/site-a/reel 1/pano.jpg",
    )
    assert report.ok and again.skipped == report.uploaded and again.uploaded == ()
    reader = open_storage("s3://e2e-captures/site-a", settings)
    assert reader.get("reel 1/pano.jpg") == big
    assert reader.read_range("reel 1/0001+ü.jpg", 299_990, 100) == small[-10:]
    assert reader.head("reel 1/pano.jpg").etag.endswith("-3")
    with pytest.raises(ObjectNotFoundError, match="e2e-captures"):
        reader.head("reel 1/missing.jpg")
