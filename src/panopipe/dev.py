"""Local parity with the AWS deployment: moto's server for S3 and SQS, wired as the stack wires them, and
the queue worker that feeds SQS batches to the same :class:`~panopipe.events.handler.EventHandler` Lambda runs.

The stack: an input bucket whose notification sends ``ObjectCreated:*``, ``ObjectRemoved:*`` and
``LifecycleExpiration:*`` events for ``.jpg`` keys under the input prefix (only: panopipe's outputs go under the output prefix and never notify) to
an SQS queue; the queue's redrive policy moves a message to the dead-letter queue after ``max_receive_count``
receives. In AWS, the same resources plus a Lambda event source mapping with ``ReportBatchItemFailures``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from panopipe.config import ENV_BUCKETS, ENV_OUTPUT_PREFIX, ENV_S3_ENDPOINT_URL
from panopipe.errors import ConfigError, EndpointUnreachableError, EventError, PanopipeError
from panopipe.storage.aws_clients import (
    aws_client,
    is_endpoint_unreachable,
    is_transient_aws_error,
    unreachable_hint,
)

if TYPE_CHECKING:
    from panopipe.events.handler import EventHandler, HandleReport

T = TypeVar("T")

ENV_SQS_ENDPOINT_URL = "AWS_ENDPOINT_URL_SQS"  # boto3's own service-specific endpoint variables
ENV_BOTO_S3_ENDPOINT_URL = "AWS_ENDPOINT_URL_S3"
DEFAULT_REGION = "us-east-1"
BATCH_SIZE = 10
START_TIMEOUT_S = 30.0
"""How long moto's server may take to listen before ``dev up`` gives up."""
GIVE_UP_S = 300.0
"""How long the queue worker tries SQS again while it cannot be reached (or fails on its side) before it stops."""
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
"""The queue worker's wait before trying SQS again: ``RETRY_FIRST_S``, doubling up to ``RETRY_MAX_S``."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalStack:
    """The local resources: endpoint, bucket, prefixes and queues."""

    endpoint_url: str
    bucket: str
    input_prefix: str
    output_prefix: str
    queue_url: str
    dead_letter_queue_url: str
    region: str = DEFAULT_REGION

    @property
    def output_uri(self) -> str:
        """Where the pipeline writes outputs (``PANOPIPE_OUTPUT_PREFIX``)."""
        return f"s3://{self.bucket}/{self.output_prefix.rstrip('/')}"

    def environment(self) -> dict[str, str]:
        """The environment variables that point panopipe and boto3 at this stack."""
        return {
            ENV_S3_ENDPOINT_URL: self.endpoint_url,
            ENV_SQS_ENDPOINT_URL: self.endpoint_url,
            ENV_BOTO_S3_ENDPOINT_URL: self.endpoint_url,
            ENV_BUCKETS: self.bucket,
            ENV_OUTPUT_PREFIX: self.output_uri,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }


def start_moto_server(port: int = 0, *, log_requests: bool = True) -> tuple[Any, str]:
    """Start moto's server on 127.0.0.1 (``port`` 0: a free one) in a thread; the server and its endpoint.
    Unless ``log_requests``, its web server (werkzeug) logs no line per request on stderr."""
    try:
        from moto import backends
        from moto.s3 import notifications
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise ConfigError(
            f"moto's server is not installed ({exc}): pip install 'panopipe[dev]' (or 'moto[server]')"
        ) from None

    # moto writes event times without a zone; S3 writes UTC with a "Z", which the event parser requires.
    notifications._EVENT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
    # moto's dispatcher lists its own package folder (hundreds of stat calls) twice per request.
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    if port:
        _check_port(port)
    # verbose=False leaves werkzeug's access log on: its logger, when at NOTSET, is set to INFO at first use
    logging.getLogger("werkzeug").setLevel(logging.INFO if log_requests else logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    # moto's start() waits for its thread's server for ever, even once the thread has died of an error.
    starting = threading.Thread(target=server.start, daemon=True)
    starting.start()
    starting.join(START_TIMEOUT_S)
    if starting.is_alive():
        raise ConfigError(f"moto's server did not start on 127.0.0.1:{port} within {START_TIMEOUT_S:g} s")
    host, bound = server.get_host_and_port()
    return server, f"http://{host}:{bound}"


def _check_port(port: int) -> None:
    """:class:`ConfigError` unless a server may listen on 127.0.0.1:``port`` (as moto's would: address reuse
    on, so a port whose last connections are closing counts as free)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} is in use: pick another with --port (0: a free one)"
                ) from None
            raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None


def spawn_moto_server(port: int = 0) -> tuple[subprocess.Popen[str], str]:
    """:func:`start_moto_server` in a child process, which does not compete with this one for the GIL (as
    S3 does not compete with a Lambda function); the process (``terminate()`` it) and the endpoint.

    The child also stops when this process exits (its standard input closes).
    """
    serve = (
        "import sys\n"
        "from panopipe.dev import start_moto_server\n"
        "from panopipe.errors import ConfigError\n"
        "try:\n"
        "    print(start_moto_server(int(sys.argv[1]))[1], flush=True)\n"
        "except ConfigError as exc:\n"
        "    print(f'error: {exc}', flush=True)\n"
        "    sys.exit(2)\n"
        "sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", serve, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # moto's request log
        text=True,
    )
    assert process.stdout is not None
    endpoint = process.stdout.readline().strip()
    if not endpoint or endpoint.startswith("error: "):
        process.wait()
        raise ConfigError(
            endpoint.removeprefix("error: ")
            or f"moto's server did not start (exit code {process.returncode}); is moto[server] installed?"
        )
    return process, endpoint


