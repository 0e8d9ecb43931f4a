"""The inline executor: jobs run in the calling process when they are submitted (an event handler, a Lambda)."""

from __future__ import annotations

from collections.abc import Sequence

from panopipe.executors.base import Executor, JobState
from panopipe.steps.base import JobOutcome, JobSpec
from panopipe.steps.registry import execute_job


class InlineExecutor(Executor):
    """Run each job to completion inside :meth:`submit`, retrying transient errors; nothing to poll or cancel."""

    name = "inline"
    poll_interval_s = 0.0

    def __init__(self, *, retries: int = 2, backoff_s: float = 0.5) -> None:
        self.retries, self.backoff_s = retries, backoff_s
        self._outcomes: dict[str, JobOutcome] = {}

    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        for job in jobs:
            self._outcomes[job.id] = execute_job(job, retries=self.retries, backoff_s=self.backoff_s)
        return [job.id for job in jobs]

    def describe(self, handles: Sequence[str]) -> list[JobState]:
        return [JobState(h, self._outcomes[h].status, self._outcomes.pop(h)) for h in handles]

    def cancel(self, handles: Sequence[str]) -> None:
        """Jobs have finished by the time they are submitted: nothing to cancel."""


__all__ = ["InlineExecutor"]
