"""What only S3 does: multipart uploads, ranged GETs, stored checksums, error messages, configuration."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.core.authorization import enable_iam_authentication

from panopipe.catalog import Catalog, Selection
from panopipe.config import Settings
from panopipe.errors import ConfigError, ObjectExistsError, ObjectNotFoundError, StorageError
from panopipe.ingest import ingest
from panopipe.storage import open_storage
from panopipe.storage.aws_clients import s3_client
from panopipe.storage.s3 import MiB, S3Storage, TransferOptions

from .conftest import BUCKET, PREFIX, SMALL_PARTS, list_only_user

JPEG = Path(__file__).parents[1] / "data" / "exif" / "pillow" / "hopper.jpg"

BIG = os.urandom(12 * MiB + 123)


class _Raw:
    """The raw stream of an HTTP response botocore reads: its whole body at once."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs: object) -> list[bytes]:
        return [self.body]


def test_small_put_is_one_request_with_sha256_metadata(s3, s3_storage: S3Storage, calls) -> None:
    info = s3_storage.put("a.jpg", b"jpeg bytes")

    assert calls == {"PutObject": 1}
    head = s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}/a.jpg")
    assert head["Metadata"]["sha256"] == hashlib.sha256(b"jpeg bytes").hexdigest() == info.sha256
    assert head["ContentType"] == "image/jpeg"
    assert info.etag == head["ETag"].strip('"')


def test_put_file_above_threshold_uploads_parts_from_disk(s3, s3_storage: S3Storage, calls, tmp_path) -> None:
    source = tmp_path / "big.jpg"
    source.write_bytes(BIG)
    bodies: list[int] = []
    s3.meta.events.register(
        "before-call.s3.UploadPart", lambda params, **_: bodies.append(len(params["body"].getbuffer()))
    )
    progress: list[int] = []

    info = s3_storage.put_file("big.jpg", source, progress=progress.append)

    assert calls["UploadPart"] == 3 and calls["CompleteMultipartUpload"] == 1 and "PutObject" not in calls
    assert sorted(bodies) == [2 * MiB + 123, 5 * MiB, 5 * MiB]
    assert sorted(progress) == sorted(bodies)
    assert s3_storage.get("big.jpg") == BIG
    head = s3_storage.head("big.jpg")
    assert head.etag == info.etag and head.etag.endswith("-3")
    assert head.sha256 == hashlib.sha256(BIG).hexdigest()


def test_put_bytes_above_threshold_is_multipart(s3_storage: S3Storage, calls) -> None:
    s3_storage.put("big.bin", BIG)

    assert calls["UploadPart"] == 3
    assert s3_storage.get("big.bin") == BIG


def test_parts_carry_sha256_checksums(s3, s3_storage: S3Storage) -> None:
    checksums: list[str] = []
    s3.meta.events.register(
        "before-call.s3.UploadPart",
        lambda params, **_: checksums.append(params["headers"]["x-amz-checksum-sha256"]),
    )

    s3_storage.put("big.bin", BIG)

    assert len(checksums) == 3 and all(len(c) == 44 for c in checksums)


def test_read_start_is_one_ranged_get_through_a_presigned_url(
    s3_storage: S3Storage, calls, sent_ranges: list[str]
) -> None:
    s3_storage.put("big.bin", BIG)
    calls.clear()

    data, info = s3_storage.read_start("big.bin", 65536)

    assert data == BIG[:65536] and info.size == len(BIG)
    assert info == s3_storage.head("big.bin") and info.sha256 == hashlib.sha256(BIG).hexdigest()
    assert sent_ranges == ["bytes=0-65535"]
    assert "GetObject" not in calls, "no boto3 GetObject call"


def test_read_range_is_one_ranged_get(s3_storage: S3Storage, calls, sent_ranges: list[str]) -> None:
    s3_storage.put("big.bin", BIG)
    calls.clear()

    data = s3_storage.read_range("big.bin", len(BIG) - 100, 1000)

    assert data == BIG[-100:]
    assert sent_ranges == [f"bytes={len(BIG) - 100}-{len(BIG) + 899}"]
    assert "GetObject" not in calls
    assert s3_storage.stats.get("big.bin").bytes_read == 100