def create_stack(
    endpoint_url: str,
    *,
    bucket: str = "panopipe-dev",
    input_prefix: str = "incoming/",
    output_prefix: str = "panopipe-out/",
    max_receive_count: int = 5,
    visibility_timeout_s: int = 30,
    region: str = DEFAULT_REGION,
) -> LocalStack:
    """Create the bucket, the queue with its dead-letter queue, and the bucket notification at ``endpoint_url``,
    as the stack wires them (the same events and key filter); a bucket name or prefixes the stack would refuse
    (prefixes that overlap among them) are a :class:`ConfigError`, as in the stack."""
    import boto3

    from panopipe.aws.deploy import validate_parameters
    from panopipe.aws.stack.storage import IMAGE_SUFFIXES, NOTIFIED_EVENTS, check_prefixes, notification_rules

    check_prefixes(input_prefix, output_prefix)
    given = {"BucketName": bucket, "InputPrefix": input_prefix, "OutputPrefix": output_prefix}
    validate_parameters(given, require_all=False, current={})  # the stack's rules: S3 would refuse the name
    options = {"endpoint_url": endpoint_url, "region_name": region}
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3 = boto3.client("s3", **options, **credentials)
    sqs = boto3.client("sqs", **options, **credentials)
    s3.create_bucket(Bucket=bucket)
    dlq_url = sqs.create_queue(QueueName=f"{bucket}-events-dlq")["QueueUrl"]
    redrive = {"deadLetterTargetArn": _queue_arn(sqs, dlq_url), "maxReceiveCount": str(max_receive_count)}
    queue_url = sqs.create_queue(
        QueueName=f"{bucket}-events",
        Attributes={"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": str(visibility_timeout_s)},
    )["QueueUrl"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": _queue_arn(sqs, queue_url),
                    "Events": list(NOTIFIED_EVENTS),
                    "Filter": {"Key": {"FilterRules": notification_rules(input_prefix, suffix)}},
                }
                for suffix in IMAGE_SUFFIXES
            ]
        },
    )
    return LocalStack(endpoint_url, bucket, input_prefix, output_prefix, queue_url, dlq_url, region)


def _queue_arn(sqs: Any, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def queue_endpoint(queue_url: str) -> str | None:
    """The endpoint of ``queue_url`` when it is not AWS's (moto's server, LocalStack): its scheme and host, where
    the queue's calls must go (botocore sends them to the region's SQS endpoint, whatever the URL's host);
    ``None`` for an AWS queue, whose region's endpoint serves it, or when ``AWS_ENDPOINT_URL_SQS`` or
    ``AWS_ENDPOINT_URL`` names the endpoint (boto3 reads them)."""
    from urllib.parse import urlsplit

    parts = urlsplit(queue_url)
    host = parts.hostname or ""
    if any(os.environ.get(name) for name in (ENV_SQS_ENDPOINT_URL, "AWS_ENDPOINT_URL")):
        return None
    if parts.scheme not in ("http", "https") or not host or host.endswith(_AWS_DOMAINS):
        return None
    return f"{parts.scheme}://{parts.netloc}"


_AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


@dataclass(slots=True)
class WorkerReport:
    """What the worker did: polls, batches and messages received, acknowledged (deleted) and left for
    redelivery, the events' counts, the jobs run, whether Ctrl-C stopped it, and the error that did (``failure``:
    SQS unreachable past the give-up time, a queue that does not exist...)."""

    polls: int = 0
    batches: int = 0
    received: int = 0
    acknowledged: int = 0
    left: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"processed": 0, "skipped": 0, "failed": 0})
    jobs: dict[str, dict[str, int]] = field(default_factory=dict)
    interrupted: bool = False
    failure: PanopipeError | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "polls": self.polls,
            "batches": self.batches,
            "received": self.received,
            "acknowledged": self.acknowledged,
            "left": self.left,
            **self.counts,
            "jobs": self.jobs,
            "interrupted": self.interrupted,
            "error": None if self.failure is None else str(self.failure),
        }


