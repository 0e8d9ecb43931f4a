"""The executor interface: where jobs run. Deliberately narrow so that remote executors (AWS Lambda inline,
AWS Batch, Fargate) plug in with the same three calls the local process pool answers.

An executor accepts :class:`~panopipe.steps.base.JobSpec` (JSON-ready payloads), returns opaque handles,
reports their states, and cancels them. It never touches the catalog: the runner records jobs and artifacts
from what :meth:`Executor.finished` reports.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from panopipe.errors import ConfigError
from panopipe.steps.base import JobOutcome, JobSpec

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class JobState:
    """What an executor knows about one submitted job; ``outcome`` is set once the job has finished running."""

    handle: str
    status: JobStatus
    outcome: JobOutcome | None = None
    external_id: str | None = None


class Executor(ABC):
    """Runs jobs somewhere. ``name`` is recorded with each job; ``poll_interval_s`` paces the runner
    (:meth:`wait`)."""

    name: ClassVar[str]
    poll_interval_s: float = 0.05
    detached: ClassVar[bool] = False
    """Whether jobs outlive the process that submitted them (a remote queue): a run may return once they are
    submitted, and another process follows them with :meth:`attach`."""

    def check(self, jobs: Sequence[JobSpec]) -> None:  # noqa: B027 - most executors run any job
        """Raise :class:`ConfigError` if this executor cannot run ``jobs`` (say, inputs its workers cannot
        read), before anything is recorded or started. By default every job can run."""

    @abstractmethod
    def submit(self, jobs: Sequence[JobSpec]) -> list[str]:
        """Start ``jobs``; one handle per job, in order."""

    @abstractmethod
    def describe(self, handles: Sequence[str]) -> list[JobState]:
        """The current state of each job, in the order of ``handles``."""

    @abstractmethod
    def cancel(self, handles: Sequence[str]) -> None:
        """Stop the jobs that have not finished; finished jobs are left alone."""

    def finished(self, handles: Collection[str]) -> list[JobState]:
        """The states of the jobs among ``handles`` that have finished (succeeded, failed or cancelled). The
        caller drops them from ``handles`` before it asks again: an executor may report each job only once.
        By default, every handle is described and the finished ones are kept."""
        return [state for state in self.describe(list(handles)) if state.status in FINISHED]

    def wait(self, handles: Collection[str]) -> None:
        """Pause while none of ``handles`` has finished, at most ``poll_interval_s`` (by default: that long)."""
        time.sleep(self.poll_interval_s)

    def external_ids(self, handles: Sequence[str]) -> list[str | None]:
        """Where each job runs, as the remote system names it (recorded with the job); ``None`` locally."""
        return [None] * len(handles)

    def attach(self, jobs: Mapping[str, str]) -> list[str]:
        """Handles of jobs submitted earlier, given as ``{job id: external id}`` (detached executors only)."""
        raise ConfigError(f"the {self.name} executor's jobs end with the process that submitted them")

    def close(self) -> None:  # noqa: B027 - executors without resources need nothing
        """Release the executor's resources (workers, clients). Jobs still running in this process's workers
        are stopped, cancelled: nothing would record their outcomes (a run interrupted)."""


__all__ = ["FINISHED", "Executor", "JobState", "JobStatus"]
