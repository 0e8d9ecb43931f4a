"""The AWS Batch executor: one array job per step, its children reading chunks of jobs from a manifest in S3.

:meth:`BatchExecutor.submit` writes the jobs as a manifest (:mod:`panopipe.executors.manifest`) under the
executor's work root and submits ONE array job per step with ``PANOPIPE_MANIFEST`` naming it (a run of more
than 10,000 chunks is split into several; a manifest whose SubmitJob fails is deleted again); child ``i``
runs chunk ``i`` (``panopipe worker run``). A job's external id is its child's Batch id,
``<array job id>:<index>`` (the array job's id when there is one chunk).

:meth:`BatchExecutor.describe` asks AWS once per poll: one ``DescribeJobs`` for the array jobs (up to 100 per
call; their ``statusSummary`` and ``PANOPIPE_MANIFEST``), one listing of each submission's results, and a
``ListJobs`` of the failed children only when the summary counts failures. A job with a result has ended as
the result says; a job whose child failed, or ended without writing its result, has failed with Batch's
reason. Jobs outlive the process (:attr:`detached`): another process follows them with :meth:`attach`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from panopipe.catalog.types import utcnow
from panopipe.config import ENV_MANIFEST, Settings
from panopipe.errors import ConfigError, PanopipeError
from panopipe.executors.base import Executor, JobState, JobStatus
from panopipe.executors.manifest import MANIFEST, Submission, chunk_count
from panopipe.executors.throttle import RateLimiter, call_aws
from panopipe.locations import url_scheme
from panopipe.steps.base import JobOutcome, JobSpec

log = logging.getLogger(__name__)

MAX_CHILDREN = 10_000
"""The most children AWS Batch allows in one array job."""
SUBMIT_RATE = 40.0
"""SubmitJob calls per second at most (AWS allows 50 per second per account; leave room for others)."""
DESCRIBE_IDS = 100
"""Job ids per DescribeJobs call (the API's limit)."""


@dataclass(slots=True)
class _Array:
    """One submitted (array) job: where its results go, and what ListJobs said about its failed children."""

    size: int
    submission: Submission | None = None
    failed_seen: int = 0
    failed: dict[int, str] = field(default_factory=dict)


class BatchExecutor(Executor):
    """Run jobs as AWS Batch array jobs of ``job_definition`` on ``job_queue``; manifests and results go under
    the storage URI ``work_uri`` (an S3 prefix the workers may read and write). Without the three it only
    follows jobs submitted earlier (:meth:`attach`, :meth:`describe`: each job names its own manifest)."""

    name = "batch"
    detached = True

    def __init__(
        self,
        job_queue: str | None,
        job_definition: str | None,
        work_uri: str | None,
        *,
        chunk_jobs: int = Settings.batch_chunk_jobs,
        poll_interval_s: float = Settings.batch_poll_s,
        settings: Settings | None = None,
        batch_client: Any = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if chunk_jobs < 1:
            raise ConfigError(f"batch_chunk_jobs must be at least 1, got {chunk_jobs}")
        self.job_queue, self.job_definition = job_queue, job_definition
        self.work_uri = work_uri.rstrip("/") + "/" if work_uri else None
        self.chunk_jobs, self.poll_interval_s = chunk_jobs, poll_interval_s
        self.settings = settings
        self.limiter = limiter or RateLimiter(SUBMIT_RATE, burst=int(SUBMIT_RATE))
        self._client = batch_client
        self._where: dict[str, tuple[str, int]] = {}  # job id -> (array job id, index)
        self._arrays: dict[str, _Array] = {}
        self._finished: dict[str, JobState] = {}

    @property
    def client(self) -> Any:
        """The Batch client: the injected one, or one with adaptive retries (client-side rate limiting) and
        the S3 client's connect timeout."""
        if self._client is None:
            from panopipe.storage.aws_clients import CONNECT_TIMEOUT_S, MAX_RETRIES, aws_client

            self._client = aws_client(
                "batch",
                self.settings,
                retries={"mode": "adaptive", "max_attempts": MAX_RETRIES},
                connect_timeout=CONNECT_TIMEOUT_S,
            )
        return self._client

    def check(self, jobs: Sequence[JobSpec]) -> None:
        """:class:`ConfigError` naming the first input of ``jobs`` that is not in S3 (a local capture, or an
        output of a local run), which a worker on Fargate cannot read."""
        local = [(job, uri) for job in jobs for uri in job_inputs(job) if url_scheme(uri) != "s3"]
        if local:
            job, uri = local[0]
            more = f" (and {len(local) - 1} more local inputs)" if len(local) > 1 else ""
            raise ConfigError(
                f"the batch executor's workers read only s3:// inputs, and the {job.step} job of {job.subject} "
                f"reads {uri!r}{more}: `panopipe sync` the captures to S3 and ingest from there (outputs of a "
                "local run: run their step again with an s3:// output and --force)"
            )

    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        if not (self.job_queue and self.job_definition and self.work_uri):
            raise ConfigError(
                "this batch executor only follows jobs: it was built without a queue, a job "
                "definition and a work root to submit to"
            )
        self.check(jobs)  # before any manifest is written or job submitted
        by_step: dict[str, list[JobSpec]] = {}
        for job in jobs:
            by_step.setdefault(job.step, []).append(job)
        block = MAX_CHILDREN * self.chunk_jobs
        for step, specs in by_step.items():
            for start in range(0, len(specs), block):
                self._submit_array(step, specs[start : start + block])
        return [job.id for job in jobs]

    def _submit_array(self, step: str, specs: Sequence[JobSpec]) -> None:
        assert self.work_uri is not None  # checked by submit
        name = f"panopipe-{step}-{utcnow():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        submission = Submission.at(f"{self.work_uri}{name}/", self.settings)
        manifest = submission.write(step, specs, self.chunk_jobs)
        size = chunk_count(len(specs), self.chunk_jobs)
        request: dict[str, Any] = {
            "jobName": name,
            "jobQueue": self.job_queue,
            "jobDefinition": self.job_definition,
            "containerOverrides": {"environment": [{"name": ENV_MANIFEST, "value": manifest.uri}]},
        }
        if size > 1:  # an array job has 2 to 10,000 children
            request["arrayProperties"] = {"size": size}
        try:
            response = call_aws(
                "batch:SubmitJob", partial(self.client.submit_job, **request), limiter=self.limiter
            )
        except Exception:  # no job reads it: a dispatcher failing every minute would leave one a minute
            try:
                submission.delete()
            except (PanopipeError, OSError) as exc:
                where = manifest.uri.removesuffix(MANIFEST)
                log.warning(
                    "a submission AWS Batch did not take is left at %s: cannot delete it: %s", where, exc
                )
            raise
        array_id = response["jobId"]
        self._arrays[array_id] = _Array(size if size > 1 else 0, submission)
        for number, spec in enumerate(specs):
            self._where[spec.id] = (array_id, number // self.chunk_jobs)
            self._finished.pop(
                spec.id, None
            )  # a retry reuses its job's id: how the last attempt ended is past

    def external_ids(self, handles: Sequence[str]) -> list[str | None]:
        """``<array job id>:<index>`` of each job (the Batch id of the child that runs it)."""
        return [self._external_id(handle) for handle in handles]

    def _external_id(self, handle: str) -> str:
        array_id, index = self._where[handle]
        return f"{array_id}:{index}" if self._arrays[array_id].size else array_id

    def attach(self, jobs: Mapping[str, str]) -> list[str]:
        """Follow jobs submitted earlier, given as ``{job id: external id}``; their handles."""
        for job_id, external_id in jobs.items():
            array_id, colon, index = external_id.partition(":")
            self._where[job_id] = (array_id, int(index) if colon else 0)
            self._arrays.setdefault(array_id, _Array(1 if colon else 0))
        return list(jobs)

    def describe(self, handles: Sequence[str]) -> list[JobState]:
        by_array: dict[str, list[str]] = {}
        for handle in handles:
            if handle not in self._finished:
                by_array.setdefault(self._where[handle][0], []).append(handle)
        described = self._describe_jobs(list(by_array))
        states: dict[str, JobState] = {}
        for array_id, job_ids in by_array.items():
            states.update(self._states(array_id, job_ids, described.get(array_id)))
        self._finished.update((h, s) for h, s in states.items() if s.outcome is not None)
        return [self._finished.get(handle) or states[handle] for handle in handles]

    def _describe_jobs(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), DESCRIBE_IDS):
            chunk = list(ids[start : start + DESCRIBE_IDS])
            response = call_aws("batch:DescribeJobs", partial(self.client.describe_jobs, jobs=chunk))
            found.update((job["jobId"], job) for job in response.get("jobs", []))
        return found

    def _states(
        self, array_id: str, job_ids: Sequence[str], job: dict[str, Any] | None
    ) -> dict[str, JobState]:
        array = self._arrays[array_id]
        if job is None:
            reason = f"AWS Batch does not know job {array_id} (it keeps finished jobs for about 7 days)"
            return {j: self._failed(j, reason) for j in job_ids}
        if array.submission is None:
            manifest = _environment(job).get(ENV_MANIFEST)
            if manifest is None:
                return {
                    j: self._failed(j, f"AWS Batch job {array_id} has no {ENV_MANIFEST}") for j in job_ids
                }
            array.submission = Submission.at(manifest, self.settings)
            array.size = int(job.get("arrayProperties", {}).get("size", 0))
        submission = array.submission
        states: dict[str, JobState] = {}
        done = submission.result_ids().intersection(job_ids)
        for job_id, outcome in submission.read_results(sorted(done)):
            states[job_id] = JobState(job_id, outcome.status, outcome, self._external_id(job_id))
        missing = [j for j in job_ids if j not in done]
        if not missing:
            return states
        if array.size:
            summary = job.get("arrayProperties", {}).get("statusSummary", {})
            ended = summary.get("SUCCEEDED", 0) + summary.get("FAILED", 0) >= array.size
            if summary.get("FAILED", 0) > array.failed_seen:
                array.failed = self._failed_children(array_id)
                array.failed_seen = summary.get("FAILED", 0)
            failed = array.failed
        else:
            ended = job["status"] in ("SUCCEEDED", "FAILED")
            failed = {0: _reason(job)} if job["status"] == "FAILED" else {}
        status: JobStatus = "running" if job["status"] == "RUNNING" else "queued"
        for job_id in missing:
            index = self._where[job_id][1]
            if index in failed:
                states[job_id] = self._failed(job_id, failed[index])
            elif ended:
                states[job_id] = self._failed(
                    job_id, f"AWS Batch job {self._external_id(job_id)} ended without a result for this job"
                )
            else:
                states[job_id] = JobState(job_id, status, None, self._external_id(job_id))
        return states

    def _failed_children(self, array_id: str) -> dict[int, str]:
        """Index -> Batch's reason, of the failed children of the array job (ListJobs, all pages)."""
        failed: dict[int, str] = {}
        token: str | None = None
        while True:
            request = {
                "arrayJobId": array_id,
                "jobStatus": "FAILED",
                **({"nextToken": token} if token else {}),
            }
            response = call_aws("batch:ListJobs", partial(self.client.list_jobs, **request))
            for child in response.get("jobSummaryList", []):
                index = child.get("arrayProperties", {}).get("index")
                if index is None:
                    index = int(child["jobId"].rpartition(":")[2])
                failed[int(index)] = _reason(child)
            token = response.get("nextToken")
            if not token:
                return failed

    def _failed(self, job_id: str, reason: str) -> JobState:
        now = utcnow()
        outcome = JobOutcome("failed", (), reason, "", 1, now, now)
        return JobState(job_id, "failed", outcome, self._external_id(job_id))

    def cancel(self, handles: Sequence[str]) -> None:
        """Terminate the array jobs of ``handles`` (with all their children)."""
        for array_id in dict.fromkeys(self._where[h][0] for h in handles if h not in self._finished):
            call_aws(
                "batch:TerminateJob",
                partial(self.client.terminate_job, jobId=array_id, reason="cancelled by panopipe"),
            )


def job_inputs(job: JobSpec) -> list[str]:
    """The URIs a job reads: its ``inputs`` (the image files, or the output of the step before) and the
    outputs of other steps it copies (publish's ``derived`` thumbnail and preview)."""
    return [*job.payload.get("inputs", ()), *job.payload.get("derived", {}).values()]


def _environment(job: Mapping[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in job.get("container", {}).get("environment", [])}


def _reason(job: Mapping[str, Any]) -> str:
    """Batch's reason a job failed: its status reason, its container's reason and exit code."""
    container = job.get("container", {})
    parts = [job.get("statusReason"), container.get("reason")]
    if container.get("exitCode") is not None:
        parts.append(f"exit code {container['exitCode']}")
    found = "; ".join(str(part) for part in parts if part)
    return f"AWS Batch job {job['jobId']} failed: {found or 'no reason given'}"


__all__ = ["DESCRIBE_IDS", "MAX_CHILDREN", "SUBMIT_RATE", "BatchExecutor", "job_inputs"]
