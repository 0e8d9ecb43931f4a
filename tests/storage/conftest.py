"""Fixtures for the storage tests: a folder, an in-process moto bucket, and the same contract over both."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest
from moto import mock_aws

from panopipe.storage import FolderStorage, Storage
from panopipe.storage.s3 import MiB, S3Storage, TransferOptions

BUCKET = "panopipe-test"
PREFIX = "root/prefix"
SMALL_PARTS = TransferOptions(multipart_threshold=5 * MiB, part_size=5 * MiB, max_concurrency=2)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no endpoint or profile from the developer's environment."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in (
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "PANOPIPE_S3_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


def list_only_user(name: str) -> tuple[str, str]:
    """A moto IAM user allowed s3:ListBucket only; its access key id and secret (moto checks its policy inside
    ``moto.core.authorization.enable_iam_authentication()``, as AWS always does)."""
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
    }
    iam.put_user_policy(UserName=name, PolicyName="list-only", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture
def s3(aws_env: None) -> Iterator:
    """An in-process moto S3 client with an empty bucket."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def calls(s3) -> Counter[str]:
    """How many times each S3 operation was called by ``s3``, counted by botocore's own events."""
    counter: Counter[str] = Counter()

    def count(event_name: str, **_kwargs: object) -> None:
        counter[event_name.rsplit(".", 1)[-1]] += 1

    s3.meta.events.register("after-call.s3", count)
    return counter


@pytest.fixture
def sent_ranges(s3) -> list[str]:
    """The Range header of each GetObject request ``s3`` sends over HTTP, boto3's or presigned."""
    ranges: list[str] = []

    def record(request: AWSPreparedRequest, **_kwargs: object) -> None:
        value = request.headers["Range"]  # boto3 sends its headers encoded
        ranges.append(value.decode() if isinstance(value, bytes) else value)

    s3.meta.events.register("before-send.s3.GetObject", record)
    return ranges


@pytest.fixture
def s3_storage(s3) -> S3Storage:
    return S3Storage(BUCKET, PREFIX, s3_client=s3, transfer=SMALL_PARTS)


@pytest.fixture(params=["folder", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path) -> Storage:
    """Each backend in turn, for contract tests."""
    if request.param == "folder":
        return FolderStorage(tmp_path / "root")
    return request.getfixturevalue("s3_storage")
