"""Transient S3 errors are classified where they arise, so a step job retries them; others fail at once.

Faults are injected on real boto3 clients against moto through botocore's ``before-send`` event, which
runs before moto answers: a handler that returns a response or raises replaces the HTTP exchange. What moto
ignores, hence the injection: it never throttles, never answers 5xx, never times out or drops a connection,
and the attempts a fault replaced never reach it. It also ignores the client's retry settings, which botocore
applies itself: the tests count the requests botocore sent, so what reaches panopipe is what is left after
botocore gave up (standard mode retries throttling codes, 500/502/503/504, timeouts and connection errors,
but not a 429 ``TooManyRequests``).
"""

from __future__ import annotations

import errno
import io
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.endpoint import Endpoint
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.hooks import first_non_none_response
from PIL import Image as PILImage
from urllib3.exceptions import ProtocolError

from panopipe.config import Settings
from panopipe.errors import EndpointUnreachableError, ObjectNotFoundError, StorageError
from panopipe.steps.base import JobSpec
from panopipe.steps.registry import execute_job
from panopipe.storage import FolderStorage, aws_clients
from panopipe.storage.base import os_storage_error
from panopipe.storage.s3 import S3Storage
from panopipe.sync import sync_folder

from .conftest import BUCKET, PREFIX

Fault = Callable[[], AWSResponse]
"""Answers (or raises) in place of S3."""


class _Raw:
    """The raw stream of an HTTP response: its body, or a connection reset while it is read."""

    def __init__(self, body: bytes | None) -> None:
        self.body = body

    def stream(self, **_kwargs: object) -> list[bytes]:
        return [self.read()]

    def read(self, *_args: object) -> bytes:
        if self.body is None:
            raise ProtocolError("Connection broken: ConnectionResetError(104, 'Connection reset by peer')")
        body, self.body = self.body, b""
        return body


def error(status: int, code: str) -> Fault:
    body = f"<Error><Code>{code}</Code><Message>Injected.</Message></Error>".encode()
    return lambda: AWSResponse("", status, {}, _Raw(body))


def raises(exception: type[Exception]) -> Fault:
    def fault() -> AWSResponse:
        raise exception(endpoint_url="https://s3.amazonaws.com")

    return fault


def cut_body() -> AWSResponse:
    return AWSResponse("", 200, {"Content-Length": "10"}, _Raw(None))