def test_ranged_get_falls_back_to_boto3_on_an_unusual_answer(s3, s3_storage: S3Storage, calls) -> None:
    s3_storage.put("r.jpg", b"0123456789")
    slow_down = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    answers = [AWSResponse("", 503, {}, _Raw(slow_down))]
    s3.meta.events.register_first("before-send.s3.GetObject", lambda **_: answers.pop() if answers else None)

    assert s3_storage.read_range("r.jpg", 2, 3) == b"234"
    assert not answers and calls["GetObject"] == 1, "S3's 503 to the presigned GET sent boto3 to ask again"


def test_head_reports_version_and_modified_time(s3, s3_storage: S3Storage) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

    put = s3_storage.put("v.jpg", b"one")
    head = s3_storage.head("v.jpg")

    assert head.version_id is not None and head.version_id == put.version_id
    assert head.modified is not None


def test_root_prefix_is_not_listed_outside(s3, s3_storage: S3Storage) -> None:
    s3.put_object(Bucket=BUCKET, Key="root/prefixed-sibling.jpg", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="elsewhere.jpg", Body=b"x")
    s3_storage.put("in.jpg", b"x")

    assert [info.key for info in s3_storage.list()] == ["in.jpg"]
    assert s3_storage.uri("in.jpg") == f"s3://{BUCKET}/{PREFIX}/in.jpg"


@pytest.mark.slow
def test_list_is_paginated(s3, s3_storage: S3Storage, calls) -> None:
    for i in range(1005):
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/many/{i:04}.jpg", Body=b"")
    calls.clear()

    keys = [info.key for info in s3_storage.list("many/")]

    assert len(keys) == 1005 and keys[0] == "many/0000.jpg" and keys[-1] == "many/1004.jpg"
    assert calls == {"ListObjectsV2": 2}


def test_foreign_object_without_metadata_has_unknown_sha256(s3, s3_storage: S3Storage) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/foreign.jpg", Body=b"x")

    assert s3_storage.sha256("foreign.jpg") is None


def test_missing_key_names_bucket_and_key(s3_storage: S3Storage) -> None:
    with pytest.raises(ObjectNotFoundError) as excinfo:
        s3_storage.get("r/missing.jpg")

    assert str(excinfo.value) == (
        f"s3://{BUCKET}/{PREFIX}/r/missing.jpg does not exist (bucket '{BUCKET}', key 'r/missing.jpg')"
    )


@pytest.mark.parametrize("action", ["head", "get", "put", "list"])
def test_missing_bucket_says_check_name_and_region(s3, action: str) -> None:
    storage = S3Storage("no-such-bucket", "p", s3_client=s3)
    calls = {
        "head": lambda: storage.head("a.jpg"),
        "get": lambda: storage.get("a.jpg"),
        "put": lambda: storage.put("a.jpg", b"x"),
        "list": lambda: list(storage.list()),
    }

    with pytest.raises(StorageError) as excinfo:
        calls[action]()

    assert not isinstance(excinfo.value, ObjectNotFoundError)
    assert "S3 bucket 'no-such-bucket' does not exist" in str(excinfo.value)
    assert "check the bucket name and region (client region: us-east-1)" in str(excinfo.value)


def test_access_denied_names_the_missing_permission(s3, s3_storage: S3Storage) -> None:
    s3_storage.put("secret.jpg", b"x")
    key_id, secret = list_only_user("lister")
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id=key_id, aws_secret_access_key=secret
    )
    storage = S3Storage(BUCKET, PREFIX, s3_client=client)

    with enable_iam_authentication():
        assert [info.key for info in storage.list()] == ["secret.jpg"]
        with pytest.raises(StorageError) as get_error:
            storage.get("secret.jpg")
        with pytest.raises(StorageError) as put_error:
            storage.put("new.jpg", b"x")

    assert str(get_error.value) == (
        f"access denied to s3://{BUCKET}/{PREFIX}/secret.jpg (bucket '{BUCKET}', key 'secret.jpg'): "
        f"check the IAM policy allows s3:GetObject on arn:aws:s3:::{BUCKET}/{PREFIX}/secret.jpg, and the bucket policy"
    )
    assert f"s3:PutObject on arn:aws:s3:::{BUCKET}/{PREFIX}/new.jpg" in str(put_error.value)


