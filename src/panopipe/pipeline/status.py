"""Where processing stands: the latest job of each step and subject, counted by status, and the failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from panopipe.catalog import Catalog
from panopipe.catalog.records import to_json_value
from panopipe.config import Settings
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
    """Counts of latest jobs per step and status, artifacts per step, and the failures."""

    jobs: dict[str, dict[str, int]] = field(default_factory=dict)
    artifacts: dict[str, int] = field(default_factory=dict)
    failures: tuple[JobFailure, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "artifacts": self.artifacts,
            "failures": [f.to_dict() for f in self.failures],
        }


def status(
    catalog: Catalog, settings: Settings | None = None, *, refresh: bool = False, failures_limit: int = 1000
) -> Status:
    """Job counts by step and status (the latest job of each subject), and up to ``failures_limit`` failures;
    with ``refresh``, jobs in flight on AWS Batch are asked about first (:func:`~panopipe.pipeline.remote.refresh`)."""
    if refresh:
        from panopipe.pipeline.remote import refresh as refresh_remote

        refresh_remote(catalog, settings)
    counts, made, failed = job_status(catalog, failures_limit)
    return Status(counts, made, tuple(JobFailure(*row) for row in failed))


__all__ = ["JobFailure", "Status", "status"]