class Faults:
    """Answer the next ``count`` requests of ``operation`` with ``fault``; count every request sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._pending: dict[str, list[Fault]] = {}

    def inject(self, operation: str, fault: Fault, count: int) -> None:
        self._pending.setdefault(operation, []).extend([fault] * count)

    def __call__(self, request: object, event_name: str, **_kwargs: object) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        self.sent.append(operation)
        pending = self._pending.get(operation)
        return pending.pop(0)() if pending else None


@pytest.fixture
def faults(s3) -> Faults:
    return Faults()


def storage_with_attempts(faults: Faults, attempts: int) -> S3Storage:
    """Storage over a real client under moto whose botocore makes ``attempts`` attempts per call, ``faults``
    first; it holds ``a.jpg`` (``0123456789``), and ``faults`` has counted no request yet."""
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}),
    )
    client.meta.events.register_first("before-send.s3", faults)
    storage = S3Storage(BUCKET, PREFIX, s3_client=client)
    storage.put("a.jpg", b"0123456789")
    faults.sent.clear()
    return storage


TRANSIENT = [
    pytest.param(error(503, "SlowDown"), id="503 SlowDown"),
    pytest.param(error(500, "InternalError"), id="500 InternalError"),
    pytest.param(error(503, "ServiceUnavailable"), id="503 ServiceUnavailable"),
    pytest.param(error(400, "RequestTimeout"), id="400 RequestTimeout"),
    pytest.param(raises(ReadTimeoutError), id="read timeout"),
    pytest.param(raises(ConnectionClosedError), id="connection reset"),
]


@pytest.mark.parametrize("fault", TRANSIENT)
def test_what_botocore_gave_up_on_reaches_panopipe_as_transient(faults: Faults, fault: Fault) -> None:
    storage = storage_with_attempts(faults, 2)
    faults.inject("GetObject", fault, 2)

    with pytest.raises(StorageError) as raised:
        storage.get("a.jpg")

    assert raised.value.transient, str(raised.value)
    assert faults.sent == ["GetObject", "GetObject"], "botocore tried twice, then gave up"
    assert storage.get("a.jpg") == b"0123456789", "the next attempt gets through"


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(raises(EndpointConnectionError), id="connection refused"),
        pytest.param(raises(ConnectTimeoutError), id="connect timeout"),
    ],
)
def test_an_endpoint_botocore_could_not_reach_is_not_tried_again(faults: Faults, fault: Fault) -> None:
    """botocore tried to connect its attempts, with backoff: a job that tried again would wait through them
    again (27 s a job against a stopped server), and so would every other call."""
    storage = storage_with_attempts(faults, 2)
    faults.inject("GetObject", fault, 2)

    with pytest.raises(
        EndpointUnreachableError, match="check that the S3 endpoint is up and reachable"
    ) as raised:
        storage.get("a.jpg")

    assert not raised.value.transient
    assert faults.sent == ["GetObject", "GetObject"]


@pytest.fixture
def own_storage(faults: Faults) -> Iterator[S3Storage]:
    """Storage over panopipe's own S3 client (``s3_client``, shared: ``faults`` leave it afterwards) under
    moto, ``faults`` first; it holds ``a.jpg`` (``0123456789``), and ``faults`` has counted no request yet."""
    client = aws_clients.s3_client(Settings())
    client.meta.events.register_first("before-send.s3", faults)
    try:
        storage = S3Storage(BUCKET, PREFIX, s3_client=client)
        storage.put("a.jpg", b"0123456789")
        faults.sent.clear()
        yield storage
    finally:
        client.meta.events.unregister("before-send.s3", faults)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(raises(EndpointConnectionError), id="connection refused"),
        pytest.param(raises(ConnectTimeoutError), id="connect timeout"),
    ],
)
def test_a_call_that_cannot_connect_is_tried_once_more_not_through_every_retry(
    own_storage: S3Storage, faults: Faults, fault: Fault
) -> None:
    """A dead endpoint had been tried through every one of botocore's retries, with backoff, before a job,
    ingest or sync knew it unreachable: 15 s when it refused, over a minute when it did not answer."""
    faults.inject("GetObject", fault, aws_clients.MAX_RETRIES + 1)

    with pytest.raises(EndpointUnreachableError):
        own_storage.get("a.jpg")

    assert faults.sent == ["GetObject"] * (aws_clients.CONNECT_RETRIES + 1)


def test_a_lambda_runtimes_older_botocore_stops_trying_too(
    own_storage: S3Storage, faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Lambda runtime's botocore (before 1.43.5) took any answer of a needs-retry handler but ``None`` for a
    delay: a handler answering ``False`` to stop made it retry at once, for as long as the endpoint was dead."""

    def needs_retry_before_1_43_5(
        self: Endpoint,
        attempts: int,
        operation_model: Any,
        request_dict: Any,
        response: Any = None,
        caught_exception: Any = None,
    ) -> bool:
        service = operation_model.service_model.service_id.hyphenize()
        delay = first_non_none_response(
            self._event_emitter.emit(
                f"needs-retry.{service}.{operation_model.name}",
                response=response,
                endpoint=self,
                operation=operation_model,
                attempts=attempts,
                caught_exception=caught_exception,
                request_dict=request_dict,
            )
        )
        if delay is None:
            return False
        time.sleep(delay)
        return True

    monkeypatch.setattr(Endpoint, "_needs_retry", needs_retry_before_1_43_5)
    faults.inject("GetObject", raises(EndpointConnectionError), aws_clients.MAX_RETRIES + 1)

    with pytest.raises(EndpointUnreachableError):
        own_storage.get("a.jpg")

    assert faults.sent == ["GetObject"] * (aws_clients.CONNECT_RETRIES + 1)


