"""Claims and jobs in flight: a submitter claims the queued jobs it submits, so that each is submitted once
however many submitters run at once; a remote executor's id replaces the claim, and a run that executes its
jobs itself (the local pool, inline) holds the claim until they end, renewing it while they run, so that
another run leaves them alone."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from panopipe.catalog import Catalog
from panopipe.catalog.bulk import read_columns
from panopipe.catalog.schema import jobs
from panopipe.catalog.types import utcnow

CLAIM_PREFIX = "claim:"
"""An external id that starts with this is a submitter's claim on a queued job (:func:`record_submitted`), held
while it submits the job; the executor's id replaces it."""
CLAIM_TTL_S = 900
"""Seconds after which a claim expires that its submitter did not replace with the executor's id, nor renew
(:func:`renew_claim`): the submitter died."""


def new_claim() -> str:
    """A claim token, unique to one submission (it fits the ``external_id`` column)."""
    return f"{CLAIM_PREFIX}{uuid.uuid4().hex}"


def claimed_jobs(catalog: Catalog, token: str) -> set[str]:
    """The ids of the jobs claimed by ``token`` (read column-wise: a submission claims up to millions)."""
    with catalog.connect() as conn:
        [ids] = read_columns(conn, sa.select(jobs.c.id).where(jobs.c.external_id == token))
        return set(ids)


def renew_claim(catalog: Catalog, token: str) -> None:
    """Keep the claim ``token`` holds on its jobs still queued or running from expiring: their run is alive."""
    with catalog.transaction() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.external_id == token, jobs.c.status.in_(("queued", "running")))
            .values(submitted_at=utcnow())
        )


def release_claim(catalog: Catalog, token: str) -> None:
    """Give up the jobs claimed by ``token`` (their submission failed): queued again for the next one."""
    with catalog.transaction() as conn:
        conn.execute(jobs.update().where(jobs.c.external_id == token).values(external_id=None))


def fail_claim(catalog: Catalog, token: str, error: str) -> None:
    """Fail the jobs claimed by ``token`` with ``error``: their submission was refused for a reason a retry
    does not change (a missing job queue, a denial), so no submitter takes them up again; ``panopipe run``
    retries them once the cause is fixed."""
    with catalog.transaction() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.external_id == token)
            .values(status="failed", error=error, external_id=None, finished_at=utcnow())
        )


def _claim_expiry(now: datetime) -> datetime:
    return now - timedelta(seconds=CLAIM_TTL_S)


def in_flight_condition(now: datetime) -> sa.ColumnElement[bool]:
    """Jobs in flight: queued or running with an executor's id or an unexpired claim."""
    c = jobs.c
    return sa.and_(
        sa.or_(c.status == "queued", c.status == "running"),  # no IN: record_submitted runs it executemany
        c.external_id.is_not(None),
        sa.or_(~c.external_id.startswith(CLAIM_PREFIX), c.submitted_at >= _claim_expiry(now)),
    )


def is_in_flight(status: str, external_id: str | None, submitted_at: datetime, now: datetime) -> bool:
    """Whether a job read back is in flight: :func:`in_flight_condition` of one row."""
    if status not in ("queued", "running") or external_id is None:
        return False
    return not external_id.startswith(CLAIM_PREFIX) or submitted_at >= _claim_expiry(now)


@dataclass(frozen=True, slots=True)
class InFlight:
    """A job submitted to a remote executor that has not been seen to finish."""

    id: str
    step: str
    subject: str
    fingerprint: str
    executor: str
    external_id: str


def in_flight(catalog: Catalog, executors: Sequence[str] | None = None) -> list[InFlight]:
    """The jobs queued or running (on any of ``executors``, or on any executor) that have an external id (an
    unexpired claim included: see :func:`is_claim`), oldest first."""
    c = jobs.c
    query = (
        sa.select(c.id, c.step, c.subject, c.fingerprint, c.executor, c.external_id)
        .where(in_flight_condition(utcnow()))
        .order_by(c.submitted_at, c.id)
    )
    if executors is not None:
        query = query.where(c.executor.in_(executors))
    with catalog.connect() as conn:
        return [InFlight(*row) for row in conn.execute(query)]


def is_claim(external_id: str) -> bool:
    """Whether ``external_id`` is a submitter's claim (the job is being submitted), not an executor's id."""
    return external_id.startswith(CLAIM_PREFIX)


__all__ = [
    "CLAIM_PREFIX",
    "CLAIM_TTL_S",
    "InFlight",
    "claimed_jobs",
    "fail_claim",
    "in_flight",
    "in_flight_condition",
    "is_claim",
    "is_in_flight",
    "new_claim",
    "release_claim",
    "renew_claim",
]
