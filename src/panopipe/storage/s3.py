"""Storage under an S3 prefix: AWS, MinIO or moto's server, with verified, resumable multipart uploads."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import mimetypes
import re
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ReadTimeoutError
from urllib3.exceptions import HTTPError

from panopipe.config import Settings
from panopipe.errors import (
    BucketNotFoundError,
    ConfigError,
    EndpointUnreachableError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
)
from panopipe.storage.aws_clients import (
    S3Client,
    is_endpoint_unreachable,
    is_transient_aws_error,
    s3_client,
    unreachable_hint,
)
from panopipe.storage.base import ObjectInfo, Progress, Storage, os_storage_error, validate_key

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256: the hex SHA-256 of the whole object
_USER_METADATA = "x-amz-meta-"
_BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
"""The names botocore accepts (S3's rules for new buckets are stricter; older buckets keep capitals and _)."""
PRESIGNED_SECONDS = 300  # how long a presigned ranged GET stays valid; it is used at once

Reader = Callable[[int, int], bytes]
"""Returns ``size`` bytes of the source from ``offset``."""


@dataclass(frozen=True, slots=True)
class TransferOptions:
    """When and how uploads are split into parts."""

    multipart_threshold: int = 16 * MiB
    part_size: int = 8 * MiB
    max_concurrency: int = 8

    def __post_init__(self) -> None:
        if self.multipart_threshold < 1:
            raise ConfigError("multipart_threshold must be at least 1 byte")
        if self.part_size < MIN_PART_SIZE:
            raise ConfigError(f"part size {self.part_size} is below S3's minimum of {MIN_PART_SIZE} bytes")
        if self.max_concurrency < 1:
            raise ConfigError("max_concurrency must be at least 1")


@dataclass(frozen=True, slots=True)
class _Part:
    number: int
    offset: int
    size: int
    sha256: bytes


class S3Storage(Storage):
    """Objects under ``s3://bucket/prefix``. Keys are relative to the prefix.

    Every object is stored with its SHA-256 (verified by S3 on upload, kept as ``x-amz-meta-sha256``).
    Objects from ``multipart_threshold`` bytes on are uploaded in parts, concurrently; an interrupted multipart
    upload of the same key is resumed, reusing the parts whose checksums match.
    Incomplete uploads are not aborted (so they can be resumed): give the bucket a lifecycle rule
    ``AbortIncompleteMultipartUpload``.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        s3_client: S3Client | None = None,
        settings: Settings | None = None,
        transfer: TransferOptions | None = None,
    ):
        if not _BUCKET_NAME.fullmatch(bucket):
            raise StorageError(
                f"invalid S3 bucket name {bucket!r}: a bucket name is letters, digits, '.', '-' and '_'"
            )
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = validate_key(prefix) + "/" if prefix else ""
        self.root_uri = f"s3://{bucket}/{self.prefix}"
        self.transfer = transfer or TransferOptions()
        self._client = s3_client
        self._settings = settings
        self._client_lock = threading.Lock()

    @classmethod
    def from_uri(
        cls,
        uri: str,
        *,
        s3_client: S3Client | None = None,
        settings: Settings | None = None,
        transfer: TransferOptions | None = None,
    ) -> S3Storage:
        """The storage rooted at ``s3://bucket/prefix``."""
        if not uri.startswith("s3://"):
            raise StorageError(f"{uri} is not an s3:// URI")
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return cls(bucket, prefix, s3_client=s3_client, settings=settings, transfer=transfer)

    @property
    def client(self) -> S3Client:
        """The S3 client: the injected one, or one built from the settings on first use."""
        with self._client_lock:
            if self._client is None:
                self._client = s3_client(self._settings)
            return self._client

    def _head(self, key: str) -> ObjectInfo:
        try:
            with self._errors(key, "s3:GetObject"):
                response = self.client.head_object(
                    Bucket=self.bucket, Key=self.prefix + key, ChecksumMode="ENABLED"
                )
        except ObjectNotFoundError:
            # A HEAD response has no body, so a missing bucket looks like a missing key until we ask.
            with self._errors(None, "s3:ListBucket"):
                self.client.head_bucket(Bucket=self.bucket)
            raise
        return self._info(key, response["ContentLength"], response, _stored_sha256(response))

    def _read_range(self, key: str, start: int, length: int) -> bytes:
        if length == 0:
            self._head(key)
            return b""
        try:
            return self._ranged_get(key, start, length)["Body"]
        except StorageError as exc:
            if _invalid_range(exc):
                return b""  # the range starts at or after the end of the object
            raise

    def _read_start(self, key: str, length: int) -> tuple[bytes, ObjectInfo]:
        if length == 0:
            return b"", self._head(key)
        try:
            response = self._ranged_get(key, 0, length)
        except StorageError as exc:
            if _invalid_range(exc):
                return b"", self._head(key)  # an empty object: no byte range exists
            raise
        # "bytes 0-65535/2097152": the total size follows the slash; a whole small object has no range.
        content_range = response.get("ContentRange")
        size = int(content_range.rpartition("/")[2]) if content_range else response["ContentLength"]
        return response["Body"], self._info(key, size, response, _stored_sha256(response))

    def _ranged_get(self, key: str, start: int, length: int) -> dict[str, Any]:
        """A GetObject response for ``length`` bytes from ``start``, its ``Body`` read: through a presigned URL
        when that gives a plain answer, else through boto3 (which retries and follows redirects)."""
        byte_range = f"bytes={start}-{start + length - 1}"
        with self._errors(key, "s3:GetObject"):
            response = self._presigned_get(key, byte_range)
            if response is None:
                response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key, Range=byte_range)
                response["Body"] = response["Body"].read()
            return response

    def _presigned_get(self, key: str, byte_range: str) -> dict[str, Any] | None:
        """The ranged GET sent as a presigned URL (the Range header is not signed) over the client's own
        connection pool, hence its endpoint, TLS verification, proxies and timeouts; the response's headers
        under boto3's names. This skips most of boto3's per-call CPU (request building, header signing,
        response parsing, event hooks); handlers of ``before-send`` (moto's in-process mock) still see it.

        A missing key or bucket or an invalid range raises the :class:`ClientError` boto3 would; anything else
        gives ``None``, for the boto3 path to retry and report: redirects, throttling, server and network
        errors, a client without a connection pool, and a denial (a policy may refuse query-string
        authentication, ``s3:authType``, or an expired URL, where a signed header is allowed).
        """
        client = self.client
        session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        if session is None:
            return None
        url = client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.prefix + key},
            ExpiresIn=PRESIGNED_SECONDS,
        )
        request = AWSRequest("GET", url, headers={"Range": byte_range}).prepare()
        try:
            _, response = client.meta.events.emit_until_response("before-send.s3.GetObject", request=request)
            if response is None:
                response = session.send(request)
            body = response.content  # read here: a connection cut in the body is a network error too
        except (BotoCoreError, HTTPError):
            return None
        headers = response.headers
        if response.status_code in (200, 206):
            modified = headers.get("Last-Modified")
            return {
                "Body": body,
                "ContentLength": len(body),
                "ContentRange": headers.get("Content-Range"),
                "ETag": headers.get("ETag"),
                "LastModified": parsedate_to_datetime(modified) if modified else None,
                "VersionId": headers.get("x-amz-version-id"),
                "Metadata": {
                    name[len(_USER_METADATA) :].lower(): value
                    for name, value in headers.items()
                    if name.lower().startswith(_USER_METADATA)
                },
            }
        error = _xml_error(body)
        if response.status_code in (404, 416) and error.get("Code"):
            raise ClientError(
                {"Error": error, "ResponseMetadata": {"HTTPStatusCode": response.status_code}}, "GetObject"
            )
        return None

    def _get(self, key: str) -> bytes:
        with self._errors(key, "s3:GetObject"):
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def _sha256(self, key: str) -> str | None:
        return self._head(key).sha256

    def _put(self, key: str, data: bytes) -> ObjectInfo:
        return self._put_bytes(key, data, create_only=False)

    def _put_new(self, key: str, data: bytes) -> ObjectInfo:
        return self._put_bytes(key, data, create_only=True)

    def _put_bytes(self, key: str, data: bytes, *, create_only: bool) -> ObjectInfo:
        def read(offset: int, size: int) -> bytes:
            return data[offset : offset + size]

        if len(data) < self.transfer.multipart_threshold:
            return self._put_single(key, data, create_only=create_only)
        return self._put_multipart(key, len(data), read, lambda _n: None, create_only=create_only)

    def _put_file(self, key: str, path: Path, progress: Progress) -> ObjectInfo:
        try:
            size = path.stat().st_size
            data = path.read_bytes() if size < self.transfer.multipart_threshold else None
        except OSError as exc:
            raise os_storage_error("read", path, exc) from exc
        if data is not None:
            info = self._put_single(key, data)
            progress(info.size)
            return info

        def read(offset: int, length: int) -> bytes:
            try:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read(length)
            except OSError as exc:
                raise os_storage_error("read", path, exc) from exc
            if len(data) != length:
                raise StorageError(f"{path} changed while it was being uploaded; upload it again")
            return data

        return self._put_multipart(key, size, read, progress)

    def _delete(self, key: str) -> None:
        with self._errors(key, "s3:DeleteObject"):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors(None, "s3:ListBucket"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    yield ObjectInfo(
                        uri=f"{self.root_uri}{key}",
                        key=key,
                        size=item["Size"],
                        etag=item.get("ETag", "").strip('"') or None,
                        modified=item.get("LastModified"),
                    )

    def _put_single(self, key: str, data: bytes, *, create_only: bool = False) -> ObjectInfo:
        digest = hashlib.sha256(data).digest()
        with self._errors(key, "s3:PutObject"):
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=data,
                ChecksumSHA256=_b64(digest),
                ContentType=_content_type(key),
                Metadata={SHA256_METADATA: digest.hex()},
                **_CREATE_ONLY if create_only else {},
            )
        return self._info(key, len(data), response, digest.hex())

    def _put_multipart(
        self, key: str, size: int, read: Reader, progress: Progress, *, create_only: bool = False
    ) -> ObjectInfo:
        part_size = max(self.transfer.part_size, -(-size // MAX_PARTS // MiB) * MiB)
        whole = hashlib.sha256()
        parts = []
        for number, offset in enumerate(range(0, size, part_size), start=1):
            data = read(offset, min(part_size, size - offset))
            whole.update(data)
            parts.append(_Part(number, offset, len(data), hashlib.sha256(data).digest()))
        sha256 = whole.hexdigest()

        upload_id, etags = self._resumable_upload(key, parts, read)
        if upload_id is None:
            with self._errors(key, "s3:PutObject"):
                upload_id = self.client.create_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.prefix + key,
                    ChecksumAlgorithm="SHA256",
                    ContentType=_content_type(key),
                    Metadata={SHA256_METADATA: sha256},
                )["UploadId"]
        else:
            progress(sum(part.size for part in parts if part.number in etags))
        missing = [part for part in parts if part.number not in etags]
        etags.update(self._upload_parts(key, upload_id, missing, read, progress))

        try:
            with self._errors(key, "s3:PutObject"):
                response = self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.prefix + key,
                    UploadId=upload_id,
                    MultipartUpload={
                        "Parts": [
                            {
                                "PartNumber": p.number,
                                "ETag": etags[p.number],
                                "ChecksumSHA256": _b64(p.sha256),
                            }
                            for p in parts
                        ]
                    },
                    **_CREATE_ONLY if create_only else {},
                )
        except ObjectExistsError:
            with contextlib.suppress(StorageError), self._errors(key, "s3:AbortMultipartUpload"):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.prefix + key, UploadId=upload_id
                )
            raise
        if len(etags) > len(missing):
            # The resumed upload was created with the metadata of whatever was being uploaded back then.
            response = self._ensure_sha256(key, sha256) or response
        return self._info(key, size, response, sha256)

    def _resumable_upload(
        self, key: str, parts: list[_Part], read: Reader
    ) -> tuple[str | None, dict[int, str]]:
        """The unfinished upload of ``key`` with the most parts matching ``parts``, and their ETags."""
        full_key = self.prefix + key
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            with self._errors(key, "s3:ListBucketMultipartUploads"):
                uploads = [
                    upload
                    for page in paginator.paginate(Bucket=self.bucket, Prefix=full_key)
                    for upload in page.get("Uploads", [])
                    if upload["Key"] == full_key
                ]
        except StorageError as exc:
            if isinstance(exc.__cause__, ClientError) and _code(exc.__cause__) in _DENIED:
                return None, {}  # a policy may allow uploads without listing them: start afresh
            raise
        best: tuple[str | None, dict[int, str]] = (None, {})
        for upload in sorted(uploads, key=lambda u: u["Initiated"], reverse=True):
            matching = self._matching_parts(key, upload["UploadId"], parts, read)
            if len(matching) > len(best[1]):
                best = (upload["UploadId"], matching)
        return best

    def _matching_parts(self, key: str, upload_id: str, parts: list[_Part], read: Reader) -> dict[int, str]:
        by_number = {part.number: part for part in parts}
        matching = {}
        paginator = self.client.get_paginator("list_parts")
        with self._errors(key, "s3:ListMultipartUploadParts"):
            for page in paginator.paginate(Bucket=self.bucket, Key=self.prefix + key, UploadId=upload_id):
                for uploaded in page.get("Parts", []):
                    part = by_number.get(uploaded["PartNumber"])
                    if part is None or uploaded["Size"] != part.size:
                        continue
                    if "ChecksumSHA256" in uploaded:
                        same = base64.b64decode(uploaded["ChecksumSHA256"]) == part.sha256
                    else:  # servers that keep no part checksum: the ETag of an unencrypted part is its MD5
                        same = (
                            uploaded["ETag"].strip('"')
                            == hashlib.md5(read(part.offset, part.size)).hexdigest()
                        )
                    if same:
                        matching[part.number] = uploaded["ETag"]
        return matching

    def _upload_parts(
        self, key: str, upload_id: str, parts: list[_Part], read: Reader, progress: Progress
    ) -> dict[int, str]:
        def upload(part: _Part) -> str:
            data = read(part.offset, part.size)
            with self._errors(key, "s3:PutObject"):
                return self.client.upload_part(
                    Bucket=self.bucket,
                    Key=self.prefix + key,
                    UploadId=upload_id,
                    PartNumber=part.number,
                    Body=data,
                    ChecksumSHA256=_b64(part.sha256),
                )["ETag"]

        etags: dict[int, str] = {}
        if not parts:
            return etags
        with ThreadPoolExecutor(min(self.transfer.max_concurrency, len(parts))) as pool:
            futures = {pool.submit(upload, part): part for part in parts}
            try:
                for future in as_completed(futures):
                    part = futures[future]
                    etags[part.number] = future.result()
                    progress(part.size)
            except BaseException:
                # Parts not started yet are dropped; the upload stays open so a later put resumes it.
                pool.shutdown(cancel_futures=True)
                raise
        return etags

    def _ensure_sha256(self, key: str, sha256: str) -> dict[str, Any] | None:
        """Rewrite the object's SHA-256 metadata if it is not ``sha256``; the copy's response if it was."""
        if self._head(key).sha256 == sha256:
            return None
        with self._errors(key, "s3:PutObject"):
            response = self.client.copy_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                CopySource={"Bucket": self.bucket, "Key": self.prefix + key},
                ContentType=_content_type(key),
                Metadata={SHA256_METADATA: sha256},
                MetadataDirective="REPLACE",
                ChecksumAlgorithm="SHA256",  # a fresh full-object checksum for the rewritten object
            )
        return {**response, **response["CopyObjectResult"]}

    def _info(self, key: str, size: int, response: Any, sha256: str | None = None) -> ObjectInfo:
        """What a HEAD, GET, PUT or copy response tells of ``key``."""
        return ObjectInfo(
            uri=self.uri(key),
            key=key,
            size=size,
            etag=response.get("ETag", "").strip('"') or None,
            modified=response.get("LastModified"),
            version_id=_version(response),
            sha256=sha256,
        )

    @contextlib.contextmanager
    def _errors(self, key: str | None, action: str) -> Iterator[None]:
        """Turn botocore (and urllib3) errors into :class:`StorageError` messages naming the bucket, the key
        and a remedy, ``transient`` when botocore gave up on what a later retry may get through."""
        try:
            yield
        except ClientError as exc:
            raise self._client_error(exc, key, action) from exc
        except NoCredentialsError as exc:
            raise StorageError(
                f"no AWS credentials to access {self._where(key)}: set AWS_PROFILE or configure credentials"
            ) from exc
        except (BotoCoreError, HTTPError) as exc:
            if is_endpoint_unreachable(exc):
                raise EndpointUnreachableError(
                    f"cannot access {self._where(key)}: {exc}: {unreachable_hint('S3')}"
                ) from exc
            # a read that timed out twice: the endpoint takes connections but does not answer
            hint = f": {unreachable_hint('S3')}" if isinstance(exc, ReadTimeoutError) else ""
            raise StorageError(
                f"cannot access {self._where(key)}: {exc}{hint}", transient=is_transient_aws_error(exc)
            ) from exc

    def _client_error(self, exc: ClientError, key: str | None, action: str) -> StorageError:
        code = _code(exc)
        where = self._where(key)
        if code == "NoSuchBucket" or (key is None and code in _MISSING):
            region = self.client.meta.region_name
            return BucketNotFoundError(
                f"S3 bucket {self.bucket!r} does not exist (accessing {where}): "
                f"check the bucket name and region (client region: {region})"
            )
        if code in _MISSING:
            return ObjectNotFoundError(f"{where} does not exist (bucket {self.bucket!r}, key {key!r})")
        if code == "PreconditionFailed":  # only create-only writes send a condition
            return ObjectExistsError(f"{where} already exists (a create-only write)")
        if code == "ConditionalRequestConflict":  # 409: another conditional write to the key was in flight
            return StorageError(f"a concurrent write to {where} was in flight; try again", transient=True)
        if code in _DENIED:
            arn = f"arn:aws:s3:::{self.bucket}" + (
                f"/{self.prefix}{key}" if key and action != "s3:ListBucket" else ""
            )
            return StorageError(
                f"access denied to {where} (bucket {self.bucket!r}, key {key!r}): "
                f"check the IAM policy allows {action} on {arn}, and the bucket policy"
            )
        message = exc.response.get("Error", {}).get("Message", "")
        return StorageError(
            f"S3 error on {where}: {code} {message}".rstrip(), transient=is_transient_aws_error(exc)
        )

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}" if key else self.root_uri


