"""The batch executor's calls to AWS Batch: what it submits, how it backs off, how few calls a poll makes.

S3 (manifests, results) is moto in-process. Batch is botocore's Stubber here, for what moto cannot produce:
moto's Batch never throttles (ThrottlingException) and never refuses a well-formed SubmitJob; the Stubber
also pins the exact requests (one SubmitJob per 10,000 children, one DescribeJobs per poll).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from moto import mock_aws
from moto.server import ThreadedMotoServer
from tests.conftest import free_port

from panopipe.catalog.types import new_id, utcnow
from panopipe.config import ENV_MANIFEST
from panopipe.errors import ConfigError, EndpointUnreachableError, PanopipeError
from panopipe.executors import batch as batch_module
from panopipe.executors.batch import BatchExecutor
from panopipe.executors.manifest import Submission
from panopipe.executors.throttle import RateLimiter, call_aws
from panopipe.steps.base import JobOutcome, JobSpec

WORK = "s3://work-bucket/out/_batch/"


@pytest.fixture
def stubbed(aws_env: None) -> Iterator[tuple[BatchExecutor, Stubber]]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="work-bucket")
        client = boto3.client("batch", region_name="us-east-1")
        with Stubber(client) as stubber:
            yield BatchExecutor("queue", "worker:1", WORK, chunk_jobs=2, batch_client=client), stubber
            stubber.assert_no_pending_responses()


def specs(count: int, step: str = "derive") -> list[JobSpec]:
    return [JobSpec(new_id(), step, f"image:{n}", f"fp{n}", {"n": n}) for n in range(count)]


def submit_request(size: int | None) -> dict[str, object]:
    request: dict[str, object] = {
        "jobName": ANY,
        "jobQueue": "queue",
        "jobDefinition": "worker:1",
        "containerOverrides": ANY,
    }
    if size is not None:
        request["arrayProperties"] = {"size": size}
    return request


def test_submit_backs_off_when_batch_throttles_then_succeeds(stubbed):
    executor, stubber = stubbed
    stubber.add_client_error("submit_job", "ThrottlingException", "Rate exceeded", 429)
    stubber.add_response("submit_job", {"jobName": "n", "jobId": "array-1"}, submit_request(3))

    handles = executor.submit(specs(5))

    assert executor.external_ids(handles) == ["array-1:0", "array-1:0", "array-1:1", "array-1:1", "array-1:2"]


def test_a_run_larger_than_10000_children_is_split_and_one_chunk_is_not_an_array(stubbed, monkeypatch):
    executor, stubber = stubbed
    monkeypatch.setattr(batch_module, "MAX_CHILDREN", 2)  # 10,000 in AWS; 5 jobs in chunks of 2 here
    jobs = specs(9)
    for number, size in enumerate((2, 2, None)):  # 4 + 4 + 1 jobs
        stubber.add_response("submit_job", {"jobName": "n", "jobId": f"a{number}"}, submit_request(size))

    handles = executor.submit(jobs)

    assert executor.external_ids(handles) == [
        "a0:0",
        "a0:0",
        "a0:1",
        "a0:1",
        "a1:0",
        "a1:0",
        "a1:1",
        "a1:1",
        "a2",
    ]


def test_a_refused_submission_is_a_config_error_at_once(stubbed):
    executor, stubber = stubbed
    stubber.add_client_error("submit_job", "ClientException", "Job queue queue does not exist", 400)

    with pytest.raises(ConfigError, match=r"AWS refused batch:SubmitJob: .*Job queue queue does not exist"):
        executor.submit(specs(1))

    # no job reads its manifest and chunks: deleted
    assert "Contents" not in boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="work-bucket")


def test_a_submission_left_behind_by_a_failed_submit_job_is_named_in_a_warning(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    # the network goes down between the manifest's upload and SubmitJob: S3 cannot delete it either
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("PANOPIPE_S3_ENDPOINT_URL", endpoint)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="work-bucket")
    client = boto3.client("batch", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
    client.meta.events.register("before-call.batch.SubmitJob", lambda **_: server.stop())
    executor = BatchExecutor("queue", "worker:1", WORK, batch_client=client)

    try:
        with pytest.raises(EndpointUnreachableError, match=r"^cannot reach AWS for batch:SubmitJob"):
            executor.submit(specs(1))
    finally:
        server.stop()  # again: stopping a stopped server returns at once

    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("panopipe")]
    assert len(warnings) == 1
    assert re.fullmatch(
        rf"a submission AWS Batch did not take is left at {WORK}panopipe-derive-[0-9TZ]+-[0-9a-f]{{6}}/: "
        rf"cannot delete it: cannot access {WORK}panopipe-derive-\S+/manifest\.json: .*"
        "check that the S3 endpoint is up and reachable",
        warnings[0],
    )


def test_a_job_reading_a_local_file_is_refused_before_any_manifest_or_submission(stubbed):
    # publish copies the thumbnail derive made under a local output (an earlier run on a laptop)
    executor, _ = stubbed
    publish = {
        "inputs": ["s3://work-bucket/out/apply-metadata/image/a/image-0123.jpg"],
        "derived": {"thumbnail": "/data/out/derive/image/a/thumbnail-0123.jpg"},
    }
    ready = JobSpec(new_id(), "publish", "image:b", "fp", {**publish, "derived": {}})
    jobs = [ready, JobSpec(new_id(), "publish", "image:a", "fp", publish)]

    with pytest.raises(ConfigError) as refused:
        executor.submit(jobs)

    assert str(refused.value) == (
        "the batch executor's workers read only s3:// inputs, and the publish job of image:a reads "
        "'/data/out/derive/image/a/thumbnail-0123.jpg': `panopipe sync` the captures to S3 and ingest from "
        "there (outputs of a local run: run their step again with an s3:// output and --force)"
    )
    assert "Contents" not in boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="work-bucket")
    executor.check([ready])  # every input in S3


def test_a_poll_is_one_describe_jobs_for_every_array_and_results_come_from_s3(stubbed):
    executor, stubber = stubbed
    first, second = specs(3), specs(2)
    for job_id, jobs in (("a1", first), ("a2", second)):
        stubber.add_response(
            "submit_job", {"jobName": "n", "jobId": job_id}, submit_request(None if len(jobs) < 3 else 2)
        )
    handles = executor.submit(first) + executor.submit(second)
    # The worker of a1's child 0 wrote its two results; a1's child 1 failed (Spot); a2 runs.
    submission = Submission.at(executor._arrays["a1"].submission.manifest_uri)
    now = utcnow()
    for spec in first[:2]:
        submission.write_result(spec.id, JobOutcome("succeeded", (), None, "", 1, now, now))
    summary = {"SUCCEEDED": 1, "FAILED": 1, "RUNNING": 0}
    stubber.add_response(
        "describe_jobs",
        {
            "jobs": [
                _job("a1", "FAILED", arrayProperties={"statusSummary": summary, "size": 2}),
                _job("a2", "RUNNING"),
            ]
        },
        {"jobs": ["a1", "a2"]},
    )
    failed_child = {
        "jobId": "a1:1",
        "jobName": "n",
        "status": "FAILED",
        "statusReason": "Host EC2 (instance i-1) terminated.",
    }
    stubber.add_response(
        "list_jobs", {"jobSummaryList": [failed_child]}, {"arrayJobId": "a1", "jobStatus": "FAILED"}
    )

    states = executor.describe(handles)

    assert [s.status for s in states] == ["succeeded", "succeeded", "failed", "running", "running"]
    assert states[2].outcome.error == "AWS Batch job a1:1 failed: Host EC2 (instance i-1) terminated."
    # Finished jobs are not asked about again: the next poll describes a2 only.
    stubber.add_response("describe_jobs", {"jobs": [_job("a2", "RUNNING")]}, {"jobs": ["a2"]})
    assert [s.status for s in executor.describe(handles)] == [
        "succeeded",
        "succeeded",
        "failed",
        "running",
        "running",
    ]


def _job(job_id: str, status: str, **fields: object) -> dict[str, object]:
    environment = [{"name": ENV_MANIFEST, "value": "unused"}]
    return {
        "jobId": job_id,
        "jobName": "n",
        "jobQueue": "queue",
        "jobDefinition": "worker:1",
        "status": status,
        "startedAt": 1,
        "container": {"environment": environment},
        **fields,
    }


def test_throttling_that_outlasts_the_attempts_fails_with_full_jitter_backoff():
    sleeps: list[float] = []
    error = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "SubmitJob")

    def throttled() -> None:
        raise error

    with pytest.raises(PanopipeError, match=r"AWS kept refusing batch:SubmitJob \(4 attempts\)"):
        call_aws("batch:SubmitJob", throttled, attempts=4, base_s=0.5, cap_s=1.5, sleep=sleeps.append)

    assert len(sleeps) == 3 and all(0 <= s <= cap for s, cap in zip(sleeps, (1.0, 1.5, 1.5), strict=True))


def test_an_endpoint_that_cannot_be_reached_fails_at_once_not_as_throttling(aws_env: None):
    # a closed port (a wrong AWS_ENDPOINT_URL_BATCH, no network): botocore's own retries (one here) and no more
    endpoint = f"http://127.0.0.1:{free_port()}"
    client = boto3.client("batch", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
    sleeps: list[float] = []
    submit = partial(client.submit_job, jobName="n", jobQueue="queue", jobDefinition="worker:1")

    with pytest.raises(EndpointUnreachableError) as unreachable:
        call_aws("batch:SubmitJob", submit, sleep=sleeps.append)

    assert sleeps == [] and unreachable.value.exit_code == 4
    assert str(unreachable.value) == (
        f'cannot reach AWS for batch:SubmitJob: Could not connect to the endpoint URL: "{endpoint}/v1/submitjob": '
        "check the network, the region and AWS_ENDPOINT_URL_BATCH (or AWS_ENDPOINT_URL) if set"
    )


def test_the_rate_limiter_spaces_calls_beyond_its_burst():
    now = [0.0]
    waits: list[float] = []
    limiter = RateLimiter(40.0, burst=2, clock=lambda: now[0])

    for _ in range(4):
        limiter.acquire(waits.append)

    assert waits == pytest.approx([0.025, 0.05])
