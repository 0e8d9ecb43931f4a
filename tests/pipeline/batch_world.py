"""AWS Batch on moto for the batch executor's tests, and a stand-in for the containers moto cannot start.

What moto ignores, and how these tests make up for it:

- moto's Batch without Docker (``{"batch": {"use_docker": false}}``) marks every job SUCCEEDED the moment it is
  submitted and runs nothing. :func:`leave_running` keeps submitted jobs RUNNING instead; :class:`Containers`
  plays the containers: it runs ``panopipe worker run`` for each child (the command the job definition
  starts) and then sets the child's status in moto's own job model (SUCCEEDED, or FAILED with a status
  reason and exit code, as Batch reports a reclaimed Spot host or a killed container).
- moto's ``ListJobs`` gives no ``arrayProperties.index``; the executor reads the index from the child's id.
- The worker runs its jobs in a process pool (the local executor's), whose processes write outputs to S3:
  in-process ``mock_aws`` state does not cross into them, so these tests use moto's threaded server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto.batch.models import batch_backends
from moto.batch_simple.models import BatchSimpleBackend
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

from panopipe.catalog import Catalog
from panopipe.config import ENV_MANIFEST, Settings
from panopipe.executors.worker import run_chunk
from panopipe.storage import open_storage
from panopipe.sync import sync_capture

REGION = "us-east-1"
BUCKET = "panopipe-batch"


def leave_running(self: BatchSimpleBackend, include_start_attempt: bool, job: Any) -> None:
    """In place of moto's ``_mark_job_as_finished``: the job is known, RUNNING, and nothing runs it."""
    self.backend._jobs[job.job_id] = job
    job.status = "RUNNING"


@dataclass
class World:
    """The moto server's endpoint and the Batch queue and job definition the executor submits to."""

    endpoint: str
    queue: str
    definition: str

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def arrays(self) -> list[dict[str, Any]]:
        """Every submitted job that is not an array child, oldest first, as DescribeJobs shows it."""
        jobs = batch_backends[DEFAULT_ACCOUNT_ID][REGION]._jobs
        ids = [job_id for job_id in jobs if ":" not in job_id]
        found = self.client("batch").describe_jobs(jobs=ids)["jobs"] if ids else []
        return sorted(found, key=lambda job: job["createdAt"])

    def s3_keys(self, prefix: str = "") -> list[str]:
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def set_status(
    job_id: str, *, success: bool, reason: str | None = None, exit_code: int | None = None
) -> None:
    """End a job in moto's model the way Batch ends a container."""
    job = batch_backends[DEFAULT_ACCOUNT_ID][REGION]._jobs[job_id]
    job.job_stopped_reason = reason
    job.exit_code = exit_code
    job._mark_stopped(success=success)


def to_s3(catalog: Catalog, folder: Path) -> None:
    """Upload the capture folder to the bucket and point the catalog at the copies (``panopipe sync``), as
    captures must be before a worker on Fargate can read them (the batch executor refuses local inputs)."""
    report = sync_capture(catalog, folder, open_storage(f"s3://{BUCKET}/captures"), Settings())
    assert report.ok and not report.not_repointed, report


def manifest_of(array: dict[str, Any]) -> str:
    return next(e["value"] for e in array["container"]["environment"] if e["name"] == ENV_MANIFEST)


class Containers:
    """Runs the children of the submitted jobs, as Batch's containers would (one worker per child)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.done: set[str] = set()

    def run(self, *, die: dict[int, tuple[str, int]] | None = None, no_result: set[int] = frozenset()) -> int:
        """Run every child not run yet: ``die`` children fail with (status reason, exit code) without running,
        ``no_result`` children succeed without running; the number of children handled."""
        handled = 0
        for array in self.world.arrays():
            size = array.get("arrayProperties", {}).get("size", 0)
            children = [f"{array['jobId']}:{i}" for i in range(size)] if size else [array["jobId"]]
            for index, child in enumerate(children):
                if child in self.done:
                    continue
                self.done.add(child)
                handled += 1
                if die and index in die:
                    reason, code = die[index]
                    set_status(child, success=False, reason=reason, exit_code=code)
                    continue
                if index not in no_result:
                    report = run_chunk(manifest_of(array), index, workers=1)
                    assert not report.stopped
                set_status(child, success=True, exit_code=0)
        return handled


def create_batch(client: Callable[[str], Any]) -> tuple[str, str]:
    """A Fargate Spot compute environment (in a VPC of its own), a job queue and the worker job definition,
    made with the boto3 clients ``client(service)`` gives; the queue's and the definition's ARNs."""
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="workers", Description="workers", VpcId=vpc)["GroupId"]
    role = client("iam").create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = client("batch")
    compute = batch.create_compute_environment(
        computeEnvironmentName="spot",
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "FARGATE_SPOT",
            "maxvCpus": 16,
            "subnets": [subnet],
            "securityGroupIds": [group],
        },
        serviceRole=role,
    )["computeEnvironmentArn"]
    queue = batch.create_job_queue(
        jobQueueName="workers",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": compute}],
    )["jobQueueArn"]
    definition = batch.register_job_definition(
        jobDefinitionName="worker",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "panopipe-worker",
            "command": ["panopipe", "worker", "run"],
            "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"}],
            "executionRoleArn": role,
        },
    )["jobDefinitionArn"]
    return queue, definition


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    requests.post(f"{endpoint}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    yield endpoint
    server.stop()


@pytest.fixture
def world(moto_server: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A bucket, a Fargate Spot compute environment, a job queue and the worker job definition on moto's
    server, reached through ``AWS_ENDPOINT_URL`` / ``PANOPIPE_S3_ENDPOINT_URL`` (also by worker processes)."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    requests.post(f"{moto_server}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    monkeypatch.setattr(BatchSimpleBackend, "_mark_job_as_finished", leave_running)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("PANOPIPE_S3_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_REGION", REGION)
    probe = World(moto_server, "", "")
    probe.client("s3").create_bucket(Bucket=BUCKET)
    queue, definition = create_batch(probe.client)
    yield World(moto_server, queue, definition)


__all__ = [
    "BUCKET",
    "Containers",
    "World",
    "create_batch",
    "manifest_of",
    "moto_server",
    "set_status",
    "to_s3",
    "world",
]