_MISSING = frozenset({"NoSuchKey", "NotFound", "404"})
_CREATE_ONLY = {"IfNoneMatch": "*"}
""":meth:`S3Storage.put_new`'s condition on PutObject and CompleteMultipartUpload: no object at the key."""
_DENIED = frozenset({"AccessDenied", "Forbidden", "403"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _invalid_range(exc: StorageError) -> bool:
    return isinstance(exc.__cause__, ClientError) and _code(exc.__cause__) == "InvalidRange"


def _xml_error(body: bytes) -> dict[str, str]:
    """``Code`` and ``Message`` of an S3 XML error body (``<Error><Code>NoSuchKey</Code>...``); empty if none."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return {}
    return {field: root.findtext(field) or "" for field in ("Code", "Message")}


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def _version(response: dict[str, Any]) -> str | None:
    version = response.get("VersionId")
    return None if version in (None, "null") else version


def _stored_sha256(response: dict[str, Any]) -> str | None:
    """The hex SHA-256 of a whole object from its metadata, or from a full-object SHA-256 checksum."""
    stored = response.get("Metadata", {}).get(SHA256_METADATA, "")
    if len(stored) == 64 and all(ch in "0123456789abcdef" for ch in stored):
        return stored
    if response.get("ChecksumType") == "FULL_OBJECT" and "ChecksumSHA256" in response:
        return base64.b64decode(response["ChecksumSHA256"]).hex()
    return None


__all__ = [
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "PRESIGNED_SECONDS",
    "SHA256_METADATA",
    "MiB",
    "Reader",
    "S3Storage",
    "TransferOptions",
]
