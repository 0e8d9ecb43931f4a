"""Where processing stands: the latest job of each step and subject, counted by status, the failures, and each
step's latest submission against its cost estimate."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from panopipe.catalog import Catalog
from panopipe.catalog.records import to_json_value
from panopipe.config import Settings
from panopipe.iterutil import by_message
from panopipe.pipeline.estimate import CostComparison, Rates, estimate_vs_actual
from panopipe.pipeline.store import FAILED, failure_messages, job_status

FAILURES_LIMIT = 1000
"""The failures :func:`status` lists, and the groups of them it counts, unless told otherwise."""


@dataclass(frozen=True, slots=True)
class JobFailure:
    """The latest job of a step and subject, which failed (or was marked stale): why, and its log."""

    step: str
    subject: str
    status: str
    reason: str | None
    error: str | None
    attempts: int
    finished_at: datetime | None
    log: str | None

    def to_dict(self) -> dict[str, Any]:
        return {name: to_json_value(getattr(self, name)) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """The failures of one step that share a status and a message (the error, or why a job was marked stale,
    where the subject's own key does not count: ``shot R001-000002 is missing ...`` is the message of
    ``shot:R001-000001`` too), how many, and the first few subjects; ``message`` is the first subject's."""

    step: str
    status: str
    message: str
    count: int
    subjects: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Status:
    """Counts of latest jobs per step and status, artifacts per step, the failures, and estimate against
    actual cost of each step's latest submission (priced with ``rates``)."""

    jobs: dict[str, dict[str, int]] = field(default_factory=dict)
    artifacts: dict[str, int] = field(default_factory=dict)
    failures: tuple[JobFailure, ...] = ()
    costs: tuple[CostComparison, ...] = ()
    rates: Rates | None = None
    failure_groups: tuple[FailureGroup, ...] = ()

    @property
    def failures_total(self) -> int:
        """The failures in all, listed or not."""
        return sum(counts.get(state, 0) for counts in self.jobs.values() for state in FAILED)

    def to_dict(self) -> dict[str, Any]:
        rates = self.rates or Rates()
        return {
            "jobs": self.jobs,
            "artifacts": self.artifacts,
            "failures": [f.to_dict() for f in self.failures],
            "failures_total": self.failures_total,
            "failures_truncated": len(self.failures) < self.failures_total,
            "costs": [c.to_dict(rates) for c in self.costs],
        }


def status(
    catalog: Catalog,
    settings: Settings | None = None,
    *,
    refresh: bool = False,
    failures_limit: int | None = None,
    rates: Rates | None = None,
) -> Status:
    """Job counts by step and status (the latest job of each subject), up to ``failures_limit`` (default :data:`FAILURES_LIMIT`) failures (and
    as many groups of them by step, status and message, with their counts), and the cost of each step's latest submission against its estimate; with ``refresh``, jobs in flight on AWS
    Batch are asked about first (:func:`~panopipe.pipeline.remote.refresh`)."""
    if refresh:
        from panopipe.pipeline.remote import refresh as refresh_remote

        refresh_remote(catalog, settings)
    failures_limit = failures_limit or FAILURES_LIMIT
    counts, made, failed = job_status(catalog, failures_limit)
    failures = tuple(JobFailure(*row) for row in failed)
    groups = _grouped(failure_messages(catalog), failures_limit)
    return Status(counts, made, failures, estimate_vs_actual(catalog, settings), rates or Rates(), groups)


def _grouped(
    failed: list[tuple[str, str, str, str]], limit: int, examples: int = 3
) -> tuple[FailureGroup, ...]:
    """The ``limit`` largest groups of ``failed`` (step, status, subject, message) by :func:`by_message`, with
    ``examples`` subjects each."""
    groups = by_message(((step, state), subject, message) for step, state, subject, message in failed)
    ordered = sorted(groups.items(), key=lambda group: -len(group[1][1]))[:limit]
    return tuple(
        FailureGroup(step, state, message, len(subjects), tuple(subjects[:examples]))
        for ((step, state), _), (message, subjects) in ordered
    )


__all__ = ["FAILURES_LIMIT", "FailureGroup", "JobFailure", "Status", "status"]