def test_an_object_ingest_was_denied_is_read_once_access_is_granted(
    s3, s3_storage: S3Storage, catalog: Catalog
) -> None:
    """A denied read says nothing about the file: it is reported, not recorded as a failed image, which no
    later ingest read again (its ETag unchanged) once the policy was fixed. moto's in-process IAM cannot
    check the presigned URLs of ranged reads (its check needs an Authorization header), so the denial is
    AWS's 403 answer, given where botocore sends the GetObject of the client ingest uses."""
    s3_storage.put("R001/a.jpg", JPEG.read_bytes())
    prefix = f"s3://{BUCKET}/{PREFIX}/"
    body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"

    def deny(**_: object) -> AWSResponse:
        return AWSResponse("", 403, {}, _Raw(body))

    events = s3_client(Settings()).meta.events
    events.register_first("before-send.s3.GetObject", deny)
    try:
        denied = ingest(catalog, [prefix], Settings())
    finally:
        events.unregister("before-send.s3.GetObject", deny)
    assert [f.reason.partition(" (")[0] for f in denied.failed] == [f"access denied to {prefix}R001/a.jpg"]
    assert catalog.count(Selection(include_deleted=True)) == 0

    granted = ingest(catalog, [prefix], Settings())
    assert (granted.added, granted.failed) == (1, [])
    assert [image.status for image in catalog.images()] == ["ok"]


def test_an_ingest_of_the_whole_bucket_reads_none_of_panopipes_own_outputs(
    s3, s3_storage: S3Storage, catalog: Catalog
) -> None:
    """The bucket of a survey holds the pipeline's output too (docs/aws.md: OUTPUT_PREFIX=s3://$BUCKET/...):
    an ingest of the bucket had catalogued its panoramas and published files as new images."""
    s3_storage.put("R001/a.jpg", JPEG.read_bytes())
    outputs = open_storage(f"s3://{BUCKET}/panopipe-out", Settings())
    outputs.put("stitch/shot/R001-000001/panorama-0a1b.jpg", JPEG.read_bytes() + b"1")
    outputs.put("publish/demo/R001/demo_R001_000001.jpg", JPEG.read_bytes() + b"2")
    settings = Settings(output_prefix=f"s3://{BUCKET}/panopipe-out")

    report = ingest(catalog, [f"s3://{BUCKET}"], settings)

    assert (report.added, report.failed, report.own_outputs) == (1, [], {f"s3://{BUCKET}/panopipe-out/": 2})
    assert [image.uri for image in catalog.images()] == [f"s3://{BUCKET}/{PREFIX}/R001/a.jpg"]


@pytest.mark.parametrize(
    ("output", "where"),
    [(f"s3://{BUCKET}", "inside the output root"), (f"s3://{BUCKET}/survey", "the output root")],
    ids=["the bucket", "the survey prefix"],
)
def test_an_ingest_of_a_prefix_at_or_inside_an_output_prefix_is_refused(
    s3, catalog: Catalog, output: str, where: str
) -> None:
    """Every image had been taken for panopipe's own output and not read: an ingest that added nothing."""
    survey = f"s3://{BUCKET}/survey/"
    open_storage(survey, Settings()).put("R001/a.jpg", JPEG.read_bytes())

    with pytest.raises(ConfigError) as refused:
        ingest(catalog, [survey], Settings(output_prefix=output))

    assert str(refused.value).startswith(f"{survey} is {where} {output} ([panopipe] output_prefix): ")
    assert catalog.count(Selection(include_deleted=True)) == 0
    outputs_in_the_survey = ingest(catalog, [survey], Settings(output_prefix=f"{survey}panopipe-out"))
    assert outputs_in_the_survey.added == 1