def test_a_call_without_an_answer_is_tried_once_more_and_fails_transient(
    own_storage: S3Storage, faults: Faults
) -> None:
    """An endpoint that took connections and never answered had kept an ingest waiting 6 minutes: botocore's
    60 s read timeout, six times. Its call now fails after two reads of READ_TIMEOUT_S, transient: the job
    layer may try it later."""
    faults.inject("GetObject", raises(ReadTimeoutError), aws_clients.MAX_RETRIES + 1)

    with pytest.raises(StorageError) as raised:
        own_storage.get("a.jpg")

    assert raised.value.transient, str(raised.value)
    assert str(raised.value).endswith(aws_clients.unreachable_hint("S3")), str(raised.value)
    assert faults.sent == ["GetObject"] * (aws_clients.CONNECT_RETRIES + 1)
    assert own_storage.client.meta.config.read_timeout == aws_clients.READ_TIMEOUT_S


def test_other_transient_errors_keep_botocores_retries(own_storage: S3Storage, faults: Faults) -> None:
    faults.inject("GetObject", raises(ConnectionClosedError), aws_clients.CONNECT_RETRIES + 1)

    assert own_storage.get("a.jpg") == b"0123456789"
    assert faults.sent == ["GetObject"] * (aws_clients.CONNECT_RETRIES + 2)


def test_sync_stops_once_the_endpoint_cannot_be_reached(faults: Faults, tmp_path) -> None:
    """The server stopped during a sync: one error for the sync, not one per file after botocore's retries."""
    storage = storage_with_attempts(faults, 1)
    for n in range(5):
        (tmp_path / f"{n}.jpg").write_bytes(b"x" * (n + 1))
    refused = raises(EndpointConnectionError)

    def refused_late() -> AWSResponse:  # as after botocore's retries, not before the sync sees the first
        time.sleep(0.2)
        return refused()

    faults.inject("PutObject", refused_late, 5)

    with pytest.raises(EndpointUnreachableError):
        sync_folder(tmp_path, storage, workers=1)

    assert faults.sent.count("PutObject") <= 2, (
        "the failed file's, and the next one the worker took meanwhile"
    )


def test_throttling_botocore_does_not_retry_is_transient_too(faults: Faults) -> None:
    storage = storage_with_attempts(faults, 3)
    faults.inject("PutObject", error(429, "TooManyRequests"), 1)

    with pytest.raises(StorageError, match="TooManyRequests") as raised:
        storage.put("a.jpg", b"y")

    assert raised.value.transient and faults.sent == ["PutObject"]


def test_a_connection_reset_in_the_body_is_transient(faults: Faults) -> None:
    """botocore does not retry a body cut short: the call had returned. The presigned ranged GET asks boto3."""
    storage = storage_with_attempts(faults, 3)
    faults.inject("GetObject", cut_body, 1)

    with pytest.raises(StorageError, match="Connection broken") as whole:
        storage.get("a.jpg")
    assert whole.value.transient
    faults.inject("GetObject", cut_body, 1)
    assert storage.read_range("a.jpg", 2, 3) == b"234", "the presigned GET was cut, boto3's was not"
    faults.inject("GetObject", cut_body, 2)
    with pytest.raises(StorageError) as ranged:
        storage.read_range("a.jpg", 2, 3)
    assert ranged.value.transient


def test_a_throttled_presigned_ranged_get_is_transient_once_boto3_gave_up(faults: Faults) -> None:
    storage = storage_with_attempts(faults, 2)
    faults.inject("GetObject", error(503, "SlowDown"), 3)

    with pytest.raises(StorageError, match="SlowDown") as raised:
        storage.read_start("a.jpg", 4)

    assert raised.value.transient
    assert faults.sent == ["GetObject"] * 3, "presigned, then boto3's two attempts"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param(error(403, "AccessDenied"), StorageError, id="403 AccessDenied"),
        pytest.param(error(400, "InvalidArgument"), StorageError, id="400 InvalidArgument"),
        pytest.param(None, ObjectNotFoundError, id="NoSuchKey (moto's own answer)"),
    ],
)
def test_denials_and_missing_keys_are_not_transient(
    faults: Faults, fault: Fault | None, expected: type
) -> None:
    storage = storage_with_attempts(faults, 3)
    if fault is not None:
        faults.inject("GetObject", fault, 3)

    with pytest.raises(StorageError) as raised:
        storage.get("a.jpg" if fault else "missing.jpg")

    assert type(raised.value) is expected and not raised.value.transient
    assert faults.sent == ["GetObject"], "botocore did not retry it either"


