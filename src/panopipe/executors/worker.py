"""The worker of an array job: runs one chunk of a manifest on all cores, one result object per job.

``panopipe worker run --manifest URI [--index N]`` (the index defaults to ``AWS_BATCH_JOB_ARRAY_INDEX``, as
AWS Batch sets it in each child) reads chunk ``N`` and runs its jobs through the local process pool
(:class:`~panopipe.executors.local.LocalExecutor`, the code path of ``panopipe run`` on a laptop). Jobs that
already have a result (an earlier attempt of the child ran them) are skipped. On SIGTERM (a Spot reclaim, a
stopped Fargate task) no job starts any more, running jobs get ``grace_s`` seconds to finish, and the
worker exits with :data:`STOPPED_EXIT` so that Batch's retry runs only the jobs without a result. So does a
storage that cannot be reached, or fails past its retries (:data:`UNAVAILABLE_EXIT`): reading the manifest, the
chunk or its results, writing a result, or in a job (which gets no result). A job run again so is harmless:
its outputs are content-addressed and written create-only (an attempt before wrote the same bytes, kept).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from panopipe.errors import EndpointUnreachableError, ManifestError, StorageError

if TYPE_CHECKING:
    from panopipe.config import Settings
    from panopipe.executors.manifest import Submission
    from panopipe.steps.base import JobSpec

ENV_ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"
GRACE_S = 20.0
"""Seconds running jobs get after SIGTERM: ECS kills the task 30 s after it (the default stopTimeout)."""
STOPPED_EXIT = 143
"""The exit code of a worker stopped by SIGTERM (128 + 15); the job definition retries it."""
UNAVAILABLE_EXIT = 75
"""The exit code of a worker that found the storage's endpoint unreachable, or failing past its retries
(throttling, server errors): ``EX_TEMPFAIL`` of sysexits.h, try again later; the job definition retries it."""


@dataclass(slots=True)
class WorkerReport:
    """What a worker did with its chunk: jobs skipped (a result existed), succeeded and failed, whether
    SIGTERM stopped it before every job had a result, and the storage error that stopped it (``unavailable``:
    the endpoint unreachable, or failing past its retries)."""

    manifest: str
    index: int
    jobs: int
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    stopped: bool = False
    unavailable: str | None = None

    @property
    def exit_code(self) -> int:
        """0, :data:`STOPPED_EXIT` when stopped, :data:`UNAVAILABLE_EXIT` when the storage was unavailable
        (failed jobs are in their results, not the exit code)."""
        if self.stopped:
            return STOPPED_EXIT
        return UNAVAILABLE_EXIT if self.unavailable else 0

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def array_index(index: int | None) -> int:
    """``index``, else ``AWS_BATCH_JOB_ARRAY_INDEX``, else 0 (a job of one chunk is not an array)."""
    if index is not None:
        return index
    text = os.environ.get(ENV_ARRAY_INDEX, "0")
    try:
        return int(text)
    except ValueError:
        raise ManifestError(f"{ENV_ARRAY_INDEX} must be a whole number, got {text!r}") from None


def run_chunk(
    manifest_uri: str,
    index: int | None = None,
    *,
    workers: int | None = None,
    grace_s: float = GRACE_S,
    retries: int = 2,
    backoff_s: float = 0.5,
    settings: Settings | None = None,
) -> WorkerReport:
    """Run chunk ``index`` of the manifest at ``manifest_uri`` in ``workers`` processes (default: all cores),
    writing each job's result as it ends; :class:`ManifestError` if the manifest or chunk is missing or
    malformed. Stops early on SIGTERM, and when the storage is unavailable (see the module)."""
    from panopipe.executors.manifest import Submission

    index = array_index(index)
    submission = Submission.at(manifest_uri, settings)
    report = WorkerReport(submission.manifest_uri, index, 0)
    try:
        specs = submission.chunk(submission.manifest(), index)
        report.jobs = len(specs)
        done = submission.result_ids()
    except StorageError as exc:
        if not _unavailable(exc):
            raise
        report.unavailable = str(exc)
        return report
    todo = [spec for spec in specs if spec.id not in done]
    report.skipped = len(specs) - len(todo)
    if todo:
        _run_jobs(submission, todo, report, workers, grace_s, retries, backoff_s)
    return report


def _unavailable(error: StorageError) -> bool:
    """Whether ``error`` may pass on another attempt of the child: the endpoint unreachable, or a transient
    failure (throttling, a server error) that outlasted the storage's retries."""
    return isinstance(error, EndpointUnreachableError) or error.transient


def _run_jobs(
    submission: Submission,
    todo: list[JobSpec],
    report: WorkerReport,
    workers: int | None,
    grace_s: float,
    retries: int,
    backoff_s: float,
) -> None:
    """Run ``todo`` in the pool, each result written as its job ends, counted in ``report``. No job starts
    once SIGTERM came or the storage was found unavailable; a job that found it so gets no result."""
    from panopipe.executors.local import LocalExecutor

    stop = threading.Event()
    # Signal handlers belong to the main thread (a worker run from another thread is not stopped by SIGTERM).
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set()) if main else None
    executor = LocalExecutor(workers, retries=retries, backoff_s=backoff_s)
    waiting = deque(todo)
    pending: list[str] = []
    try:
        deadline: float | None = None
        while waiting or pending:
            if stop.is_set() and deadline is None:
                report.stopped = True
                deadline = time.monotonic() + grace_s
                waiting.clear()  # never started: the next attempt runs them
            ended = [(s.handle, s.outcome) for s in executor.finished(pending) if s.outcome is not None]
            for handle, outcome in ended:
                pending.remove(handle)
                if outcome.unreachable and not report.unavailable:
                    report.unavailable = outcome.error or "the storage's endpoint cannot be reached"
            if report.unavailable:
                waiting.clear()  # every job would fail alike: the next attempt runs them
            # As many jobs in the pool as it has processes, so that none starts after SIGTERM; the pool is
            # topped up before the results are written, so that no process waits for S3's answers.
            while waiting and len(pending) < executor.workers:
                pending += executor.submit([waiting.popleft()])
            for handle, outcome in ended:
                if report.stopped and (outcome.error or "").startswith("worker died"):
                    continue  # killed with the container: the next attempt runs it
                if outcome.unreachable:
                    continue  # no result: the next attempt runs it
                try:
                    submission.write_result(handle, outcome)
                except StorageError as exc:
                    if not _unavailable(exc):
                        raise
                    report.unavailable = report.unavailable or str(exc)
                    continue  # without its result, the next attempt runs it again
                if outcome.status == "succeeded":
                    report.succeeded += 1
                else:
                    report.failed += 1
            if deadline is not None and time.monotonic() > deadline:
                break
            if pending and not ended:
                executor.wait(pending)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        if report.stopped:
            executor.abandon()
        else:
            executor.close()


__all__ = [
    "ENV_ARRAY_INDEX",
    "GRACE_S",
    "STOPPED_EXIT",
    "UNAVAILABLE_EXIT",
    "WorkerReport",
    "array_index",
    "run_chunk",
]