@pytest.mark.parametrize(
    ("status", "code", "boto3_calls"),
    [(404, "NoSuchKey", 0), (404, "NoSuchBucket", 0), (403, "AccessDenied", 1)],
)
def test_presigned_get_errors_read_as_boto3_calls_do(
    s3, s3_storage: S3Storage, calls, status: int, code: str, boto3_calls: int
) -> None:
    s3_storage.put("r 1/a+é.jpg", b"x")
    body = f"<Error><Code>{code}</Code><Message>Refused.</Message></Error>".encode()
    s3.meta.events.register_first(
        "before-send.s3.GetObject", lambda **_: AWSResponse("", status, {}, _Raw(body))
    )
    calls.clear()

    with pytest.raises(StorageError) as presigned:
        s3_storage.read_start("r 1/a+é.jpg", 65536)
    assert calls["GetObject"] == boto3_calls, "a denial is asked again with boto3's header signature"
    with pytest.raises(StorageError) as boto3_call:
        s3_storage.get("r 1/a+é.jpg")

    assert type(presigned.value) is type(boto3_call.value)
    assert str(presigned.value) == str(boto3_call.value)
    assert f"s3://{BUCKET}/{PREFIX}/r 1/a+é.jpg" in str(presigned.value)


@pytest.mark.parametrize("prefix", ["../up", "a/../../b", "a//b"])
def test_root_prefix_that_could_escape_is_refused(s3, prefix: str) -> None:
    with pytest.raises(StorageError, match="invalid storage key"):
        S3Storage(BUCKET, prefix, s3_client=s3)


def test_part_size_below_s3_minimum_is_refused() -> None:
    with pytest.raises(ConfigError, match="minimum"):
        TransferOptions(part_size=MiB)


def test_from_uri_and_open_storage(s3) -> None:
    storage = S3Storage.from_uri(f"s3://{BUCKET}/a/b/", s3_client=s3)
    assert (storage.bucket, storage.prefix, storage.root_uri) == (BUCKET, "a/b/", f"s3://{BUCKET}/a/b/")

    opened = open_storage(f"s3://{BUCKET}", Settings(aws_region="eu-west-1"))
    assert isinstance(opened, S3Storage) and opened.prefix == ""
    assert opened._client is None, "the client is built on first use, not when the storage is opened"
    assert opened.client.meta.region_name == "eu-west-1"


def test_settings_configure_endpoint_region_and_path_style(aws_env) -> None:
    storage = S3Storage(
        BUCKET,
        settings=Settings(s3_endpoint_url="http://127.0.0.1:9", aws_region="eu-central-1"),
        transfer=SMALL_PARTS,
    )

    assert storage.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert storage.client.meta.region_name == "eu-central-1"
    assert storage.client.meta.config.s3["addressing_style"] == "path"


def test_storages_of_one_configuration_share_one_client(aws_env, monkeypatch) -> None:
    settings = Settings(s3_endpoint_url="http://127.0.0.1:9", aws_region="eu-central-1")
    first = open_storage(f"s3://{BUCKET}/a", settings)
    second = open_storage(f"s3://{BUCKET}/b", settings)
    other_endpoint = open_storage(
        f"s3://{BUCKET}/a", replace(settings, s3_endpoint_url="http://127.0.0.1:10")
    )

    assert isinstance(first, S3Storage) and isinstance(second, S3Storage)
    assert isinstance(other_endpoint, S3Storage)
    assert first.client is second.client, "building a client per storage cost most of a small job's CPU"
    assert other_endpoint.client is not first.client
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated")
    rotated = open_storage(f"s3://{BUCKET}/a", settings)
    assert isinstance(rotated, S3Storage) and rotated.client is not first.client


def test_unknown_profile_is_a_config_error(aws_env) -> None:
    storage = S3Storage(BUCKET, settings=Settings(aws_profile="no-such-profile"))

    with pytest.raises(ConfigError, match="no-such-profile"):
        _ = storage.client


def test_a_create_only_multipart_upload_that_finds_the_key_taken_is_aborted(s3, s3_storage) -> None:
    size = 6 * 1024 * 1024  # above SMALL_PARTS' threshold: a multipart upload
    s3_storage.put_new("taken.jpg", b"1" * size)

    with pytest.raises(ObjectExistsError):
        s3_storage.put_new("taken.jpg", b"2" * size)

    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert s3_storage.get("taken.jpg") == b"1" * size