@pytest.fixture
def step_faults(s3, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    """Faults injected into every client built while the test runs, as the steps build their own."""
    faults = Faults()
    first = ("before-send", faults, botocore.handlers.REGISTER_FIRST)
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [first, *botocore.handlers.BUILTIN_HANDLERS])
    monkeypatch.setattr(aws_clients, "_S3_CLIENTS", {})  # a process reuses its clients: build them anew here
    yield faults


def derive_job(s3) -> JobSpec:
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 32), "teal").save(buffer, "JPEG")
    s3.put_object(Bucket=BUCKET, Key="in/pano.jpg", Body=buffer.getvalue())
    payload = {
        "params": {"thumbnail": 16, "preview": 32, "quality": 85},
        "inputs": [f"s3://{BUCKET}/in/pano.jpg"],
        "outputs": {"thumbnail": f"s3://{BUCKET}/out/thumb.jpg", "preview": f"s3://{BUCKET}/out/preview.jpg"},
        "metadata": {"captured_at": None, "utc_offset_minutes": None, "gps_img_direction": None},
    }
    return JobSpec("job-1", "derive", "image:1", "f" * 64, payload)


def test_a_step_job_retries_a_throttled_read_and_succeeds(s3, step_faults: Faults) -> None:
    job = derive_job(s3)
    step_faults.inject("GetObject", error(429, "TooManyRequests"), 1)

    outcome = execute_job(job, retries=2, backoff_s=0.01)

    assert (outcome.status, outcome.attempts) == ("succeeded", 2), outcome.error
    assert "attempt 1: transient error, retrying: S3 error on" in outcome.log
    assert step_faults.sent.count("GetObject") == 2
    assert {o.name for o in outcome.outputs} == {"thumbnail", "preview"}
    assert s3.head_object(Bucket=BUCKET, Key="out/thumb.jpg")["ContentLength"] > 0


def test_a_step_job_fails_at_once_on_a_denial(s3, step_faults: Faults) -> None:
    job = derive_job(s3)
    step_faults.inject("GetObject", error(403, "AccessDenied"), 5)

    outcome = execute_job(job, retries=2, backoff_s=0.01)

    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert outcome.error.startswith(f"access denied to s3://{BUCKET}/in/pano.jpg")
    assert step_faults.sent.count("GetObject") == 1


@pytest.mark.parametrize(
    ("number", "transient"),
    [
        (errno.EAGAIN, True),
        (errno.EINTR, True),
        (errno.EBUSY, True),
        (errno.ENOSPC, False),
        (errno.EACCES, False),
    ],
)
def test_local_file_errors_are_transient_when_busy_or_interrupted(number: int, transient: bool) -> None:
    error = os_storage_error("write", "/data/out.jpg", OSError(number, os.strerror(number)))

    assert error.transient is transient
    assert str(error) == f"cannot write /data/out.jpg: {os.strerror(number)}"


def test_a_folder_read_that_cannot_work_is_not_transient(tmp_path) -> None:
    (tmp_path / "dir.jpg").mkdir()

    with pytest.raises(StorageError, match=r"cannot read .*dir\.jpg: Is a directory") as raised:
        FolderStorage(tmp_path).get("dir.jpg")

    assert not raised.value.transient


def test_a_conflicting_conditional_write_in_flight_is_transient(faults: Faults) -> None:
    """AWS answers a create-only write with 409 ConditionalRequestConflict while another conditional write
    to the key is in flight; moto never does (it checks and stores without a lock)."""
    storage = storage_with_attempts(faults, 1)
    faults.inject("PutObject", error(409, "ConditionalRequestConflict"), 1)

    with pytest.raises(StorageError, match="concurrent write") as raised:
        storage.put_new("b.jpg", b"new")

    assert raised.value.transient and faults.sent == ["PutObject"]
