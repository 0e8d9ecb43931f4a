"""The inline executor: jobs run in the calling process when they are submitted (an event handler, a Lambda)."""

from __future__ import annotations

from collections.abc import Sequence

from panopipe.executors.base import Executor, JobState
from panopipe.steps.base import JobOutcome, JobSpec
from panopipe.steps.registry import execute_job


class InlineExecutor(Executor):
    """Run each job to completion inside :meth:`submit`, retrying transient errors; nothing to poll or cancel.
    Once a job found the storage's endpoint unreachable, the jobs after it are not run: they end cancelled
    (every one would wait through the same retries and fail alike)."""

    name = "inline"
    poll_interval_s = 0.0

    def __init__(self, *, retries: int = 2, backoff_s: float = 0.5) -> None:
        self.retries, self.backoff_s = retries, backoff_s
        self._outcomes: dict[str, JobOutcome] = {}

    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        for job in jobs:
            outcome = execute_job(job, retries=self.retries, backoff_s=self.backoff_s)
            self._outcomes[job.id] = outcome
            if outcome.unreachable:
                break
        return [job.id for job in jobs]

    def describe(self, handles: Sequence[str]) -> list[JobState]:
        states = []
        for handle in handles:
            outcome = self._outcomes.pop(handle, None)  # none: not run, after an unreachable endpoint
            states.append(JobState(handle, outcome.status if outcome else "cancelled", outcome))
        return states

    def cancel(self, handles: Sequence[str]) -> None:
        """Jobs have finished by the time they are submitted: nothing to cancel."""


__all__ = ["InlineExecutor"]
