"""Where processing stands: the latest job of each step and subject, counted by status, the failures, and each
step's latest submission against its cost estimate."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from panopipe.catalog import Catalog
from panopipe.catalog.records import to_json_value
from panopipe.config import Settings
from panopipe.pipeline.estimate import CostComparison, Rates, estimate_vs_actual
from panopipe.pipeline.store import job_status


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
class Status:
    """Counts of latest jobs per step and status, artifacts per step, the failures, and estimate against
    actual cost of each step's latest submission (priced with ``rates``)."""

    jobs: dict[str, dict[str, int]] = field(default_factory=dict)
    artifacts: dict[str, int] = field(default_factory=dict)
    failures: tuple[JobFailure, ...] = ()
    costs: tuple[CostComparison, ...] = ()
    rates: Rates | None = None

    def to_dict(self) -> dict[str, Any]:
        rates = self.rates or Rates()
        return {
            "jobs": self.jobs,
            "artifacts": self.artifacts,
            "failures": [f.to_dict() for f in self.failures],
            "costs": [c.to_dict(rates) for c in self.costs],
        }


def status(
    catalog: Catalog,
    settings: Settings | None = None,
    *,
    refresh: bool = False,
    failures_limit: int = 1000,
    rates: Rates | None = None,
) -> Status:
    """Job counts by step and status (the latest job of each subject), up to ``failures_limit`` failures, and
    the cost of each step's latest submission against its estimate; with ``refresh``, jobs in flight on AWS
    Batch are asked about first (:func:`~panopipe.pipeline.remote.refresh`)."""
    if refresh:
        from panopipe.pipeline.remote import refresh as refresh_remote

        refresh_remote(catalog, settings)
    counts, made, failed = job_status(catalog, failures_limit)
    failures = tuple(JobFailure(*row) for row in failed)
    return Status(counts, made, failures, estimate_vs_actual(catalog, settings), rates or Rates())


__all__ = ["JobFailure", "Status", "status"]
