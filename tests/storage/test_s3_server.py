"""End to end over HTTP: moto's threaded server on localhost, reached through the endpoint URL in Settings."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from panopipe.config import Settings
from panopipe.errors import ObjectNotFoundError, StorageError
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


def test_ranged_reads_go_through_presigned_urls_over_http(endpoint_url: str, aws_env: None) -> None:
    settings = Settings(s3_endpoint_url=endpoint_url, aws_region="us-east-1")
    storage = S3Storage("e2e-ranged", "in put", settings=settings)
    storage.client.create_bucket(Bucket="e2e-ranged")
    storage.client.put_bucket_versioning(Bucket="e2e-ranged", VersioningConfiguration={"Status": "Enabled"})
    boto3_calls: list[str] = []
    storage.client.meta.events.register(
        "after-call.s3", lambda event_name, **_: boto3_calls.append(event_name)
    )
    data = os.urandom(200_000)
    keys = ["reel 1/a b.jpg", "reel+1/a+b.jpg", "reel/ü日本 é.jpg"]
    for key in keys:
        storage.put(key, data)
    storage.put("empty.jpg", b"")
    boto3_calls.clear()

    for key in keys:
        start, info = storage.read_start(key, 65536)
        assert start == data[:65536] and storage.read_range(key, 199_990, 100) == data[-10:]
        assert info == storage.head(key)  # size, ETag, version, modified time and the stored SHA-256
        assert info.size == len(data) and info.version_id is not None
    assert storage.read_range(keys[0], len(data), 10) == b""
    assert storage.read_start("empty.jpg", 65536) == (b"", storage.head("empty.jpg"))
    with pytest.raises(ObjectNotFoundError) as missing:
        storage.read_start("reel 1/gone.jpg", 65536)
    with pytest.raises(StorageError) as no_bucket:
        S3Storage("e2e-nowhere", settings=settings).read_start("a.jpg", 10)

    assert not [name for name in boto3_calls if name.endswith("GetObject")]
    assert str(missing.value) == (
        "s3://e2e-ranged/in put/reel 1/gone.jpg does not exist (bucket 'e2e-ranged', key 'reel 1/gone.jpg')"
    )
    assert "S3 bucket 'e2e-nowhere' does not exist" in str(no_bucket.value)


def test_the_endpoint_of_a_config_file_given_with_config_reaches_every_part_of_a_run(
    endpoint_url: str, aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`run --config FILE` and `verify --config FILE` from another folder: the pool's worker processes and
    the storage opened by output URIs read FILE's S3 endpoint (they went to AWS, the job failing after 75 s
    of retries, where `ingest` and `sync` with the same option went to the endpoint)."""
    from panopipe.cli import main
    from panopipe.demo import generate_survey, write_project_config

    boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1").create_bucket(Bucket="e2e-config")
    project = tmp_path / "project"
    survey = generate_survey(project, shots=1, camera_size=(160, 120))
    config = write_project_config(project, str(project / "panopipe.db"), (160, 120))
    text = config.read_text(encoding="utf-8")
    text = text.replace(json.dumps(str(project.resolve() / "panopipe-out")), '"s3://e2e-config/out"')
    config.write_text(text.replace("[panopipe]\n", f'[panopipe]\ns3_endpoint_url = "{endpoint_url}"\n', 1))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    option = ("--config", str(config))

    assert main(["ingest", str(survey.folder / survey.reel), *option]) == 0
    assert main(["run", *option, "--workers", "1"]) == 0, capsys.readouterr().err
    assert main(["verify", *option]) == 0, capsys.readouterr().err
    listed = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1").list_objects_v2(
        Bucket="e2e-config", Prefix="out/publish/"
    )
    assert listed["KeyCount"] == 3  # the panorama, its thumbnail and its preview
    assert "PANOPIPE_CONFIG" not in os.environ