def run_worker(
    handler: EventHandler,
    queue_url: str,
    *,
    sqs: Any = None,
    max_polls: int | None = None,
    wait_s: int = 20,
    give_up_s: float | None = GIVE_UP_S,
    on_start: Callable[[str], None] | None = None,
    on_batch: Callable[[int, HandleReport], None] | None = None,
    on_retry: Callable[[str, float], None] | None = None,
) -> WorkerReport:
    """Poll ``queue_url`` (long polling, batches of 10) and handle each batch as Lambda would.

    Acknowledged messages are deleted; failed ones are left to come back after the visibility timeout (and to
    move to the dead-letter queue after the redrive policy's receives). Runs ``max_polls`` polls, or until
    interrupted (Ctrl-C): then the report says so. ``on_start`` gets the SQS endpoint before the first poll,
    ``on_batch`` the number of messages and the handler's report of each batch. The SQS client is built from
    the handler's settings (region, profile).

    A blip does not stop it: a call to SQS that cannot connect, or that SQS fails on its side (throttling,
    server errors), is tried again after :data:`RETRY_FIRST_S`, doubling up to :data:`RETRY_MAX_S` (``on_retry``
    gets the error and the wait), until SQS has failed so for ``give_up_s`` (``None``: for ever). Then the
    worker stops with the report's ``failure`` an :class:`~panopipe.errors.EndpointUnreachableError`; any other
    error of SQS (no such queue, no credentials) stops it at once with an :class:`~panopipe.errors.EventError`,
    each naming the queue.
    """
    report = WorkerReport()
    calling = _Retried(queue_url, give_up_s, on_retry)
    try:
        sqs = sqs or aws_client("sqs", handler.settings, endpoint_url=queue_endpoint(queue_url))
        queue_arn = calling(lambda: _queue_arn(sqs, queue_url))
        if on_start is not None:
            on_start(sqs.meta.endpoint_url)
        while max_polls is None or report.polls < max_polls:
            received = calling(
                lambda: sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=BATCH_SIZE,
                    WaitTimeSeconds=wait_s,
                    AttributeNames=["All"],
                )
            )
            messages = received.get("Messages", [])
            report.polls += 1
            if messages:
                batch = _handle_batch(handler, sqs, calling, queue_url, queue_arn, messages, report)
                if on_batch is not None:
                    on_batch(len(messages), batch)
    except KeyboardInterrupt:  # Ctrl-C; a batch not yet acknowledged comes back after the visibility timeout
        report.interrupted = True
    except (EndpointUnreachableError, EventError) as exc:
        report.failure = exc
    return report


@dataclass(slots=True)
class _Retried:
    """Calls to the SQS queue ``queue_url``, tried again while SQS cannot be reached or fails on its side, for
    up to ``give_up_s`` since the first failure in a row (see :func:`run_worker`)."""

    queue_url: str
    give_up_s: float | None
    on_retry: Callable[[str, float], None] | None
    failing_since: float | None = None

    def __call__(self, call: Callable[[], T]) -> T:
        import botocore.exceptions

        wait = RETRY_FIRST_S
        while True:
            try:
                result = call()
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                unreachable = is_endpoint_unreachable(exc)
                hint = f": {unreachable_hint('SQS')}" if unreachable else ""
                message = f"cannot poll the queue {self.queue_url}: {exc}{hint}"
                if not (unreachable or is_transient_aws_error(exc)):
                    raise EventError(message) from None
                now = time.monotonic()
                since = self.failing_since = self.failing_since or now
                left = None if self.give_up_s is None else self.give_up_s - (now - since)
                if left is not None and left <= 0:
                    raise EndpointUnreachableError(
                        f"{message}; gave up after {now - since:.0f} s of failed polls"
                    ) from None
                wait = wait if left is None else min(wait, left)
                if self.on_retry is not None:
                    self.on_retry(message, wait)
                time.sleep(wait)
                wait = min(2 * wait, RETRY_MAX_S)
            else:
                self.failing_since = None
                return result


def _handle_batch(
    handler: EventHandler,
    sqs: Any,
    calling: _Retried,
    queue_url: str,
    queue_arn: str,
    messages: list[dict[str, Any]],
    report: WorkerReport,
) -> HandleReport:
    """Handle one received batch, delete the messages it acknowledged (``calling`` SQS), and add it to
    ``report``."""
    batch = handler.handle({"Records": [_lambda_record(m, queue_arn) for m in messages]})
    failed = {item["itemIdentifier"] for item in batch.batch_item_failures()["batchItemFailures"]}
    done = [m for m in messages if m["MessageId"] not in failed]
    if done:  # at most BATCH_SIZE, what one delete_message_batch takes
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
        calling(lambda: sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries))
    report.batches += 1
    report.received += len(messages)
    report.acknowledged += len(done)
    report.left += len(messages) - len(done)
    for name, value in batch.counts().items():
        report.counts[name] += value
    for step, statuses in batch.jobs.items():
        for status, n in statuses.items():
            report.jobs.setdefault(step, {}).setdefault(status, 0)
            report.jobs[step][status] += n
    return batch


def _lambda_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS message as the Lambda event source mapping delivers it."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }


__all__ = [
    "BATCH_SIZE",
    "DEFAULT_REGION",
    "ENV_BOTO_S3_ENDPOINT_URL",
    "ENV_SQS_ENDPOINT_URL",
    "GIVE_UP_S",
    "RETRY_FIRST_S",
    "RETRY_MAX_S",
    "START_TIMEOUT_S",
    "LocalStack",
    "WorkerReport",
    "create_stack",
    "queue_endpoint",
    "run_worker",
    "spawn_moto_server",
    "start_moto_server",
]
