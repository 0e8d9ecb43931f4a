"""Where processing stands: the latest job of each step and subject, counted by status, and the failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from panopipe.catalog import Catalog
from panopipe.catalog.records import to_json_value
from panopipe.catalog.schema import artifacts, jobs


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


def status(catalog: Catalog, *, failures_limit: int = 1000) -> Status:
    """Job counts by step and status (the latest job of each subject), and up to ``failures_limit`` failures."""
    rank = (
        sa.func.row_number()
        .over(
            partition_by=(jobs.c.step, jobs.c.subject),
            order_by=(jobs.c.submitted_at.desc(), jobs.c.id.desc()),
        )
        .label("rank")
    )
    latest = sa.select(jobs, rank).subquery()
    current = sa.select(latest).where(latest.c.rank == 1).subquery()
    counts: dict[str, dict[str, int]] = {}
    with catalog.engine.connect() as conn:
        query = sa.select(current.c.step, current.c.status, sa.func.count()).group_by(
            current.c.step, current.c.status
        )
        for step, state, count in conn.execute(query.order_by(current.c.step, current.c.status)):
            counts.setdefault(step, {})[state] = count
        made = dict(
            conn.execute(
                sa.select(artifacts.c.step, sa.func.count(sa.distinct(artifacts.c.subject))).group_by(
                    artifacts.c.step
                )
            ).all()
        )
        failed = conn.execute(
            sa.select(
                current.c.step,
                current.c.subject,
                current.c.status,
                current.c.reason,
                current.c.error,
                current.c.attempts,
                current.c.finished_at,
                current.c.log,
            )
            .where(current.c.status.in_(("failed", "stale")))
            .order_by(current.c.step, current.c.subject)
            .limit(failures_limit)
        ).all()
    return Status(counts, made, tuple(JobFailure(*row) for row in failed))


__all__ = ["JobFailure", "Status", "status"]
